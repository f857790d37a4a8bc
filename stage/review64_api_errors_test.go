package stage_test

// Review 64: the API surface of package stage's error types and sentinels,
// from the documentation only: exported error types that a user can build
// print without panicking at their zero value, and each documented
// errors.Is / errors.As promise matches.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The exported error types are constructible by users (and by tests that
// fake a run's result): "Error reports the stage, the item's index and the
// cause", "Error reports the source's error", "Error reports the panic's
// value". Their zero values (Err nil, Value nil) must print, not panic.
func TestReview64APIZeroErrorTypesPrint(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"Error", &stage.Error{}},
		{"SourceError", &stage.SourceError{}},
		{"PanicError", &stage.PanicError{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				msg := tc.err.Error()
				if msg == "" {
					t.Errorf("(&stage.%s{}).Error() is empty", tc.name)
				}
				// Unwrap of a zero value is nil, and errors.Is/As walk it.
				if errors.Is(tc.err, context.Canceled) {
					t.Errorf("a zero %s claims to be context.Canceled", tc.name)
				}
				_ = fmt.Sprintf("%v %+v", tc.err, tc.err)
			})
		})
	}
}

// "PanicError ... Unwrap returns Value when it is an error (for example a
// runtime.Error), so that errors.Is and errors.As see the panic's cause."
// and "a panic becomes a *PanicError inside it [the *Error]".
func TestReview64APIPanicErrorSeenThroughError(t *testing.T) {
	cause := errors.New("review64 cause")
	_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{1}),
		func(context.Context, int) (int, error) { panic(cause) }))
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) || !errors.Is(err, cause) {
		t.Fatalf("err = %v: want an *Error wrapping a *PanicError wrapping the panic's error (As Error %v, As PanicError %v, Is cause %v)",
			err, errors.As(err, &se), errors.As(err, &pe), errors.Is(err, cause))
	}
	if pe.Value != cause || len(pe.Stack) == 0 {
		t.Fatalf("PanicError = {Value %v, Stack %d bytes}: want the panic's value and a stack", pe.Value, len(pe.Stack))
	}
}

// "Budget ... the (n+1)th, which h does not see, fails the run with an
// error that wraps both ErrBudget and that item's *Error (errors.Is and
// errors.As find each)." and "(which may be nil)".
func TestReview64APIBudgetErrorMatchesBoth(t *testing.T) {
	boom := errors.New("review64 boom")
	items := []int{0, 1, 2, 3, 4}
	_, err := sink.Slice(context.Background(), stage.Map(source.Slice(items),
		func(_ context.Context, v int) (int, error) { return 0, boom },
		stage.Workers(1), stage.OnError(stage.Budget(2, nil))))
	var se *stage.Error
	if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || !errors.Is(err, boom) {
		t.Fatalf("err = %v: want ErrBudget, an *Error and the item's cause all to match", err)
	}
	if se.Index != 2 || se.Input != 2 {
		t.Fatalf("the *Error is of item %d (input %v): want the third failed item, index 2", se.Index, se.Input)
	}
}

// "a nil task is an item error wrapping ErrNilTask", and a Tee run that
// leaves a branch unconsumed fails "with an error that wraps
// ErrUnconsumedBranch".
func TestReview64APISentinelsMatch(t *testing.T) {
	t.Run("ErrNilTask", func(t *testing.T) {
		tasks := []func(context.Context) (int, error){nil}
		_, err := sink.Slice(context.Background(), stage.Concurrent(source.Slice(tasks)))
		var se *stage.Error
		if !errors.Is(err, stage.ErrNilTask) || !errors.As(err, &se) {
			t.Fatalf("err = %v: want an *Error wrapping ErrNilTask", err)
		}
		if se.Attempts != 1 {
			t.Fatalf("Attempts = %d: the doc says a nil task's try counts as one", se.Attempts)
		}
	})
	t.Run("ErrUnconsumedBranch", func(t *testing.T) {
		b := stage.Tee(source.Slice([]int{1, 2}), 2)
		_, err := sink.Slice(context.Background(), b[0])
		if !errors.Is(err, stage.ErrUnconsumedBranch) {
			t.Fatalf("err = %v: want it to wrap ErrUnconsumedBranch", err)
		}
	})
	t.Run("ErrNoToken", func(t *testing.T) {
		// "if l can never give one (its burst is 0 and its limit not
		// rate.Inf ...), the attempt fails with ErrNoToken instead of
		// waiting for ever."
		l := rate.NewLimiter(1, 0)
		_, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{1}),
			func(_ context.Context, v int) (int, error) { return v, nil },
			stage.SharedRateLimit(l)))
		var se *stage.Error
		if !errors.Is(err, stage.ErrNoToken) || !errors.As(err, &se) || se.Attempts != 1 {
			t.Fatalf("err = %v: want an *Error (Attempts 1) wrapping ErrNoToken", err)
		}
	})
}

