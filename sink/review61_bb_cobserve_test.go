package sink_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type c61Obs struct {
	mu       sync.Mutex
	finished map[string][]error
	received map[string]int
	closed   map[string]int
}

func (o *c61Obs) Stage(info stage.Info) stage.Watcher { return c61W{o, info.Name} }

type c61W struct {
	o    *c61Obs
	name string
}

func (w c61W) Received() { w.o.mu.Lock(); w.o.received[w.name]++; w.o.mu.Unlock() }
func (w c61W) Finished(_ time.Duration, err error) {
	w.o.mu.Lock()
	w.o.finished[w.name] = append(w.o.finished[w.name], err)
	w.o.mu.Unlock()
}
func (w c61W) Closed() { w.o.mu.Lock(); w.o.closed[w.name]++; w.o.mu.Unlock() }

// stage.Watcher.Finished: "err is nil on success; the *Error that the
// stage's ErrorPolicy is about to handle (of that type, not wrapped): the item
// failed; or, when the call returned an error once the run was ending (a
// failure elsewhere ...), an error for which errors.Is(err, context.Canceled)
// holds and that neither is nor wraps an *Error, whatever error the function
// returned". Observe: "attaches o to every run started with it (or with a
// context derived from it)". Item 0's call runs an inner pipeline (with the
// run's ctx, so observed too) that waits for ctx; item 1 fails then. Item
// 0's call returns the inner run's error, whose cause is item 1's *Error:
// its Finished must still be a plain cut-short error, not one wrapping an
// *Error. Stats: "Failed ... calls that ended in an item error".
func TestReview61BBCObserveNestedCutShort(t *testing.T) {
	for _, ord := range []bool{false, true} {
		o := &c61Obs{finished: map[string][]error{}, received: map[string]int{}, closed: map[string]int{}}
		var stats stage.Stats
		started := make(chan struct{})
		opts := []stage.Option{stage.Workers(2), stage.Buffer(1), stage.Name("outer")}
		if ord {
			opts = append(opts, stage.Ordered())
		}
		var innerErr error
		outer := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, k int) (int, error) {
			if k == 1 {
				<-started
				return 0, errC61
			}
			_, innerErr = sink.Count(ctx, stage.Map(source.Func(func(ctx context.Context) (int, error) {
				close(started)
				<-ctx.Done()
				return 0, ctx.Err()
			}), c61id, stage.Name("inner"), stage.Workers(1)))
			return 0, innerErr
		}, opts...)
		ctx := stage.Observe(stage.Observe(context.Background(), o), &stats)
		var err error
		runcheck.Run(t, "run", func() { _, err = sink.Slice(ctx, outer) })
		var e *stage.Error
		if !errors.As(err, &e) || e.Stage != "outer" || e.Index != 1 {
			t.Fatalf("err %v; want outer's *Error at 1", err)
		}
		o.mu.Lock()
		fin := o.finished["outer"]
		if len(fin) != 2 || o.received["outer"] != 2 || o.closed["outer"] != 1 || o.closed["inner"] != 1 {
			t.Fatalf("outer: %d finished, %d received, closed outer %d inner %d", len(fin), o.received["outer"], o.closed["outer"], o.closed["inner"])
		}
		failed, cut := 0, 0
		for _, f := range fin {
			if fe, ok := f.(*stage.Error); ok {
				if fe.Index != 1 {
					t.Errorf("Finished *Error %v; want item 1's", fe)
				}
				failed++
				continue
			}
			var we *stage.Error
			if !errors.Is(f, context.Canceled) || errors.As(f, &we) {
				t.Errorf("ordered=%v: Finished(%v) (%T) for the cut-short call (which returned %v); want Canceled and no *Error inside", ord, f, f, innerErr)
			}
			cut++
		}
		o.mu.Unlock()
		if failed != 1 || cut != 1 {
			t.Fatalf("failed %d cut %d", failed, cut)
		}
		c, ok := stats.Get("outer")
		if !ok || c.Failed != 1 || c.Finished != 2 {
			t.Fatalf("Stats outer %+v; want Failed 1 of 2 finished", c)
		}
		ci, ok := stats.Get("inner")
		if !ok || ci.Failed != 0 || ci.Running != 0 {
			t.Fatalf("Stats inner %+v; want no failure, not running", ci)
		}
	}
}
