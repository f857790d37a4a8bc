package stage_test

// Review 13: Until (drain), source errors ("nothing lost"), Batch, Tee, Merge.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func r13Stages() map[string]func(stage.Stream[int]) stage.Stream[int] {
	id := func(_ context.Context, v int) (int, error) { r13Work(v); return v, nil }
	return map[string]func(stage.Stream[int]) stage.Stream[int]{
		"bare":   func(s stage.Stream[int]) stage.Stream[int] { return s },
		"map-w1": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, id, stage.Workers(1)) },
		"map-w8": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, id, stage.Workers(8)) },
		"map-ord": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(4), stage.Ordered())
		},
		"map-unlim": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, id, stage.Workers(-1)) },
		"map-buf": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(3), stage.Buffer(4))
		},
		"keyby": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(4), stage.KeyBy(func(v int) int { return v % 2 }))
		},
		"batch-unbatch": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Unbatch(stage.Batch(stage.Map(s, id, stage.Workers(3)), 4, 0))
		},
		"tee-merge": func(s stage.Stream[int]) stage.Stream[int] {
			b := stage.Tee(s, 2)
			return stage.Merge(stage.Map(b[0], id, stage.Workers(2)),
				stage.Filter(b[1], func(context.Context, int) (bool, error) { return false, nil }))
		},
		"flatmap": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.FlatMap(s, func(_ context.Context, v int) ([]int, error) { return []int{v}, nil }, stage.Workers(5))
		},
	}
}

// Doc (Until): "once stop is done, no source upstream is asked for another
// item"; "every item they already produced goes on through the stages ...
// and the sink returns nil once the last of them has arrived". README: "Nothing
// taken is lost." Here next itself makes stop done while it produces item k:
// next is never concurrent, so any later call of next broke the promise.
func TestReview13UntilStopDuringNext(t *testing.T) {
	for name, st := range r13Stages() {
		for _, k := range []int{0, 1, 7, 64} {
			t.Run(fmt.Sprintf("%s/k=%d", name, k), func(t *testing.T) {
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				var produced atomic.Int32
				var late atomic.Int32
				src := source.Func(func(context.Context) (int, error) {
					if stop.Err() != nil {
						late.Add(1)
					}
					i := int(produced.Add(1)) - 1
					if i == k {
						drain()
					}
					return i, nil
				})
				var got []int
				var err error
				runcheck.Run(t, "until", func() { got, err = sink.Slice(context.Background(), st(stage.Until(src, stop))) })
				if err != nil {
					t.Fatalf("err = %v, want nil after a drain", err)
				}
				if l := late.Load(); l > 0 {
					t.Errorf("next was called %d times after stop was done", l)
				}
				slices.Sort(got)
				if len(got) != int(produced.Load())-int(late.Load()) || len(got) != k+1 {
					t.Fatalf("delivered %d items, produced %d (k=%d): an item taken was lost", len(got), produced.Load(), k)
				}
			})
		}
	}
}

// Doc (Until): "the sources upstream of Until take no new item (a source
// blocked waiting for one, such as source.Chan, sees its context end and
// stops quietly)"; Source: "under Until when the stop context is done: an
// error next then returns ends the stream quietly". Batch "flushes its
// partial batch". stop is made done while next waits on an empty queue.
func TestReview13UntilQuietErrorAndPartialBatch(t *testing.T) {
	for _, m := range []string{"w1", "w4", "w4ordered", "unlimited", "keyby"} {
		t.Run(m, func(t *testing.T) {
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			queue := make(chan int, 100)
			for i := range 7 {
				queue <- i
			}
			blocked := make(chan struct{})
			var once sync.Once
			helperDone := make(chan struct{})
			go func() {
				defer close(helperDone)
				<-blocked
				drain()
			}()
			src := source.Func(func(ctx context.Context) (int, error) {
				select {
				case v := <-queue:
					return v, nil
				default:
				}
				once.Do(func() { close(blocked) })
				select {
				case v := <-queue:
					return v, nil
				case <-ctx.Done():
					return 0, errors.New("not a context error: the stream still ends quietly")
				}
			})
			var batches [][]int
			var err error
			runcheck.Run(t, "until", func() {
				err = sink.ForEach(context.Background(), stage.Batch(stage.Map(stage.Until(src, stop), double, r13With(m)...), 100, 0),
					func(_ context.Context, b []int) error {
						batches = append(batches, b)
						return nil
					})
			})
			once.Do(func() { close(blocked) })
			<-helperDone
			if err != nil {
				t.Fatalf("err = %v, want nil: a drained source's error ends the stream quietly", err)
			}
			var all []int
			for _, b := range batches {
				all = append(all, b...)
			}
			slices.Sort(all)
			if !slices.Equal(all, []int{0, 2, 4, 6, 8, 10, 12}) {
				t.Fatalf("delivered %v in batches %v, want the 7 items taken", all, batches)
			}
		})
	}
}

