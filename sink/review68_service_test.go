package sink_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r68Job struct{ ID int }

// r68Service is the README's service pipeline, word for word but for the
// work: finish (nil: the job's work never ends; it only sees ctx.Done).
type r68Service struct {
	queue         chan r68Job
	taken, stored atomic.Int64
	metrics       *stage.Stats
	quit          chan struct{}
	producer      sync.WaitGroup
}

func r68NewService() *r68Service {
	s := &r68Service{queue: make(chan r68Job), metrics: &stage.Stats{}, quit: make(chan struct{})}
	s.producer.Add(1)
	go func() { // a producer that never stops, standing in for a broker
		defer s.producer.Done()
		for i := 0; ; i++ {
			select {
			case s.queue <- r68Job{ID: i}:
			case <-s.quit:
				return
			}
		}
	}()
	return s
}

func (s *r68Service) close() { close(s.quit); s.producer.Wait() }

func (s *r68Service) run(ctx, stop context.Context, work <-chan time.Time) error {
	queue, taken, stored, metrics := s.queue, &s.taken, &s.stored, s.metrics
	var err error
	// The pipeline: drained by stop, aborted by ctx.
	jobs := stage.Until(source.Func(func(ctx context.Context) (r68Job, error) {
		select {
		case j := <-queue:
			taken.Add(1)
			return j, nil
		case <-ctx.Done(): // drained (or aborted): take nothing more
			return r68Job{}, ctx.Err()
		}
	}), stop)
	results := stage.Map(jobs, func(ctx context.Context, j r68Job) (string, error) {
		select {
		case <-work:
			return fmt.Sprintf("job %d done", j.ID), nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}, stage.Name("process"), stage.Workers(8), stage.Timeout(time.Minute), stage.Retry(3, 10*time.Millisecond))
	batches := stage.Batch(results, 100, 50*time.Millisecond)
	err = sink.ForEach(stage.Observe(ctx, metrics), batches, func(_ context.Context, b []string) error {
		stored.Add(int64(len(b))) // a real service writes the batch here
		return nil
	})
	return err
}

// r68Closed is a work channel that is always ready (work done at once).
func r68Closed() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}

// README "Running it in a service", Drain: "when stop is done, the sources
// upstream take no new item ... while everything already taken goes on:
// calls in flight finish, stage.Batch flushes its partial batch, and the
// sink returns nil. Nothing taken is lost."
func TestReview68ServiceDrain(t *testing.T) {
	for _, userStop := range []bool{false, true} {
		t.Run(fmt.Sprintf("userstop=%v", userStop), func(t *testing.T) {
			s := r68NewService()
			defer s.close()
			stop, drain := r68UserCancel(userStop)
			var err error
			wait := r68Start(func() { err = s.run(context.Background(), stop, r68Closed()) })
			r68WaitFor(t, "jobs taken", func() bool { return s.taken.Load() >= 300 })
			drain()
			wait(t, "drain")
			if err != nil {
				t.Errorf("drain: sink returned %v, want nil", err)
			}
			if taken, stored := s.taken.Load(), s.stored.Load(); taken != stored {
				t.Errorf("drain: took %d jobs, stored %d: something taken was lost", taken, stored)
			}
			c, ok := s.metrics.Get("process")
			if !ok || c.Received != s.taken.Load() || c.Finished != c.Received || c.Failed != 0 || c.InFlight != 0 || c.Running != 0 {
				t.Errorf("process counts %+v (found %v), want received = finished = %d taken, none failed, closed", c, ok, s.taken.Load())
			}
		})
	}
}

