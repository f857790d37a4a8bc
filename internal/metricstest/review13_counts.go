package metricstest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Promise (New): received counts items taken for a call, finished calls
// ended with outcome ok or error ("error" when the item failed), in flight
// items taken and not finished, duration one observation per call; labels
// stage and kind (and outcome on finished), per stage only; received and
// finished are counters, in flight goes up and down.
func review13CountsPerStage(t *testing.T, newEnv func(testing.TB) Env) {
	const n = 300
	for _, w := range []int{1, 4, -1} {
		for _, ordered := range []bool{false, true} {
			t.Run(fmt.Sprint(w, ordered), func(t *testing.T) {
				env := newEnv(t)
				opts := []stage.Option{stage.Workers(w)}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				mapped := stage.Map(source.Slice(Ints(n)), func(_ context.Context, x int) (int, error) {
					if x%5 == 0 {
						return 0, errR13
					}
					return x, nil
				}, append(opts, stage.Name("m"), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))...)
				kept := stage.Filter(mapped, func(_ context.Context, x int) (bool, error) { return x%2 == 0, nil }, opts...)
				Within(t, func() {
					if _, err := sink.Slice(stage.Observe(context.Background(), env.Obs), kept); err != nil {
						t.Errorf("sink: %v", err)
					}
				})
				all := MustRead(t, env.Read)
				recv, ok, failed := r13Balanced(t, all, "m")
				if recv != n || failed != n/5 || ok != n-n/5 {
					t.Errorf("m: received %v ok %v error %v; want %d %d %d", recv, ok, failed, n, n-n/5, n/5)
				}
				recv, ok, failed = r13Balanced(t, all, "filter#2")
				if recv != n-n/5 || ok != n-n/5 || failed != 0 {
					t.Errorf("filter#2: received %v ok %v error %v", recv, ok, failed)
				}
				for _, p := range all {
					if want := env.Labels.Keys(p.Metric); !slices.Equal(p.Keys, want) {
						t.Errorf("%v labels %v, want %v", p.Metric, p.Keys, want)
					}
					if wantKind := map[string]string{"m": "map", "filter#2": "filter"}[p.Stage]; p.Kind != wantKind {
						t.Errorf("%v %+v: kind, want %q", p.Metric, p, wantKind)
					}
					if p.Metric == Finished && p.Outcome != "ok" && p.Outcome != "error" {
						t.Errorf("outcome %q", p.Outcome)
					}
					if p.Metric == InFlight && p.Shape != ShapeUpDown {
						t.Errorf("in flight is a %v: want a value that goes up and down", p.Shape)
					}
					if (p.Metric == Received || p.Metric == Finished) && p.Shape != ShapeCounter {
						t.Errorf("%v is a %v: want a counter", p.Metric, p.Shape)
					}
				}
			})
		}
	}
}

// Promise: "a call cut short by the end of the run (another stage's
// failure, a cancellation) did not fail": its outcome is ok. One call fails
// (FailFast), or the caller cancels, or sink.First stops the run, while two
// others wait for the run's end.
func review13CutShortIsOK(t *testing.T, newEnv func(testing.TB) Env) {
	for _, how := range []string{"failfast", "cancel", "first"} {
		t.Run(how, func(t *testing.T) {
			env := newEnv(t)
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			peers := make(chan struct{}, 3)
			s := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, x int) (int, error) {
				if x == 0 && how != "cancel" {
					<-peers
					<-peers
					if how == "first" {
						return 7, nil
					}
					return 0, errR13
				}
				peers <- struct{}{}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(3), stage.Buffer(1), stage.Name("m"))
			if how == "cancel" {
				go func() {
					for range 3 {
						<-peers
					}
					cancel()
				}()
			}
			ctx := stage.Observe(parent, env.Obs)
			var err error
			Within(t, func() {
				if how == "first" {
					_, _, err = sink.First(ctx, s)
				} else {
					_, err = sink.Slice(ctx, s)
				}
			})
			switch how {
			case "failfast":
				if !errors.Is(err, errR13) {
					t.Fatalf("sink %v", err)
				}
			case "cancel":
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("sink %v", err)
				}
			case "first":
				if err != nil {
					t.Fatalf("sink %v", err)
				}
			}
			recv, ok, failed := r13Balanced(t, MustRead(t, env.Read), "m")
			wantFailed := 0.0
			if how == "failfast" {
				wantFailed = 1
			}
			if recv != 3 || failed != wantFailed || ok != 3-wantFailed {
				t.Errorf("received %v ok %v error %v; want 3 %v %v", recv, ok, failed, 3-wantFailed, wantFailed)
			}
		})
	}
}

// r13Endings are the ways a run ends, each of which the sink reports as
// nil (an error is a failure of the scenario).
var r13Endings = map[string]func(ctx context.Context, cancel context.CancelFunc, s stage.Stream[int]) error{
	"first": func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
		_, _, err := sink.First(ctx, s)
		return err
	},
	"break": func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
		i := 0
		for _, err := range sink.All(ctx, s) {
			if err != nil {
				return err
			}
			if i++; i == 50 {
				break
			}
		}
		return nil
	},
	"cancel": func(ctx context.Context, cancel context.CancelFunc, s stage.Stream[int]) error {
		i := 0
		err := sink.ForEach(ctx, s, func(context.Context, int) error {
			if i++; i == 50 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			return fmt.Errorf("want Canceled: %w", err)
		}
		return nil
	},
	"errstop": func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
		i := 0
		return stage.Run(ctx, s, func(context.Context, int, error) error {
			if i++; i == 50 {
				return stage.ErrStop
			}
			return nil
		})
	},
	"complete": func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
		_, err := sink.Count(ctx, s)
		return err
	},
}

// Promise: in flight is "items taken and not finished": back to 0 once the
// sink returned, whatever ended the run; many items, every worker mode.
func review13InFlightZeroAfterEveryEnding(t *testing.T, newEnv func(testing.TB) Env) {
	const n = 2000
	for name, run := range r13Endings {
		for _, w := range []int{1, 4, -1} {
			t.Run(fmt.Sprint(name, w), func(t *testing.T) {
				env := newEnv(t)
				parent, cancel := context.WithCancel(context.Background())
				defer cancel()
				s := stage.Map(source.Slice(Ints(n)), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(w))
				s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(w))
				var err error
				Within(t, func() { err = run(stage.Observe(parent, env.Obs), cancel, s) })
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				all := MustRead(t, env.Read)
				r13Balanced(t, all, "map#1")
				r13Balanced(t, all, "filter#2")
			})
		}
	}
}
