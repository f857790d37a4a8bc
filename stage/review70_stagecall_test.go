package stage_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r70bigPipeline builds a pipeline with every kind of stage that calls a
// function, plus Until, Batch, Tee and Merge (which are not observed). at
// counts the items taken from the source.
func r70bigPipeline(n int, taken *atomic.Int64) stage.Stream[int] {
	src := stage.Indexed(n, func(i int) int { taken.Add(1); return i })
	a := stage.Map(src, double, stage.Name("a"), stage.Workers(3))
	u := stage.Until(a, context.Background())
	f := stage.Filter(u, func(_ context.Context, v int) (bool, error) { return true, nil })
	fm := stage.FlatMap(f, func(_ context.Context, v int) ([]int, error) { return []int{v}, nil })
	b := stage.Batch(fm, 3, 0)
	ub := stage.Unbatch(b)
	ap := stage.Apply(ub, func(_ context.Context, v int, emit func(int) bool) error { emit(v); return nil })
	mk := stage.Map(ap, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
		return func(context.Context) (int, error) { return v, nil }, nil
	})
	c := stage.Concurrent(mk, stage.Workers(2))
	br := stage.Tee(c, 2)
	l := stage.Map(br[0], double)
	r := stage.Map(br[1], double)
	return stage.Map(stage.Merge(l, r), double)
}

// "Stage is called once per stage per run, when the run is opened, and
// returns what watches that stage in that run (nil: not watched). It is
// called from the sink's goroutine for every stage of the pipeline that calls
// a function (Map, Filter, FlatMap, Concurrent, Apply, Unbatch; not Batch,
// Tee, Merge or Until), upstream first, before any goroutine of the run
// starts and before any item is taken."
// and (Name) "the stages that call a function (...) are numbered from 1,
// named or not, in the order a run opens them, upstream first, so unnamed
// stages never share a name within a pipeline, and the same pipeline gets
// the same names in every run."
func TestReview70StageOncePerStageUpstreamFirst(t *testing.T) {
	var taken atomic.Int64
	s := r70bigPipeline(12, &taken)
	wantHead := []string{"a/map", "filter#2/filter", "flatmap#3/flatmap", "unbatch#4/unbatch", "apply#5/apply", "map#6/map", "concurrent#7/concurrent"}
	var first []string
	for run := 0; run < 3; run++ {
		taken.Store(0)
		o := &r70obs{}
		o.stageHook = func(info stage.Info) {
			if n := taken.Load(); n != 0 {
				o.violate("Stage(%s): %d items already taken", info.Name, n)
			}
			o.mu.Lock()
			before := o.before
			o.mu.Unlock()
			if left := runcheck.LeakedSince(before); len(left) > 0 {
				o.violate("Stage(%s): a goroutine of the run started already:\n%s", info.Name, left[0])
			}
		}
		var got []int
		var err error
		runcheck.Run(t, "slice", func() {
			o.arm()
			got, err = sink.Slice(stage.Observe(context.Background(), o), s)
		})
		if err != nil || len(got) != 24 {
			t.Fatalf("run %d: %d items, err %v; want 24, nil", run, len(got), err)
		}
		for _, v := range o.check() {
			t.Error(v)
		}
		var names []string
		for _, in := range o.infos {
			names = append(names, in.Name+"/"+in.Kind)
		}
		if len(names) != 10 {
			t.Fatalf("run %d: Stage called %d times (%v), want 10", run, len(names), names)
		}
		if !slices.Equal(names[:7], wantHead) {
			t.Errorf("run %d: first seven stages %v, want %v (upstream first)", run, names[:7], wantHead)
		}
		mid := []string{names[7], names[8]}
		slices.Sort(mid)
		if !slices.Equal(mid, []string{"map#8/map", "map#9/map"}) || names[9] != "map#10/map" {
			t.Errorf("run %d: last three stages %v, want the branches map#8, map#9 then map#10", run, names[7:])
		}
		if first == nil {
			first = names
		} else if !slices.Equal(first, names) {
			t.Errorf("run %d: names %v differ from the first run's %v", run, names, first)
		}
	}
}

// "Several sinks may run one Stream at the same time: each run has its own
// goroutines, queues and stage state." with (Observer) "Stage is called once
// per stage per run" and (Name) "the same pipeline gets the same names in
// every run".
func TestReview70StageConcurrentRunsSameNames(t *testing.T) {
	var taken atomic.Int64
	s := r70bigPipeline(30, &taken)
	const runs = 12
	var wg sync.WaitGroup
	obs := make([]*r70obs, runs)
	errs := make([]error, runs)
	counts := make([]int, runs)
	for i := range runs {
		obs[i] = &r70obs{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			obs[i].sinkG.Store(r70gid())
			counts[i], errs[i] = sink.Count(stage.Observe(context.Background(), obs[i]), s)
		}()
	}
	runcheck.NoHang(t, "wait", wg.Wait)
	for i := range runs {
		if errs[i] != nil || counts[i] != 60 {
			t.Errorf("run %d: %d items, %v", i, counts[i], errs[i])
		}
		for _, v := range obs[i].check() {
			t.Errorf("run %d: %s", i, v)
		}
		if len(obs[i].infos) != 10 {
			t.Errorf("run %d: Stage called %d times, want 10", i, len(obs[i].infos))
			continue
		}
		var names []string
		for _, in := range obs[i].infos {
			names = append(names, in.Name)
		}
		slices.Sort(names)
		want := []string{"a", "apply#5", "concurrent#7", "filter#2", "flatmap#3", "map#10", "map#6", "map#8", "map#9", "unbatch#4"}
		if !slices.Equal(names, want) {
			t.Errorf("run %d: names %v, want %v", i, names, want)
		}
		for _, w := range obs[i].watchers {
			if w.info.Name == "a" && w.recv.Load() != 30 {
				t.Errorf("run %d: stage a received %d, want 30 (the run's own)", i, w.recv.Load())
			}
		}
	}
}

