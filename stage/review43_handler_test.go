package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// A handler of a Handle or Budget policy in the first stage ends the run
// while the second stage's item 1 fails: Handle: "if h returns an error,
// the run fails with it as with FailFast, and the sink returns h's error";
// Budget: "fails the run with an error that wraps both ErrBudget and that
// item's *Error"; "A panic in h fails the run with an *Error wrapping a
// *PanicError". FailFast: "the run's context is cancelled with the *Error
// as its cause". Item 2 waits in the second stage for ctx.Done(); the cause
// it sees must be what the sink returns. And Handle: "(Once the run is
// ending, an error of h's that is the context's error or the run's cause
// means h was cut short: the run's result stays what ended it".

var errR43H = errors.New("review43: handler")

func TestReview43HandlerEnders(t *testing.T) {
	type handlerCase struct {
		policy func(bar *r43Barrier) stage.ErrorPolicy
		// item0Arrives: item 0's call arrives at the barrier (else h does)
		item0Arrives bool
		// ok judges the sink's error when it is not item 1's *Error.
		ok func(err error) bool
		// cutShort: h waits for the run to end, so item 1 always wins.
		cutShort bool
	}
	isH := func(err error) bool { return r43Identical(err, errR43H) }
	cases := map[string]handlerCase{
		"handle-error": {policy: func(bar *r43Barrier) stage.ErrorPolicy {
			return stage.Handle(func(context.Context, *stage.Error) error { bar.arrive(); return errR43H })
		}, ok: isH},
		"handle-panic": {policy: func(bar *r43Barrier) stage.ErrorPolicy {
			return stage.Handle(func(context.Context, *stage.Error) error { bar.arrive(); panic(errR43H) })
		}, ok: func(err error) bool {
			var pe *stage.PanicError
			se, ok := r43StageErr(err)
			return ok && errors.As(se.Err, &pe) && errors.Is(err, errR43H)
		}},
		"budget-0": {policy: func(*r43Barrier) stage.ErrorPolicy { return stage.Budget(0, nil) }, item0Arrives: true,
			ok: func(err error) bool {
				var se *stage.Error
				return errors.Is(err, stage.ErrBudget) && errors.As(err, &se) && se.Index == 0 && errors.Is(err, errR43A)
			}},
		"budget-1-h-error": {policy: func(bar *r43Barrier) stage.ErrorPolicy {
			return stage.Budget(1, func(context.Context, *stage.Error) error { bar.arrive(); return errR43H })
		}, ok: isH},
		"handle-cut-short-err": {policy: func(bar *r43Barrier) stage.ErrorPolicy {
			return stage.Handle(func(ctx context.Context, _ *stage.Error) error { bar.arrive(); <-ctx.Done(); return ctx.Err() })
		}, cutShort: true},
		"handle-cut-short-cause": {policy: func(bar *r43Barrier) stage.ErrorPolicy {
			return stage.Handle(func(ctx context.Context, _ *stage.Error) error {
				bar.arrive()
				<-ctx.Done()
				return context.Cause(ctx)
			})
		}, cutShort: true},
		"handle-cut-short-wrapped-cause": {policy: func(bar *r43Barrier) stage.ErrorPolicy {
			return stage.Handle(func(ctx context.Context, _ *stage.Error) error {
				bar.arrive()
				<-ctx.Done()
				return fmt.Errorf("dead letter not written: %w", context.Cause(ctx))
			})
		}, cutShort: true},
		"budget-cut-short-err": {policy: func(bar *r43Barrier) stage.ErrorPolicy {
			return stage.Budget(3, func(ctx context.Context, _ *stage.Error) error { bar.arrive(); <-ctx.Done(); return ctx.Err() })
		}, cutShort: true},
	}
	for _, cname := range r43Names(cases) {
		c := cases[cname]
		for _, ordered := range []bool{false, true} {
			for _, sname := range r43Names(r43Sinks()) {
				t.Run(fmt.Sprintf("%s/ordered=%v/%s", cname, ordered, sname), func(t *testing.T) {
					fails, first := 0, ""
					for range r43Reps / 2 {
						bar := newR43Barrier(3)
						p := &r43Probe{}
						s1 := stage.Map(stage.Map(stage.Map(r43Src(3), func(_ context.Context, i int) (int, error) {
							if i == 0 {
								if c.item0Arrives {
									bar.arrive()
								}
								return 0, errR43A
							}
							return i, nil
						}, stage.Workers(3), stage.OnError(c.policy(bar)), stage.Name("first")), double, stage.Workers(1)),
							func(ctx context.Context, i int) (int, error) {
								switch i {
								case 2:
									bar.arrive()
									return 0, errR43B
								case 4:
									bar.arrive()
									return 0, p.await(ctx)
								}
								p.violation("second stage got %d", i)
								return i, nil
							}, r43Opts(ordered, stage.Workers(3), stage.Name("second"))...)
						var err error
						runcheck.Run(t, cname, func() { err = r43Sinks()[sname](context.Background(), s1) })
						var msg string
						se, isSE := r43StageErr(err)
						switch {
						case isSE && se.Stage == "second" && se.Err == errR43B:
						case c.cutShort:
							msg = fmt.Sprintf("h was cut short, but the sink returned %T %v, want the second stage's failure", err, err)
						case !c.ok(err):
							msg = fmt.Sprintf("sink returned %T %v, want the handler's end or the second stage's failure", err, err)
						}
						if msg == "" {
							for _, cs := range p.causes {
								if !r43Identical(cs, err) {
									msg = fmt.Sprintf("a call in flight saw cause %T %v, but the sink returned %T %v", cs, cs, err, err)
								}
							}
						}
						if msg == "" && len(p.bad) > 0 {
							msg = p.bad[0]
						}
						if msg != "" {
							fails++
							if first == "" {
								first = msg
							}
						}
					}
					if fails > 0 {
						t.Errorf("%d/%d runs: first: %s", fails, r43Reps/2, first)
					}
				})
			}
		}
	}
}

// r43Src is a source of 0..n-1 that may wait (not a slice), so that no
// call runs in a consumer's goroutine.
func r43Src(n int) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, errEOF
			}
			i++
			return i - 1, nil
		}, nil
	})
}

func r43Opts(ordered bool, opts ...stage.Option) []stage.Option {
	if ordered {
		opts = append(opts, stage.Ordered())
	}
	return opts
}
