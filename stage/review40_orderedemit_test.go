package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The first two tests of this file showed a broken promise (a later item of
// an Ordered Apply emitted without bound: 20,000 of 20,000 emits returned
// true against a window of 4, in 10 of 10 runs); the window now bounds the
// outputs that wait for their item's turn (see Apply).

// r40Cap is how many outputs an endless emitter tries before it gives up: far
// over any bound the docs give, so reaching it means "without bound".
const r40Cap = 20000

// TestReview40OrderedLaterItemEmitBound attacks stage.Apply's "Each further
// output waits while the stage's queue holds as many outputs as its
// read-ahead bound (workers + buffer; with Ordered, its window's 2×workers +
// buffer)" and the package doc's "memory is bounded by the configuration,
// never by the input size" (Ordering), with a LATER item that emits without
// end while an EARLIER one is still running. Apply's doc says a later item's
// outputs "wait in memory until the items before it have left": nothing in
// the docs lets that waiting grow past the window.
//
// Cases:
//   - earlier-silent: item 0 waits on a gate and emits nothing; item 1 emits
//     without end. The consumer takes whatever comes (nothing can come: item
//     0 has not left).
//   - earlier-emitting: item 0 emits without end and the consumer is gated
//     inside its first output; item 1 emits without end too.
//
// The count is of emits that returned true while the gates hold.
func TestReview40OrderedLaterItemEmitBound(t *testing.T) {
	for _, c := range []struct {
		workers, buffer int
		earlierEmits    bool
	}{
		{2, 0, false}, {2, 0, true}, {4, 3, false}, {4, 3, true}, {1, 0, false},
	} {
		name := fmt.Sprintf("workers%d/buffer%d/earlierEmits=%v", c.workers, c.buffer, c.earlierEmits)
		t.Run(name, func(t *testing.T) {
			window := int64(2*c.workers + c.buffer)
			// Generous: one first output per item in the window, plus the
			// window itself, plus what a gated consumer holds.
			bound := 2*window + 2
			var earlier, later atomic.Int64
			s := stage.Apply(source.Slice(ints(2)), func(ctx context.Context, v int, emit func(int) bool) error {
				n := &later
				if v == 0 {
					if !c.earlierEmits {
						<-ctx.Done()
						return ctx.Err()
					}
					n = &earlier
				}
				for i := 0; i < r40Cap; i++ {
					if !emit(v) {
						return ctx.Err()
					}
					n.Add(1)
				}
				<-ctx.Done()
				return ctx.Err()
			}, stage.Workers(c.workers), stage.Buffer(c.buffer), stage.Ordered())
			first := make(chan struct{})
			var once atomic.Bool
			// The consumer: one worker, Buffer(1) so that it is a goroutine of
			// its own, gated inside its first output.
			consumer := stage.Map(s, func(ctx context.Context, v int) (int, error) {
				if once.CompareAndSwap(false, true) {
					close(first)
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(1), stage.Buffer(1))
			ctx, cancel := context.WithCancel(context.Background())
			done := r40Go(func() { _, _ = sink.Count(ctx, consumer) })
			defer func() { cancel(); r40Wait(t, done, "the run after cancel") }()
			if c.earlierEmits {
				r40Wait(t, first, "the consumer's first output")
			}
			got := r40Settle(&later, r40Cap-1)
			total := earlier.Load() + later.Load()
			if total > bound {
				t.Errorf("ordered Apply, %d workers, buffer %d: item 1 (later) had %d emits return true, item 0 (earlier) %d, while item 0 had not left and the consumer was gated; the window is %d (2×workers+buffer), a generous bound %d: a later item's outputs pile up in memory without bound (%d is the emitter's own cap)",
					c.workers, c.buffer, got, earlier.Load(), window, bound, r40Cap)
			}
		})
	}
}

// TestReview40OrderedLaterItemOutputsHeld shows where the outputs of the case
// above go: item 1 of an Ordered Apply emits r40Cap outputs and returns while
// item 0 waits on a gate (nothing has left the stage), then item 0 is let go
// and the sink gets every output, in order. So all r40Cap outputs of item 1
// were held in memory at once, in a stage whose doc bounds what it holds by
// 2×workers+buffer. The sink is not gated: only the order of the items holds
// item 1's outputs back.
func TestReview40OrderedLaterItemOutputsHeld(t *testing.T) {
	gate0 := make(chan struct{})
	var later atomic.Int64
	s := stage.Apply(source.Slice(ints(2)), func(ctx context.Context, v int, emit func(int) bool) error {
		if v == 0 {
			select {
			case <-gate0:
			case <-ctx.Done():
				return ctx.Err()
			}
			emit(0)
			return nil
		}
		for i := 0; i < r40Cap; i++ {
			if !emit(1) {
				return ctx.Err()
			}
			later.Add(1)
		}
		return nil
	}, stage.Workers(2), stage.Ordered())
	var got []int
	var err error
	done := r40Go(func() { got, err = sink.Slice(context.Background(), s) })
	held := r40Settle(&later, r40Cap-1)
	close(gate0)
	r40Wait(t, done, "the run")
	if err != nil {
		t.Fatalf("sink.Slice: %v", err)
	}
	if len(got) != r40Cap+1 || got[0] != 0 || got[len(got)-1] != 1 {
		t.Fatalf("got %d outputs, want %d in order", len(got), r40Cap+1)
	}
	if held > 2*2+1 {
		t.Errorf("Ordered Apply of 2 workers: item 1 had %d emits return true before item 0 left; all of them were then delivered, so the stage held %d outputs in memory at once; the docs bound what it holds by its window, 2×workers+buffer = 4", held, held)
	}
}

// TestReview40OrderedEmitsThenFails attacks Apply's "Outputs emitted before
// an error still go downstream" with Ordered and Forward: each item emits
// two outputs, and every third item then fails. The sink must see, in input
// order, each item's outputs followed (for a failed one) by its *Error.
func TestReview40OrderedEmitsThenFails(t *testing.T) {
	for _, how := range []string{"error", "panic"} {
		for round := range 10 {
			_ = round
			s := stage.Apply(source.Slice(ints(60)), func(ctx context.Context, v int, emit func(int) bool) error {
				emit(10 * v)
				r37Jitter()
				emit(10*v + 1)
				if v%3 == 1 {
					if how == "panic" {
						panic(errR40)
					}
					return errR40
				}
				return nil
			}, stage.Workers(4), stage.Ordered(), stage.OnError(stage.Forward))
			var got, want []string
			for v := range 60 {
				want = append(want, fmt.Sprint(10*v), fmt.Sprint(10*v+1))
				if v%3 == 1 {
					want = append(want, fmt.Sprint("E", v))
				}
			}
			for x, err := range sink.All(context.Background(), s) {
				if err != nil {
					var se *stage.Error
					if !errors.As(err, &se) || !errors.Is(err, errR40) {
						t.Fatalf("forwarded %v", err)
					}
					got = append(got, fmt.Sprint("E", se.Input))
					continue
				}
				got = append(got, fmt.Sprint(x))
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s: got %v\nwant %v", how, got, want)
			}
		}
	}
}

// TestReview40OrderedGoexitAfterEmit: runtime.Goexit in an Ordered Apply
// after the item emitted: the run fails with ErrGoexit (the item is lost),
// no goroutine is left, and the sink never reports success. In a child.
func TestReview40OrderedGoexitAfterEmit(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string {
		s := stage.Apply(source.Slice(ints(20)), func(ctx context.Context, v int, emit func(int) bool) error {
			emit(v)
			if v == 7 {
				runtime.Goexit()
			}
			emit(v)
			return nil
		}, stage.Workers(3), stage.Ordered(), stage.Buffer(1))
		var err error
		var got []int
		finished := false
		runcheck.NoHang(t, "goexit", func() {
			got, err = sink.Slice(context.Background(), s)
			finished = true
		})
		if !finished {
			return "the sink's goroutine did not return"
		}
		if !errors.Is(err, stage.ErrGoexit) {
			return fmt.Sprintf("got %d values, %v; want ErrGoexit", len(got), err)
		}
		return "ok"
	})
	if ok && out != "ok" {
		t.Fatal(out)
	}
}

// TestReview40OrderedPendingOutputsAck: item 1 of an Ordered Apply emits and
// returns nil while item 0 is still running, so its outputs wait in the
// window; then the run ends at item 0 (cancelled, or item 0 fails FailFast).
// Item 1's outputs never reached the sink: it must not be told Done(nil)
// ("Done(nil) when ... every output it led to was committed"); item 0 is told
// its error under FailFast and nothing when cancelled.
func TestReview40OrderedPendingOutputsAck(t *testing.T) {
	for _, how := range []string{"cancel", "failfast"} {
		acks := []*r40Ack{{}, {}}
		i := 0
		src := stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
			return func(ctx context.Context) (int, stage.Ack, error) {
				if i == 2 {
					return 0, nil, errEOF
				}
				i++
				return i - 1, acks[i-1], nil
			}, nil
		})
		item1Done := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		s := stage.Apply(src, func(ctx context.Context, v int, emit func(int) bool) error {
			if v == 1 {
				emit(10)
				emit(11)
				emit(12)
				close(item1Done)
				return nil
			}
			<-item1Done
			if how == "failfast" {
				return errR40
			}
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}, stage.Workers(2), stage.Ordered())
		var got []int
		var err error
		done := r40Go(func() { got, err = sink.Slice(ctx, s) })
		r40Wait(t, done, "the run")
		cancel()
		if len(got) != 0 {
			t.Fatalf("%s: the sink got %v", how, got)
		}
		if how == "cancel" && !errors.Is(err, context.Canceled) || how == "failfast" && !errors.Is(err, errR40) {
			t.Fatalf("%s: got %v", how, err)
		}
		if c := acks[1].calls.Load(); c != 0 {
			t.Errorf("%s: item 1, whose outputs waited behind item 0 and never reached the sink, was told Done(%v)", how, acks[1].err)
		}
		c0 := acks[0].calls.Load()
		if how == "cancel" && c0 != 0 || how == "failfast" && (c0 != 1 || !errors.Is(acks[0].err, errR40)) {
			t.Errorf("%s: item 0 told %d times, %v", how, c0, acks[0].err)
		}
	}
}