// README, Abort: "calls in flight see ctx.Done(), nothing more is
// delivered, and the sink returns the cancellation error"; Metrics: "a
// call cut short by the end of the run (another stage's failure, a
// cancellation) did not fail".
func TestReview68ServiceAbort(t *testing.T) {
	for _, userCtx := range []bool{false, true} {
		t.Run(fmt.Sprintf("userctx=%v", userCtx), func(t *testing.T) {
			s := r68NewService()
			defer s.close()
			ctx, abort := r68UserCancel(userCtx)
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			var err error
			never := make(chan time.Time)
			wait := r68Start(func() { err = s.run(ctx, stop, never) })
			// 8 workers hold 8 jobs whose work never ends.
			r68WaitFor(t, "8 jobs in flight", func() bool {
				c, _ := s.metrics.Get("process")
				return c.InFlight == 8
			})
			abort()
			wait(t, "abort")
			if !errors.Is(err, context.Canceled) {
				t.Errorf("abort: sink returned %v, want context.Canceled", err)
			}
			if n := s.stored.Load(); n != 0 {
				t.Errorf("abort: %d jobs stored, want 0 (nothing finished)", n)
			}
			c, _ := s.metrics.Get("process")
			if c.Failed != 0 || c.Received != c.Finished || c.Running != 0 {
				t.Errorf("abort: process counts %+v: calls cut short by the cancellation must not count as failed; all must be finished and the stage closed", c)
			}
		})
	}
}

// README: the signal goroutine, word for word, with real signals sent to
// this (child) process: the first SIGTERM drains, the second aborts.
func TestReview68ServiceSignalsSnippet(t *testing.T) {
	for _, name := range []string{"drain", "abort"} {
		t.Run(name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				graceD := time.Hour
				grace := &graceD
				// The first signal drains; the second one, or the grace period, aborts.
				signals := make(chan os.Signal, 2)
				signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
				defer signal.Stop(signals)
				stop, drain := context.WithCancel(context.Background())
				ctx, abort := context.WithCancel(context.Background())
				watcherDone := make(chan struct{})
				go func() {
					defer close(watcherDone)
					<-signals
					drain()
					select {
					case <-signals:
					case <-time.After(*grace):
					}
					abort()
				}()
				s := r68NewService()
				defer s.close()
				work := r68Closed()
				if name == "abort" {
					work = make(chan time.Time) // jobs that never finish
				}
				var err error
				wait := r68Start(func() { err = s.run(ctx, stop, work) })
				if name == "drain" {
					r68WaitFor(t, "jobs taken", func() bool { return s.taken.Load() >= 100 })
				} else {
					r68WaitFor(t, "8 in flight", func() bool { c, _ := s.metrics.Get("process"); return c.InFlight == 8 })
				}
				if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				if name == "abort" {
					<-stop.Done() // the first signal was seen: send the second
					if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
						t.Fatal(err)
					}
				}
				wait(t, name)
				switch name {
				case "drain":
					if err != nil || s.taken.Load() != s.stored.Load() {
						t.Errorf("drain: err %v, taken %d, stored %d", err, s.taken.Load(), s.stored.Load())
					}
					if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil { // end the watcher
						t.Fatal(err)
					}
				case "abort":
					if !errors.Is(err, context.Canceled) || s.stored.Load() != 0 {
						t.Errorf("abort: err %v, stored %d", err, s.stored.Load())
					}
				}
				<-watcherDone
			})
		})
	}
}

// README, Drain: "a source blocked waiting for one sees its context end
// and stops quietly"; "Nothing taken is lost": a value that the source's
// next took while stop became done is delivered, and next is asked for
// nothing more.
func TestReview68DrainValueTakenAsStopEnds(t *testing.T) {
	for _, userStop := range []bool{false, true} {
		t.Run(fmt.Sprintf("userstop=%v", userStop), func(t *testing.T) {
			stop, drain := r68UserCancel(userStop)
			entered := make(chan int, 10)
			release := make(chan struct{})
			var calls atomic.Int32
			next := func(ctx context.Context) (int, error) {
				n := int(calls.Add(1)) - 1
				if n < 3 {
					return n, nil
				}
				if n == 3 {
					entered <- n
					<-release // a take already on its way, deaf to ctx
					return n, nil
				}
				return 0, fmt.Errorf("next called again (call %d) after stop was done", n)
			}
			var got []int
			var err error
			wait := r68Start(func() {
				got, err = sink.Slice(context.Background(), stage.Map(stage.Until(source.Func(next), stop),
					func(_ context.Context, v int) (int, error) { return v * 10, nil }, stage.Workers(2), stage.Buffer(1)))
			})
			<-entered
			drain()
			close(release)
			wait(t, "drain")
			slices.Sort(got)
			if err != nil || !slices.Equal(got, []int{0, 10, 20, 30}) {
				t.Errorf("got %v, err %v: want [0 10 20 30] and nil (the value taken while stop ended is not lost, next not called again)", got, err)
			}
		})
	}
}

