package stage

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is an [Observer] that counts, per stage, with atomic counters that
// can be read while runs go on (a progress bar, a status page, a test). The
// zero Stats is ready to use; attach it with [Observe]. Stages are told
// apart by name (unnamed stages are named by kind and position, see
// [Name]): stages of the same name, in one run or in several, share one
// entry, whose counts add up and whose [Info] is that of the stage last
// opened under the name. Names you give are yours to keep distinct.
type Stats struct {
	mu     sync.Mutex
	order  []*stageCounters
	byName map[string]*stageCounters
}

// Counts is a snapshot of one stage's counters.
type Counts struct {
	Info
	Received int64         // items taken for a call
	Finished int64         // calls ended (successes and failures)
	Failed   int64         // calls that ended in an item error
	InFlight int64         // Received - Finished
	Latency  time.Duration // the calls' total duration
	Running  int           // runs in which the stage has not closed yet
}

// MeanLatency is Latency / Finished, or 0.
func (s Counts) MeanLatency() time.Duration {
	if s.Finished == 0 {
		return 0
	}
	return s.Latency / time.Duration(s.Finished)
}

// Stage implements [Observer].
func (s *Stats) Stage(info Info) Watcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byName[info.Name]
	if !ok {
		if s.byName == nil {
			s.byName = map[string]*stageCounters{}
		}
		c = &stageCounters{}
		s.byName[info.Name] = c
		s.order = append(s.order, c)
	}
	c.info.Store(&info)
	c.running.Add(1)
	return c
}

// Snapshot returns every stage's counters, in the order the stages were
// first seen.
func (s *Stats) Snapshot() []Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Counts, len(s.order))
	for i, c := range s.order {
		out[i] = c.snapshot()
	}
	return out
}

// Get returns the counters of the stage named name.
func (s *Stats) Get(name string) (Counts, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.byName[name]
	if !ok {
		return Counts{}, false
	}
	return c.snapshot(), true
}

// stageCounters are one stage's counters.
type stageCounters struct {
	info                       atomic.Pointer[Info]
	received, finished, failed atomic.Int64
	latency                    atomic.Int64 // ns
	running                    atomic.Int64
}

func (c *stageCounters) Received() { c.received.Add(1) }

// Finished counts a call in finished before failed, and snapshot reads them
// the other way round (and received last), so that a snapshot taken while
// calls end never shows Failed > Finished or Finished > Received.
func (c *stageCounters) Finished(d time.Duration, err error) {
	c.latency.Add(int64(d))
	c.finished.Add(1)
	if isItemError(err) {
		c.failed.Add(1)
	}
}

func (c *stageCounters) Closed() { c.running.Add(-1) }

func (c *stageCounters) snapshot() Counts {
	// Failed, then Finished, then Received (see Finished): InFlight is
	// never negative and Failed never above Finished.
	failed := c.failed.Load()
	fin := c.finished.Load()
	s := Counts{
		Info:     *c.info.Load(),
		Finished: fin,
		Failed:   failed,
		Latency:  time.Duration(c.latency.Load()),
		Received: c.received.Load(),
		Running:  int(c.running.Load()),
	}
	s.InFlight = s.Received - s.Finished
	return s
}

func isItemError(err error) bool {
	_, ok := err.(*Error)
	return ok
}

// Logger returns an [Observer] that logs to l, every record with the
// stage's name under the key "stage": a stage's start (Info, "sluice: stage
// started", with "kind", "workers" and "total", the expected total), each
// failed item (Warn, "sluice: item failed", with "index", "attempts" and
// "err"; a call ended by the run's cancellation is not a failure), and its
// close (Info, "sluice: stage closed", with the run's counts "received",
// "finished" and "failed", and "mean_latency"). It never logs per
// successful item. A handler that
// panics (the zero slog.Logger's has none to call) fails the run with a
// *[PanicError], as any observer's panic does. Logger panics if l is nil.
func Logger(l *slog.Logger) Observer {
	checkFunc(l == nil, "stage.Logger", "logger")
	return logger{l}
}

type logger struct{ l *slog.Logger }

func (lg logger) Stage(info Info) Watcher {
	lg.l.Info("sluice: stage started", "stage", info.Name, "kind", info.Kind, "workers", info.Workers, "total", info.Total)
	c := &stageCounters{}
	c.info.Store(&info)
	c.running.Add(1)
	return &logStage{l: lg.l, c: c, name: info.Name}
}

type logStage struct {
	l    *slog.Logger
	c    *stageCounters
	name string
}

func (s *logStage) Received() { s.c.Received() }

func (s *logStage) Finished(d time.Duration, err error) {
	s.c.Finished(d, err)
	var e *Error
	if isItemError(err) && errors.As(err, &e) {
		s.l.Warn("sluice: item failed", "stage", s.name, "index", e.Index, "attempts", e.Attempts, "err", e.Err)
	}
}

func (s *logStage) Closed() {
	s.c.Closed()
	st := s.c.snapshot()
	s.l.LogAttrs(context.Background(), slog.LevelInfo, "sluice: stage closed",
		slog.String("stage", s.name), slog.Int64("received", st.Received), slog.Int64("finished", st.Finished),
		slog.Int64("failed", st.Failed), slog.Duration("mean_latency", st.MeanLatency()))
}
