package stage_test

// Audit of documented promises that no other test pins, written from the
// documentation only (README.md and the package docs). No verdict depends on
// a duration: gates order events, durations are hang watchdogs only.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const auditWatchdog = 30 * time.Second

var errAudit = errors.New("audit: item failed")

// auditWait waits for ch to be closed; false after the watchdog (a hang).
func auditWait(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(auditWatchdog):
		return false
	}
}

func auditInts(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

func auditGoid() int64 {
	var buf [64]byte
	s := strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine ")
	id, _ := strconv.ParseInt(s[:strings.IndexByte(s, ' ')], 10, 64)
	return id
}

func auditPanicMsg(f func()) (msg string) {
	defer func() {
		if p := recover(); p != nil {
			msg = fmt.Sprint(p)
		}
	}()
	f()
	return "<no panic>"
}

// ---------------------------------------------------------------------------
// ErrStop is the Run callback's word only. "ErrStop, returned by the callback
// of Run, ends the run early without an error." A stage function, a handler
// or a source that returns it fails like with any other error ("When a
// stage's function returns an error ... the stage wraps it in an *Error";
// Handle: "if h returns an error, the run fails with it"; Source: "any other
// error ... becomes a *SourceError"), and "A sink never reports success for a
// run that failed."
func TestAuditErrStopFromUserCodeOtherThanTheSinkIsAFailure(t *testing.T) {
	stopAt := func(bad int) func(context.Context, int) (int, error) {
		return func(_ context.Context, x int) (int, error) {
			if x == bad {
				return 0, stage.ErrStop
			}
			return x, nil
		}
	}
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			// FailFast stage function.
			var got []int
			var err error
			runcheck.Run(t, "failfast", func() {
				got, err = sink.Slice(context.Background(), stage.Map(source.Slice(auditInts(2000)), stopAt(1500), m.opts()...))
			})
			var se *stage.Error
			if err == nil || !errors.As(err, &se) || se.Index != 1500 || !errors.Is(err, stage.ErrStop) {
				t.Errorf("FailFast Map returning ErrStop: %d values, err %v; want a *stage.Error of item 1500 wrapping ErrStop", len(got), err)
			}
			// Filter's keep.
			runcheck.Run(t, "filter", func() {
				_, err = sink.Count(context.Background(), stage.Filter(source.Slice(auditInts(100)), func(_ context.Context, x int) (bool, error) {
					if x == 50 {
						return false, stage.ErrStop
					}
					return true, nil
				}, m.opts()...))
			})
			if err == nil || !errors.As(err, &se) || !errors.Is(err, stage.ErrStop) {
				t.Errorf("Filter returning ErrStop: err %v; want a *stage.Error wrapping ErrStop", err)
			}
			// Forward: the item is forwarded, the run goes on.
			var n int
			runcheck.Run(t, "forward", func() {
				n, err = sink.Count(context.Background(), stage.Map(source.Slice(auditInts(100)), stopAt(7), m.opts(stage.OnError(stage.Forward))...))
			})
			if n != 99 || err == nil || !errors.Is(err, stage.ErrStop) {
				t.Errorf("Forward of ErrStop: Count %d, err %v; want 99 and the forwarded *stage.Error", n, err)
			}
			// A Handle policy's h returning ErrStop fails the run with it.
			runcheck.Run(t, "handle", func() {
				_, err = sink.Count(context.Background(), stage.Map(source.Slice(auditInts(100)), failMultiplesOf3,
					m.opts(stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return stage.ErrStop })))...))
			})
			if err == nil || !errors.Is(err, stage.ErrStop) {
				t.Errorf("Handle's h returning ErrStop: err %v; want the run failed with it", err)
			}
			// A Concurrent task returning ErrStop.
			tasks := make([]func(context.Context) (int, error), 50)
			for i := range tasks {
				tasks[i] = func(context.Context) (int, error) {
					if i == 20 {
						return 0, stage.ErrStop
					}
					return i, nil
				}
			}
			runcheck.Run(t, "concurrent", func() {
				_, err = sink.Count(context.Background(), stage.Concurrent(source.Slice(tasks), m.opts()...))
			})
			if err == nil || !errors.As(err, &se) || !errors.Is(err, stage.ErrStop) {
				t.Errorf("Concurrent task returning ErrStop: err %v; want a *stage.Error wrapping ErrStop", err)
			}
		})
	}
	// A source's next returning ErrStop is a source failure.
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == 3 {
				return 0, stage.ErrStop
			}
			i++
			return i - 1, nil
		}, nil
	})
	var got []int
	var err error
	runcheck.Run(t, "source", func() { got, err = sink.Slice(context.Background(), src) })
	var sre *stage.SourceError
	if !slices.Equal(got, []int{0, 1, 2}) || !errors.As(err, &sre) || !errors.Is(err, stage.ErrStop) {
		t.Errorf("Source next returning ErrStop: %v, %v; want [0 1 2] and a *SourceError wrapping ErrStop", got, err)
	}
}

// ---------------------------------------------------------------------------
// Source: "any other error (or a panic in open, next or stop) becomes a
// *SourceError that ends the run" and "stop is called once every goroutine of
// the run has exited, whether the run succeeded, failed or stopped early".
// A panic in open is in user code: it must not crash the process (child).
func TestAuditSourceOpenPanicIsASourceError(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		var res []string
		// A lone source whose open panics.
		bad := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			panic("open broke")
		})
		var err error
		runcheck.Run(t, "lone", func() { _, err = sink.Count(context.Background(), stage.Map(bad, double, stage.Workers(2))) })
		var se *stage.SourceError
		var pe *stage.PanicError
		res = append(res, fmt.Sprintf("lone:source=%v,panic=%v", errors.As(err, &se), errors.As(err, &pe) && pe.Value == "open broke"))

		// An AckSource whose open panics.
		badAck := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
			panic("ack open broke")
		})
		runcheck.Run(t, "ack", func() { _, err = sink.Count(context.Background(), badAck) })
		res = append(res, fmt.Sprintf("ack:source=%v,panic=%v", errors.As(err, &se), errors.As(err, &pe) && pe.Value == "ack open broke"))

		// Beside a source opened before it: that one's stop still runs, once.
		var stops, nexts atomic.Int32
		good := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(ctx context.Context) (int, error) {
				nexts.Add(1)
				<-ctx.Done()
				return 0, ctx.Err()
			}, func() { stops.Add(1) }
		})
		runcheck.Run(t, "merge", func() {
			_, err = sink.Count(context.Background(), stage.Merge(stage.Map(good, double), stage.Map(bad, double)))
		})
		res = append(res, fmt.Sprintf("merge:source=%v,panic=%v,goodStops=%d",
			errors.As(err, &se), errors.As(err, &pe) && pe.Value == "open broke", stops.Load()))
		return strings.Join(res, " ")
	})
	if !parent {
		return
	}
	want := "lone:source=true,panic=true ack:source=true,panic=true merge:source=true,panic=true,goodStops=1"
	if out != want {
		t.Fatalf("child outcome\n %s\nwant\n %s", out, want)
	}
}

