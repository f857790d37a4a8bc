package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r55Acks records, per item of one run, how its acknowledgement was told.
type r55Acks struct {
	mu     sync.Mutex
	n      int
	done   []int
	errs   []error
	stops  atomic.Int64
	source stage.Stream[int]
}

func r55NewAcks(n int) *r55Acks {
	a := &r55Acks{n: n, done: make([]int, n), errs: make([]error, n)}
	a.source = stage.NeverWaits(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
				if i >= n {
					return 0, nil, io.EOF
				}
				i++
				return i - 1, r55Ack{a, i - 1}, nil
			}, func() {
				a.stops.Add(1)
			}
	}))
	return a
}

type r55Ack struct {
	a *r55Acks
	v int
}

func (k r55Ack) Done(err error) {
	k.a.mu.Lock()
	defer k.a.mu.Unlock()
	k.a.done[k.v]++
	k.a.errs[k.v] = err
}

// check compares the acknowledgements with the items committed: exactly
// those, each told nil once, before the sink returned; none of the others.
func (a *r55Acks) check(committed map[int]bool) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	for v := range a.n {
		switch {
		case committed[v] && (a.done[v] != 1 || a.errs[v] != nil):
			return fmt.Sprintf("committed item %d: Done called %d times, with %v; want once with nil", v, a.done[v], a.errs[v])
		case !committed[v] && a.done[v] != 0:
			return fmt.Sprintf("item %d, never committed (the run stopped early), was told %v (%d times)", v, a.errs[v], a.done[v])
		}
	}
	if a.stops.Load() != 1 {
		return fmt.Sprintf("stop called %d times", a.stops.Load())
	}
	return ""
}

var r55Workers = []int{1, 2, 3, 4, 8, -1}

// TestReview55_EarlyExitAcks attacks (stage.Ack) "Done(nil) when ... the sink
// committed it (its callback returned nil or ErrStop; the item sink.First
// returns, or the one before a break out of sink.All, counts)" and "Done is not
// called when the run ended before the item's fate was known: ... a sink that
// stopped early", and (All) "A panic in the loop body stops the run the same
// way and then continues; its item is not committed, and its acknowledgement
// is not told": over 1..5 items, each Workers, ordered or not, exits at the
// 0th, 1st, 2nd item; and that no goroutine outlives the sink.
func TestReview55_EarlyExitAcks(t *testing.T) {
	for _, exit := range []string{"first", "break", "errstop", "panic", "errstop-wrapped"} {
		for n := 1; n <= 5; n++ {
			for _, w := range r55Workers {
				for _, ordered := range []bool{false, true} {
					for k := 0; k < 3 && k < n; k++ {
						if exit == "first" && k > 0 {
							continue
						}
						label := fmt.Sprintf("%s@%d/n=%d/w=%d/ordered=%v", exit, k, n, w, ordered)
						a := r55NewAcks(n)
						opts := []stage.Option{stage.Workers(w)}
						if ordered {
							opts = append(opts, stage.Ordered())
						}
						s := stage.Map(a.source, func(_ context.Context, x int) (int, error) { return x, nil }, opts...)
						committed := map[int]bool{}
						var order []int
						var err error
						var recovered any
						runcheck.Run(t, label, func() {
							ctx := context.Background()
							switch exit {
							case "first":
								v, ok, e := sink.First(ctx, s)
								err = e
								if ok {
									committed[v] = true
									order = append(order, v)
								}
							case "break", "panic":
								func() {
									defer func() { recovered = recover() }()
									i := 0
									for v, e := range sink.All(ctx, s) {
										if e != nil {
											err = e
											continue
										}
										order = append(order, v)
										if i == k {
											if exit == "panic" {
												panic("r55 body")
											}
											committed[v] = true
											break
										}
										committed[v] = true
										i++
									}
								}()
							default:
								i := 0
								err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
									order = append(order, v)
									committed[v] = true
									if i == k {
										if exit == "errstop-wrapped" {
											return fmt.Errorf("done here: %w", stage.ErrStop)
										}
										return stage.ErrStop
									}
									i++
									return nil
								})
							}
						})
						if err != nil {
							t.Fatalf("%s: err %v", label, err)
						}
						if exit == "panic" && recovered != "r55 body" {
							t.Fatalf("%s: recovered %v, want the body's panic", label, recovered)
						}
						wantLen := k + 1
						if exit == "first" {
							wantLen = 1
						}
						if len(order) != wantLen {
							t.Fatalf("%s: saw %v, want %d items", label, order, wantLen)
						}
						if ordered || w == 1 {
							for i, v := range order {
								if v != i {
									t.Fatalf("%s: saw %v, want input order", label, order)
								}
							}
						}
						if msg := a.check(committed); msg != "" {
							t.Fatalf("%s: %s", label, msg)
						}
					}
				}
			}
		}
	}
}

