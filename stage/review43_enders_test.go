package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// The package doc, "Error policies": "FailFast (default): the run's context
// is cancelled with the *Error as its cause (see context.Cause); calls in
// flight see ctx.Done(), no new item starts, and the sink returns the error
// after every goroutine has exited." And stage.Run: "Its result depends only
// on what f saw and returned, never on timing".
//
// Each scenario below races two enders of a run across every shape and
// sink: items 0 and 1 are the enders, item 2 is a call in flight that waits
// for ctx.Done() and records context.Cause, item 3 (in bounded shapes) can
// only start once an ender returned, so it must never start. Every outcome
// must be one the docs allow, and self-consistent: the cause the call in
// flight saw is the error the sink returned.

type r43Ender struct {
	// a and b are what items 0 and 1 do once all three calls are in flight.
	a, b func(ctx context.Context, p *r43Probe) (int, error)
	// external runs on a goroutine of its own once all three are in flight.
	external func()
	// check judges the sink's error and the causes seen.
	check func(err error, causes []error) string
}

func r43CheckFailure(wantA, wantB error) func(err error, causes []error) string {
	return func(err error, causes []error) string {
		se, ok := r43StageErr(err)
		if !ok {
			return fmt.Sprintf("sink returned %T %v, want the *stage.Error of item 0 or 1", err, err)
		}
		switch {
		case se.Index == 0 && errors.Is(se.Err, wantA):
		case se.Index == 1 && errors.Is(se.Err, wantB):
		default:
			// Merge and Tee index each branch from 0: the error decides.
			if !errors.Is(se, wantA) && !(wantB != nil && errors.Is(se, wantB)) {
				return fmt.Sprintf("sink returned %v (index %d), want item 0's or 1's failure", se, se.Index)
			}
		}
		for _, c := range causes {
			if !r43Identical(c, err) {
				return fmt.Sprintf("a call in flight saw cause %T %v, but the sink returned %T %v", c, c, err, err)
			}
		}
		return ""
	}
}

func TestReview43RacingEnders(t *testing.T) {
	panicA := func(context.Context, *r43Probe) (int, error) { panic(errR43A) }
	failA := func(context.Context, *r43Probe) (int, error) { return 0, errR43A }
	failB := func(context.Context, *r43Probe) (int, error) { return 0, errR43B }
	wait := func(ctx context.Context, p *r43Probe) (int, error) { return 0, p.await(ctx) }
	enders := map[string]func(cancel context.CancelCauseFunc) r43Ender{
		"two-failures": func(context.CancelCauseFunc) r43Ender {
			return r43Ender{a: failA, b: failB, check: r43CheckFailure(errR43A, errR43B)}
		},
		"panic-and-failure": func(context.CancelCauseFunc) r43Ender {
			var pe *stage.PanicError
			return r43Ender{a: panicA, b: failB, check: func(err error, causes []error) string {
				if errors.As(err, &pe) && !errors.Is(err, errR43A) {
					return fmt.Sprintf("the *PanicError %v does not unwrap to the panic's value", err)
				}
				return r43CheckFailure(errR43A, errR43B)(err, causes)
			}}
		},
		"failure-and-parent": func(cancel context.CancelCauseFunc) r43Ender {
			return r43Ender{a: failA, b: wait, external: func() { cancel(errR43P) },
				check: func(err error, causes []error) string {
					if _, ok := r43StageErr(err); ok {
						return r43CheckFailure(errR43A, nil)(err, causes)
					}
					if !errors.Is(err, context.Canceled) {
						return fmt.Sprintf("sink returned %T %v, want item 0's *stage.Error or the cancellation", err, err)
					}
					for _, c := range causes {
						if c != errR43P {
							return fmt.Sprintf("the sink returned the parent's cancellation %v, but a call in flight saw cause %T %v", err, c, c)
						}
					}
					return ""
				}}
		},
	}
	for _, ename := range r43Names(enders) {
		for _, shname := range r43Names(r43Shapes()) {
			sh := r43Shapes()[shname]
			for _, sname := range r43Names(r43Sinks()) {
				run := r43Sinks()[sname]
				t.Run(ename+"/"+shname+"/"+sname, func(t *testing.T) {
					fails := map[string]int{}
					var first string
					for range r43Reps / 3 {
						parent, cancel := context.WithCancelCause(context.Background())
						e := enders[ename](cancel)
						p := &r43Probe{}
						bar := newR43Barrier(3)
						var extDone sync.WaitGroup
						if e.external != nil {
							extDone.Go(func() { bar.wait(); e.external() })
						}
						n := 3
						if sh.bounded {
							n = 4
						}
						fn := func(ctx context.Context, i int) (int, error) {
							switch i {
							case 0:
								bar.arrive()
								return e.a(ctx, p)
							case 1:
								bar.arrive()
								return e.b(ctx, p)
							case 2:
								bar.arrive()
								return wait(ctx, p)
							default:
								p.violation("item %d started after the run ended (ctx.Err() = %v)", i, ctx.Err())
								return i, nil
							}
						}
						var err error
						runcheck.Run(t, shname, func() { err = run(parent, sh.build(n, fn)) })
						extDone.Wait()
						cancel(nil)
						msg := e.check(err, p.causes)
						if msg == "" && len(p.bad) > 0 {
							msg = p.bad[0]
						}
						if msg != "" {
							if first == "" {
								first = msg
							}
							fails[msg[:min(40, len(msg))]]++
						}
					}
					if first != "" {
						total := 0
						for _, c := range fails {
							total += c
						}
						t.Errorf("%d/%d runs: first: %s", total, r43Reps/3, first)
					}
				})
			}
		}
	}
}
