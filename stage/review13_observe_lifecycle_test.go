package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Promise (Observer.Stage): called once per stage per run, from the sink's
// goroutine, upstream first, before any goroutine of the run starts and before
// any item is taken. (Watcher.Closed): the run is over and every goroutine of
// it has exited; called once, from the sink's goroutine.
func TestReview13ObserveStageAndClosedTiming(t *testing.T) {
	for _, workers := range []int{1, 4, -1} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			var nexts, active, calls atomic.Int64
			const n = 100
			var sinkGID uint64
			rec := &r13oRec{}
			var stageViolations []string
			rec.hook = func(info stage.Info) {
				if g := r13oGID(); g != sinkGID {
					stageViolations = append(stageViolations, fmt.Sprintf("%s: Stage on goroutine %d, sink on %d", info.Name, g, sinkGID))
				}
				if nexts.Load() != 0 || calls.Load() != 0 {
					stageViolations = append(stageViolations, fmt.Sprintf("%s: Stage after %d items taken, %d calls", info.Name, nexts.Load(), calls.Load()))
				}
			}
			var closedViolations atomic.Int64
			rec.mk = func(info stage.Info, w *r13oW) stage.Watcher {
				return r13oClosedHook{r13oW: w, f: func() {
					if active.Load() != 0 {
						closedViolations.Add(1)
					}
				}}
			}
			ctx := stage.Observe(context.Background(), rec)
			src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				i := 0
				return func(context.Context) (int, error) {
					nexts.Add(1)
					if i == n {
						return 0, io.EOF
					}
					i++
					return i, nil
				}, nil
			})
			f := func(_ context.Context, x int) (int, error) {
				active.Add(1)
				defer active.Add(-1)
				calls.Add(1)
				return x, nil
			}
			s := stage.Map(stage.Map(src, f, stage.Workers(workers), stage.Name("a")), f, stage.Workers(workers), stage.Buffer(2), stage.Name("b"))
			r13oWatchdog(t, func() {
				sinkGID = r13oGID()
				got, err := sink.Count(ctx, s)
				if err != nil || got != n {
					t.Errorf("sink: %d, %v", got, err)
				}
			})
			if len(stageViolations) > 0 {
				t.Errorf("Stage promise broken: %v", stageViolations)
			}
			if closedViolations.Load() != 0 {
				t.Errorf("Closed called while %d calls still running", closedViolations.Load())
			}
			if !slices.Equal(rec.names(), []string{"a", "b"}) {
				t.Errorf("Stage order %v, want upstream first [a b]", rec.names())
			}
			for _, w := range rec.watchers() {
				w.check(t)
				if g := w.closedGID.Load(); g != sinkGID {
					t.Errorf("%s: Closed on goroutine %d, sink on %d", w.info.Name, g, sinkGID)
				}
				if w.received.Load() != n {
					t.Errorf("%s: received %d", w.info.Name, w.received.Load())
				}
			}
		})
	}
}

type r13oClosedHook struct {
	*r13oW
	f func()
}

func (h r13oClosedHook) Closed() { h.f(); h.r13oW.Closed() }

// Promise (Leaks, Watcher): whatever ends the run — success, FailFast,
// cancellation, early exit, a failing callback — every watcher is closed once
// before the sink returns, nothing is reported after Closed, and every
// Received has its Finished (in flight returns to zero). Many items, cheap
// calls, so that consumer goroutines run calls too.
func TestReview13ObserveEveryEndingClosesBalanced(t *testing.T) {
	const n = 2000
	type ending struct {
		name string
		run  func(ctx context.Context, cancel context.CancelFunc, s stage.Stream[int]) error
	}
	endings := []ending{
		{"complete", func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			_, err := sink.Count(ctx, s)
			return err
		}},
		{"first", func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			_, _, err := sink.First(ctx, s)
			return err
		}},
		{"break-all-at-100", func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			i := 0
			for _, err := range sink.All(ctx, s) {
				if err != nil {
					return err
				}
				if i++; i == 100 {
					break
				}
			}
			return nil
		}},
		{"cancel-at-100", func(ctx context.Context, cancel context.CancelFunc, s stage.Stream[int]) error {
			i := 0
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				if i++; i == 100 {
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				return fmt.Errorf("want Canceled, got %w", err)
			}
			return nil
		}},
		{"callback-error-at-100", func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			i := 0
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				if i++; i == 100 {
					return errR13o
				}
				return nil
			})
			if !errors.Is(err, errR13o) {
				return fmt.Errorf("want errR13o, got %w", err)
			}
			return nil
		}},
		{"errstop-at-100", func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			i := 0
			return stage.Run(ctx, s, func(context.Context, int, error) error {
				if i++; i == 100 {
					return stage.ErrStop
				}
				return nil
			})
		}},
		{"failfast-item-1000", func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			_, err := sink.Count(ctx, stage.Map(s, func(_ context.Context, x int) (int, error) {
				if x == 2000 { // 2*1000
					return 0, errR13o
				}
				return x, nil
			}, stage.Workers(3)))
			if !errors.Is(err, errR13o) {
				return fmt.Errorf("want errR13o, got %w", err)
			}
			return nil
		}},
	}
	for _, m := range modes {
		for _, e := range endings {
			t.Run(m.String()+"/"+e.name, func(t *testing.T) {
				rec := &r13oRec{}
				var st stage.Stats
				parent, cancel := context.WithCancel(context.Background())
				defer cancel()
				ctx := stage.Observe(stage.Observe(parent, rec), &st)
				s := stage.Map(source.Slice(ints(n)), double, m.opts()...)
				s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, m.opts()...)
				var err error
				r13oWatchdog(t, func() { err = e.run(ctx, cancel, s) })
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				ws := rec.watchers()
				if len(ws) < 2 {
					t.Fatalf("watchers %v", rec.names())
				}
				for _, w := range ws {
					w.check(t)
					if w.failed.Load() > 1 {
						t.Errorf("%s: %d failures", w.info.Name, w.failed.Load())
					}
				}
				for _, c := range st.Snapshot() {
					if c.InFlight != 0 || c.Running != 0 || c.Received != c.Finished {
						t.Errorf("Stats after the sink returned: %+v", c)
					}
				}
			})
		}
	}
}

