package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Ordered + Forward + Batch(timeout 0): batches are contiguous runs of the
// input order, each full unless an error or the end follows it, and every
// forwarded error is in its place between them.
func TestReview14OrderedForwardBatchShape(t *testing.T) {
	const n = 500
	for _, size := range []int{1, 4, 7} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			fails := func(i int) bool { return i%13 == 5 || i%29 == 0 }
			m := stage.Map(source.Slice(ints(n)), func(_ context.Context, i int) (int, error) {
				r14Jitter()
				if fails(i) {
					return 0, errR14Fail
				}
				return i, nil
			}, stage.Workers(6), stage.Ordered(), stage.OnError(stage.Forward))
			b := stage.Batch(m, size, 0)
			type ev struct {
				batch []int
				err   error
			}
			var evs []ev
			r14Watchdog(t, func() {
				for v, err := range sink.All(context.Background(), b) {
					evs = append(evs, ev{v, err})
				}
			})
			// Rebuild the expected event list.
			var want []ev
			var cur []int
			for i := range n {
				if fails(i) {
					if len(cur) > 0 {
						want = append(want, ev{batch: cur})
						cur = nil
					}
					want = append(want, ev{err: errR14Fail})
					continue
				}
				cur = append(cur, i)
				if len(cur) == size {
					want = append(want, ev{batch: cur})
					cur = nil
				}
			}
			if len(cur) > 0 {
				want = append(want, ev{batch: cur})
			}
			if len(evs) != len(want) {
				t.Fatalf("%d events, want %d", len(evs), len(want))
			}
			for k := range want {
				if want[k].err != nil {
					var se *stage.Error
					if !errors.As(evs[k].err, &se) || !errors.Is(evs[k].err, errR14Fail) {
						t.Fatalf("event %d: %v %v; want a forwarded error", k, evs[k].batch, evs[k].err)
					}
					continue
				}
				if evs[k].err != nil || !slices.Equal(evs[k].batch, want[k].batch) {
					t.Fatalf("event %d: %v %v; want %v", k, evs[k].batch, evs[k].err, want[k].batch)
				}
			}
		})
	}
}

// Until over a slice with a cheap stage (which may run in its consumer's
// goroutines): every position the source produced (at was called for it) is
// delivered, and no other: a prefix 0..k-1, and the sink returns nil.
func TestReview14UntilIndexedPrefixDelivered(t *testing.T) {
	for _, c := range []struct {
		workers int
		ordered bool
	}{{1, false}, {4, false}, {4, true}, {-1, false}} {
		t.Run(fmt.Sprintf("w=%d/ordered=%v", c.workers, c.ordered), func(t *testing.T) {
			for range 20 {
				stop, drain := context.WithCancel(context.Background())
				var produced atomic.Int64
				src := stage.Indexed(100000, func(i int) int {
					produced.Add(1)
					return i
				})
				opts := []stage.Option{stage.Workers(c.workers)}
				if c.ordered {
					opts = append(opts, stage.Ordered())
				}
				m := stage.Map(stage.Until(src, stop), func(_ context.Context, i int) (int, error) {
					if i == 300 {
						drain()
					}
					return i, nil
				}, opts...)
				f := stage.Filter(m, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(2))
				var got []int
				var err error
				r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), f) })
				drain()
				if err != nil {
					t.Fatalf("sink: %v", err)
				}
				slices.Sort(got)
				k := int(produced.Load())
				if len(got) != k {
					t.Fatalf("delivered %d items, the source produced %d", len(got), k)
				}
				for i, v := range got {
					if v != i {
						t.Fatalf("delivered items are not the prefix 0..%d: item %d is %d", k-1, i, v)
					}
				}
			}
		})
	}
}

