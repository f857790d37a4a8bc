package stage_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// failMultiplesOf3 fails every multiple of 3.
func failMultiplesOf3(_ context.Context, x int) (int, error) {
	if x%3 == 0 {
		return 0, errBoom
	}
	return x, nil
}

func TestHandleDropsWhatTheHandlerAccepts(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var dead []int
			g := &gauge{}
			h := func(_ context.Context, e *stage.Error) error {
				g.enter()
				defer g.leave()
				if !errors.Is(e, errBoom) || e.Stage != "check" || e.Attempts != 1 {
					t.Errorf("handler got %+v, want stage check, errBoom, 1 attempt", e)
				}
				dead = append(dead, e.Input.(int)) // no lock: calls never overlap
				return nil
			}
			s := stage.Map(source.Slice(ints(30)), failMultiplesOf3, m.opts(stage.Name("check"), stage.OnError(stage.Handle(h)))...)
			got, err := sink.Slice(context.Background(), stage.Map(s, double, m.opts()...))
			if err != nil {
				t.Fatalf("err = %v, want nil", err)
			}
			slices.Sort(got)
			slices.Sort(dead)
			var wantGot, wantDead []int
			for x := range 30 {
				if x%3 == 0 {
					wantDead = append(wantDead, x)
				} else {
					wantGot = append(wantGot, 2*x)
				}
			}
			if !slices.Equal(got, wantGot) || !slices.Equal(dead, wantDead) {
				t.Fatalf("got %v and dead letters %v, want %v and %v", got, dead, wantGot, wantDead)
			}
			if g.max > 1 {
				t.Fatalf("%d handler calls at once, want 1", g.max)
			}
		})
	}
}

func TestHandleErrorFailsTheRun(t *testing.T) {
	errTooMany := errors.New("too many")
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			h := func(context.Context, *stage.Error) error { return errTooMany }
			_, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(30)), failMultiplesOf3, m.opts(stage.OnError(stage.Handle(h)))...))
			if !errors.Is(err, errTooMany) {
				t.Fatalf("err = %v, want the handler's error", err)
			}
		})
	}
}

func TestHandlePanicFailsTheRun(t *testing.T) {
	h := func(context.Context, *stage.Error) error { panic("handler bug") }
	_, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(30)), failMultiplesOf3, stage.OnError(stage.Handle(h))))
	var pe *stage.PanicError
	var se *stage.Error
	if !errors.As(err, &pe) || !errors.As(err, &se) || pe.Value != "handler bug" {
		t.Fatalf("err = %v, want a *stage.Error wrapping the handler's PanicError", err)
	}
}

func TestBudget(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			// 0..29 has 10 multiples of 3.
			for _, tc := range []struct {
				budget int
				fails  bool
			}{{0, true}, {9, true}, {10, false}, {20, false}} {
				seen := 0
				pol := stage.Budget(tc.budget, func(context.Context, *stage.Error) error { seen++; return nil })
				s := stage.Map(source.Slice(ints(30)), failMultiplesOf3, m.opts(stage.OnError(pol))...)
				for run := range 2 { // the budget is per run
					n, err := sink.Count(context.Background(), s)
					var se *stage.Error
					switch {
					case tc.fails && (!errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || !errors.Is(err, errBoom)):
						t.Fatalf("budget %d, run %d: err = %v, want ErrBudget wrapping the *stage.Error", tc.budget, run, err)
					case !tc.fails && (err != nil || n != 20):
						t.Fatalf("budget %d, run %d: %d, %v; want 20, nil", tc.budget, run, n, err)
					}
				}
				if !tc.fails && seen != 20 {
					t.Fatalf("budget %d: handler saw %d errors in two runs, want 20", tc.budget, seen)
				}
			}
		})
	}
}

func TestPolicyNames(t *testing.T) {
	for p, want := range map[stage.ErrorPolicy]string{
		stage.FailFast:       "FailFast",
		stage.Forward:        "Forward",
		stage.Budget(3, nil): "Budget(3)",
	} {
		if p.String() != want {
			t.Errorf("String() = %q, want %q", p.String(), want)
		}
	}
	// "The zero ErrorPolicy is FailFast" (a separate check: as a map key
	// it would be the same key as FailFast).
	if got := (stage.ErrorPolicy{}).String(); got != "FailFast" {
		t.Errorf("zero policy: String() = %q, want FailFast", got)
	}
}
