package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// User errors whose methods panic. PanicError: "the process never crashes
// because a user function panicked"; IsStop: "Asking calls err's own methods
// (Is, As, Unwrap), which a callback's error type defines: if one panics,
// IsStop reports false, and the error is a failure like any other".

// r43NilErr is a typed nil's bug: every method reads its receiver.
type r43NilErr struct{ cause error }

func (e *r43NilErr) Error() string { return "nil: " + e.cause.Error() }
func (e *r43NilErr) Unwrap() error { return e.cause }

// r43IsPanics panics when asked whether it is some error.
type r43IsPanics struct{ _ int }

func (*r43IsPanics) Error() string { return "is panics" }
func (*r43IsPanics) Is(error) bool { panic("review43: Is") }
func (*r43IsPanics) As(any) bool   { panic("review43: As") }
func (*r43IsPanics) Unwrap() error { panic("review43: Unwrap") }

// r43Uncomparable cannot be compared with ==.
type r43Uncomparable struct{ parts []string }

func (r43Uncomparable) Error() string { return "uncomparable" }

func r43BadErrors() map[string]func() error {
	return map[string]func() error{
		"nil-receiver":  func() error { var e *r43NilErr; return e },
		"methods-panic": func() error { return &r43IsPanics{} },
		"uncomparable":  func() error { return r43Uncomparable{parts: []string{"x"}} },
	}
}

// r43SameBad reports whether got is the bad error want made (by type).
func r43SameBad(got error, name string) bool {
	switch name {
	case "nil-receiver":
		e, ok := got.(*r43NilErr)
		return ok && e == nil
	case "methods-panic":
		_, ok := got.(*r43IsPanics)
		return ok
	case "uncomparable":
		_, ok := got.(r43Uncomparable)
		return ok
	}
	return false
}

// TestReview43BadErrorFromStage: item 0's call fails with a bad error, under
// each policy and option that looks at an item's error. FailFast and the
// Retry kinds must end the run with item 0's *stage.Error wrapping it
// unchanged ("The user's error is Err, unchanged"); Forward must deliver
// it; Handle passes it to h, which drops it.
func TestReview43BadErrorFromStage(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		opts := map[string][]stage.Option{
			"failfast": nil,
			"retryif":  {stage.RetryIf(2, 0, func(error) bool { return true })},
			"timeout":  {stage.Timeout(time.Hour)},
			"forward":  {stage.OnError(stage.Forward)},
			"handle":   {stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))},
			"budget":   {stage.OnError(stage.Budget(0, nil))},
		}
		for _, ename := range r43Names(r43BadErrors()) {
			mk := r43BadErrors()[ename]
			for _, oname := range r43Names(opts) {
				for _, sname := range []string{"run", "foreach", "slice", "count"} {
					t.Run(ename+"/"+oname+"/"+sname, func(t *testing.T) {
						fn := func(_ context.Context, i int) (int, error) {
							if i == 0 {
								return 0, mk()
							}
							return i, nil
						}
						s := stage.Map(r43Src(3), fn, append([]stage.Option{stage.Workers(2)}, opts[oname]...)...)
						var err error
						var fwd []error
						runcheck.Run(t, sname, func() {
							switch sname {
							case "run":
								err = stage.Run(context.Background(), s, func(_ context.Context, _ int, e error) error {
									if e != nil {
										fwd = append(fwd, e)
									}
									return nil
								})
							case "foreach":
								err = sink.ForEach(context.Background(), s, func(context.Context, int) error { return nil })
							case "slice":
								_, err = sink.Slice(context.Background(), s)
							case "count":
								_, err = sink.Count(context.Background(), s)
							}
						})
						switch oname {
						case "handle":
							if err != nil {
								t.Fatalf("h dropped the failure, but the sink returned %T", err)
							}
						case "forward":
							var fe *sink.ForwardedError
							switch {
							case sname == "run":
								if err != nil || len(fwd) != 1 {
									t.Fatalf("Run returned %T with %d forwarded errors, want nil and 1", err, len(fwd))
								}
								se, ok := r43StageErr(fwd[0])
								if !ok || !r43SameBad(se.Err, ename) {
									t.Fatalf("forwarded %T, want item 0's *stage.Error wrapping the bad error", fwd[0])
								}
							case !r43AsForwarded(err, &fe) || fe.Count != 1:
								t.Fatalf("sink returned %T, want a *ForwardedError of 1", err)
							default:
								se, ok := r43StageErr(fe.Sample[0])
								if !ok || !r43SameBad(se.Err, ename) {
									t.Fatalf("forwarded %T, want item 0's *stage.Error wrapping the bad error", fe.Sample[0])
								}
							}
						case "budget":
							if !errors.Is(err, stage.ErrBudget) {
								t.Fatalf("sink returned %T, want the budget's error", err)
							}
						default:
							se, ok := r43StageErr(err)
							if !ok || se.Index != 0 || !r43SameBad(se.Err, ename) {
								t.Fatalf("%s: sink returned %s, want item 0's *stage.Error wrapping the bad error", t.Name(), r43Describe(err))
							}
							wantAttempts := 1
							if oname == "retryif" {
								wantAttempts = 2
							}
							if se.Attempts != wantAttempts {
								t.Fatalf("Attempts = %d, want %d", se.Attempts, wantAttempts)
							}
						}
					})
				}
			}
		}
	})
}

// r43AsForwarded finds a *ForwardedError at the top of err or in a join,
// without asking the errors inside it anything.
func r43AsForwarded(err error, fe **sink.ForwardedError) bool {
	if f, ok := err.(*sink.ForwardedError); ok {
		*fe = f
		return true
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if r43AsForwarded(e, fe) {
				return true
			}
		}
	}
	return false
}