// Source: "stop is called once every goroutine of the run has exited": when
// stop runs, no stage function and no next is running, whatever ended the
// run. The stage's calls outlive the cancellation a little (they yield the
// processor many times after ctx is done).
func TestAuditSourceStopRunsAfterEveryCall(t *testing.T) {
	endings := []string{"success", "failfast", "first", "cancel", "errstop"}
	for _, ending := range endings {
		for _, workers := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/workers=%d", ending, workers), func(t *testing.T) {
				var running, inNext, stops atomic.Int32
				var atStop atomic.Value
				src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
							inNext.Add(1)
							defer inNext.Add(-1)
							if i == 200 {
								return 0, io.EOF
							}
							i++
							return i - 1, nil
						}, func() {
							stops.Add(1)
							atStop.Store(fmt.Sprintf("running=%d inNext=%d", running.Load(), inNext.Load()))
						}
				})
				f := func(ctx context.Context, x int) (int, error) {
					running.Add(1)
					defer running.Add(-1)
					if ending == "failfast" && x == 20 {
						return 0, errAudit
					}
					if x > 20 && ending != "success" {
						select {
						case <-ctx.Done():
							for range 1000 {
								runtime.Gosched()
							}
							return 0, ctx.Err()
						default:
						}
					}
					return x, nil
				}
				s := stage.Map(src, f, stage.Workers(workers), stage.Buffer(1))
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				runcheck.Run(t, ending, func() {
					switch ending {
					case "first":
						_, _, _ = sink.First(ctx, s)
					default:
						n := 0
						_ = sink.ForEach(ctx, s, func(context.Context, int) error {
							n++
							if n == 30 && ending == "cancel" {
								cancel()
							}
							if n == 30 && ending == "errstop" {
								return stage.ErrStop
							}
							return nil
						})
					}
				})
				if stops.Load() != 1 {
					t.Fatalf("stop called %d times, want once", stops.Load())
				}
				if got := atStop.Load(); got != "running=0 inNext=0" {
					t.Fatalf("when stop was called: %v; want no stage call and no next running", got)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Watcher.Closed: "the run is over and every goroutine of it has exited; the
// stage reports nothing more. Called once, from the sink's goroutine."

type auditCloseObs struct {
	mu       sync.Mutex
	sinkG    atomic.Int64
	running  *atomic.Int32
	closed   map[string]int
	problems []string
}

func (o *auditCloseObs) Stage(info stage.Info) stage.Watcher {
	return &auditCloseW{o: o, name: info.Name}
}

func (o *auditCloseObs) problem(p string) {
	o.mu.Lock()
	o.problems = append(o.problems, p)
	o.mu.Unlock()
}

type auditCloseW struct {
	o      *auditCloseObs
	name   string
	closed atomic.Bool
}

func (w *auditCloseW) Received() {
	if w.closed.Load() {
		w.o.problem(w.name + ": Received after Closed")
	}
}

func (w *auditCloseW) Finished(time.Duration, error) {
	if w.closed.Load() {
		w.o.problem(w.name + ": Finished after Closed")
	}
}

func (w *auditCloseW) Closed() {
	w.closed.Store(true)
	if g := auditGoid(); g != w.o.sinkG.Load() {
		w.o.problem(fmt.Sprintf("%s: Closed from goroutine %d, the sink's is %d", w.name, g, w.o.sinkG.Load()))
	}
	if n := w.o.running.Load(); n != 0 {
		w.o.problem(fmt.Sprintf("%s: Closed while %d user calls run", w.name, n))
	}
	w.o.mu.Lock()
	w.o.closed[w.name]++
	w.o.mu.Unlock()
}

func TestAuditWatcherClosedOnceFromTheSinkAfterEverything(t *testing.T) {
	for _, ending := range []string{"success", "failfast", "first", "cancel", "errstop", "forward"} {
		for _, src := range []string{"slice", "func"} {
			t.Run(ending+"/"+src, func(t *testing.T) {
				var running atomic.Int32
				o := &auditCloseObs{running: &running, closed: map[string]int{}}
				var in stage.Stream[int]
				if src == "slice" {
					in = source.Slice(auditInts(300))
				} else {
					i := 0
					in = source.Func(func(context.Context) (int, error) {
						if i == 300 {
							return 0, io.EOF
						}
						i++
						return i - 1, nil
					})
				}
				f := func(ctx context.Context, x int) (int, error) {
					running.Add(1)
					defer running.Add(-1)
					if (ending == "failfast" || ending == "forward") && x == 150 {
						return 0, errAudit
					}
					if ctx.Err() != nil {
						for range 500 {
							runtime.Gosched()
						}
					}
					return x, nil
				}
				pol := stage.FailFast
				if ending == "forward" {
					pol = stage.Forward
				}
				s := stage.Map(in, f, stage.Workers(4), stage.Name("a"), stage.OnError(pol))
				s = stage.Filter(s, func(ctx context.Context, x int) (bool, error) {
					running.Add(1)
					defer running.Add(-1)
					return true, nil
				}, stage.Workers(2), stage.Name("b"))
				s = stage.Unbatch(stage.Batch(s, 7, 0))
				ctx, cancel := context.WithCancel(stage.Observe(context.Background(), o))
				defer cancel()
				runcheck.Run(t, ending, func() {
					o.sinkG.Store(auditGoid())
					if ending == "first" {
						_, _, _ = sink.First(ctx, s)
						return
					}
					n := 0
					_ = stage.Run(ctx, s, func(context.Context, int, error) error {
						n++
						if n == 100 && ending == "cancel" {
							cancel()
						}
						if n == 100 && ending == "errstop" {
							return stage.ErrStop
						}
						return nil
					})
				})
				o.mu.Lock()
				defer o.mu.Unlock()
				for _, name := range []string{"a", "b", "unbatch#3"} {
					if o.closed[name] != 1 {
						t.Errorf("stage %s: Closed %d times, want once (all: %v)", name, o.closed[name], o.closed)
					}
				}
				if len(o.problems) > 0 {
					t.Errorf("%d problems, first: %s", len(o.problems), o.problems[0])
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Watcher.Finished: err is "the *Error that the stage's ErrorPolicy is about
// to handle (of that type, not wrapped)".

type auditFinObs struct {
	mu   sync.Mutex
	errs []error
}

func (o *auditFinObs) Stage(stage.Info) stage.Watcher { return o }
func (o *auditFinObs) Received()                      {}
func (o *auditFinObs) Closed()                        {}
func (o *auditFinObs) Finished(_ time.Duration, err error) {
	if err != nil {
		o.mu.Lock()
		o.errs = append(o.errs, err)
		o.mu.Unlock()
	}
}

func TestAuditWatcherFinishedGetsTheBareError(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			o := &auditFinObs{}
			var mu sync.Mutex
			handled := map[int]*stage.Error{}
			h := func(_ context.Context, e *stage.Error) error {
				mu.Lock()
				handled[e.Index] = e
				mu.Unlock()
				return nil
			}
			var calls sync.Map
			f := func(_ context.Context, x int) (int, error) {
				c, _ := calls.LoadOrStore(x, new(atomic.Int32))
				c.(*atomic.Int32).Add(1)
				if x%5 == 0 {
					return 0, errAudit
				}
				if x%7 == 0 {
					panic("audit panic")
				}
				return x, nil
			}
			var err error
			runcheck.Run(t, m.String(), func() {
				_, err = sink.Count(stage.Observe(context.Background(), o),
					stage.Map(source.Slice(auditInts(100)), f, m.opts(stage.Retry(2, 0), stage.OnError(stage.Handle(h)))...))
			})
			if err != nil {
				t.Fatal(err)
			}
			o.mu.Lock()
			defer o.mu.Unlock()
			if len(o.errs) != len(handled) {
				t.Fatalf("Finished saw %d errors, the policy handled %d", len(o.errs), len(handled))
			}
			for _, e := range o.errs {
				ie, ok := e.(*stage.Error)
				if !ok {
					t.Fatalf("Finished got %T (%v), want a bare *stage.Error", e, e)
				}
				want := handled[ie.Index]
				if want == nil || want.Input != ie.Input || want.Attempts != ie.Attempts || want.Err != ie.Err || want.Stage != ie.Stage {
					t.Fatalf("Finished got %+v, the policy handled %+v", ie, want)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Watcher: "a panic in Closed, which comes once the run is over, is returned
// unless the run failed or the sink's callback stopped it with ErrStop".
// Child process: a panic in an observer must not crash the process.
type auditClosedPanics struct{}

func (auditClosedPanics) Stage(stage.Info) stage.Watcher { return auditClosedPanics{} }
func (auditClosedPanics) Received()                      {}
func (auditClosedPanics) Finished(time.Duration, error)  {}
func (auditClosedPanics) Closed()                        { panic("audit: Closed") }

func TestAuditClosedPanicAfterErrStopOrFailure(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		ctx := stage.Observe(context.Background(), auditClosedPanics{})
		var res []string
		for _, workers := range []int{1, 4} {
			s := stage.Map(source.Slice(auditInts(50)), double, stage.Workers(workers))
			n := 0
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				if n++; n == 5 {
					return stage.ErrStop
				}
				return nil
			})
			res = append(res, fmt.Sprintf("errstop=%v", err))
			_, err = sink.Count(ctx, stage.Map(source.Slice(auditInts(50)), failOn(10), stage.Workers(workers)))
			var se *stage.Error
			res = append(res, fmt.Sprintf("failed=%v", errors.Is(err, errBoom) && errors.As(err, &se) && se.Index == 10))
			_, err = sink.Count(ctx, stage.Map(source.Slice(auditInts(50)), double, stage.Workers(workers)))
			var pe *stage.PanicError
			res = append(res, fmt.Sprintf("ok-run=%v", errors.As(err, &pe)))
		}
		return strings.Join(res, " ")
	})
	if !parent {
		return
	}
	want := "errstop=<nil> failed=true ok-run=true errstop=<nil> failed=true ok-run=true"
	if out != want {
		t.Fatalf("child outcome\n %s\nwant\n %s", out, want)
	}
}

// ---------------------------------------------------------------------------
// Observer.Stage: "called ... for every stage of the pipeline that calls a
// function (Map, Filter, FlatMap, Concurrent, Apply, Unbatch; not Batch, Tee,
// Merge or Until), upstream first"; Info.Kind names "map", "filter",
// "flatmap", "concurrent", "apply", "unbatch".
func TestAuditObserverMeetsExactlyTheFunctionStages(t *testing.T) {
	s := stage.Until(source.Slice(auditInts(12)), context.Background())
	s = stage.Map(s, double)
	s = stage.Unbatch(stage.Batch(s, 5, 0))
	br := stage.Tee(s, 2)
	x := stage.FlatMap(br[0], func(_ context.Context, v int) ([]int, error) { return []int{v}, nil })
	tasks := stage.Map(br[1], func(_ context.Context, v int) (func(context.Context) (int, error), error) {
		return func(context.Context) (int, error) { return v, nil }, nil
	})
	y := stage.Concurrent(tasks)
	s = stage.Merge(x, y)
	s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil })
	s = stage.Apply(s, func(_ context.Context, v int, emit func(int) bool) error { emit(v); return nil })
	o := &rvObserver{}
	var n int
	var err error
	runcheck.Run(t, "run", func() { n, err = sink.Count(stage.Observe(context.Background(), o), s) })
	if err != nil || n != 24 {
		t.Fatalf("Count = %d, %v; want 24", n, err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	var kinds []string
	for _, i := range o.infos {
		kinds = append(kinds, i.Kind)
	}
	sorted := slices.Clone(kinds)
	slices.Sort(sorted)
	want := []string{"apply", "concurrent", "filter", "flatmap", "map", "map", "unbatch"}
	if !slices.Equal(sorted, want) {
		t.Fatalf("Stage called for kinds %v, want exactly %v", kinds, want)
	}
	if kinds[0] != "map" || kinds[1] != "unbatch" || kinds[5] != "filter" || kinds[6] != "apply" {
		t.Fatalf("Stage order %v: want upstream first", kinds)
	}
	if o.infos[0].Total != 12 {
		t.Errorf("the Map after Until over a slice of 12: Total %d, want 12", o.infos[0].Total)
	}
}

// Info.Workers: "the Workers bound; -1: no limit". A stage built without
// Workers (or with Workers(0)) is bounded by DefaultWorkers.
func TestAuditInfoWorkersOfADefaultStage(t *testing.T) {
	for name, opts := range map[string][]stage.Option{
		"none":       nil,
		"Workers(0)": {stage.Workers(0)},
	} {
		o := &rvObserver{}
		runcheck.Run(t, name, func() {
			_, _ = sink.Count(stage.Observe(context.Background(), o), stage.Map(source.Slice(auditInts(3)), double, opts...))
		})
		if len(o.infos) != 1 || o.infos[0].Workers != stage.DefaultWorkers() {
			t.Errorf("%s: Info %+v, want Workers %d (DefaultWorkers)", name, o.infos, stage.DefaultWorkers())
		}
	}
}

// ---------------------------------------------------------------------------
// Stats: "Running int // runs in which the stage has not closed yet", "a
// Stats attached to several runs adds the counts of stages of the same name
// up"; Counts.MeanLatency: "Latency / Finished, or 0"; Get of an unknown
// name reports false.
func TestAuditStatsAcrossConcurrentRuns(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	started := make(chan struct{}, 2)
	release := make(chan struct{})
	s := stage.Map(source.Slice([]int{1}), func(_ context.Context, x int) (int, error) {
		started <- struct{}{}
		if !auditWait(release) {
			return 0, errors.New("hung")
		}
		return x, nil
	}, stage.Name("held"))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() { _, errs[i] = sink.Count(ctx, s) })
	}
	for range 2 {
		<-started
	}
	c, ok := st.Get("held")
	if !ok || c.Running != 2 || c.Received != 2 || c.InFlight != 2 || c.Finished != 0 {
		t.Errorf("two runs each inside a call: %+v; want Running 2, Received 2, InFlight 2", c)
	}
	close(release)
	runcheck.NoHang(t, "runs", wg.Wait)
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	c, _ = st.Get("held")
	if c.Running != 0 || c.Finished != 2 || c.InFlight != 0 {
		t.Errorf("after both runs: %+v; want Running 0, Finished 2", c)
	}
	if _, ok := st.Get("no such stage"); ok {
		t.Error("Get of an unknown name reported true")
	}
	if got := (stage.Counts{}).MeanLatency(); got != 0 {
		t.Errorf("MeanLatency of zero counts = %v, want 0", got)
	}
	if got := (stage.Counts{Finished: 4, Latency: 8 * time.Second}).MeanLatency(); got != 2*time.Second {
		t.Errorf("MeanLatency of 8s over 4 = %v, want 2s", got)
	}
	if got := c.MeanLatency(); got != c.Latency/2 {
		t.Errorf("MeanLatency %v, Latency %v over 2", got, c.Latency)
	}
}

// Observe: "attaches o to every run started with it (or with a context
// derived from it)".
func TestAuditObserveThroughADerivedContext(t *testing.T) {
	type key struct{}
	var st stage.Stats
	ctx := context.WithValue(stage.Observe(context.Background(), &st), key{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, time.Hour)
	defer cancel2()
	if n, err := sink.Count(ctx, stage.Map(source.Slice(auditInts(5)), double, stage.Name("m"))); n != 5 || err != nil {
		t.Fatal(n, err)
	}
	if c, ok := st.Get("m"); !ok || c.Finished != 5 {
		t.Fatalf("Stats over a derived context: %+v, %v; want 5 finished", c, ok)
	}
}

// ---------------------------------------------------------------------------
// PanicError.Stack: "the stack of the goroutine that panicked, as
// debug.Stack formats it": it shows the panicking user function, wherever
// that function runs (a source's next, a sink callback, a key function, a
// handler, a stage function run in its consumer's goroutine).

func auditPanickingNext(context.Context) (int, error) { panic("next") }
func auditPanickingCallback(context.Context, int) error {
	panic("callback")
}
func auditPanickingKey(int) int { panic("key") }
func auditPanickingHandler(context.Context, *stage.Error) error {
	panic("handler")
}
func auditPanickingReducer(int, int) int { panic("reduce") }
func auditPanickingLate(_ context.Context, x int) (int, error) {
	if x == 2500 {
		panic("late")
	}
	return x, nil
}

func TestAuditPanicStackShowsThePanickingFunction(t *testing.T) {
	cases := map[string]struct {
		fn  string
		run func() error
	}{
		"source.Func": {"auditPanickingNext", func() error {
			_, err := sink.Count(context.Background(), stage.Map(source.Func(auditPanickingNext), double, stage.Workers(2)))
			return err
		}},
		"ForEach": {"auditPanickingCallback", func() error {
			return sink.ForEach(context.Background(), stage.Map(source.Slice(auditInts(10)), double, stage.Workers(3)), auditPanickingCallback)
		}},
		"Reduce": {"auditPanickingReducer", func() error {
			_, err := sink.Reduce(context.Background(), source.Slice(auditInts(10)), 0, auditPanickingReducer)
			return err
		}},
		"KeyBy": {"auditPanickingKey", func() error {
			_, err := sink.Count(context.Background(), stage.Map(source.Slice(auditInts(10)), double, stage.Workers(3), stage.KeyBy(auditPanickingKey)))
			return err
		}},
		"Handle": {"auditPanickingHandler", func() error {
			_, err := sink.Count(context.Background(), stage.Map(source.Slice(auditInts(10)), failMultiplesOf3, stage.Workers(3), stage.OnError(stage.Handle(auditPanickingHandler))))
			return err
		}},
		"fused Map": {"auditPanickingLate", func() error {
			_, err := sink.Count(context.Background(), stage.Map(source.Slice(auditInts(3000)), auditPanickingLate, stage.Workers(4)))
			return err
		}},
	}
	for name, c := range cases {
		var err error
		runcheck.Run(t, name, func() { err = c.run() })
		var pe *stage.PanicError
		if !errors.As(err, &pe) {
			t.Errorf("%s: err %v, want a *stage.PanicError", name, err)
			continue
		}
		if !bytes.Contains(pe.Stack, []byte(c.fn)) {
			t.Errorf("%s: the stack does not show %s:\n%s", name, c.fn, pe.Stack)
		}
	}
}

// ---------------------------------------------------------------------------
// Build-time checks: "Options are checked when they are made and when the
// stage is built: an invalid one panics there"; "The zero Stream is invalid:
// the functions that take a stream panic on it"; "Observe panics if o is
// nil"; "Logger panics if l is nil". Every such panic starts "sluice:
// <function>:", as the existing checks of the other functions show.
func TestAuditBuildTimePanicsNameTheFunction(t *testing.T) {
	var zero stage.Stream[int]
	var zeroBatches stage.Stream[[]int]
	cases := []struct {
		name  string
		build func()
	}{
		{"stage.Observe", func() { stage.Observe(context.Background(), nil) }},
		{"stage.Logger", func() { stage.Logger(nil) }},
		{"stage.Until", func() { stage.Until(zero, context.Background()) }},
		{"stage.Tee", func() { stage.Tee(zero, 2) }},
		{"stage.Batch", func() { stage.Batch(zero, 3, 0) }},
		{"stage.Unbatch", func() { stage.Unbatch(zeroBatches) }},
		{"stage.Apply", func() {
			stage.Apply(zero, func(context.Context, int, func(int) bool) error { return nil })
		}},
		{"stage.Interruptible", func() { stage.Interruptible(zero) }},
	}
	for _, c := range cases {
		if msg := auditPanicMsg(c.build); !strings.HasPrefix(msg, "sluice: "+c.name+":") {
			t.Errorf("%s: panic %q, want a message starting %q", c.name, msg, "sluice: "+c.name+":")
		}
	}
	if zero.Len() != -1 {
		t.Errorf("the zero Stream's Len is %d, want -1", zero.Len())
	}
}

// ---------------------------------------------------------------------------
// Error.Index: "When the stage's input has no defined order (the output of an
// unordered stage with more than one worker, or of Merge), Index is the
// position in which the stage received the item": each position exactly once.
func TestAuditErrorIndexIsThePositionOfReceipt(t *testing.T) {
	fail := func(context.Context, int) (int, error) { return 0, errAudit }
	inputs := map[string]func() stage.Stream[int]{
		"merge": func() stage.Stream[int] {
			return stage.Merge(source.Slice(auditInts(60)), source.Slice(auditInts(60)), stage.Map(source.Slice(auditInts(60)), double, stage.Workers(3)))
		},
		"unordered": func() stage.Stream[int] {
			return stage.Map(source.Slice(auditInts(180)), double, stage.Workers(4))
		},
	}
	for name, in := range inputs {
		for _, m := range modes {
			t.Run(name+"/"+m.String(), func(t *testing.T) {
				var idx []int
				runcheck.Run(t, name, func() {
					for _, err := range sink.All(context.Background(), stage.Map(in(), fail, m.opts(stage.OnError(stage.Forward))...)) {
						var se *stage.Error
						if !errors.As(err, &se) {
							t.Errorf("pair with %v", err)
							continue
						}
						idx = append(idx, se.Index)
					}
				})
				slices.Sort(idx)
				if !slices.Equal(idx, auditInts(180)) {
					t.Fatalf("indexes %v, want each of 0..179 once", idx)
				}
			})
		}
	}
}

// ---------------------------------------------------------------------------
// Indexed: "the workers of the stage after it claim positions with one atomic
// add each, so at is called ... once per position"; "once the run is
// cancelled or its input has ended, no call of at starts but one already on
// its way"; positions are claimed "only when a stage is ready for an item".
func TestAuditIndexedAtOncePerPosition(t *testing.T) {
	const n = 500
	for _, m := range modes {
		for _, kind := range []string{"map", "filter", "flatmap"} {
			t.Run(kind+"/"+m.String(), func(t *testing.T) {
				var mu sync.Mutex
				calls := map[int]int{}
				src := stage.Indexed(n, func(i int) int {
					mu.Lock()
					calls[i]++
					mu.Unlock()
					return i
				})
				var s stage.Stream[int]
				switch kind {
				case "map":
					s = stage.Map(src, double, m.opts()...)
				case "filter":
					s = stage.Filter(src, func(context.Context, int) (bool, error) { return true, nil }, m.opts()...)
				case "flatmap":
					s = stage.FlatMap(src, func(_ context.Context, x int) ([]int, error) { return []int{x}, nil }, m.opts()...)
				}
				var got int
				var err error
				runcheck.Run(t, "all", func() { got, err = sink.Count(context.Background(), s) })
				if got != n || err != nil {
					t.Fatalf("Count %d, %v", got, err)
				}
				mu.Lock()
				defer mu.Unlock()
				if len(calls) != n {
					t.Fatalf("at called for %d distinct positions, want %d", len(calls), n)
				}
				for i, c := range calls {
					if i < 0 || i >= n || c != 1 {
						t.Fatalf("at(%d) called %d times", i, c)
					}
				}
			})
		}
	}
	// sink.First through one unordered stage: the sink took one, each worker
	// may have taken one more (as for a channel source).
	for _, w := range []int{1, 4} {
		for range 20 {
			var taken atomic.Int32
			src := stage.Indexed(1_000_000, func(i int) int { taken.Add(1); return i })
			runcheck.Run(t, "first", func() { _, _, _ = sink.First(context.Background(), stage.Map(src, double, stage.Workers(w))) })
			if k := int(taken.Load()); k > w+1 {
				t.Fatalf("Workers(%d): First took %d positions, want at most %d", w, k, w+1)
			}
		}
	}
}

// Backpressure over a source that never waits, where the consumer may run
// the calls itself: "no stage is more than its workers plus its buffer ahead
// of its consumer"; "An Ordered() stage takes at most 2×workers+buffer items
// that its consumer has not yet taken".
func TestAuditBackpressureOverIndexed(t *testing.T) {
	const items = 2000
	for _, w := range []int{1, 4} {
		for _, ordered := range []bool{false, true} {
			for _, buf := range []int{0, 3} {
				for _, kind := range []string{"map", "filter"} {
					t.Run(fmt.Sprintf("%s/w=%d/ordered=%v/buf=%d", kind, w, ordered, buf), func(t *testing.T) {
						var l ledger
						src := stage.Indexed(items, func(i int) int {
							l.mu.Lock()
							defer l.mu.Unlock()
							l.produced++
							l.maxAhead = max(l.maxAhead, l.produced-l.consumed)
							return i
						})
						opts := []stage.Option{stage.Workers(w), stage.Buffer(buf)}
						if ordered {
							opts = append(opts, stage.Ordered())
						}
						var s stage.Stream[int]
						if kind == "map" {
							s = stage.Map(src, double, opts...)
						} else {
							s = stage.Filter(src, func(context.Context, int) (bool, error) { return true, nil }, opts...)
						}
						var err error
						runcheck.Run(t, "run", func() {
							err = sink.ForEach(context.Background(), s, func(context.Context, int) error {
								l.consume()
								for range 20 {
									runtime.Gosched()
								}
								return nil
							})
						})
						if err != nil {
							t.Fatal(err)
						}
						bound := w + buf + 1
						if ordered {
							bound = 2*w + buf + 1
						}
						if l.maxAhead > bound {
							t.Fatalf("the source ran %d items ahead of the sink, want at most %d", l.maxAhead, bound)
						}
					})
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Workers: only "an unordered Map, Filter, FlatMap or Concurrent stage without
// a Buffer, over a source that never waits" may run calls in its consumer's
// goroutines once calls prove cheap ("An Ordered stage of more workers over
// any other input" than a single item keeps them in its own); "Add Buffer(1)
// to keep every worker a goroutine of the stage's own"; "KeyBy turns off the
// running of the stage in its consumer's goroutines"; Workers(-1) is "one
// goroutine per item". So such stages may call a function that waits until
// the sink has received another output of the stage, even after many cheap
// calls (which is when a fusable stage hands a worker's place to its
// consumer). After the cheap items, item x waits until the sink has received
// the output of item x-1 (a chain); a consumer goroutine inside such a call
// would wait for itself.
func TestAuditStagesThatNeverRunInTheirConsumer(t *testing.T) {
	const cheap, n = 2000, 2040
	type build func(in stage.Stream[int], f func(context.Context, int) (int, error)) stage.Stream[int]
	cases := map[string]build{
		"KeyBy": func(in stage.Stream[int], f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(in, f, stage.Workers(4), stage.KeyBy(func(x int) int { return x }))
		},
		"Ordered": func(in stage.Stream[int], f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(in, f, stage.Workers(4), stage.Ordered())
		},
		"Ordered+Buffer(1)": func(in stage.Stream[int], f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(in, f, stage.Workers(4), stage.Ordered(), stage.Buffer(1))
		},
		"Workers(-1)": func(in stage.Stream[int], f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(in, f, stage.Workers(-1))
		},
		"Apply": func(in stage.Stream[int], f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Apply(in, func(ctx context.Context, x int, emit func(int) bool) error {
				v, err := f(ctx, x)
				if err == nil {
					emit(v)
				}
				return err
			}, stage.Workers(4))
		},
	}
	for name, b := range cases {
		for _, src := range []string{"slice", "neverwaits"} {
			t.Run(name+"/"+src, func(t *testing.T) {
				seen := make([]chan struct{}, n)
				for i := range seen {
					seen[i] = make(chan struct{})
				}
				f := func(ctx context.Context, x int) (int, error) {
					if x > cheap {
						select {
						case <-seen[x-1]:
						case <-ctx.Done():
							return 0, ctx.Err()
						case <-time.After(auditWatchdog):
							return 0, fmt.Errorf("HUNG: item %d waited for item %d's output (in the sink's goroutine: %v)", x, x-1, auditGoid() == auditSinkG.Load())
						}
					}
					return x, nil
				}
				var in stage.Stream[int]
				if src == "slice" {
					in = source.Slice(auditInts(n))
				} else {
					in = stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
						i := 0
						return func(context.Context) (int, error) {
							if i == n {
								return 0, io.EOF
							}
							i++
							return i - 1, nil
						}, nil
					}))
				}
				got := 0
				var err error
				runcheck.Run(t, name, func() {
					auditSinkG.Store(auditGoid())
					err = sink.ForEach(context.Background(), b(in, f), func(_ context.Context, v int) error {
						got++
						close(seen[v])
						return nil
					})
				})
				if err != nil || got != n {
					t.Fatalf("ForEach = %v after %d outputs, want nil after %d", err, got, n)
				}
			})
		}
	}
}

var auditSinkG atomic.Int64

// Apply: "The first output of an item never waits ... Each further output
// waits while the stage's queue holds as many outputs as its read-ahead bound
// (workers + buffer), until the consumer takes some". So an item may emit far
// more outputs than the bound, also when it is the only item (the Workers doc
// lets a stage over one item run in its consumer's goroutine, which would then
// take nothing), and also after many cheap items. Child: a violation hangs.
func TestAuditApplyEmitsBeyondTheBound(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		var res []string
		for _, items := range []int{1, 2000} {
			for _, w := range []int{1, 4} {
				for _, ordered := range []bool{false, true} {
					opts := []stage.Option{stage.Workers(w)}
					if ordered {
						opts = append(opts, stage.Ordered())
					}
					s := stage.Apply(source.Slice(auditInts(items)), func(_ context.Context, x int, emit func(int) bool) error {
						k := 1
						if x == items-1 {
							k = 1000
						}
						for range k {
							if !emit(x) {
								return errors.New("emit returned false in a live run")
							}
						}
						return nil
					}, opts...)
					var n int
					var err error
					done := make(chan struct{})
					go func() {
						defer close(done)
						n, err = sink.Count(context.Background(), s)
					}()
					if !auditWait(done) {
						return fmt.Sprintf("HUNG(items=%d,w=%d,ordered=%v)", items, w, ordered)
					}
					res = append(res, fmt.Sprintf("%d:%v", n, err))
				}
			}
		}
		return strings.Join(res, " ")
	})
	if !parent {
		return
	}
	want := "1000:<nil> 1000:<nil> 1000:<nil> 1000:<nil> 2999:<nil> 2999:<nil> 2999:<nil> 2999:<nil>"
	if out != want {
		t.Fatalf("child outcome\n %s\nwant\n %s", out, want)
	}
}

// ---------------------------------------------------------------------------
// Logger: "each failed item (Warn ...; a call ended by the run's cancellation
// is not a failure)". Item 0 fails FailFast while item 1's call is in flight;
// item 1's call then returns its ctx's error: one Warn, not two.

type auditRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *auditRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *auditRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}
func (h *auditRecords) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *auditRecords) WithGroup(string) slog.Handler      { return h }

func TestAuditLoggerSkipsCallsCutShort(t *testing.T) {
	for _, returns := range []string{"ctx.Err", "cause"} {
		t.Run(returns, func(t *testing.T) {
			h := &auditRecords{}
			started1 := make(chan struct{})
			f := func(ctx context.Context, x int) (int, error) {
				if x == 0 {
					if !auditWait(started1) {
						return 0, errors.New("HUNG")
					}
					return 0, errAudit
				}
				close(started1)
				<-ctx.Done()
				if returns == "cause" {
					return 0, context.Cause(ctx)
				}
				return 0, ctx.Err()
			}
			var err error
			runcheck.Run(t, returns, func() {
				_, err = sink.Count(stage.Observe(context.Background(), stage.Logger(slog.New(h))),
					stage.Map(source.Slice(auditInts(2)), f, stage.Workers(2), stage.Buffer(1)))
			})
			if !errors.Is(err, errAudit) {
				t.Fatalf("err %v, want item 0's", err)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			warns := 0
			var msgs []string
			for _, r := range h.recs {
				msgs = append(msgs, r.Level.String()+":"+r.Message)
				if r.Level >= slog.LevelWarn {
					warns++
				}
			}
			if warns != 1 {
				t.Fatalf("log %v: %d warnings, want 1 (the cut-short call is no failure)", msgs, warns)
			}
		})
	}
}

// Retry: "Retry(1, 0) means no retry."
func TestAuditRetryOneIsNoRetry(t *testing.T) {
	for _, m := range modes {
		var calls atomic.Int32
		_, err := sink.Count(context.Background(), stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
			calls.Add(1)
			return 0, errAudit
		}, m.opts(stage.Retry(1, 0))...))
		var se *stage.Error
		if !errors.As(err, &se) || se.Attempts != 1 || calls.Load() != 1 {
			t.Fatalf("%s: err %v after %d calls, want a *stage.Error of 1 attempt after 1 call", m, err, calls.Load())
		}
	}
}

// ---------------------------------------------------------------------------
// Ordered: "With Workers(-1) the window is unbounded"; Workers(-1): "no limit,
// one goroutine per item". Item 0 is held until every other item's call has
// returned: a bounded window would stop pulling and hang (watchdog).
func TestAuditOrderedUnlimitedWindow(t *testing.T) {
	const n = 600
	kinds := map[string]func(f func(context.Context, int) (int, error)) stage.Stream[int]{
		"Map": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.Map(source.Slice(auditInts(n)), f, stage.Workers(-1), stage.Ordered())
		},
		"FlatMap": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
			return stage.FlatMap(source.Slice(auditInts(n)), func(ctx context.Context, x int) ([]int, error) {
				v, err := f(ctx, x)
				return []int{v}, err
			}, stage.Workers(-1), stage.Ordered())
		},
		"Apply-over-Func": func(f func(context.Context, int) (int, error)) stage.Stream[int] {
			i := 0
			src := source.Func(func(context.Context) (int, error) {
				if i == n {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			})
			return stage.Apply(src, func(ctx context.Context, x int, emit func(int) bool) error {
				v, err := f(ctx, x)
				if err == nil {
					emit(v)
				}
				return err
			}, stage.Workers(-1), stage.Ordered())
		},
	}
	for name, mk := range kinds {
		t.Run(name, func(t *testing.T) {
			var others atomic.Int32
			othersDone := make(chan struct{})
			f := func(ctx context.Context, x int) (int, error) {
				if x == 0 {
					select {
					case <-othersDone:
					case <-ctx.Done():
						return 0, ctx.Err()
					case <-time.After(auditWatchdog):
						return 0, fmt.Errorf("HUNG: only %d other items were called while item 0 was held", others.Load())
					}
					return 0, nil
				}
				if others.Add(1) == n-1 {
					close(othersDone)
				}
				return x, nil
			}
			var got []int
			var err error
			runcheck.Run(t, name, func() { got, err = sink.Slice(context.Background(), mk(f)) })
			if err != nil || !slices.Equal(got, auditInts(n)) {
				t.Fatalf("%d values in order? %v; err %v", len(got), slices.IsSorted(got), err)
			}
		})
	}
}

// Merge: "One goroutine per input moves items on, each at most one item
// ahead." Three bare sources; the sink is slow. At every item a source
// produces, the items produced and not yet taken by the sink are at most one
// per input, plus the one on its way into the sink's callback.
func TestAuditMergeAtMostOneAheadPerInput(t *testing.T) {
	const inputs, per = 3, 300
	for _, src := range []string{"func", "slice", "chan"} {
		t.Run(src, func(t *testing.T) {
			var l ledger
			var ins []stage.Stream[int]
			for range inputs {
				switch src {
				case "func":
					i := 0
					ins = append(ins, source.Func(func(context.Context) (int, error) {
						if i == per {
							return 0, io.EOF
						}
						i++
						l.mu.Lock()
						l.produced++
						l.maxAhead = max(l.maxAhead, l.produced-l.consumed)
						l.mu.Unlock()
						return i, nil
					}))
				case "slice":
					ins = append(ins, stage.Indexed(per, func(i int) int {
						l.mu.Lock()
						l.produced++
						l.maxAhead = max(l.maxAhead, l.produced-l.consumed)
						l.mu.Unlock()
						return i
					}))
				case "chan":
					// A channel that counts a value as produced when it is
					// received: an unbuffered channel fed by a goroutine that
					// counts after each send.
					ch := make(chan int)
					go func() {
						defer close(ch)
						for i := range per {
							ch <- i
							l.mu.Lock()
							l.produced++
							l.maxAhead = max(l.maxAhead, l.produced-l.consumed)
							l.mu.Unlock()
						}
					}()
					ins = append(ins, source.Chan(ch))
				}
			}
			var err error
			n := 0
			runcheck.Run(t, src, func() {
				err = sink.ForEach(context.Background(), stage.Merge(ins...), func(context.Context, int) error {
					n++
					l.consume()
					for range 50 {
						runtime.Gosched()
					}
					return nil
				})
			})
			if err != nil || n != inputs*per {
				t.Fatalf("ForEach = %v after %d items", err, n)
			}
			if bound := inputs + 1; l.maxAhead > bound {
				t.Fatalf("the sources ran %d items ahead of the sink, want at most %d (one per input and one on its way)", l.maxAhead, bound)
			}
		})
	}
}

// Indexed: positions are claimed "only when a stage is ready for an item";
// sink.First: "over a bare source, exactly one item is taken".
func TestAuditFirstOverBareIndexedTakesOne(t *testing.T) {
	for range 50 {
		var calls atomic.Int32
		var v int
		var ok bool
		var err error
		runcheck.Run(t, "first", func() {
			v, ok, err = sink.First(context.Background(), stage.Indexed(1000, func(i int) int { calls.Add(1); return i }))
		})
		if v != 0 || !ok || err != nil || calls.Load() != 1 {
			t.Fatalf("First = %d, %v, %v after %d calls of at; want 0, true, nil after 1", v, ok, err, calls.Load())
		}
	}
}

// Until: "Then the sources upstream of Until take no new item ..., while
// every item they already produced goes on through the stages"; "Once stop is
// done, no source upstream is asked for another item". Over sources whose
// items are ready at once (a buffered channel, an iterator over memory,
// lines of a reader): stop is done inside the call of item 5. With one
// worker, nothing after item 5 is taken; with more, whatever was taken
// (received from the channel, stepped out of the iterator) is delivered,
// none is lost.
func TestAuditUntilOverReadySources(t *testing.T) {
	const n = 100
	type mk func() (s stage.Stream[int], taken func() int)
	sources := map[string]mk{
		"Chan": func() (stage.Stream[int], func() int) {
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			close(ch)
			return source.Chan(ch), func() int { return n - len(ch) }
		},
		"Seq": func() (stage.Stream[int], func() int) {
			var steps atomic.Int32
			return source.Seq(func(yield func(int) bool) {
					for i := range n {
						steps.Add(1)
						if !yield(i) {
							return
						}
					}
				}), func() int {
					return int(steps.Load())
				}
		},
		"Seq2": func() (stage.Stream[int], func() int) {
			var steps atomic.Int32
			return source.Seq2(func(yield func(int, error) bool) {
					for i := range n {
						steps.Add(1)
						if !yield(i, nil) {
							return
						}
					}
				}), func() int {
					return int(steps.Load())
				}
		},
		"Lines": func() (stage.Stream[int], func() int) {
			var b strings.Builder
			for i := range n {
				fmt.Fprintln(&b, i)
			}
			return stage.Map(source.Lines(strings.NewReader(b.String())), func(_ context.Context, l string) (int, error) {
				return strconv.Atoi(l)
			}, stage.Workers(1)), nil
		},
	}
	for name, mkSrc := range sources {
		for _, w := range []int{1, 4} {
			for rep := range 5 {
				t.Run(fmt.Sprintf("%s/workers=%d/%d", name, w, rep), func(t *testing.T) {
					in, taken := mkSrc()
					stopCtx, stop := context.WithCancel(context.Background())
					defer stop()
					s := stage.Map(stage.Until(in, stopCtx), func(_ context.Context, x int) (int, error) {
						if x == 5 {
							stop()
						}
						return x, nil
					}, stage.Workers(w))
					var got []int
					var err error
					runcheck.Run(t, name, func() { got, err = sink.Slice(context.Background(), s) })
					slices.Sort(got)
					if err != nil || len(got) < 6 || !slices.Equal(got, auditInts(len(got))) {
						t.Fatalf("Slice = %v, %v; want 0..k (k >= 5) and nil", got, err)
					}
					if taken != nil {
						if k := taken(); k != len(got) {
							t.Fatalf("%d items taken from the source, %d delivered: every item taken must go through", k, len(got))
						}
					}
					// One worker: nothing is taken after stop, but a one-worker
					// stage upstream (Lines' Map) may have produced one item
					// ahead, before stop: its place goes to a goroutine of its
					// own when two calls in a row turn slow (stage.Workers),
					// which a loaded machine can make them.
					most := 6
					if name == "Lines" {
						most = 7
					}
					if w == 1 && len(got) > most {
						t.Fatalf("one worker: %d items delivered (%v); want 0..5, and at most one produced ahead before stop", len(got), got)
					}
				})
			}
		}
	}
}

// Indexed: "A panic in at ends the run with a *SourceError", also when at is
// called from the consumer's goroutine (a bare Indexed under a sink, or a
// cheap stage whose calls moved to its consumer after many items). Child
// process: an unguarded panic there would crash it.
func TestAuditIndexedPanicAnywhereIsASourceError(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		src := func() stage.Stream[int] {
			return stage.Indexed(3000, func(i int) int {
				if i == 2500 {
					panic("bad position")
				}
				return i
			})
		}
		keep := func(context.Context, int) (bool, error) { return true, nil }
		one := func(_ context.Context, x int) ([]int, error) { return []int{x}, nil }
		var res []string
		check := func(label string, s stage.Stream[int]) {
			_, err := sink.Count(context.Background(), s)
			var se *stage.SourceError
			var pe *stage.PanicError
			if !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != "bad position" {
				res = append(res, fmt.Sprintf("%s:%v", label, err))
			}
		}
		check("bare", src())
		for _, m := range modes {
			check("map/"+m.String(), stage.Map(src(), double, m.opts()...))
			check("filter/"+m.String(), stage.Filter(src(), keep, m.opts()...))
			check("flatmap/"+m.String(), stage.FlatMap(src(), one, m.opts()...))
			check("map-map/"+m.String(), stage.Map(stage.Map(src(), double, m.opts()...), double, m.opts()...))
		}
		if len(res) == 0 {
			return "ok"
		}
		return strings.Join(res, "; ")
	})
	if parent && out != "ok" {
		t.Fatalf("runs that did not end with the *SourceError of the panic: %s", out)
	}
}

// ErrorPolicy.String: "returns the policy's name: "FailFast", "Forward",
// "Handle" or "Budget(n)"".
func TestAuditPolicyNames(t *testing.T) {
	h := func(context.Context, *stage.Error) error { return nil }
	for want, p := range map[string]stage.ErrorPolicy{
		"FailFast":  stage.FailFast,
		"Forward":   stage.Forward,
		"Handle":    stage.Handle(h),
		"Budget(0)": stage.Budget(0, nil),
		"Budget(7)": stage.Budget(7, h),
	} {
		if got := p.String(); got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
	}
}
