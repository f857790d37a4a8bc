package stage_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r37EmitHeld runs one item through an Apply whose f emits without end, into a
// consumer stage of one worker whose function blocks on the first output, and
// returns how many emits returned true once the count has stopped growing
// (the wait for it to settle is a detector, not a verdict: a count over the
// bound can only be seen more often by waiting longer).
func r37EmitHeld(t *testing.T, bound int64, opts ...stage.Option) int64 {
	t.Helper()
	var accepted atomic.Int64
	s := stage.Apply(source.Slice(ints(1)), func(ctx context.Context, v int, emit func(int) bool) error {
		for emit(v) {
			accepted.Add(1)
		}
		return ctx.Err()
	}, opts...)
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		sink.Count(ctx, consumer)
	}()
	defer func() { cancel(); r37Wait(t, done, "the run after cancel") }()
	r37Wait(t, first, "the consumer's first call")
	last, stable := accepted.Load(), 0
	for stable < 25 && last <= bound {
		time.Sleep(10 * time.Millisecond)
		if n := accepted.Load(); n != last {
			last, stable = n, 0
		} else {
			stable++
		}
	}
	return last
}

// TestReview37OrderedApplyEmitBound found stage.Apply's doc wrong for an
// Ordered stage: "Each further output waits while the stage's queue holds as
// many outputs as its read-ahead bound (workers + buffer)". One item, an f
// that emits without end, a consumer of one worker blocked inside its first
// output: unordered, at most 1+workers+buffer emits return true; Ordered, the
// stage queued 2×workers+buffer (its window's bound, which Ordered's doc
// states for items): 7 for Workers(3), 3 for Workers(1), 6 for Workers(1)
// Buffer(3), every run. Apply's doc now gives the Ordered bound, which the
// test checks.
func TestReview37OrderedApplyEmitBound(t *testing.T) {
	for _, c := range []struct {
		name            string
		workers, buffer int
		ordered         bool
	}{
		{"unordered/workers3", 3, 0, false},
		{"unordered/workers1buffer3", 1, 3, false},
		{"ordered/workers3", 3, 0, true},
		{"ordered/workers1", 1, 0, true},
		{"ordered/workers1buffer3", 1, 3, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts := []stage.Option{stage.Workers(c.workers), stage.Buffer(c.buffer)}
			if c.ordered {
				opts = append(opts, stage.Ordered())
			}
			bound := int64(1 + c.workers + c.buffer)
			if c.ordered {
				bound += int64(c.workers) // the window: 2×workers+buffer
			}
			if got := r37EmitHeld(t, bound, opts...); got > bound {
				t.Errorf("%d emits returned true while the consumer held the first output; the doc bounds it at 1 + the read-ahead = %d", got, bound)
			}
		})
	}
}

// TestReview37EmitFalseOnceEnded guards Apply's "emit returns false, and drops
// the output, once the run is cancelled", for every way a run ends and for
// outputs that would wait in the Ordered window or behind a key: each call
// emits only after its ctx is done, so every such emit must return false.
func TestReview37EmitFalseOnceEnded(t *testing.T) {
	optss := map[string][]stage.Option{
		"ordered":        {stage.Workers(4), stage.Ordered()},
		"unordered":      {stage.Workers(4)},
		"workers1":       {stage.Workers(1)},
		"unlimited":      {stage.Workers(-1)},
		"buffer":         {stage.Workers(4), stage.Buffer(3)},
		"keyby":          {stage.Workers(4), stage.KeyBy(func(v int) int { return v })},
		"ordered-buffer": {stage.Workers(4), stage.Ordered(), stage.Buffer(5)},
	}
	for on, opts := range optss {
		for _, ender := range []string{"failfast", "handler-error", "cancel", "errstop", "first", "break"} {
			t.Run(on+"/"+ender, func(t *testing.T) {
				for round := 0; round < 5; round++ {
					var accepted atomic.Int32
					ctx, cancel := context.WithCancel(context.Background())
					trigger := make(chan struct{})
					var once atomic.Bool
					s := stage.Apply(source.Slice(ints(8)), func(ctx context.Context, v int, emit func(int) bool) error {
						if v == 0 {
							emit(0)
							if once.CompareAndSwap(false, true) {
								close(trigger)
							}
						}
						<-ctx.Done()
						for range 5 {
							if emit(100 + v) {
								accepted.Add(1)
							}
						}
						return ctx.Err()
					}, opts...)
					other := stage.Merge[int]()
					switch ender {
					case "failfast":
						other = stage.Map(source.Slice(ints(1)), func(context.Context, int) (int, error) { <-trigger; return 0, errR37 },
							stage.Workers(1), stage.Buffer(1))
					case "handler-error":
						other = stage.Map(source.Slice(ints(1)), func(context.Context, int) (int, error) { <-trigger; return 0, errR37 },
							stage.Workers(1), stage.Buffer(1), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return errR37 })))
					}
					m := stage.Merge(s, other)
					r37Do(t, "run", func() {
						switch ender {
						case "failfast", "handler-error":
							sink.Count(ctx, m)
						case "cancel":
							sink.ForEach(ctx, m, func(context.Context, int) error { cancel(); return nil })
						case "errstop":
							stage.Run(ctx, m, func(context.Context, int, error) error { return stage.ErrStop })
						case "first":
							sink.First(ctx, m)
						case "break":
							for range sink.All(ctx, m) {
								break
							}
						}
					})
					cancel()
					if n := accepted.Load(); n != 0 {
						t.Fatalf("round %d: emit returned true %d times once the run had ended", round, n)
					}
				}
			})
		}
	}
}
