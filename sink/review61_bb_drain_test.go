package sink_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r61Inf is an endless AckSource that records what it handed out and how
// each item's Ack was told.
type r61Inf struct {
	mu    sync.Mutex
	taken int
	done  map[int]int
	errs  map[int]error
}

func (a *r61Inf) src(waits bool) stage.Stream[int] {
	a.done = map[int]int{}
	a.errs = map[int]error{}
	s := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		return func(ctx context.Context) (int, stage.Ack, error) {
			if waits && ctx.Err() != nil {
				return 0, nil, ctx.Err()
			}
			a.mu.Lock()
			i := a.taken
			a.taken++
			a.mu.Unlock()
			return i, r61InfAck{a, i}, nil
		}, nil
	})
	if !waits {
		s = stage.NeverWaits(s)
	}
	return s
}

type r61InfAck struct {
	a *r61Inf
	v int
}

func (k r61InfAck) Done(err error) {
	k.a.mu.Lock()
	defer k.a.mu.Unlock()
	k.a.done[k.v]++
	if err != nil {
		k.a.errs[k.v] = err
	}
}

// stage.Until: "the sources upstream of Until take no new item ..., while
// every item they already produced goes on through the stages: calls in
// flight finish, Batch flushes its partial batch, and the sink returns nil
// once the last of them has arrived, as at the end of the input." README:
// "Nothing taken is lost." stage.Ack: "Done(nil) when ... the sink committed it".
// The stop is cancelled from the sink's callback after the 5th value.
func TestReview61BBDrainExactlyOnce(t *testing.T) {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	shapes := map[string]func(stage.Stream[int]) stage.Stream[int]{
		"bare": func(s stage.Stream[int]) stage.Stream[int] { return s },
		"map4": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, id, stage.Workers(4)) },
		"map4-ordered-buf": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(4), stage.Ordered(), stage.Buffer(3))
		},
		"batch-unbatch": func(s stage.Stream[int]) stage.Stream[int] { return stage.Unbatch(stage.Batch(s, 4, 0)) },
		"map-batch-map-unbatch": func(s stage.Stream[int]) stage.Stream[int] {
			b := stage.Batch(stage.Map(s, id, stage.Workers(3)), 3, 0)
			return stage.Unbatch(stage.Map(b, func(_ context.Context, v []int) ([]int, error) { return v, nil }, stage.Workers(2)))
		},
		"keyby": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(3), stage.KeyBy(func(v int) int { return v % 2 }))
		},
		"keyby-ordered": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(3), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 3 }))
		},
		"flatmap": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.FlatMap(s, func(_ context.Context, v int) ([]int, error) { return []int{v}, nil }, stage.Workers(2))
		},
		"apply-unlimited": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Apply(s, func(_ context.Context, v int, emit func(int) bool) error { emit(v); return nil }, stage.Workers(-1))
		},
		"tee-merge": func(s stage.Stream[int]) stage.Stream[int] {
			b := stage.Tee(s, 2)
			return stage.Merge(b[0], stage.Filter(b[1], func(context.Context, int) (bool, error) { return false, nil }, stage.Workers(2)))
		},
	}
	for name, shape := range shapes {
		for _, waits := range []bool{false, true} {
			for _, sk := range []string{"foreach", "chan", "all"} {
				t.Run(fmt.Sprintf("%s/waits=%v/%s", name, waits, sk), func(t *testing.T) {
					a := &r61Inf{}
					stop, cancel := context.WithCancel(context.Background())
					defer cancel()
					s := shape(stage.Until(a.src(waits), stop))
					var got []int
					var err error
					runcheck.Run(t, "run", func() {
						switch sk {
						case "foreach":
							err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
								got = append(got, v)
								if len(got) == 5 {
									cancel()
								}
								return nil
							})
						case "all":
							for v, e := range sink.All(context.Background(), s) {
								if e != nil {
									err = e
									break
								}
								got = append(got, v)
								if len(got) == 5 {
									cancel()
								}
							}
						case "chan":
							out := make(chan int)
							var wg sync.WaitGroup
							wg.Add(1)
							go func() {
								defer wg.Done()
								for v := range out {
									got = append(got, v)
									if len(got) == 5 {
										cancel()
									}
								}
							}()
							err = sink.Chan(context.Background(), s, out)
							close(out)
							wg.Wait()
						}
					})
					if err != nil {
						t.Fatalf("sink err %v; want nil (drain)", err)
					}
					a.mu.Lock()
					defer a.mu.Unlock()
					sort.Ints(got)
					if len(got) != a.taken {
						t.Fatalf("delivered %d values, source handed out %d", len(got), a.taken)
					}
					for i, v := range got {
						if v != i {
							t.Fatalf("delivered %v: not each taken item exactly once", got)
						}
						if a.done[v] != 1 || a.errs[v] != nil {
							t.Fatalf("item %d committed but told %d times (%v)", v, a.done[v], a.errs[v])
						}
					}
				})
			}
		}
	}
}