// Until in one branch of a Merge: the other branch runs on to its end, the
// drained branch (a channel that is never closed) stops quietly.
func TestReview14UntilInMergeOtherBranchRunsOn(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ch := make(chan int) // never closed
	const n = 200
	gate := make(chan struct{})
	var nextOther atomic.Int64
	other := source.Func(func(ctx context.Context) (int, error) {
		i := nextOther.Add(1) - 1
		if i == 10 {
			// Until was drained before the other branch goes on
			select {
			case <-gate:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if i >= n {
			return 0, errEOF
		}
		return int(1000 + i), nil
	})
	drained := stage.Until(source.Chan(ch), stop)
	merged := stage.Merge(stage.Map(drained, double, stage.Workers(2)), other)
	go func() {
		ch <- 1
		ch <- 2
		drain()
		close(gate)
	}()
	var got []int
	var err error
	r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), merged) })
	if err != nil {
		t.Fatalf("sink: %v", err)
	}
	var others, fromCh int
	for _, v := range got {
		if v >= 1000 {
			others++
		} else {
			fromCh++
		}
	}
	if others != n || fromCh != 2 {
		t.Errorf("got %d items of the other branch (want %d) and %d of the drained one (want 2)", others, n, fromCh)
	}
}

// Until with stop done before the run: no source is asked for an item, the
// sink returns nil.
func TestReview14UntilStoppedBeforeRun(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	drain()
	var asked atomic.Int64
	src := source.Func(func(ctx context.Context) (int, error) { asked.Add(1); return 1, nil })
	b := stage.Batch(stage.Map(stage.Until(src, stop), double, stage.Workers(3)), 5, time.Hour)
	var got [][]int
	var err error
	r14Watchdog(t, func() { got, err = sink.Slice(context.Background(), b) })
	if err != nil || len(got) != 0 || asked.Load() != 0 {
		t.Errorf("got %v, %v, source asked %d times; want nothing, nil, 0", got, err, asked.Load())
	}
	if l := stage.Until(source.Slice(ints(5)), stop).Len(); l != 5 {
		t.Errorf("Until(Slice(5)).Len() = %d; Info.Total counts Until as keeping one output per input", l)
	}
}

// Batch holds at most size+1 items of in plus one finished batch: with the
// sink holding the first batch, the source gives at most 3×size+1 items (the
// sink's batch, the waiting batch, size+1 held).
func TestReview14BatchHoldBound(t *testing.T) {
	for _, size := range []int{1, 3, 10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			var taken atomic.Int64
			src := stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
				i := 0
				return func(ctx context.Context) (int, error) {
					i++
					taken.Add(1)
					return i, nil
				}, nil
			})
			b := stage.Batch(src, size, 0)
			var maxSeen int64
			r14Watchdog(t, func() {
				err := sink.ForEach(context.Background(), b, func(ctx context.Context, v []int) error {
					for range 50 {
						time.Sleep(2 * time.Millisecond)
						maxSeen = max(maxSeen, taken.Load())
					}
					return stage.ErrStop
				})
				if err != nil {
					t.Errorf("sink: %v", err)
				}
			})
			if bound := int64(3*size + 1); maxSeen > bound {
				t.Errorf("source gave %d items while the sink held the first batch; bound %d", maxSeen, bound)
			}
		})
	}
}

// Tee: a run that leaves a branch unconsumed fails before any item is taken
// and before any user function runs, even behind Until and a Map.
func TestReview14TeeUnconsumedTakesNothing(t *testing.T) {
	var asked, opened atomic.Int64
	src := stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
		opened.Add(1)
		return func(ctx context.Context) (int, error) { asked.Add(1); return 1, nil }, nil
	})
	var calls atomic.Int64
	pre := stage.Map(src, func(_ context.Context, v int) (int, error) { calls.Add(1); return v, nil }, stage.Workers(2))
	br := stage.Tee(pre, 3)
	merged := stage.Merge(br[0], stage.Map(br[2], double))
	var err error
	r14Watchdog(t, func() { _, err = sink.Slice(context.Background(), merged) })
	if !errors.Is(err, stage.ErrUnconsumedBranch) {
		t.Fatalf("sink: %v", err)
	}
	if asked.Load() != 0 || calls.Load() != 0 {
		t.Errorf("items taken %d, calls %d; want 0, 0", asked.Load(), calls.Load())
	}
}

