package sink_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r68GoexitRig is a pipeline's instrumentation for the Goexit scenarios:
// a source whose stop is counted, and an observer that counts calls.
type r68GoexitRig struct {
	stops atomic.Int32
	obs   r68Observer
}

func (r *r68GoexitRig) source(n int, at func(i int)) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, io.EOF
			}
			i++
			if at != nil {
				at(i - 1)
			}
			return i - 1, nil
		}, func() { r.stops.Add(1) }
	})
}

// README Guarantees: "A t.Fatal (runtime.Goexit) in a function that ran on
// a goroutine of the run fails it with stage.ErrGoexit instead of losing
// the item (unless it had failed, been cancelled or been stopped before);
// observers still see that call end, and every source is still stopped."
func TestReview68GoexitFailsTheRun(t *testing.T) {
	type scenario struct {
		build func(r *r68GoexitRig) stage.Stream[int]
		sink  string // "slice" (default), "cancel", "errstop"
		want  string // "goexit" (default), "canceled", "failfast", "nil"
	}
	exitAt := func(v int) {
		if v == 20 {
			runtime.Goexit()
		}
	}
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	// exitAfterEnd: items from 20 on wait for the run's end, then Goexit.
	exitAfterEnd := func(r *r68GoexitRig) stage.Stream[int] {
		return stage.Map(r.source(100, nil), func(ctx context.Context, v int) (int, error) {
			if v >= 20 {
				<-ctx.Done()
				runtime.Goexit()
			}
			return v, nil
		}, stage.Workers(4), stage.Buffer(1))
	}
	scenarios := map[string]scenario{
		"map": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(r.source(100, nil), func(_ context.Context, v int) (int, error) { exitAt(v); return v, nil }, stage.Workers(4), stage.Buffer(1))
		}},
		"map ordered": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(r.source(100, nil), func(_ context.Context, v int) (int, error) { exitAt(v); return v, nil }, stage.Workers(4), stage.Ordered())
		}},
		"map keyby": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(r.source(100, nil), func(_ context.Context, v int) (int, error) { exitAt(v); return v, nil },
				stage.Workers(4), stage.KeyBy(func(v int) int { return v % 3 }))
		}},
		"filter": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Filter(r.source(100, nil), func(_ context.Context, v int) (bool, error) { exitAt(v); return true, nil }, stage.Workers(4), stage.Buffer(1))
		}},
		"flatmap": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.FlatMap(r.source(100, nil), func(_ context.Context, v int) ([]int, error) { exitAt(v); return []int{v}, nil }, stage.Workers(4), stage.Buffer(1))
		}},
		"apply after emit": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Apply(r.source(100, nil), func(_ context.Context, v int, emit func(int) bool) error {
				emit(v)
				exitAt(v)
				return nil
			}, stage.Workers(4), stage.Buffer(1))
		}},
		"concurrent": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Concurrent(stage.Map(r.source(100, nil), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
				return func(context.Context) (int, error) { exitAt(v); return v, nil }, nil
			}, stage.Workers(1)), stage.Workers(4), stage.Buffer(1))
		}},
		"source next": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(r.source(100, exitAt), id, stage.Workers(4), stage.Buffer(1))
		}},
		"handle": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(r.source(100, nil), r68FailEvery3, stage.Workers(4), stage.Buffer(1),
				stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
					if e.Index == 21 {
						runtime.Goexit()
					}
					return nil
				})))
		}},
		"keyby key": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(r.source(100, nil), id, stage.Workers(4), stage.KeyBy(func(v int) int { exitAt(v); return v % 3 }))
		}},
		"retryif predicate": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(r.source(100, nil), r68FailEvery3, stage.Workers(4), stage.Buffer(1), stage.OnError(stage.Forward),
				stage.RetryIf(2, 0, func(err error) bool {
					if strings.HasPrefix(err.Error(), "item 21:") {
						runtime.Goexit()
					}
					return false
				}))
		}},
		"indexed at": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(stage.Indexed(100, func(i int) int { exitAt(i); return i }), id, stage.Workers(4), stage.Buffer(1))
		}},
		"seq under a stage": {build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(source.Seq(func(yield func(int) bool) {
				defer r.stops.Add(1) // the iterator is stopped: its deferred calls run
				for i := range 100 {
					exitAt(i)
					if !yield(i) {
						return
					}
				}
			}), id, stage.Workers(4), stage.Buffer(1))
		}},
		"after cancel": {sink: "cancel", want: "canceled", build: exitAfterEnd},
		"after failfast": {want: "failfast", build: func(r *r68GoexitRig) stage.Stream[int] {
			return stage.Map(r.source(100, nil), func(ctx context.Context, v int) (int, error) {
				switch {
				case v == 19:
					return 0, r68ErrBoom
				case v >= 20:
					<-ctx.Done()
					runtime.Goexit()
				}
				return v, nil
			}, stage.Workers(4), stage.Buffer(1))
		}},
		"after errstop": {sink: "errstop", want: "nil", build: exitAfterEnd},
	}
	runcheck.InChildTest(t, func(t *testing.T) {
		for name, sc := range scenarios {
			t.Run(name, func(t *testing.T) {
				var rig r68GoexitRig
				ctx, cancel := context.WithCancel(stage.Observe(context.Background(), &rig.obs))
				defer cancel()
				s := sc.build(&rig)
				var err error
				returned := false
				runcheck.Run(t, name, func() {
					switch sc.sink {
					case "cancel", "errstop":
						n := 0
						err = sink.ForEach(ctx, s, func(context.Context, int) error {
							n++
							if n == 10 {
								if sc.sink == "errstop" {
									return stage.ErrStop
								}
								cancel()
							}
							return nil
						})
					default:
						_, err = sink.Slice(ctx, s)
					}
					returned = true
				})
				if !returned {
					t.Fatalf("the sink did not return")
				}
				switch sc.want {
				case "", "goexit":
					if !errors.Is(err, stage.ErrGoexit) {
						t.Errorf("err %v, want stage.ErrGoexit", err)
					}
				case "canceled":
					if !errors.Is(err, context.Canceled) || errors.Is(err, stage.ErrGoexit) {
						t.Errorf("err %v, want context.Canceled (cancelled before the Goexit)", err)
					}
				case "failfast":
					if !errors.Is(err, r68ErrBoom) || errors.Is(err, stage.ErrGoexit) {
						t.Errorf("err %v, want the FailFast error that came first", err)
					}
				case "nil":
					if err != nil {
						t.Errorf("err %v, want nil (stopped with ErrStop first)", err)
					}
				}
				if name != "indexed at" && rig.stops.Load() != 1 {
					t.Errorf("the source was stopped %d times, want once", rig.stops.Load())
				}
				rig.obs.mu.Lock()
				defer rig.obs.mu.Unlock()
				for k, w := range rig.obs.watchers {
					if w.received.Load() != w.finished.Load() || w.closed.Load() != 1 {
						t.Errorf("stage %s: %d received, %d finished, closed %d: observers must see every call end",
							rig.obs.infos[k].Name, w.received.Load(), w.finished.Load(), w.closed.Load())
					}
				}
			})
		}
	})
}

