package stage_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Doc (Error.Index): "Index is the item's 0-based position in the stage's
// input. Forwarded errors count as items." With an Ordered first stage that
// forwards the even items' errors, the second stage (KeyBy, several workers,
// completion order) is called only for odd items, and each odd item v is
// at position v of its input.
func TestReview52IndexCountsForwardedErrors(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		in := make([]int, 40)
		for i := range in {
			in[i] = i
		}
		for _, second := range []struct {
			name string
			opts []stage.Option
		}{
			{"keyby", []stage.Option{stage.Workers(3), stage.KeyBy(func(v int) int { return v % 4 })}},
			{"ordered", []stage.Option{stage.Workers(3), stage.Ordered()}},
			{"w1", []stage.Option{stage.Workers(1)}},
			{"buffered", []stage.Option{stage.Workers(5), stage.Buffer(2)}},
		} {
			s1 := stage.Map(source.Slice(in), func(_ context.Context, v int) (int, error) {
				if v%2 == 0 {
					return 0, errR52
				}
				return v, nil
			}, stage.Workers(4), stage.Ordered(), stage.OnError(stage.Forward), stage.Name("first"))
			s2 := stage.Map(s1, func(_ context.Context, v int) (int, error) { return 0, errR52 },
				append(second.opts, stage.OnError(stage.Forward), stage.Name("second"))...)
			seen := map[string]int{}
			for _, err := range sink.All(context.Background(), s2) {
				var e *stage.Error
				if !errors.As(err, &e) {
					t.Fatalf("%s: got %v, want an *Error", second.name, err)
				}
				seen[e.Stage]++
				v, _ := e.Input.(int)
				if e.Index != v {
					t.Errorf("%s: stage %q: Index %d for input %d, want %d (forwarded errors count as items)", second.name, e.Stage, e.Index, v, v)
				}
			}
			if seen["first"] != 20 || seen["second"] != 20 {
				t.Errorf("%s: errors per stage %v, want 20 each", second.name, seen)
			}
		}
	})
}

// Doc (Budget): "The count is per stage and per run: each run starts with
// a full budget." And (Stream): "Several sinks may run one Stream at the
// same time: each run has its own goroutines, queues and stage state."
// Two runs of one stream, each with two failures under Budget(2), hold
// their four failures at once (a barrier across the runs): each run must
// drop its own two and succeed.
func TestReview52BudgetPerConcurrentRun(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		var arrived atomic.Int32
		release := make(chan struct{})
		var handled atomic.Int32
		s := stage.Map(source.Slice([]int{0, 1, 2, 3}), func(ctx context.Context, v int) (int, error) {
			if v < 2 {
				if arrived.Add(1) == 4 {
					close(release)
				}
				select {
				case <-release:
				case <-ctx.Done():
					return 0, ctx.Err()
				}
				return 0, errR52
			}
			return v, nil
		}, stage.Workers(4), stage.Buffer(1), stage.OnError(stage.Budget(2, func(context.Context, *stage.Error) error {
			handled.Add(1)
			return nil
		})))
		var wg sync.WaitGroup
		var counts [2]int
		var errs [2]error
		for r := range 2 {
			wg.Go(func() { counts[r], errs[r] = sink.Count(context.Background(), s) })
		}
		wg.Wait()
		for r := range 2 {
			if errs[r] != nil || counts[r] != 2 {
				t.Errorf("run %d: Count = %d, %v; want 2, nil (each run has a budget of 2 of its own)", r, counts[r], errs[r])
			}
		}
		if h := handled.Load(); h != 4 {
			t.Errorf("the handler saw %d failures, want 4", h)
		}
	})
}

// Doc (Stats/Counts): "a Stats attached to several runs adds the counts of
// stages of the same name up"; "Running int // runs in which the stage has
// not closed yet"; "InFlight int64 // Received - Finished".
func TestReview52StatsRunningAcrossConcurrentRuns(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		var stats stage.Stats
		entered := make(chan struct{}, 16)
		release := make(chan struct{})
		s := stage.Map(source.Slice([]int{1, 2, 3}), func(ctx context.Context, v int) (int, error) {
			entered <- struct{}{}
			<-release
			return v, nil
		}, stage.Workers(1), stage.Name("r52stats"))
		ctx := stage.Observe(context.Background(), &stats)
		var wg sync.WaitGroup
		var errs [2]error
		for r := range 2 {
			wg.Go(func() { _, errs[r] = sink.Count(ctx, s) })
		}
		<-entered
		<-entered
		c, ok := stats.Get("r52stats")
		if !ok {
			t.Fatal("Stats has no stage r52stats while two runs are in it")
		}
		if c.Running != 2 || c.Received != 2 || c.InFlight != 2 || c.Finished != 0 {
			t.Errorf("while both runs hold a call: %+v; want Running 2, Received 2, InFlight 2, Finished 0", c)
		}
		close(release)
		wg.Wait()
		for r := range 2 {
			if errs[r] != nil {
				t.Errorf("run %d: %v", r, errs[r])
			}
		}
		c, _ = stats.Get("r52stats")
		if c.Running != 0 || c.Received != 6 || c.Finished != 6 || c.InFlight != 0 || c.Failed != 0 {
			t.Errorf("after both runs: %+v; want Running 0, Received 6, Finished 6, InFlight 0, Failed 0", c)
		}
		if c.Total != 3 || c.Kind != "map" || c.Workers != 1 {
			t.Errorf("Info %+v; want Total 3, Kind map, Workers 1", c.Info)
		}
	})
}

// Doc (Until): "Then the sources upstream of Until take no new item ...,
// while every item they already produced goes on through the stages: calls
// in flight finish, Batch flushes its partial batch, and the sink returns
// nil"; "Put Until before a Tee"; (Tee) "n streams that each see every item
// of in"; (source.Chan) "Chan never closes ch and never drains it".
// Every value taken from the channel must reach the sink once per branch.
func TestReview52UntilBeforeTeeDrainsEveryBranch(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		for _, shape := range []string{"maps", "batch"} {
			for at := 1; at <= 12; at++ {
				const n = 10
				ch := make(chan int, n)
				for i := range n {
					ch <- i
				}
				stop, drain := context.WithCancel(context.Background())
				b := stage.Tee(stage.Until(source.Chan(ch), stop), 2)
				var left stage.Stream[int]
				if shape == "batch" {
					left = stage.Unbatch(stage.Batch(b[0], 4, 0))
				} else {
					left = stage.Map(b[0], func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2))
				}
				right := stage.Map(b[1], func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3), stage.Ordered())
				seen := map[int]int{}
				calls := 0
				err := stage.Run(context.Background(), stage.Merge(left, right), func(_ context.Context, v int, err error) error {
					if err != nil {
						return err
					}
					seen[v]++
					calls++
					if calls == at {
						drain()
					}
					return nil
				})
				drain()
				if err != nil {
					t.Errorf("%s, drain at %d: Run = %v, want nil", shape, at, err)
				}
				taken := n - len(ch)
				for v := range n {
					want := 0
					if v < taken {
						want = 2
					}
					if seen[v] != want {
						t.Errorf("%s, drain at %d: value %d reached the sink %d times, want %d (%d values taken)", shape, at, v, seen[v], want, taken)
					}
				}
				for v := taken; v < n; v++ {
					if got := <-ch; got != v {
						t.Fatalf("%s: the channel holds %d where %d was left", shape, got, v)
					}
				}
			}
		}
	})
}