// Doc (Until): "Until drains only the sources it is built on; in a Merge of
// an Until branch and another, the other branch runs on."
func TestReview13UntilOtherMergeBranchRunsOn(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	drain() // done before the run: the Until branch takes nothing
	var asked atomic.Int32
	drained := source.Func(func(context.Context) (int, error) { asked.Add(1); return -1, nil })
	other := source.Slice(ints(20))
	var got []int
	var err error
	runcheck.Run(t, "merge", func() {
		got, err = sink.Slice(context.Background(), stage.Merge(stage.Map(stage.Until(drained, stop), double, stage.Workers(3)), stage.Map(other, double, stage.Workers(2))))
	})
	if err != nil || len(got) != 20 || asked.Load() != 0 {
		t.Fatalf("err %v, %d items, drained source asked %d times; want nil, 20, 0", err, len(got), asked.Load())
	}
}

// Doc (SourceError): "the source stops, the items it produced before the
// failure still complete and are delivered, and then the sink returns the
// SourceError"; Batch: "the last, partial batch is never lost" ("A FailFast
// error or a cancelled run drops the partial batch" — a source error is
// neither).
func TestReview13SourceErrorLosesNothing(t *testing.T) {
	boom := errors.New("source broke")
	for name, st := range r13Stages() {
		for _, k := range []int{0, 1, 5, 70} {
			t.Run(fmt.Sprintf("%s/k=%d", name, k), func(t *testing.T) {
				i := 0
				src := source.Func(func(context.Context) (int, error) {
					if i == k {
						return 0, boom
					}
					i++
					return i - 1, nil
				})
				var got []int
				var err error
				runcheck.Run(t, "srcerr", func() { got, err = sink.Slice(context.Background(), st(src)) })
				var se *stage.SourceError
				if !errors.As(err, &se) || !errors.Is(err, boom) {
					t.Fatalf("err = %v, want a *SourceError wrapping %v", err, boom)
				}
				slices.Sort(got)
				if !slices.Equal(got, ints(k)) {
					t.Fatalf("delivered %v, want all %d items produced before the failure", got, k)
				}
			})
		}
	}
}

// Same, for a Batch whose partial batch is pending when the source fails.
func TestReview13SourceErrorFlushesPartialBatch(t *testing.T) {
	boom := errors.New("source broke")
	for _, k := range []int{1, 5, 8} {
		t.Run(fmt.Sprint(k), func(t *testing.T) {
			i := 0
			src := source.Func(func(context.Context) (int, error) {
				if i == k {
					return 0, boom
				}
				i++
				return i - 1, nil
			})
			var got [][]int
			var err error
			runcheck.Run(t, "batch", func() { got, err = sink.Slice(context.Background(), stage.Batch(src, 3, 0)) })
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v", err)
			}
			var want [][]int
			for j := 0; j < k; j += 3 {
				want = append(want, ints(k)[j:min(j+3, k)])
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("batches %v, want %v", got, want)
			}
		})
	}
}