// README, Drain: "stage.Batch flushes its partial batch, and the sink
// returns nil".
func TestReview68DrainFlushesPartialBatch(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	waiting := make(chan struct{})
	var calls atomic.Int32
	next := func(ctx context.Context) (int, error) {
		n := int(calls.Add(1)) - 1
		if n < 3 {
			return n, nil
		}
		close(waiting)
		<-ctx.Done()
		return 0, ctx.Err()
	}
	var batches [][]int
	var err error
	wait := r68Start(func() {
		err = sink.ForEach(context.Background(), stage.Batch(stage.Until(source.Func(next), stop), 100, 0),
			func(_ context.Context, b []int) error { batches = append(batches, b); return nil })
	})
	<-waiting
	drain()
	wait(t, "drain batch")
	if err != nil || len(batches) != 1 || !slices.Equal(batches[0], []int{0, 1, 2}) {
		t.Errorf("batches %v, err %v: want one partial batch [0 1 2] and nil", batches, err)
	}
}

// README, Abort: "nothing more is delivered" — once ctx is cancelled (here
// from the sink's own callback, so that the order of events is certain),
// the callback is not called again.
func TestReview68AbortNothingMoreDelivered(t *testing.T) {
	for _, userCtx := range []bool{false, true} {
		for _, shape := range []string{"slice", "func", "chan", "ordered", "batch", "merge", "tee", "keyby"} {
			t.Run(fmt.Sprintf("%s/userctx=%v", shape, userCtx), func(t *testing.T) {
				ctx, abort := r68UserCancel(userCtx)
				defer abort()
				var s stage.Stream[int]
				ch := make(chan int, 1000)
				switch shape {
				case "slice":
					s = stage.Map(source.Slice(r68Ints(1000)), func(_ context.Context, v int) (int, error) { return v, nil })
				case "func":
					var n atomic.Int64
					s = stage.Map(source.Func(func(context.Context) (int, error) { return int(n.Add(1)), nil }),
						func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4))
				case "chan":
					for i := range 1000 {
						ch <- i
					}
					close(ch)
					s = stage.Map(source.Chan(ch), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3))
				case "ordered":
					s = stage.Map(source.Slice(r68Ints(1000)), func(_ context.Context, v int) (int, error) { return v, nil },
						stage.Workers(4), stage.Ordered(), stage.Buffer(8))
				case "batch":
					s = stage.Unbatch(stage.Batch(source.Slice(r68Ints(1000)), 7, 0))
				case "merge":
					s = stage.Merge(source.Slice(r68Ints(500)), stage.Map(source.Slice(r68Ints(500)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3)))
				case "tee":
					b := stage.Tee(source.Slice(r68Ints(500)), 2)
					s = stage.Merge(b...)
				case "keyby":
					s = stage.Map(source.Slice(r68Ints(1000)), func(_ context.Context, v int) (int, error) { return v, nil },
						stage.Workers(4), stage.KeyBy(func(v int) int { return v % 3 }))
				}
				calls := 0
				var err error
				runcheck.Run(t, "abort", func() {
					err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
						calls++
						if calls == 20 {
							abort()
						}
						return nil
					})
				})
				if calls != 20 {
					t.Errorf("the callback was called %d times, want 20: nothing is delivered after the cancellation", calls)
				}
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v, want context.Canceled", err)
				}
			})
		}
	}
}

