package sink_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review71Seq is an endless iterator that records whether its deferred calls
// ran.
func review71Seq(stopped *atomic.Bool) func(yield func(int) bool) {
	return func(yield func(int) bool) {
		defer stopped.Store(true)
		for i := 0; ; i++ {
			if !yield(i) {
				return
			}
		}
	}
}

// "A panic in the loop body stops the run the same way and then continues"
// (All), with source.Seq's "when the run ends, early or not, the iterator is
// stopped (its deferred calls run) before the sink returns".
//
// The loop body panics at item k: the very panic value comes out of the
// loop, once the run is over (no goroutine of it left, the iterator stopped).
func TestReview71AllPanicInLoopBody(t *testing.T) {
	type token struct{ k int }
	for _, workers := range []int{1, 4} {
		for k := range 5 {
			t.Run(fmt.Sprintf("workers-%d/panic-at-%d", workers, k), func(t *testing.T) {
				var stopped atomic.Bool
				s := stage.Map(source.Seq(review71Seq(&stopped)), func(_ context.Context, v int) (int, error) { return v, nil },
					stage.Workers(workers))
				var got any
				var stoppedAtRecover bool
				review71Run(t, "panic", func() {
					defer func() {
						got = recover()
						stoppedAtRecover = stopped.Load()
					}()
					i := 0
					for _, err := range sink.All(context.Background(), s) {
						if err != nil {
							t.Errorf("unexpected error %v", err)
							return
						}
						if i == k {
							panic(token{k})
						}
						i++
					}
				})
				if got != (token{k}) {
					t.Fatalf("recovered %#v, want the loop body's own panic value %#v", got, token{k})
				}
				if !stoppedAtRecover {
					t.Fatalf("the iterator was not stopped when the panic left the loop")
				}
			})
		}
	}
}

// "A function that calls Goexit on the sink's own goroutine ends that
// goroutine: the sink does not return, as with any function, and the run's
// goroutines exit." (stage.ErrGoexit; the loop body of All runs on the sink's
// goroutine.)
//
// The loop body calls runtime.Goexit at item 3; its goroutine ends (its
// deferred calls run), and every goroutine of the run exits (goleak waits for
// them, its timeout a hang detector only).
func TestReview71AllGoexitInLoopBody(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		opts := goleak.IgnoreCurrent()
		var stopped atomic.Bool
		s := stage.Map(source.Seq(review71Seq(&stopped)), func(_ context.Context, v int) (int, error) { return v, nil },
			stage.Workers(4), stage.Buffer(1))
		done := make(chan struct{})
		returned := false
		go func() {
			defer close(done)
			i := 0
			for range sink.All(context.Background(), s) {
				if i == 3 {
					runtime.Goexit()
				}
				i++
			}
			returned = true
		}()
		if !review71Wait(t, "goexit", done) {
			return
		}
		if returned {
			t.Fatalf("the loop went on after runtime.Goexit")
		}
		if err := goleak.Find(opts); err != nil {
			t.Fatalf("goroutines of the run left after the loop's goroutine ended: %v", err)
		}
		if !stopped.Load() {
			t.Fatalf("the iterator was never stopped")
		}
	})
}

// "If the run fails, the last pair is (zero, err) with the error that ended
// it." and "(v, nil) for a value, (zero, err) for a forwarded error", "All
// yields each one in its place".
//
// A Forward stage of one worker (input order) fails the odd items; the
// source then fails after 6 items. The pairs must be exactly: the values and
// forwarded errors in input order, then (0, *SourceError) last.
func TestReview71AllForwardedInPlaceThenFailure(t *testing.T) {
	for _, opts := range [][]stage.Option{
		{stage.Workers(1)},
		{stage.Workers(4), stage.Ordered()},
		{stage.Workers(-1), stage.Ordered()},
	} {
		var i atomic.Int64
		src := source.Func(func(context.Context) (int, error) {
			v := int(i.Add(1)) - 1
			if v >= 6 {
				return 0, errReview71Boom
			}
			return v, nil
		})
		s := stage.Map(src, func(_ context.Context, v int) (int, error) {
			if v%2 == 1 {
				return 0, fmt.Errorf("odd %d", v)
			}
			return v * 10, nil
		}, append(opts, stage.OnError(stage.Forward))...)
		type pair struct {
			v   int
			err error
		}
		var pairs []pair
		review71Run(t, "forward", func() {
			for v, err := range sink.All(context.Background(), s) {
				pairs = append(pairs, pair{v, err})
			}
		})
		if len(pairs) != 7 {
			t.Fatalf("%d pairs %v, want 6 items and the failure", len(pairs), pairs)
		}
		for j, p := range pairs[:6] {
			if j%2 == 0 {
				if p.err != nil || p.v != j*10 {
					t.Fatalf("pair %d = %v, want (%d, nil)", j, p, j*10)
				}
				continue
			}
			var se *stage.Error
			if p.v != 0 || !errors.As(p.err, &se) || se.Index != j || se.Input != j {
				t.Fatalf("pair %d = %v, want (0, *stage.Error of index and input %d)", j, p, j)
			}
		}
		last := pairs[6]
		var srcErr *stage.SourceError
		if last.v != 0 || !errors.As(last.err, &srcErr) || !errors.Is(last.err, errReview71Boom) {
			t.Fatalf("last pair = %v, want (0, *stage.SourceError wrapping boom)", last)
		}
	}
}
