package stage_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// TestReview43UntilDrain: Until: "when stop is done ... the sources
// upstream of Until take no new item (a source blocked waiting for one ...
// sees its context end and stops quietly), while every item they already
// produced goes on through the stages: calls in flight finish, Batch
// flushes its partial batch, and the sink returns nil". Items 0, 1 and 2 are
// in flight; the source waits for a fourth; then stop is cancelled; once the
// source has seen its context end, the calls are released. Their own ctx
// must not have ended; with "ok" every item arrives and the sink returns
// nil; with "fail" item 1 fails during the drain, which ends the run as a
// failure (FailFast), and item 2, waiting for ctx.Done(), must see that
// *stage.Error as the cause.
func TestReview43UntilDrain(t *testing.T) {
	for _, variant := range []string{"ok", "fail"} {
		for _, batch := range []bool{false, true} {
			for _, sname := range r43Names(r43Sinks()) {
				t.Run(fmt.Sprintf("%s/batch=%v/%s", variant, batch, sname), func(t *testing.T) {
					fails, first := 0, ""
					for range r43Reps / 3 {
						stop, drain := context.WithCancel(context.Background())
						srcEnded, srcWaiting := make(chan struct{}), make(chan struct{})
						src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
							i := 0
							return func(ctx context.Context) (int, error) {
								if i < 3 {
									i++
									return i - 1, nil
								}
								close(srcWaiting)
								<-ctx.Done()
								close(srcEnded)
								return 0, ctx.Err()
							}, nil
						})
						bar, checked := newR43Barrier(3), newR43Barrier(3)
						go func() { bar.wait(); <-srcWaiting; drain() }()
						p := &r43Probe{}
						fn := func(ctx context.Context, i int) (int, error) {
							bar.arrive()
							<-srcEnded
							if ctx.Err() != nil {
								p.violation("item %d's ctx ended during the drain (cause %v)", i, context.Cause(ctx))
							}
							checked.arrive() // no item fails before all three looked
							if variant == "fail" {
								switch i {
								case 1:
									return 0, errR43A
								case 2:
									return 0, p.await(ctx)
								}
							}
							return i, nil
						}
						var s stage.Stream[int] = stage.Map(stage.Until(src, stop), fn, stage.Workers(4))
						if batch {
							s = stage.Unbatch(stage.Batch(s, 10, 0))
						}
						var err error
						var got []int
						runcheck.Run(t, sname, func() {
							if sname == "run" {
								err = stage.Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
									got = append(got, v)
									return nil
								})
							} else {
								err = r43Sinks()[sname](context.Background(), s)
							}
						})
						drain()
						var msg string
						if len(p.bad) > 0 {
							msg = p.bad[0]
						} else if variant == "ok" {
							if err != nil {
								msg = fmt.Sprintf("drained run returned %T %v, want nil", err, err)
							} else if sname == "run" && len(got) != 3 {
								msg = fmt.Sprintf("drained run delivered %v, want all three items", got)
							}
						} else {
							msg = r43CheckFailure(errR43A, nil)(err, p.causes)
						}
						if msg != "" {
							fails++
							if first == "" {
								first = msg
							}
						}
					}
					if fails > 0 {
						t.Errorf("%d/%d runs: first: %s", fails, r43Reps/3, first)
					}
				})
			}
		}
	}
}
