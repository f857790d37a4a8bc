package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r14Watchdog runs f and fails the test if it does not return within a long
// time: a hang detector, never a timing assertion.
func r14Watchdog(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("hang: the pipeline did not return within 60 s")
	}
}

// r14KeyGuard checks per-key serialisation and per-key input order.
type r14KeyGuard struct {
	mu     sync.Mutex
	active map[int]int
	last   map[int]int // last index started per key
	errs   []string
}

func newR14KeyGuard() *r14KeyGuard {
	return &r14KeyGuard{active: map[int]int{}, last: map[int]int{}}
}

// enter records the start of a call for item i of key k; retry says that the
// same item may be called again.
func (g *r14KeyGuard) enter(k, i int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.active[k]++
	if g.active[k] > 1 {
		g.errs = append(g.errs, fmt.Sprintf("key %d: %d calls at once (item %d)", k, g.active[k], i))
	}
	if last, ok := g.last[k]; ok && i < last {
		g.errs = append(g.errs, fmt.Sprintf("key %d: item %d called after item %d", k, i, last))
	}
	g.last[k] = i
}

func (g *r14KeyGuard) exit(k int) {
	g.mu.Lock()
	g.active[k]--
	g.mu.Unlock()
}

func (g *r14KeyGuard) check(t *testing.T) {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, e := range g.errs {
		if i == 5 {
			t.Errorf("... %d more", len(g.errs)-5)
			break
		}
		t.Error(e)
	}
}

func r14Jitter() {
	if rand.IntN(3) == 0 {
		time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
	}
}

var errR14Fail = errors.New("r14 fail")

// KeyBy + Ordered + Forward + a panicking key function: every item is in its
// place, a panic in key becomes a forwarded *Error wrapping a *PanicError with
// the item's index and the function is not called for it; per-key order and
// serialisation hold; and a break out of All ends the run cleanly.
func TestReview14KeyByOrderedForwardPanicKey(t *testing.T) {
	const n = 300
	for _, workers := range []int{1, 3, 8, -1} {
		for _, brk := range []int{-1, 0, 1, 150} {
			t.Run(fmt.Sprintf("workers=%d/break=%d", workers, brk), func(t *testing.T) {
				g := newR14KeyGuard()
				var calledPanicItem atomic.Bool
				key := func(i int) int {
					if i == 37 || i == 38 {
						panic(fmt.Sprintf("key panic %d", i))
					}
					return i % 5
				}
				s := stage.Map(source.Slice(ints(n)), func(_ context.Context, i int) (int, error) {
					if i == 37 || i == 38 {
						calledPanicItem.Store(true)
					}
					k := i % 5
					g.enter(k, i)
					defer g.exit(k)
					r14Jitter()
					if i%11 == 0 {
						return 0, errR14Fail
					}
					return i * 10, nil
				}, stage.Workers(workers), stage.Ordered(), stage.KeyBy(key), stage.OnError(stage.Forward), stage.Name("kb"))
				r14Watchdog(t, func() {
					pos := 0
					for v, err := range sink.All(context.Background(), s) {
						i := pos
						pos++
						switch {
						case i == 37 || i == 38:
							var se *stage.Error
							var pe *stage.PanicError
							if !errors.As(err, &se) || !errors.As(err, &pe) {
								t.Errorf("item %d: want *Error wrapping *PanicError, got %v, %v", i, v, err)
							} else if se.Index != i || se.Stage != "kb" || se.Input != i {
								t.Errorf("item %d: *Error has Stage %q Index %d Input %v", i, se.Stage, se.Index, se.Input)
							}
						case i%11 == 0:
							var se *stage.Error
							if !errors.As(err, &se) || !errors.Is(err, errR14Fail) || se.Index != i || se.Attempts != 1 {
								t.Errorf("item %d: want forwarded *Error Index %d, got %v %v", i, i, v, err)
							}
						default:
							if err != nil || v != i*10 {
								t.Errorf("item %d: got %v, %v; want %d", i, v, err, i*10)
							}
						}
						if i == brk {
							break
						}
					}
					if brk < 0 && pos != n {
						t.Errorf("saw %d items, want %d", pos, n)
					}
				})
				if calledPanicItem.Load() {
					t.Error("the function was called for an item whose key panicked")
				}
				g.check(t)
			})
		}
	}
}

// KeyBy per-key order over a waiting source (Func): items of one key are
// called in the order the stage takes them, one at a time, also when every
// item first fails and is retried.
func TestReview14KeyByRetrySerialised(t *testing.T) {
	const n = 400
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			g := newR14KeyGuard()
			var mu sync.Mutex
			attempts := map[int]int{}
			var next atomic.Int64
			src := source.Func(func(ctx context.Context) (int, error) {
				i := int(next.Add(1) - 1)
				if i >= n {
					return 0, errEOF
				}
				return i, nil
			})
			opts := []stage.Option{stage.Workers(6), stage.KeyBy(func(i int) int { return i % 4 }), stage.Retry(3, 0)}
			if ordered {
				opts = append(opts, stage.Ordered())
			}
			s := stage.Map(src, func(_ context.Context, i int) (int, error) {
				k := i % 4
				g.enter(k, i)
				defer g.exit(k)
				mu.Lock()
				attempts[i]++
				a := attempts[i]
				mu.Unlock()
				r14Jitter()
				if i%3 == 0 && a < 3 {
					return 0, errR14Fail
				}
				return i, nil
			}, opts...)
			var got []int
			r14Watchdog(t, func() {
				var err error
				got, err = sink.Slice(context.Background(), s)
				if err != nil {
					t.Errorf("sink: %v", err)
				}
			})
			if len(got) != n {
				t.Fatalf("got %d items, want %d", len(got), n)
			}
			if ordered {
				for i, v := range got {
					if v != i {
						t.Fatalf("ordered output %d is %d", i, v)
					}
				}
			}
			// per-key output order
			last := map[int]int{}
			for _, v := range got {
				if l, ok := last[v%4]; ok && v < l {
					t.Errorf("key %d: output %d after %d", v%4, v, l)
				}
				last[v%4] = v
			}
			g.check(t)
		})
	}
}