// TestReview43BadErrorOnceEnding: item 1 fails (FailFast) while item 0's
// call, the sink's callback or a handler waits for ctx.Done() and then
// returns a bad error. The run was ending already: Run: "the error f
// returned, or the error that had cut the run short before"; Handle: "the
// run's result stays what ended it". The sink must return item 1's
// *stage.Error whatever the bad error's methods do.
func TestReview43BadErrorOnceEnding(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, ename := range r43Names(r43BadErrors()) {
			mk := r43BadErrors()[ename]
			for _, where := range []string{"stage", "stage-retry", "stage-retryif", "stage-observed", "callback-run", "callback-foreach", "handler", "budget-handler"} {
				t.Run(ename+"/"+where, func(t *testing.T) {
					for range 50 {
						bar := newR43Barrier(1)
						var opts []stage.Option
						switch where {
						case "stage-retry":
							opts = append(opts, stage.Retry(3, 0))
						case "stage-retryif":
							opts = append(opts, stage.RetryIf(3, 0, func(error) bool { return true }))
						case "handler":
							opts = append(opts, stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
								if e.Index != 0 {
									return e
								}
								bar.arrive()
								<-ctx.Done()
								return mk()
							})))
						case "budget-handler":
							opts = append(opts, stage.OnError(stage.Budget(5, func(ctx context.Context, e *stage.Error) error {
								if e.Index != 0 {
									return e
								}
								bar.arrive()
								<-ctx.Done()
								return mk()
							})))
						}
						fn := func(ctx context.Context, i int) (int, error) {
							switch i {
							case 0:
								if where == "handler" || where == "budget-handler" {
									return 0, errR43A
								}
								if where == "callback-run" || where == "callback-foreach" {
									return 0, nil
								}
								bar.arrive()
								<-ctx.Done()
								return 0, mk()
							}
							return i, nil
						}
						// Item 1 fails in a second stage (h's calls never
						// overlap within one stage).
						second := func(_ context.Context, i int) (int, error) {
							if i == 1 {
								bar.wait() // item 0's call, its handler or its callback holds it
								return 0, errR43B
							}
							return i, nil
						}
						cb := func(ctx context.Context, v int) error {
							if v == 0 {
								bar.arrive()
								<-ctx.Done()
								return mk()
							}
							return nil
						}
						ctx := context.Background()
						if where == "stage-observed" {
							ctx = stage.Observe(ctx, &stage.Stats{})
							ctx = stage.Observe(ctx, stage.Logger(slog.New(slog.NewTextHandler(io.Discard, nil))))
						}
						s := stage.Map(stage.Map(r43Src(2), fn, append([]stage.Option{stage.Workers(2), stage.Buffer(1)}, opts...)...),
							second, stage.Workers(2), stage.Buffer(1))
						var err error
						runcheck.Run(t, where, func() {
							switch where {
							case "callback-run":
								err = stage.Run(ctx, s, func(ctx context.Context, v int, _ error) error { return cb(ctx, v) })
							default:
								err = sink.ForEach(ctx, s, cb)
							}
						})
						se, ok := r43StageErr(err)
						if !ok || se.Err != errR43B {
							t.Fatalf("sink returned %s, want item 1's *stage.Error", r43Describe(err))
						}
					}
				})
			}
		}
	})
}

// r43Describe names an error without calling its methods.
func r43Describe(err error) string {
	if se, ok := r43StageErr(err); ok {
		return fmt.Sprintf("*stage.Error{Stage: %q, Index: %d, Err: %T}", se.Stage, se.Index, se.Err)
	}
	if err == errR43A || err == errR43B {
		return err.Error()
	}
	return fmt.Sprintf("%T", err)
}

// TestReview43RetryBadErrorMethods: Retry: "Retry makes the stage call its
// function up to attempts times for an item whose call failed, unless the
// error is a *PanicError"; Error: "The user's error is Err, unchanged";
// "Err is the error the function returned, or a *PanicError" (a panic of
// the function); PanicError: "a panic in user code (a source function, a
// stage function, a sink callback) turned into an error". Item 0's function
// returns (does not panic) an error whose Unwrap/As panic: it is not a
// *PanicError, so it must be retried, and the *stage.Error must carry it
// unchanged with Attempts 2.
func TestReview43RetryBadErrorMethods(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		opts := map[string][]stage.Option{
			"retry":         {stage.Retry(2, 0)},
			"retry-timeout": {stage.Retry(2, 0), stage.Timeout(time.Hour)},
		}
		for _, ename := range []string{"nil-receiver", "methods-panic"} {
			mk := r43BadErrors()[ename]
			for _, oname := range r43Names(opts) {
				t.Run(ename+"/"+oname, func(t *testing.T) {
					calls := 0
					fn := func(_ context.Context, i int) (int, error) {
						calls++
						return 0, mk()
					}
					var err error
					runcheck.Run(t, oname, func() {
						err = stage.Run(context.Background(), stage.Map(r43Src(1), fn, append([]stage.Option{stage.Workers(1)}, opts[oname]...)...),
							func(context.Context, int, error) error { return nil })
					})
					se, ok := r43StageErr(err)
					switch {
					case !ok:
						t.Fatalf("sink returned %s, want item 0's *stage.Error", r43Describe(err))
					case !r43SameBad(se.Err, ename) || se.Attempts != 2 || calls != 2:
						t.Fatalf("sink returned *stage.Error{Err: %T, Attempts: %d} after %d calls; want Err the function's %s error, unchanged, after 2 attempts",
							se.Err, se.Attempts, calls, ename)
					}
				})
			}
		}
	})
}
