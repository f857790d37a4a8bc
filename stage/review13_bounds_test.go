package stage_test

// Review 13: Workers bounds, read-ahead bounds, ordering and Error.Index.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r13Gauge counts calls in flight and remembers the most seen at once.
type r13Gauge struct{ cur, max atomic.Int64 }

func (g *r13Gauge) enter() {
	c := g.cur.Add(1)
	for {
		m := g.max.Load()
		if c <= m || g.max.CompareAndSwap(m, c) {
			return
		}
	}
}
func (g *r13Gauge) leave() { g.cur.Add(-1) }

// r13Work is mostly cheap, now and then slow (over the ~20 µs that turns a
// fused stage back into goroutines of its own), so that a stage that moves
// its places between its own goroutines and its consumer's does so often.
func r13Work(v int) {
	switch v % 9 {
	case 0, 4:
		time.Sleep(50 * time.Microsecond)
	case 7:
		runtime.Gosched()
	}
}

func r13Sources(n int) map[string]func() stage.Stream[int] {
	return map[string]func() stage.Stream[int]{
		"slice":   func() stage.Stream[int] { return source.Slice(ints(n)) },
		"indexed": func() stage.Stream[int] { return stage.Indexed(n, func(i int) int { return i }) },
		"func": func() stage.Stream[int] {
			return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				i := 0
				return func(context.Context) (int, error) {
					if i == n {
						return 0, io.EOF
					}
					i++
					return i - 1, nil
				}, nil
			})
		},
		"neverwaits": func() stage.Stream[int] {
			return stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				i := 0
				return func(context.Context) (int, error) {
					if i == n {
						return 0, io.EOF
					}
					i++
					return i - 1, nil
				}, nil
			}))
		},
		"chan": func() stage.Stream[int] {
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			close(ch)
			return source.Chan(ch)
		},
	}
}

// Doc: "Workers(n) runs at most n calls at once" — also while a cheap stage's
// places move between its own goroutines and its consumer's, in a chain of
// three stages of each kind.
func TestReview13WorkersBoundUnderFusing(t *testing.T) {
	const n = 600
	for sname, mk := range r13Sources(n) {
		for _, w := range []int{1, 2, 3, 7} {
			for _, ordered := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/w=%d/ordered=%v", sname, w, ordered), func(t *testing.T) {
					var g [3]r13Gauge
					opts := func(extra ...stage.Option) []stage.Option {
						o := append([]stage.Option{stage.Workers(w)}, extra...)
						if ordered {
							o = append(o, stage.Ordered())
						}
						return o
					}
					s1 := stage.Map(mk(), func(_ context.Context, v int) (int, error) {
						g[0].enter()
						defer g[0].leave()
						r13Work(v)
						return v, nil
					}, opts()...)
					s2 := stage.Filter(s1, func(_ context.Context, v int) (bool, error) {
						g[1].enter()
						defer g[1].leave()
						r13Work(v + 4)
						return true, nil
					}, opts()...)
					s3 := stage.FlatMap(s2, func(_ context.Context, v int) ([]int, error) {
						g[2].enter()
						defer g[2].leave()
						r13Work(v + 7)
						return []int{v}, nil
					}, opts()...)
					var count int
					var err error
					runcheck.Run(t, "chain", func() { count, err = sink.Count(context.Background(), s3) })
					if err != nil || count != n {
						t.Fatalf("count %d err %v", count, err)
					}
					for i := range g {
						if m := g[i].max.Load(); m > int64(w) {
							t.Errorf("stage %d: %d calls at once, Workers(%d)", i+1, m, w)
						}
					}
				})
			}
		}
	}
}

// Doc (Workers, README "Bounded concurrency"): "Add Buffer(1) to keep every
// worker a goroutine of the stage's own: the stage's function may then wait
// ... for its peers"; "(An ordered stage of more workers, and Workers(-1),
// keep their calls in goroutines of their own.)"; "KeyBy turns off the
// running of the stage in its consumer's goroutines"; "with enough input and
// a consumer that keeps up exactly n"; "a large n starts about as many
// goroutines as the input has items, up to n". A barrier of n calls must
// therefore open. Runs in a child process: a broken promise deadlocks.
func TestReview13BarrierOfNCalls(t *testing.T) {
	type cfg struct {
		name  string
		n     int // barrier size = workers
		items int
		src   string
		opts  []stage.Option
	}
	var cfgs []cfg
	for _, src := range []string{"slice", "func", "neverwaits", "chan", "indexed"} {
		cfgs = append(cfgs,
			cfg{"buffer1", 4, 40, src, []stage.Option{stage.Workers(4), stage.Buffer(1)}},
			cfg{"buffer1-ordered", 4, 40, src, []stage.Option{stage.Workers(4), stage.Buffer(1), stage.Ordered()}},
			cfg{"ordered-nobuffer", 4, 40, src, []stage.Option{stage.Workers(4), stage.Ordered()}},
			cfg{"keyby-nobuffer", 4, 40, src, []stage.Option{stage.Workers(4), stage.KeyBy(func(v int) int { return v })}},
			cfg{"unlimited", 30, 30, src, []stage.Option{stage.Workers(-1)}},
			cfg{"wide-buffer1", 100, 100, src, []stage.Option{stage.Workers(100), stage.Buffer(1)}},
			cfg{"wider-than-64-unlimited", 130, 130, src, []stage.Option{stage.Workers(-1)}},
		)
	}
	for _, c := range cfgs {
		t.Run(c.name+"/"+c.src, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				var mu sync.Mutex
				arrived := 0
				gate := make(chan struct{})
				barrier := func(ctx context.Context) error {
					mu.Lock()
					arrived++
					g := gate
					if arrived == c.n {
						arrived = 0
						close(gate)
						gate = make(chan struct{})
					}
					mu.Unlock()
					select {
					case <-g:
						return nil
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // watchdog only
				defer cancel()
				got, err := sink.Slice(ctx, stage.Map(r13Sources(c.items)[c.src](), func(ctx context.Context, v int) (int, error) {
					return v, barrier(ctx)
				}, c.opts...))
				if err != nil || len(got) != c.items {
					t.Fatalf("barrier of %d calls: %d results, err %v (fewer than n calls ran at once)", c.n, len(got), err)
				}
			})
		})
	}
}

