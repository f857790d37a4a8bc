package stage_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// Source's promises under the paths that call next from several kinds of
// goroutine: an Interruptible (or NeverWaits) AckSource under cheap fused
// stages of several workers, whose consumers' goroutines take items
// themselves (tryPull) next to the stages' own. next is never called
// concurrently, never after io.EOF; stop once, after the run; every item
// settled exactly once, with nil, each only after its commit.
func TestReview26SourcePromisesUnderFusedStages(t *testing.T) {
	const n = 3000
	marks := map[string]func(stage.Stream[int]) stage.Stream[int]{
		"plain":         func(s stage.Stream[int]) stage.Stream[int] { return s },
		"NeverWaits":    stage.NeverWaits[int],
		"Interruptible": stage.Interruptible[int],
	}
	for name, mark := range marks {
		t.Run(name, func(t *testing.T) {
			for round := range 5 {
				a := newR26Acks()
				a.slowNext = runtime.Gosched
				s := stage.Map(mark(a.source(n)), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4))
				s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(3))
				committed := make([]bool, n)
				var early []int
				err := stage.Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
					if f := a.fate(v); f != "unsettled" {
						early = append(early, v)
					}
					committed[v] = true
					return nil
				})
				if err != nil {
					t.Fatalf("round %d: %v", round, err)
				}
				a.check(t, 1)
				if len(early) > 0 {
					t.Fatalf("round %d: items settled before their commit: %v", round, early[:min(5, len(early))])
				}
				for id := range n {
					if f := a.fate(id); f != "nil" || !committed[id] {
						t.Fatalf("round %d: item %d: Done %s, committed %v; want nil, true", round, id, f, committed[id])
					}
				}
			}
		})
	}
}

// NeverWaits on a source that does wait (honouring its ctx): the claim is
// broken, but the run must still end on a drain (Until) and on a
// cancellation, with every item it delivered settled once, nothing else
// settled, and stop called once after the run.
func TestReview26NeverWaitsSourceThatWaits(t *testing.T) {
	for _, ending := range []string{"drain", "cancel"} {
		t.Run(ending, func(t *testing.T) {
			const ready = 3
			var a *r26Acks = newR26Acks()
			waiting := make(chan struct{})
			src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
				i := 0
				return func(ctx context.Context) (int, stage.Ack, error) {
						if i == ready {
							close(waiting)
							<-ctx.Done() // waits, although marked NeverWaits
							return 0, nil, ctx.Err()
						}
						i++
						return i - 1, r26Ack{a, i - 1}, nil
					}, func() {
						a.mu.Lock()
						a.stops++
						a.mu.Unlock()
					}
			})
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			in := stage.NeverWaits(src)
			if ending == "drain" {
				in = stage.Until(in, stop)
			}
			s := stage.Map(in, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4))
			commits := 0
			done := make(chan error, 1)
			go func() {
				done <- stage.Run(parent, s, func(context.Context, int, error) error { commits++; return nil })
			}()
			r26Wait(t, waiting, "next to wait")
			if ending == "drain" {
				drain()
			} else {
				cancel()
			}
			var err error
			select {
			case err = <-done:
			case <-r26AfterWatchdog():
				t.Fatal("the run hung in a NeverWaits source that waits")
			}
			a.check(t, 1)
			switch ending {
			case "drain":
				if err != nil || commits != ready {
					t.Fatalf("drained: Run = %v after %d commits, want nil after %d", err, commits, ready)
				}
				for id := range ready {
					if f := a.fate(id); f != "nil" {
						t.Errorf("item %d: %s, want nil", id, f)
					}
				}
			case "cancel":
				for id := range ready {
					if f := a.fate(id); f != "nil" && f != "unsettled" {
						t.Errorf("item %d: %s, want nil or unsettled", id, f)
					}
				}
			}
		})
	}
}