// README Metrics: "Each stage reports items received, calls finished (with
// latency and error), and its close; it knows its name, kind, workers and,
// when the source knows its length, the expected total."
func TestReview68ObserverReports(t *testing.T) {
	var obs r68Observer
	ctx := stage.Observe(context.Background(), &obs)
	s := stage.Map(source.Slice(r68Ints(10)), func(_ context.Context, v int) (int, error) {
		if v == 4 {
			return 0, r68ErrBoom
		}
		return v, nil
	}, stage.Name("m"), stage.Workers(3), stage.OnError(stage.Forward))
	f := stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(-1))
	var err error
	if f.Len() != -1 || s.Len() != 10 {
		t.Errorf("Len: map %d, filter %d; want 10 and -1", s.Len(), f.Len())
	}
	runcheck.Run(t, "observe", func() { _, err = sink.Slice(ctx, f) })
	if !errors.Is(err, r68ErrBoom) {
		t.Errorf("err = %v", err)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.infos) != 2 {
		t.Fatalf("infos %+v, want 2 stages", obs.infos)
	}
	if i := obs.infos[0]; i.Name != "m" || i.Kind != "map" || i.Workers != 3 || i.Total != 10 {
		t.Errorf("map info %+v, want m/map/3/10", i)
	}
	if i := obs.infos[1]; i.Name != "filter#2" || i.Kind != "filter" || i.Workers != -1 || i.Total != 10 {
		t.Errorf("filter info %+v, want filter#2/filter/-1/10 (its input, a Map over 10, carries 10)", i)
	}
	w0, w1 := obs.watchers[0], obs.watchers[1]
	if w0.received.Load() != 10 || w0.finished.Load() != 10 || w0.failed.Load() != 1 || w0.closed.Load() != 1 {
		t.Errorf("map watcher: received %d finished %d failed %d closed %d, want 10 10 1 1",
			w0.received.Load(), w0.finished.Load(), w0.failed.Load(), w0.closed.Load())
	}
	// The forwarded error passes the filter without a call.
	if w1.received.Load() != 9 || w1.finished.Load() != 9 || w1.failed.Load() != 0 || w1.closed.Load() != 1 {
		t.Errorf("filter watcher: received %d finished %d failed %d closed %d, want 9 9 0 1",
			w1.received.Load(), w1.finished.Load(), w1.failed.Load(), w1.closed.Load())
	}
}

type r68Observer struct {
	mu       sync.Mutex
	infos    []stage.Info
	watchers []*r68Watcher
}

func (o *r68Observer) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := &r68Watcher{}
	o.infos = append(o.infos, info)
	o.watchers = append(o.watchers, w)
	return w
}

type r68Watcher struct {
	received, finished, failed, cutShort, closed atomic.Int64
}

func (w *r68Watcher) Received() { w.received.Add(1) }
func (w *r68Watcher) Finished(_ time.Duration, err error) {
	w.finished.Add(1)
	var se *stage.Error
	switch {
	case err == nil:
	case errors.As(err, &se):
		w.failed.Add(1)
	default:
		w.cutShort.Add(1)
	}
}
func (w *r68Watcher) Closed() { w.closed.Add(1) }

// README Metrics: "stage.Logger(slog) (lifecycle and failures, never
// per-item success)".
func TestReview68LoggerNeverPerItemSuccess(t *testing.T) {
	count := func(n, fails int) (total, warns int) {
		h := &r68CountHandler{}
		ctx := stage.Observe(context.Background(), stage.Logger(slog.New(h)))
		s := stage.Map(source.Slice(r68Ints(n)), func(_ context.Context, v int) (int, error) {
			if v < fails {
				return 0, r68ErrBoom
			}
			return v, nil
		}, stage.OnError(stage.Forward))
		_, err := sink.Slice(ctx, s)
		if fails > 0 && !errors.Is(err, r68ErrBoom) || fails == 0 && err != nil {
			t.Errorf("err = %v", err)
		}
		return int(h.total.Load()), int(h.warns.Load())
	}
	t10, _ := count(10, 0)
	t1000, _ := count(1000, 0)
	if t10 != t1000 || t10 == 0 {
		t.Errorf("a run of 10 items logged %d records, one of 1000 %d: want the same, and some (lifecycle)", t10, t1000)
	}
	tf, wf := count(100, 3)
	if wf != 3 || tf != t10+3 {
		t.Errorf("3 failures: %d records, %d warnings; want %d and 3", tf, wf, t10+3)
	}
}

type r68CountHandler struct{ total, warns atomic.Int64 }

func (h *r68CountHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *r68CountHandler) Handle(_ context.Context, r slog.Record) error {
	h.total.Add(1)
	if r.Level == slog.LevelWarn {
		h.warns.Add(1)
	}
	return nil
}
func (h *r68CountHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *r68CountHandler) WithGroup(string) slog.Handler      { return h }