// TestReview40KeyByApplyEmitBound: Apply's emit bound ("Each further output
// waits while the stage's queue holds as many outputs as its read-ahead
// bound (workers + buffer)") with KeyBy, unordered: two items of different
// keys both emit without end while the consumer is gated in its first
// output. Their emits that returned true must stay within the bound.
func TestReview40KeyByApplyEmitBound(t *testing.T) {
	for _, c := range []struct{ workers, buffer int }{{2, 0}, {4, 3}} {
		var emitted atomic.Int64
		s := stage.Apply(source.Slice(ints(3)), func(ctx context.Context, v int, emit func(int) bool) error {
			for i := 0; i < r40Cap; i++ {
				if !emit(v) {
					return ctx.Err()
				}
				emitted.Add(1)
			}
			return nil
		}, stage.Workers(c.workers), stage.Buffer(c.buffer), stage.KeyBy(func(v int) int { return v }))
		first := make(chan struct{})
		var once atomic.Bool
		consumer := stage.Map(s, func(ctx context.Context, v int) (int, error) {
			if once.CompareAndSwap(false, true) {
				close(first)
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Workers(1), stage.Buffer(1))
		ctx, cancel := context.WithCancel(context.Background())
		done := r40Go(func() { _, _ = sink.Count(ctx, consumer) })
		r40Wait(t, first, "the consumer's first output")
		bound := int64(3 + c.workers + c.buffer + 2) // a first output per item, the queue, the consumer's
		got := r40Settle(&emitted, bound)
		cancel()
		r40Wait(t, done, "the run")
		if got > bound {
			t.Errorf("KeyBy Apply, %d workers, buffer %d: %d emits returned true while the consumer was gated; bound %d", c.workers, c.buffer, got, bound)
		}
	}
}