// panickyIsErr is a callback error whose Is method panics.
type panickyIsErr struct{}

func (panickyIsErr) Error() string   { return "review64 panicky Is" }
func (panickyIsErr) Is(error) bool   { panic("review64: Is panics") }
func (panickyIsErr) Unwrap() []error { return []error{stage.ErrStop} }

// "Asking calls err's own methods (Is, As, Unwrap), which a callback's
// error type defines: if one panics, IsStop reports false, and the error
// is a failure like any other (the panic is not raised again here)."
func TestReview64APIIsStopPanickyMethods(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		if stage.IsStop(panickyIsErr{}) {
			t.Fatal("IsStop reported true for an error whose Is panics")
		}
		if stage.IsStop(nil) {
			t.Fatal("IsStop(nil) = true")
		}
		// And as a callback's result: a failure, not a crash.
		err := stage.Run(context.Background(), source.Slice([]int{1}),
			func(context.Context, int, error) error { return panickyIsErr{} })
		if err == nil || !strings.Contains(fmt.Sprint(err), "review64 panicky Is") {
			t.Fatalf("Run returned %v: want the callback's error as a failure", err)
		}
	})
}

// "The zero ErrorPolicy is FailFast." and String returns "FailFast".
func TestReview64APIZeroErrorPolicyIsFailFast(t *testing.T) {
	var p stage.ErrorPolicy
	if got := p.String(); got != "FailFast" {
		t.Fatalf("zero ErrorPolicy String() = %q, want FailFast", got)
	}
	boom := errors.New("review64 boom")
	got, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{0, 1, 2}),
		func(_ context.Context, v int) (int, error) {
			if v == 0 {
				return 0, boom
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(p)))
	var fe *sink.ForwardedError
	if !errors.Is(err, boom) || errors.As(err, &fe) || len(got) != 0 {
		t.Fatalf("zero policy: got %v, %v: want the run failed fast with boom", got, err)
	}
}

// Run: "Run panics, before it starts the run, if ctx or f is nil or s is
// the zero Stream (... the message starts with "sluice:")"; Observe: "panics
// if ctx or o is nil". Each names its function.
func TestReview64APINilArgumentsPanicWithSluicePrefix(t *testing.T) {
	s := source.Slice([]int{1})
	f := func(context.Context, int, error) error { return nil }
	var nilCtx context.Context
	for name, call := range map[string]func(){
		"Run nil ctx":     func() { _ = stage.Run(nilCtx, s, f) },
		"Run zero Stream": func() { _ = stage.Run(context.Background(), stage.Stream[int]{}, f) },
		"Run nil f":       func() { _ = stage.Run[int](context.Background(), s, nil) },
		"Observe nil ctx": func() { stage.Observe(nilCtx, &stage.Stats{}) },
		"Observe nil o":   func() { stage.Observe(context.Background(), nil) },
	} {
		fn := strings.Fields(name)[0]
		if msg := panicMessage(call); !strings.HasPrefix(msg, "sluice: stage."+fn) {
			t.Errorf("%s: panic %q, want one that starts with %q", name, msg, "sluice: stage."+fn)
		}
	}
}