// Doc (Merge / Source): "The ctx given to open and next is the run's context;
// it also ends when another source of the run fails". One branch fails after
// 3 items; the other waits for ever on its ctx: the run ends, with the 3
// items and the SourceError.
func TestReview13MergeSourceErrorStopsOtherBranch(t *testing.T) {
	for _, m := range []string{"w1", "w4", "w4ordered", "unlimited"} {
		t.Run(m, func(t *testing.T) {
			boom := errors.New("branch A broke")
			i := 0
			a := source.Func(func(context.Context) (int, error) {
				if i == 3 {
					return 0, boom
				}
				i++
				return i, nil
			})
			b := source.Func(func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // watchdog only
			defer cancel()
			var got []int
			var err error
			runcheck.Run(t, "merge", func() {
				got, err = sink.Slice(ctx, stage.Merge(stage.Map(a, double, r13With(m)...), stage.Map(b, double, r13With(m)...)))
			})
			slices.Sort(got)
			if !errors.Is(err, boom) || errors.Is(err, context.DeadlineExceeded) || !slices.Equal(got, []int{2, 4, 6}) {
				t.Fatalf("got %v, err %v; want [2 4 6] and the SourceError", got, err)
			}
		})
	}
}

// Doc (Batch): "A forwarded error is a batch boundary: the batch before it
// leaves first, then the error, in order"; "in input order".
func TestReview13BatchErrorBoundary(t *testing.T) {
	for _, up := range []string{"w1", "w4ordered"} {
		t.Run(up, func(t *testing.T) {
			s := stage.Map(source.Slice(ints(12)), func(_ context.Context, v int) (int, error) {
				if v == 4 || v == 5 || v == 11 {
					return 0, errors.New("bad")
				}
				return v, nil
			}, r13With(up, stage.OnError(stage.Forward))...)
			var got []string
			runcheck.Run(t, "batch", func() {
				for b, err := range sink.All(context.Background(), stage.Batch(s, 3, 0)) {
					if err != nil {
						var se *stage.Error
						if !errors.As(err, &se) {
							t.Errorf("%v", err)
						}
						got = append(got, fmt.Sprintf("err%d", se.Index))
						continue
					}
					got = append(got, fmt.Sprint(b))
				}
			})
			want := "[[0 1 2] [3] err4 err5 [6 7 8] [9 10] err11]"
			if fmt.Sprint(got) != want {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

// Doc (Batch): "A batch leaves when it is full, when timeout has passed since
// its first item arrived". The source gives 2 items and then waits until the
// sink saw a batch: only the timeout can let that batch leave.
func TestReview13BatchTimeoutFlushes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // watchdog only
	defer cancel()
	sawBatch := make(chan struct{})
	i := 0
	src := source.Func(func(ctx context.Context) (int, error) {
		if i == 2 {
			select {
			case <-sawBatch:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if i == 4 {
			return 0, io.EOF
		}
		i++
		return i - 1, nil
	})
	var got [][]int
	var err error
	runcheck.Run(t, "timeout", func() {
		err = sink.ForEach(ctx, stage.Batch(src, 10, time.Millisecond), func(_ context.Context, b []int) error {
			if len(got) == 0 {
				close(sawBatch)
			}
			got = append(got, b)
			return nil
		})
	})
	if err != nil || fmt.Sprint(got) != "[[0 1] [2 3]]" {
		t.Fatalf("batches %v, err %v; want [[0 1] [2 3]]", got, err)
	}
}

// Doc (Batch): "Each batch is a new slice that the consumer may keep", and
// the README: "A stage's per-run state is recycled between runs"; Stream:
// "Several sinks may run one Stream at the same time: each run has its own
// goroutines, queues and stage state". Batches kept from many concurrent and
// successive runs of one stream must keep their contents.
func TestReview13BatchesKeptAcrossConcurrentRuns(t *testing.T) {
	const n, runs, par = 97, 12, 6
	s := stage.Batch(stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) { r13Work(v); return v, nil },
		stage.Workers(4), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 5 })), 8, 0)
	var mu sync.Mutex
	var kept [][][]int
	runcheck.Run(t, "runs", func() {
		var wg sync.WaitGroup
		for range par {
			wg.Go(func() {
				for range runs {
					got, err := sink.Slice(context.Background(), s)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					kept = append(kept, got)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	})
	for r, got := range kept {
		var all []int
		for _, b := range got {
			all = append(all, b...)
		}
		if !slices.Equal(all, ints(n)) {
			t.Fatalf("run %d: batches hold %v after all runs ended", r, all)
		}
	}
}

// Doc (Tee): "A run that does not consume every branch fails before any
// goroutine of it starts and before any item is taken, with an error that
// wraps ErrUnconsumedBranch".
func TestReview13TeeUnconsumedBranchTakesNothing(t *testing.T) {
	for _, use := range [][]int{{0}, {1, 2}, {2}, {0, 2}} {
		t.Run(fmt.Sprint(use), func(t *testing.T) {
			var asked atomic.Int32
			b := stage.Tee(source.Func(func(context.Context) (int, error) { asked.Add(1); return 1, nil }), 3)
			var parts []stage.Stream[int]
			for _, u := range use {
				parts = append(parts, stage.Map(b[u], double, stage.Workers(2)))
			}
			var err error
			runcheck.Run(t, "tee", func() { _, _, err = sink.First(context.Background(), stage.Merge(parts...)) })
			if !errors.Is(err, stage.ErrUnconsumedBranch) || asked.Load() != 0 {
				t.Fatalf("err = %v, next called %d times; want ErrUnconsumedBranch and none", err, asked.Load())
			}
		})
	}
}

// Doc (Tee): "n streams that each see every item of in, in the order of in
// ... and every forwarded error (so each branch reports it)".
func TestReview13TeeEveryBranchEveryItem(t *testing.T) {
	const n = 60
	in := stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) {
		if v%9 == 2 {
			return 0, errors.New("bad")
		}
		return v, nil
	}, stage.Workers(3), stage.Ordered(), stage.OnError(stage.Forward))
	b := stage.Tee(in, 3)
	var logs [3][]string
	var branches []stage.Stream[int]
	for k := range b {
		branches = append(branches, stage.Apply(b[k], func(_ context.Context, v int, _ func(int) bool) error {
			logs[k] = append(logs[k], fmt.Sprint(v))
			return nil
		}, stage.Workers(1), stage.Name(fmt.Sprintf("branch%d", k))))
	}
	var err error
	runcheck.Run(t, "tee", func() { _, err = sink.Count(context.Background(), stage.Merge(branches...)) })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 3*7 {
		t.Fatalf("err = %v, want %d forwarded (7 per branch)", err, 3*7)
	}
	var want []string
	for v := range n {
		if v%9 != 2 {
			want = append(want, fmt.Sprint(v))
		}
	}
	for k := range logs {
		if fmt.Sprint(logs[k]) != fmt.Sprint(want) {
			t.Errorf("branch %d saw %v", k, logs[k])
		}
	}
}

// Doc (Merge): "Merge panics if ... two inputs share a stream (the same stream
// given twice, or two stages built on one stream)". README: "stage.Merge of a
// stream with itself (or with a stage built on it) panics when the pipeline
// is built". Sharing hidden behind several stages, a Tee or a nested Merge is
// still sharing.
func TestReview13MergeSharedStreamPanicsAtBuild(t *testing.T) {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	cases := map[string]func(){
		"deep": func() {
			a := source.Slice(ints(3))
			stage.Merge(stage.Map(stage.Map(a, id), id), stage.Filter(a, func(context.Context, int) (bool, error) { return true, nil }))
		},
		"nested-merge": func() {
			a := source.Slice(ints(3))
			x := stage.Merge(stage.Map(a, id), source.Slice(ints(2)))
			y := stage.Merge(stage.Map(a, id), source.Slice(ints(2)))
			stage.Merge(x, y)
		},
		"tee-branch-and-input": func() {
			a := source.Slice(ints(3))
			b := stage.Tee(a, 1)
			stage.Merge(b[0], stage.Map(a, id))
		},
		"same-branch-twice": func() {
			b := stage.Tee(source.Slice(ints(3)), 2)
			stage.Merge(b[0], stage.Map(b[0], id), b[1])
		},
		"through-batch": func() {
			a := stage.Map(source.Slice(ints(3)), id)
			stage.Merge(stage.Unbatch(stage.Batch(a, 2, 0)), stage.Map(a, id))
		},
		"through-until": func() {
			a := source.Slice(ints(3))
			stage.Merge(stage.Until(a, context.Background()), a)
		},
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				defer func() {
					if recover() == nil {
						t.Fatal("building a Merge of inputs that share a stream did not panic")
					}
				}()
				build()
			})
		})
	}
}