// ErrGoexit doc: "A function that calls Goexit on the sink's own goroutine
// ends that goroutine: the sink does not return, as with any function, and
// the run's goroutines exit." (The sink's callback; a stage over a single
// item.) The iterator of a Seq source is stopped too.
func TestReview68GoexitOnTheSinksGoroutine(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, name := range []string{"foreach callback", "all body", "single item map", "reduce"} {
			t.Run(name, func(t *testing.T) {
				var stopped atomic.Bool
				seq := source.Seq(func(yield func(int) bool) {
					defer stopped.Store(true)
					for i := 0; ; i++ {
						if !yield(i) {
							return
						}
					}
				})
				id := func(ctx context.Context, v int) (int, error) {
					if v > 5 {
						<-ctx.Done()
					}
					return v, nil
				}
				_, before := runcheck.Goroutines()
				done := make(chan bool)
				go func() {
					returned := false
					defer func() { done <- returned }()
					ctx := context.Background()
					switch name {
					case "foreach callback":
						_ = sink.ForEach(ctx, stage.Map(seq, id, stage.Workers(4), stage.Buffer(1)), func(_ context.Context, v int) error {
							if v == 3 {
								runtime.Goexit()
							}
							return nil
						})
					case "all body":
						for v := range sink.All(ctx, stage.Map(seq, id, stage.Workers(4), stage.Buffer(1))) {
							if v == 3 {
								runtime.Goexit()
							}
						}
					case "reduce":
						_, _ = sink.Reduce(ctx, stage.Map(seq, id, stage.Workers(4), stage.Buffer(1)), 0, func(a, v int) int {
							if v == 3 {
								runtime.Goexit()
							}
							return a + v
						})
					case "single item map":
						stopped.Store(true)
						_, _ = sink.Slice(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
							runtime.Goexit()
							return 0, nil
						}))
					}
					returned = true
				}()
				if <-done {
					t.Fatalf("the sink returned after a Goexit on its goroutine")
				}
				r68WaitFor(t, "the run's goroutines exit", func() bool { return len(runcheck.LeakedSince(before)) == 0 })
				if !stopped.Load() {
					t.Errorf("the Seq source was not stopped")
				}
			})
		}
	})
}