// KeyBy keeps the stage's read-ahead: with every item of the same key and a
// sink that holds the first item, the stage takes at most workers+buffer items
// ahead of its consumer (Ordered: 2×workers+buffer), plus the one handed to
// the sink's callback.
func TestReview14KeyByReadAheadOneKey(t *testing.T) {
	for _, c := range []struct {
		workers, buffer int
		ordered         bool
	}{{4, 0, false}, {4, 2, false}, {1, 0, false}, {4, 0, true}, {3, 1, true}} {
		t.Run(fmt.Sprintf("w=%d/b=%d/ordered=%v", c.workers, c.buffer, c.ordered), func(t *testing.T) {
			var taken atomic.Int64
			src := stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
				i := 0
				return func(ctx context.Context) (int, error) {
					if i >= 1000 {
						return 0, errEOF
					}
					i++
					taken.Add(1)
					return i - 1, nil
				}, nil
			})
			opts := []stage.Option{stage.Workers(c.workers), stage.Buffer(c.buffer), stage.KeyBy(func(int) string { return "same" })}
			bound := int64(c.workers + c.buffer + 1)
			if c.ordered {
				opts = append(opts, stage.Ordered())
				bound = int64(2*c.workers + c.buffer + 1)
			}
			s := stage.Map(src, double, opts...)
			release := make(chan struct{})
			var maxSeen atomic.Int64
			r14Watchdog(t, func() {
				first := true
				err := sink.ForEach(context.Background(), s, func(ctx context.Context, v int) error {
					if first {
						first = false
						// give the pipeline every chance to read ahead
						for range 50 {
							time.Sleep(2 * time.Millisecond)
							if x := taken.Load(); x > maxSeen.Load() {
								maxSeen.Store(x)
							}
						}
						close(release)
						return stage.ErrStop
					}
					return nil
				})
				if err != nil {
					t.Errorf("sink: %v", err)
				}
			})
			if m := maxSeen.Load(); m > bound {
				t.Errorf("the source gave %d items while the sink held the first; bound %d", m, bound)
			}
		})
	}
}

// Apply + Ordered + KeyBy: an item whose turn has come may wait for its own
// outputs to be consumed (Apply's promise), KeyBy notwithstanding.
func TestReview14KeyByOrderedApplyWaitsForOwnOutputs(t *testing.T) {
	for _, buffer := range []int{0, 1} {
		t.Run(fmt.Sprintf("buffer=%d", buffer), func(t *testing.T) {
			consumed := make(chan int, 1)
			const outs = 40
			s := stage.Apply(source.Slice(ints(6)), func(ctx context.Context, i int, emit func(int) bool) error {
				if i != 0 {
					return nil
				}
				for j := range outs {
					if !emit(j) {
						return ctx.Err()
					}
					select {
					case got := <-consumed:
						if got != j {
							return fmt.Errorf("consumed %d, want %d", got, j)
						}
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			}, stage.Workers(2), stage.Ordered(), stage.Buffer(buffer), stage.KeyBy(func(i int) int { return i % 2 }))
			r14Watchdog(t, func() {
				n := 0
				err := sink.ForEach(context.Background(), s, func(ctx context.Context, v int) error {
					if v != n {
						return fmt.Errorf("output %d is %d", n, v)
					}
					n++
					consumed <- v
					return nil
				})
				if err != nil || n != outs {
					t.Errorf("sink: %v after %d outputs", err, n)
				}
			})
		})
	}
}

// FailFast: "no new item starts". With one worker the calls are sequential,
// so a call that starts after the failing call returned started after the
// failure (with KeyBy: the worker that finished the item takes the next
// waiting item of the same key itself).
func TestReview14FailFastNoNewItemAfterFailureOneWorker(t *testing.T) {
	type variant struct {
		name string
		opts []stage.Option
	}
	for _, v := range []variant{
		{"plain", nil},
		{"ordered", []stage.Option{stage.Ordered()}},
		{"keyby", []stage.Option{stage.KeyBy(func(int) int { return 0 })}},
		{"keyby-ordered", []stage.Option{stage.KeyBy(func(int) int { return 0 }), stage.Ordered()}},
		{"buffer", []stage.Option{stage.Buffer(4)}},
	} {
		t.Run(v.name, func(t *testing.T) {
			for range 50 {
				var after atomic.Int64
				var failed atomic.Bool
				opts := append([]stage.Option{stage.Workers(1)}, v.opts...)
				s := stage.Map(source.Slice(ints(20)), func(ctx context.Context, i int) (int, error) {
					if failed.Load() {
						after.Add(1)
					}
					if i == 3 {
						failed.Store(true)
						return 0, errR14Fail
					}
					return i, nil
				}, opts...)
				r14Watchdog(t, func() {
					_, err := sink.Slice(context.Background(), s)
					if !errors.Is(err, errR14Fail) {
						t.Errorf("sink: %v", err)
					}
				})
				if a := after.Load(); a != 0 {
					t.Fatalf("%d calls started after the FailFast failure of item 3 (one worker)", a)
				}
			}
		})
	}
}
