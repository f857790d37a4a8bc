package otelmetric_test

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// stage.Watcher.Finished: "A call that runtime.Goexit ended (see ErrGoexit)
// is reported as cut short too"; otelmetric.New: "a call cut short by the end of
// the run ... did not fail", "sluice.stage.in_flight  items taken and not
// finished". A Goexit on a worker goroutine of each kind of stage (under
// KeyBy, Ordered, Retry, after an emit): the run fails with ErrGoexit, no
// item stays in flight, no call counts as an error, and the series match
// the engine's calls and Stats. In a child process.
func TestReview34OtelGoexitEveryKind(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		reg, obs := r34New(t)
		tp := r34NewTap(obs)
		var stats stage.Stats
		ctx := stage.Observe(stage.Observe(context.Background(), tp), &stats)
		in := func() stage.Stream[int] { return source.Slice(r34Ints(12)) }
		g := func(v int) {
			if v == 5 {
				runtime.Goexit()
			}
		}
		attempt := 0
		pipes := map[string]func() error{
			"map": func() error {
				_, err := sink.Count(ctx, stage.Map(in(), func(_ context.Context, v int) (int, error) { g(v); return v, nil },
					stage.Name("gmap"), stage.Workers(2), stage.Buffer(1)))
				return err
			},
			"ordered": func() error {
				_, err := sink.Count(ctx, stage.Map(in(), func(_ context.Context, v int) (int, error) { g(v); return v, nil },
					stage.Name("gord"), stage.Workers(3), stage.Ordered()))
				return err
			},
			"keyby": func() error {
				_, err := sink.Count(ctx, stage.Filter(in(), func(_ context.Context, v int) (bool, error) { g(v); return true, nil },
					stage.Name("gkey"), stage.Workers(3), stage.KeyBy(func(v int) int { return v % 2 })))
				return err
			},
			"flatmap": func() error {
				_, err := sink.Count(ctx, stage.FlatMap(in(), func(_ context.Context, v int) ([]int, error) { g(v); return []int{v, v}, nil },
					stage.Name("gflat"), stage.Workers(2), stage.Buffer(1)))
				return err
			},
			"retry": func() error {
				_, err := sink.Count(ctx, stage.Map(in(), func(_ context.Context, v int) (int, error) {
					if v == 5 {
						if attempt++; attempt == 2 {
							runtime.Goexit()
						}
						return 0, errR34
					}
					return v, nil
				}, stage.Name("gretry"), stage.Workers(2), stage.Buffer(1), stage.Retry(3, time.Microsecond)))
				return err
			},
			"apply": func() error {
				_, err := sink.Count(ctx, stage.Apply(in(), func(_ context.Context, v int, emit func(int) bool) error {
					emit(v)
					g(v)
					return nil
				}, stage.Name("gapply"), stage.Workers(2), stage.Buffer(1)))
				return err
			},
			"concurrent": func() error {
				tasks := stage.Map(in(), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
					return func(context.Context) (int, error) { g(v); return v, nil }, nil
				}, stage.Name("gmk"))
				_, err := sink.Count(ctx, stage.Concurrent(tasks, stage.Name("gconc"), stage.Workers(2), stage.Buffer(1)))
				return err
			},
		}
		for name, p := range pipes {
			var err error
			runcheck.Run(t, name, func() { err = p() })
			if !errors.Is(err, stage.ErrGoexit) {
				t.Errorf("%s: run = %v, want ErrGoexit", name, err)
			}
		}
		snap := r34Read(t, reg)
		for k, p := range snap {
			if k.metric == "in_flight" && p.value != 0 {
				t.Errorf("in_flight{%s,%s} = %v after the runs, want 0", k.stage, k.kind, p.value)
			}
			if k.metric == "finished" && k.outcome == "error" && p.value != 0 {
				t.Errorf("finished{%s,%s,error} = %v: a call ended by Goexit is cut short, not failed", k.stage, k.kind, p.value)
			}
		}
		r34CheckTap(t, snap, tp)
		r34CheckStats(t, snap, &stats)
	})
}