// Promise (Name): unnamed stages are called by kind and position, counting
// every stage that calls a function (Map, Filter, FlatMap, Concurrent, Apply,
// Unbatch), named or not, upstream first; Batch, Tee, Merge, Until are not
// observed and not numbered; the same pipeline gets the same names in every
// run, including runs at the same time.
func TestReview13ObserveNamesStableAcrossRuns(t *testing.T) {
	stop := context.Background()
	build := func() stage.Stream[int] {
		s := stage.Map(source.Slice(ints(30)), double)                                                         // map#1
		s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("keep")) // keep (#2)
		s = stage.FlatMap(s, func(_ context.Context, x int) ([]int, error) { return []int{x, x}, nil })        // flatmap#3
		b := stage.Batch(s, 7, 0)                                                                              // not observed
		s = stage.Unbatch(b)                                                                                   // unbatch#4
		tasks := stage.Map(s, func(_ context.Context, x int) (func(context.Context) (int, error), error) {     // map#5
			return func(context.Context) (int, error) { return x, nil }, nil
		})
		s = stage.Concurrent(tasks)                                                                              // concurrent#6
		s = stage.Until(s, stop)                                                                                 // not observed
		return stage.Apply(s, func(_ context.Context, x int, emit func(int) bool) error { emit(x); return nil }) // apply#7
	}
	want := []string{"map#1", "keep", "flatmap#3", "unbatch#4", "map#5", "concurrent#6", "apply#7"}
	wantKinds := []string{"map", "filter", "flatmap", "unbatch", "map", "concurrent", "apply"}
	s := build()
	check := func(t *testing.T, rec *r13oRec) {
		t.Helper()
		if got := rec.names(); !slices.Equal(got, want) {
			t.Errorf("names %v, want %v", got, want)
		}
		for i, w := range rec.watchers() {
			if i < len(wantKinds) && w.info.Kind != wantKinds[i] {
				t.Errorf("%s: kind %q, want %q", w.info.Name, w.info.Kind, wantKinds[i])
			}
			w.check(t)
		}
	}
	for run := range 3 {
		rec := &r13oRec{}
		r13oWatchdog(t, func() {
			n, err := sink.Count(stage.Observe(context.Background(), rec), s)
			if err != nil || n != 60 {
				t.Errorf("run %d: %d %v", run, n, err)
			}
		})
		check(t, rec)
	}
	// Concurrent runs of the same stream, and a freshly built one.
	var wg sync.WaitGroup
	recs := make([]*r13oRec, 4)
	for i := range recs {
		recs[i] = &r13oRec{}
		ss := s
		if i%2 == 1 {
			ss = build()
		}
		wg.Go(func() {
			n, err := sink.Count(stage.Observe(context.Background(), recs[i]), ss)
			if err != nil || n != 60 {
				t.Errorf("concurrent run %d: %d %v", i, n, err)
			}
		})
	}
	r13oWatchdog(t, wg.Wait)
	for _, rec := range recs {
		check(t, rec)
	}
}

// Promise (Name): with a Merge of branches (and a Tee), unnamed stages never
// share a name within a pipeline, and every run gives the same names.
func TestReview13ObserveNamesWithMergeAndTee(t *testing.T) {
	br := stage.Tee(source.Slice(ints(20)), 3)
	a := stage.Map(br[0], double)
	b := stage.Map(br[1], double)
	c := stage.Filter(br[2], func(context.Context, int) (bool, error) { return true, nil })
	s := stage.Map(stage.Merge(a, b, c), double)
	var first []string
	for run := range 4 {
		rec := &r13oRec{}
		r13oWatchdog(t, func() {
			n, err := sink.Count(stage.Observe(context.Background(), rec), s)
			if err != nil || n != 60 {
				t.Errorf("run %d: %d %v", run, n, err)
			}
		})
		names := rec.names()
		if len(names) != 4 {
			t.Fatalf("names %v", names)
		}
		seen := map[string]bool{}
		for _, nm := range names {
			if seen[nm] {
				t.Errorf("name %q twice in %v", nm, names)
			}
			seen[nm] = true
		}
		if run == 0 {
			first = names
		} else if !slices.Equal(first, names) {
			t.Errorf("run %d names %v, run 0 %v", run, names, first)
		}
		// the stage after the Merge is downstream of all three: last.
		if names[3] != "map#4" {
			t.Errorf("names %v: want the merged map last, as map#4", names)
		}
		for _, w := range rec.watchers() {
			w.check(t)
		}
	}
}