// TestReview55_FirstIsFirstOfAll attacks (First) "always the first pair of
// `for v, err := range All(ctx, s) { ...; break }`" for tiny ordered runs
// (so that which item comes first is fixed) whose first item fails
// (Forward), succeeds, or whose run fails (FailFast) at item 0, and a source
// that fails right after the first item; the same built stream, run after
// run.
func TestReview55_FirstIsFirstOfAll(t *testing.T) {
	errBoom := errors.New("boom")
	for _, plan := range []string{"ok", "forward0", "failfast0", "source-after-1", "empty"} {
		for n := 1; n <= 4; n++ {
			for _, w := range r55Workers {
				label := fmt.Sprintf("%s/n=%d/w=%d", plan, n, w)
				size := n
				if plan == "empty" {
					size = 0
				}
				src := stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
						if plan == "source-after-1" && i == 1 {
							return 0, errBoom
						}
						if i >= size {
							return 0, io.EOF
						}
						i++
						return i - 1, nil
					}, nil
				}))
				policy := stage.FailFast
				if plan == "forward0" {
					policy = stage.Forward
				}
				s := stage.Map(src, func(_ context.Context, x int) (int, error) {
					if x == 0 && (plan == "forward0" || plan == "failfast0") {
						return 0, errBoom
					}
					return x + 100, nil
				}, stage.Workers(w), stage.Ordered(), stage.OnError(policy))
				for run := range 10 {
					v, ok, err := sink.First(context.Background(), s)
					var av int
					var aerr error
					var any bool
					for x, e := range sink.All(context.Background(), s) {
						av, aerr, any = x, e, true
						break
					}
					if !any && (ok || err != nil) {
						t.Fatalf("%s run %d: All yielded nothing, First gave %v %v %v", label, run, v, ok, err)
					}
					if any && (v != av || ok != (aerr == nil) || (err == nil) != (aerr == nil)) {
						t.Fatalf("%s run %d: First %v %v %v, All's first pair %v %v", label, run, v, ok, err, av, aerr)
					}
					switch plan {
					case "ok", "source-after-1":
						if !ok || v != 100 || err != nil {
							t.Fatalf("%s run %d: First %v %v %v", label, run, v, ok, err)
						}
					case "forward0", "failfast0":
						var se *stage.Error
						if ok || !errors.As(err, &se) || se.Index != 0 || !errors.Is(err, errBoom) {
							t.Fatalf("%s run %d: First %v %v %v", label, run, v, ok, err)
						}
					case "empty":
						if ok || err != nil || any {
							t.Fatalf("%s run %d: First %v %v %v", label, run, v, ok, err)
						}
					}
				}
			}
		}
	}
}

// TestReview55_ChanSinkTiny attacks (Chan) "sends its values on out, in
// arrival order, blocking while out is full. It never closes out", and "If
// the run fails while Chan waits on out, Chan stops waiting and returns the
// error that ended the run" (here: ctx cancelled while Chan waits on a full
// out), over tiny runs.
func TestReview55_ChanSinkTiny(t *testing.T) {
	for n := 0; n <= 5; n++ {
		for _, w := range r55Workers {
			a := r55NewAcks(n)
			s := stage.Map(a.source, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(w), stage.Ordered())
			out := make(chan int, n)
			if err := sink.Chan(context.Background(), s, out); err != nil || len(out) != n {
				t.Fatalf("n=%d w=%d: %v, %d sent", n, w, err, len(out))
			}
			for i := range n {
				if v := <-out; v != i {
					t.Fatalf("n=%d w=%d: got %d at %d", n, w, v, i)
				}
			}
			select {
			case _, ok := <-out:
				t.Fatalf("n=%d w=%d: out was closed or held more (ok=%v)", n, w, ok)
			default:
			}
			if n < 2 {
				continue
			}
			// A full out: Chan waits; cancelling ctx ends the wait.
			ctx, cancel := context.WithCancel(context.Background())
			full := make(chan int, 1)
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				err = sink.Chan(ctx, s, full)
			}()
			<-full // the first value arrived; the second will wait on out
			time.Sleep(time.Millisecond)
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("n=%d w=%d: Chan hung after cancel", n, w)
			}
			if !errors.Is(err, context.Canceled) && err != nil {
				t.Fatalf("n=%d w=%d: err %v", n, w, err)
			}
			if err == nil && n > 2 {
				t.Fatalf("n=%d w=%d: Chan reported success though it could send only %d of %d", n, w, 1+len(full), n)
			}
		}
	}
}