// Doc: "Ordering. ... input order with Ordered() or with Workers(1), kept
// across stages that all keep it"; FlatMap "with Ordered, all outputs of one
// item leave before those of the next"; KeyBy "with Ordered, the outputs
// follow the input order across keys too".
func TestReview13OrderedUnderRandomDelays(t *testing.T) {
	const n = 400
	delay := func(v int) {
		if rand.IntN(4) == 0 {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
		} else if rand.IntN(2) == 0 {
			runtime.Gosched()
		}
	}
	for sname, mk := range r13Sources(n) {
		for _, w := range []int{2, 5, -1} {
			t.Run(fmt.Sprintf("%s/w=%d", sname, w), func(t *testing.T) {
				s1 := stage.Map(mk(), func(_ context.Context, v int) (int, error) { delay(v); return v, nil },
					stage.Workers(w), stage.Ordered())
				s2 := stage.FlatMap(s1, func(_ context.Context, v int) ([]int, error) {
					delay(v)
					out := make([]int, v%3)
					for j := range out {
						out[j] = v*10 + j
					}
					return out, nil
				}, stage.Workers(w), stage.Ordered(), stage.Buffer(2))
				s3 := stage.Map(s2, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
				s4 := stage.Apply(s3, func(_ context.Context, v int, emit func(int) bool) error {
					delay(v)
					emit(v)
					delay(v)
					emit(-v)
					return nil
				}, stage.Workers(w), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 7 }))
				var got []int
				var err error
				runcheck.Run(t, "ordered", func() { got, err = sink.Slice(context.Background(), s4) })
				if err != nil {
					t.Fatal(err)
				}
				var want []int
				for v := range n {
					for j := range v % 3 {
						want = append(want, v*10+j, -(v*10 + j))
					}
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("order broken: got %d items, first difference at %d", len(got), r13FirstDiff(got, want))
				}
			})
		}
	}
}

func r13FirstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Doc (Apply): "With Ordered, an item's outputs wait in memory until the
// items before it have left; the moment they have, the outputs waiting go to
// the queue, even while f still runs, and from then on emit queues them
// directly, so an item may emit without end once its turn has come, and may
// wait for its own outputs to be consumed." Item 1 starts emitting far more
// than the read-ahead while item 0 has not emitted yet (item 0 starts once
// item 1 emitted its first output; item 1's further outputs wait for room
// in the window until item 0 has left); then item 0 emits as many.
func TestReview13OrderedApplyLaterItemEmitsFirst(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const many = 5000
		item1Done := make(chan struct{})                                         // item 1 emitted its first output
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // watchdog only
		defer cancel()
		consumed := 0
		err := sink.ForEach(ctx, stage.Apply(source.Slice([]int{0, 1, 2}), func(ctx context.Context, v int, emit func(int) bool) error {
			if v == 0 {
				select {
				case <-item1Done:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			for j := range many {
				if !emit(v*many + j) {
					return ctx.Err()
				}
				if v == 1 && j == 0 {
					close(item1Done)
				}
			}
			return nil
		}, stage.Workers(2), stage.Ordered()), func(_ context.Context, x int) error {
			if x != consumed {
				return fmt.Errorf("output %d arrived at position %d", x, consumed)
			}
			consumed++
			return nil
		})
		if err != nil || consumed != 3*many {
			t.Fatalf("err %v, consumed %d of %d", err, consumed, 3*many)
		}
	})
}

