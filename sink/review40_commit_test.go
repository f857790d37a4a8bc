package sink_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview40CommitDuringCancel attacks stage.Ack's "Whatever ends the run,
// an item whose outputs were all committed is told nil" and Run's "An item
// for which f returned nil or ErrStop is committed", for ForEach under a
// cancellation that comes while the callback runs: the callback of item 5
// waits for ctx to end, then returns nil (committed: told nil) or ctx.Err()
// (cut short: not told). The sink returns context.Canceled either way. For
// sink.Chan, a send cut short by the cancellation commits nothing.
func TestReview40CommitDuringCancel(t *testing.T) {
	for shname, sh := range r40Shapes() {
		if sh.fanout != 1 {
			continue
		}
		for _, ret := range []string{"nil", "ctxerr", "chan"} {
			t.Run(shname+"/"+ret, func(t *testing.T) {
				w := newR40World(false)
				s := sh.build(w, w.source(), w.fn("none", -1))
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				in5 := make(chan struct{})
				var err error
				seen := map[int]bool{}
				runcheck.Run(t, ret, func() {
					if ret == "chan" {
						out := make(chan int) // nobody reads: the first send waits
						go func() {
							v := <-out
							seen[v] = true
							close(in5)
						}()
						go func() {
							select {
							case <-in5:
								cancel()
							case <-time.After(runcheck.Watchdog):
							}
						}()
						err = sink.Chan(ctx, s, out)
						return
					}
					err = sink.ForEach(ctx, s, func(ctx context.Context, v int) error {
						seen[v] = true
						if len(seen) == 6 {
							cancel()
							<-ctx.Done()
							if ret == "ctxerr" {
								return ctx.Err()
							}
						}
						return nil
					})
				})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("got %v, want context.Canceled", err)
				}
				w.mu.Lock()
				defer w.mu.Unlock()
				for v := range r40N {
					errs := w.done[v]
					switch {
					case len(errs) > 1:
						t.Errorf("item %d: Done %v", v, errs)
					case len(errs) == 1 && errs[0] != nil:
						t.Errorf("item %d: Done(%v) in a cancelled run", v, errs[0])
					case len(errs) == 1 && !seen[v]:
						t.Errorf("item %d: Done(nil) but never committed", v)
					case len(errs) == 0 && seen[v] && ret == "nil":
						t.Errorf("item %d: its callback returned nil (committed), but Done was not called", v)
					}
				}
			})
		}
	}
}

// TestReview40TeeAckFates attacks "an item that fans out (FlatMap, Tee) is
// done when all its outputs are", "Done(err) as soon as its way failed, with
// the first error", and a Filter's "a dropped item is done": one branch
// drops some items, the other forwards an error for some.
func TestReview40TeeAckFates(t *testing.T) {
	w := newR40World(false)
	b := stage.Tee(w.source(), 2)
	dropped := stage.Filter(b[0], func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil }, stage.Workers(2))
	failing := stage.Map(b[1], func(_ context.Context, v int) (int, error) {
		if v%3 == 0 {
			return 0, errR40
		}
		return v, nil
	}, stage.Workers(3), stage.OnError(stage.Forward))
	n, err := sink.Count(context.Background(), stage.Merge(dropped, failing))
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != r40N/3 {
		t.Fatalf("got %d, %v", n, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for v := range r40N {
		errs := w.done[v]
		if len(errs) != 1 {
			t.Errorf("item %d: Done called %d times, want once", v, len(errs))
			continue
		}
		if wantErr := v%3 == 0; wantErr != (errs[0] != nil) || (wantErr && !errors.Is(errs[0], errR40)) {
			t.Errorf("item %d: Done(%v); want an error exactly when a branch forwarded one", v, errs[0])
		}
	}
}