// Merge panics if two inputs share a stream, however deep the sharing.
func TestReview14MergeDeepSharingPanics(t *testing.T) {
	s := source.Slice(ints(3))
	cases := map[string]func(){
		"map-map-vs-map": func() { stage.Merge(stage.Map(stage.Map(s, double), double), stage.Map(s, double)) },
		"batch-unbatch":  func() { stage.Merge(stage.Unbatch(stage.Batch(s, 2, 0)), s) },
		"tee-vs-map":     func() { stage.Merge(stage.Tee(s, 1)[0], stage.Map(s, double)) },
		"until-vs-self":  func() { stage.Merge(stage.Until(s, context.Background()), s) },
		"nested-merge":   func() { stage.Merge(stage.Merge(stage.Map(s, double)), stage.Filter(s, r14KeepAll)) },
		"tee-branch-twice": func() {
			b := stage.Tee(s, 2)
			stage.Merge(b[0], stage.Map(b[1], double), stage.Map(b[0], double))
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("Merge did not panic on a shared stream")
				}
			}()
			f()
		})
	}
}

func r14KeepAll(context.Context, int) (bool, error) { return true, nil }

// Stats across fused cheap stages: every stage's Received and Finished are
// the items it called its function for; forwarded errors are not received
// downstream; Handle-dropped items count as Failed; Retry counts one
// Received/Finished per item; after the run Running is 0 and InFlight 0.
func TestReview14StatsCountsFusedStages(t *testing.T) {
	const n = 20000
	var st stage.Stats
	var att sync.Map
	m1 := stage.Map(source.Slice(ints(n)), func(_ context.Context, i int) (int, error) {
		if i%100 == 7 {
			return 0, errR14Fail
		}
		return i, nil
	}, stage.OnError(stage.Forward), stage.Name("m1"), stage.Workers(4))
	f2 := stage.Filter(m1, func(_ context.Context, i int) (bool, error) {
		if i%100 == 8 {
			return false, errR14Fail
		}
		return true, nil
	}, stage.Name("f2"), stage.Workers(2), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	m3 := stage.Map(f2, func(_ context.Context, i int) (int, error) {
		if i%100 == 9 {
			v, _ := att.LoadOrStore(i, new(atomic.Int64))
			if v.(*atomic.Int64).Add(1) == 1 {
				return 0, errR14Fail
			}
		}
		return i, nil
	}, stage.Name("m3"), stage.Workers(3), stage.Retry(2, 0))
	var err error
	var got int
	r14Watchdog(t, func() { got, err = sink.Count(stage.Observe(context.Background(), &st), m3) })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != n/100 {
		t.Fatalf("Count: %v", err)
	}
	if got != n-2*n/100 {
		t.Errorf("counted %d", got)
	}
	want := map[string][3]int64{ // received, finished, failed
		"m1": {n, n, n / 100},
		"f2": {n - n/100, n - n/100, n / 100},
		"m3": {n - 2*n/100, n - 2*n/100, 0},
	}
	for name, w := range want {
		c, ok := st.Get(name)
		if !ok {
			t.Errorf("no stats for %s", name)
			continue
		}
		if c.Received != w[0] || c.Finished != w[1] || c.Failed != w[2] || c.InFlight != 0 || c.Running != 0 {
			t.Errorf("%s: received %d finished %d failed %d inflight %d running %d; want %v, 0, 0",
				name, c.Received, c.Finished, c.Failed, c.InFlight, c.Running, w)
		}
	}
	// Total counts the items a stage takes in: m1 and f2 (whose input is a
	// Map over a slice, forwarded errors counted) know it, m3 (after a Filter)
	// does not.
	for name, w := range map[string]int{"m1": n, "f2": n, "m3": -1} {
		if c, _ := st.Get(name); c.Total != w {
			t.Errorf("%s: Total %d, want %d", name, c.Total, w)
		}
	}
}

// Stats: Running counts the runs in which the stage has not closed yet (two
// sinks running one stream at once: 2), and the counts of both runs add up.
func TestReview14StatsRunningTwoRuns(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	arrived := make(chan struct{}, 2)
	release := make(chan struct{})
	m := stage.Map(source.Slice(ints(50)), func(_ context.Context, i int) (int, error) {
		if i == 0 {
			arrived <- struct{}{}
			<-release
		}
		return i, nil
	}, stage.Name("shared"), stage.Workers(2))
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for k := range 2 {
		wg.Go(func() { _, errs[k] = sink.Count(ctx, m) })
	}
	r14Watchdog(t, func() {
		<-arrived
		<-arrived
		c, _ := st.Get("shared")
		if c.Running != 2 {
			t.Errorf("Running %d with two runs open, want 2", c.Running)
		}
		close(release)
		wg.Wait()
	})
	c, _ := st.Get("shared")
	if c.Running != 0 || c.Received != 100 || c.Finished != 100 || errs[0] != nil || errs[1] != nil {
		t.Errorf("after both runs: %+v, %v", c, errs)
	}
	if len(st.Snapshot()) != 1 {
		t.Errorf("snapshot %+v; want one stage", st.Snapshot())
	}
}

// Until over a channel, through an Ordered KeyBy stage and a Batch: once
// drained, every value the source received is delivered, in input order, and
// the sink returns nil.
func TestReview14UntilDrainKeyByOrderedBatch(t *testing.T) {
	for range 10 {
		stop, drain := context.WithCancel(context.Background())
		ch := make(chan int)
		quit := make(chan struct{})
		var sent atomic.Int64
		fed := make(chan struct{})
		go func() {
			defer close(fed)
			for i := 0; ; i++ {
				select {
				case ch <- i:
					sent.Store(int64(i + 1))
				case <-quit:
					return
				}
			}
		}()
		m := stage.Map(stage.Until(source.Chan(ch), stop), func(_ context.Context, i int) (int, error) {
			r14Jitter()
			if i == 120 {
				drain()
			}
			return i, nil
		}, stage.Workers(4), stage.Ordered(), stage.KeyBy(func(i int) int { return i % 3 }))
		b := stage.Batch(m, 7, time.Hour)
		var got []int
		var err error
		r14Watchdog(t, func() {
			err = sink.ForEach(context.Background(), b, func(_ context.Context, batch []int) error {
				got = append(got, batch...)
				return nil
			})
		})
		close(quit)
		<-fed
		drain()
		if err != nil {
			t.Fatalf("sink: %v", err)
		}
		k := int(sent.Load())
		if len(got) != k {
			t.Fatalf("delivered %d, the source received %d", len(got), k)
		}
		for i, v := range got {
			if v != i {
				t.Fatalf("output %d is %d", i, v)
			}
		}
	}
}

// Names of unnamed stages in a Merge are the same in every run, and distinct.
func TestReview14NamesStableAcrossRunsWithMerge(t *testing.T) {
	a := stage.Map(source.Slice(ints(5)), double, stage.Workers(2))
	b := stage.Filter(source.Slice(ints(5)), r14KeepAll, stage.Workers(2))
	c := stage.Map(source.Slice(ints(5)), func(_ context.Context, i int) (int, error) {
		if i == 4 {
			return 0, errR14Fail
		}
		return i, nil
	}, stage.Workers(2))
	s := stage.Map(stage.Merge(a, b, c), double)
	var first string
	for run := range 30 {
		obs := &r14NameObserver{}
		_, err := sink.Slice(stage.Observe(context.Background(), obs), s)
		var se *stage.Error
		if !errors.As(err, &se) {
			t.Fatalf("run %d: %v", run, err)
		}
		var names []string
		seen := map[string]bool{}
		for _, in := range obs.infos {
			if seen[in.Name] {
				t.Errorf("run %d: name %q twice", run, in.Name)
			}
			seen[in.Name] = true
			names = append(names, in.Name)
		}
		got := fmt.Sprint(names, " failed:", se.Stage)
		if run == 0 {
			first = got
		} else if got != first {
			t.Fatalf("run %d: %s; run 0: %s", run, got, first)
		}
	}
}