// Doc (Error.Index): "Index is the item's 0-based position in the stage's
// input. Forwarded errors count as items. When the stage's input has no
// defined order (the output of an unordered stage with more than one worker,
// or of Merge), Index is the position in which the stage received the item."
// Over a slice, a generator, or the output of a Workers(1) or Ordered stage,
// the order is defined: Index is the position, whatever the workers.
func TestReview13ErrorIndexIsInputPosition(t *testing.T) {
	const n = 300
	for sname, mk := range r13Sources(n) {
		for _, up := range []string{"none", "w1", "ordered"} {
			for _, w := range []int{1, 8, -1} {
				t.Run(fmt.Sprintf("%s/%s/w=%d", sname, up, w), func(t *testing.T) {
					in := mk()
					firstFails := func(v int) bool { return v%10 == 3 }
					if up != "none" {
						o := []stage.Option{stage.Workers(1), stage.OnError(stage.Forward)}
						if up == "ordered" {
							o = []stage.Option{stage.Workers(6), stage.Ordered(), stage.OnError(stage.Forward)}
						}
						in = stage.Map(in, func(_ context.Context, v int) (int, error) {
							if firstFails(v) {
								return 0, errors.New("upstream")
							}
							r13Work(v)
							return v, nil
						}, o...)
					}
					s := stage.Map(in, func(_ context.Context, v int) (int, error) {
						r13Work(v)
						if v%10 == 6 {
							return 0, errors.New("here")
						}
						return v, nil
					}, stage.Workers(w), stage.OnError(stage.Forward))
					var upstream, here int
					runcheck.Run(t, "index", func() {
						for _, err := range sink.All(context.Background(), s) {
							if err == nil {
								continue
							}
							var se *stage.Error
							if !errors.As(err, &se) {
								t.Errorf("forwarded %v is not a *stage.Error", err)
								continue
							}
							if se.Index != se.Input.(int) {
								t.Errorf("stage %s: item %v has Index %d, want its position %d", se.Stage, se.Input, se.Index, se.Input)
							}
							if se.Stage == "map#1" && up != "none" {
								upstream++
							} else {
								here++
							}
						}
					})
					if here != n/10 || (up != "none" && upstream != n/10) {
						t.Fatalf("errors: %d here, %d upstream", here, upstream)
					}
				})
			}
		}
	}
}

// Doc: "A stage takes an item only when a worker is free: no stage is more
// than its workers plus its buffer ahead of its consumer. An Ordered() stage
// takes at most 2×workers+buffer items that its consumer has not yet taken".
// Run: the batch counts in the read-ahead until f has seen all of it, and an
// item handed to Run while it waited "does not count, so the pipeline may
// then hold one item more". KeyBy: "an item waiting for its key holds one of
// the stage's read-ahead places". So items pulled from the source never
// exceed items f has seen + read-ahead + 1. The sink stalls now and then so
// that the pipeline runs ahead as far as it can; the check is made at every
// pull (a violation is a violation however fast the machine is).
func TestReview13ReadAheadBound(t *testing.T) {
	type cfg struct {
		name  string
		opts  []stage.Option
		bound int64
	}
	cfgs := []cfg{
		{"w1", []stage.Option{stage.Workers(1)}, 1},
		{"w3", []stage.Option{stage.Workers(3)}, 3},
		{"w3-buffer2", []stage.Option{stage.Workers(3), stage.Buffer(2)}, 5},
		{"w3-ordered", []stage.Option{stage.Workers(3), stage.Ordered()}, 6},
		{"w3-ordered-buffer2", []stage.Option{stage.Workers(3), stage.Ordered(), stage.Buffer(2)}, 8},
		{"w3-samekey", []stage.Option{stage.Workers(3), stage.KeyBy(func(int) int { return 0 })}, 3},
		{"w3-samekey-ordered", []stage.Option{stage.Workers(3), stage.Ordered(), stage.KeyBy(func(int) int { return 0 })}, 6},
		{"w3-twokeys-buffer1", []stage.Option{stage.Workers(3), stage.Buffer(1), stage.KeyBy(func(v int) int { return v % 2 })}, 4},
		{"w64", []stage.Option{stage.Workers(64)}, 64},
	}
	for _, c := range cfgs {
		for _, neverWaits := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/neverwaits=%v", c.name, neverWaits), func(t *testing.T) {
				const n = 400
				var pulled, seen atomic.Int64
				var worst atomic.Int64
				var src stage.Stream[int] = stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
						if i == n {
							return 0, io.EOF
						}
						p := pulled.Add(1)
						if over := p - seen.Load() - c.bound - 1; over > worst.Load() {
							worst.Store(over)
						}
						i++
						return i - 1, nil
					}, nil
				})
				if neverWaits {
					src = stage.NeverWaits(src)
				}
				s := stage.Map(src, func(_ context.Context, v int) (int, error) {
					if v%5 == 0 {
						time.Sleep(20 * time.Microsecond)
					}
					return v, nil
				}, c.opts...)
				var err error
				runcheck.Run(t, "readahead", func() {
					err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
						seen.Add(1)
						if v%50 == 0 { // a slow commit: let the pipeline run ahead
							time.Sleep(2 * time.Millisecond)
						}
						return nil
					})
				})
				if err != nil {
					t.Fatal(err)
				}
				if w := worst.Load(); w > 0 {
					t.Fatalf("the source was pulled %d items beyond the read-ahead bound (%d + 1) ahead of what the sink had seen", w, c.bound)
				}
			})
		}
	}
}