// "(nil: not watched)": an observer whose Stage returns nil changes nothing.
func TestReview70StageNilWatcher(t *testing.T) {
	var calls atomic.Int64
	o := r70nilObs{&calls}
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			calls.Store(0)
			s := stage.Map(source70(50), double, m.opts()...)
			got, err := sink.Slice(stage.Observe(context.Background(), o), s)
			if err != nil || len(got) != 50 {
				t.Fatalf("%d items, %v", len(got), err)
			}
			if calls.Load() != 1 {
				t.Errorf("Stage called %d times, want 1", calls.Load())
			}
		})
	}
}

type r70nilObs struct{ calls *atomic.Int64 }

func (o r70nilObs) Stage(stage.Info) stage.Watcher { o.calls.Add(1); return nil }

func source70(n int) stage.Stream[int] {
	return stage.Indexed(n, func(i int) int { return i })
}

// "It is called from the sink's goroutine": for every sink of package sink,
// including the goroutine of a range over sink.All.
func TestReview70StageFromEverySinksGoroutine(t *testing.T) {
	sinks := map[string]func(ctx context.Context, s stage.Stream[int]) error{
		"Slice": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err },
		"Count": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Count(ctx, s); return err },
		"First": func(ctx context.Context, s stage.Stream[int]) error { _, _, err := sink.First(ctx, s); return err },
		"Reduce": func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a + v })
			return err
		},
		"ForEach": func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		},
		"Chan": func(ctx context.Context, s stage.Stream[int]) error {
			ch := make(chan int, 100)
			return sink.Chan(ctx, s, ch)
		},
		"All": func(ctx context.Context, s stage.Stream[int]) error {
			for _, err := range sink.All(ctx, s) {
				if err != nil {
					return err
				}
			}
			return nil
		},
		"AllBreak": func(ctx context.Context, s stage.Stream[int]) error {
			for range sink.All(ctx, s) {
				break
			}
			return nil
		},
	}
	for name, run := range sinks {
		for _, m := range modes {
			t.Run(fmt.Sprintf("%s/%s", name, m), func(t *testing.T) {
				o := &r70obs{}
				s := stage.Filter(stage.Map(source70(40), double, m.opts()...), func(context.Context, int) (bool, error) { return true, nil }, m.opts()...)
				var err error
				runcheck.Run(t, name, func() {
					o.arm()
					err = run(stage.Observe(context.Background(), o), s)
				})
				if err != nil {
					t.Fatal(err)
				}
				for _, v := range o.check() {
					t.Error(v)
				}
				if len(o.infos) != 2 {
					t.Errorf("Stage called %d times, want 2", len(o.infos))
				}
			})
		}
	}
}

// Observer.Stage: "before any goroutine of the run that calls a function of
// the pipeline starts and before any item is taken. (Only the run's watchers
// of contexts may run already ...)" — under every kind of caller's ctx.
func TestReview70StageBeforeGoroutinesEveryCtxKind(t *testing.T) {
	for _, kind := range []string{ctxtest.Std, ctxtest.Own, ctxtest.Wrap, ctxtest.Cause} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := ctxtest.New(kind)
			defer cancel()
			var taken atomic.Int64
			var told atomic.Bool
			o := &r70obs{}
			o.stageHook = func(info stage.Info) {
				if n := taken.Load(); n != 0 {
					o.violate("Stage(%s): %d items already taken", info.Name, n)
				}
				o.mu.Lock()
				before := o.before
				o.mu.Unlock()
				for _, g := range runcheck.LeakedSince(before) {
					if r70ctxWatcher(g) {
						continue
					}
					if told.CompareAndSwap(false, true) {
						o.violate("Stage(%s): a goroutine of the run started already:\n%s", info.Name, g)
					}
				}
			}
			var err error
			runcheck.Run(t, "count", func() {
				o.arm()
				_, err = sink.Count(stage.Observe(ctx, o), r70bigPipeline(10, &taken))
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, v := range o.check() {
				t.Error(v)
			}
		})
	}
}

// r70ctxWatcher reports whether g, a goroutine's stack, is one of the run's
// watchers of contexts (the Observer.Stage doc's exception): made by the
// context package's AfterFunc, or by the run's own for a context type the
// context package cannot see into.
func r70ctxWatcher(g string) bool {
	return strings.Contains(g, "created by context.AfterFunc") ||
		strings.Contains(g, "created by github.com/sluicedev/sluice/stage.(*watched).AfterFunc")
}
