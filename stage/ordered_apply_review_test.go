package stage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// r2OrdEnd is how an ordered run ends.
type r2OrdEnd int

const (
	r2OrdAll      r2OrdEnd = iota // every item
	r2OrdStop                     // the sink returns ErrStop at output stopAt
	r2OrdCancel                   // the sink cancels the parent at output stopAt
	r2OrdFailFast                 // item failAt's f fails after its first output
)

func (e r2OrdEnd) String() string {
	return [...]string{"all", "ErrStop", "cancel", "failfast"}[e]
}

// r2OrderedRun runs Apply(Ordered, Workers(w), Buffer(b)) over an AckSource
// of n items, item x emitting outs(x) outputs (x, 0), (x, 1), ... and then
// waiting until the sink has received its last one (mode "after"), or
// waiting after each output until the sink has received it (mode "each").
// It checks that the sink sees the outputs in input order, none lost or
// repeated, that the run does not hang, and the acknowledgements.
func r2OrderedRun(t *testing.T, n, w, b int, mode string, end r2OrdEnd, stopAt, failAt int) bool {
	t.Helper()
	outs := func(x int) int {
		if x%10 == 9 {
			return 3*(2*max(w, 1)+b) + 1 // more than the queue and the window hold
		}
		return 1 + (x*7)%5
	}
	what := fmt.Sprintf("%d items, Workers(%d), Buffer(%d), wait %s, end %v", n, w, b, mode, end)
	// seen[x][j] is closed when the sink has received output j of item x.
	seen := make([][]chan struct{}, n)
	for x := range seen {
		seen[x] = make([]chan struct{}, outs(x))
		for j := range seen[x] {
			seen[x][j] = make(chan struct{})
		}
	}
	// waitSeen waits until the sink received output j of item x; a run
	// that is cancelled first is cut short, unless the output was seen.
	waitSeen := func(ctx context.Context, x, j int) error {
		select {
		case <-seen[x][j]:
			return nil
		case <-ctx.Done():
		case <-time.After(10 * time.Second): // watchdog only
			return fmt.Errorf("item %d waited for its output %d: %w", x, j, errR2Watchdog)
		}
		select {
		case <-seen[x][j]:
			return nil
		default:
			return ctx.Err()
		}
	}
	type out struct{ x, j int }
	// returned[x]: item x's call returned nil. A call that a cancellation
	// cut short (waitSeen gave up just before the sink marked the output
	// seen) failed because the run was ending: its item is abandoned even
	// if the sink took every output.
	returned := make([]atomic.Bool, n)
	body := func(ctx context.Context, x int, emit func(out) bool) error {
		for j := range outs(x) {
			if !emit(out{x, j}) {
				return ctx.Err()
			}
			if end == r2OrdFailFast && x == failAt {
				return errR2
			}
			if mode == "each" {
				if err := waitSeen(ctx, x, j); err != nil {
					return err
				}
			}
		}
		if mode == "after" {
			return waitSeen(ctx, x, outs(x)-1)
		}
		return nil
	}
	f := func(ctx context.Context, x int, emit func(out) bool) error {
		err := body(ctx, x, emit)
		returned[x].Store(err == nil)
		return err
	}
	src := &r2AckSource{}
	opts := []stage.Option{stage.Workers(w), stage.Ordered()}
	if b > 0 {
		opts = append(opts, stage.Buffer(b))
	}
	s := stage.Apply(src.stream(n), f, opts...)
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []out
	var err error
	if !r2Guard(t, what, cancel, func() {
		err = stage.Run(parent, s, func(_ context.Context, v out, ferr error) error {
			if ferr != nil {
				return ferr
			}
			got = append(got, v)
			if v.x >= 0 && v.x < n && v.j >= 0 && v.j < outs(v.x) {
				close(seen[v.x][v.j]) // panics on a repeat: what the check below reports anyway
			}
			if len(got) == stopAt {
				switch end {
				case r2OrdStop:
					return stage.ErrStop
				case r2OrdCancel:
					cancel()
				}
			}
			return nil
		})
	}) {
		return false
	}
	// The outputs: a prefix of the input order.
	var want []out
	for x := range n {
		for j := range outs(x) {
			want = append(want, out{x, j})
		}
	}
	bad := len(got) > len(want)
	for i := 0; !bad && i < len(got); i++ {
		bad = got[i] != want[i]
	}
	if bad {
		t.Errorf("%s: the sink saw %v..., want a prefix of %v...", what, got[:min(len(got), 20)], want[:min(len(want), 20)])
		return true
	}
	switch end {
	case r2OrdAll:
		if err != nil || len(got) != len(want) {
			t.Errorf("%s: err %v, %d outputs, want nil, %d", what, err, len(got), len(want))
		}
	case r2OrdStop:
		if err != nil || len(got) != stopAt {
			t.Errorf("%s: err %v, %d outputs; want nil, %d", what, err, len(got), stopAt)
		}
	case r2OrdCancel:
		if !errors.Is(err, context.Canceled) || len(got) != stopAt {
			t.Errorf("%s: err %v, %d outputs; want context.Canceled, %d", what, err, len(got), stopAt)
		}
	case r2OrdFailFast:
		if !errors.Is(err, errR2) {
			t.Errorf("%s: err %v, want %v", what, err, errR2)
		}
	}
	// Acknowledgements: Done(nil) once for each item whose last output the
	// sink received and whose call returned nil, for no other; Done(err)
	// only for the failed item.
	full := map[int]bool{}
	for _, v := range got {
		if v.j == outs(v.x)-1 && returned[v.x].Load() {
			full[v.x] = true
		}
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	var msgs []string
	for x, c := range src.nils {
		switch {
		case full[x] && c != 1 && !(end == r2OrdFailFast && x == failAt):
			msgs = append(msgs, fmt.Sprintf("item %d, all outputs committed and its call returned nil: %d Done(nil)", x, c))
		case !full[x] && c != 0:
			msgs = append(msgs, fmt.Sprintf("item %d, not all outputs committed or its call cut short: %d Done(nil)", x, c))
		}
	}
	for _, e := range src.errs {
		if end != r2OrdFailFast || !errors.Is(e, errR2) || len(src.errs) != 1 {
			msgs = append(msgs, fmt.Sprintf("Done(%v)", e))
		}
	}
	if end == r2OrdFailFast && len(src.errs) != 1 {
		msgs = append(msgs, fmt.Sprintf("the failed item: %d Done(err), want 1", len(src.errs)))
	}
	if len(msgs) > 0 {
		if len(msgs) > 6 {
			msgs = append(msgs[:6], fmt.Sprintf("... %d in all", len(msgs)))
		}
		t.Errorf("%s: acknowledgements: %s", what, strings.Join(msgs, "; "))
	}
	return true
}

// TestOrderedWaitForOwnOutputs: with Ordered, an item's outputs go
// to the queue once the items before it have left, even while f still
// runs, so f may wait for the sink to receive its own outputs (after its
// last one, or after each one). Workers 2..8, Buffer 0..16: outputs in
// exact input order, none lost, no hang, every item acknowledged once.
func TestOrderedWaitForOwnOutputs(t *testing.T) {
	reps := 4
	if testing.Short() {
		reps = 1
	}
	for range reps {
		for _, w := range []int{2, 3, 4, 8, -1} {
			for _, b := range []int{0, 1, 4, 16} {
				for _, mode := range []string{"after", "each"} {
					if !r2OrderedRun(t, 120, w, b, mode, r2OrdAll, 0, 0) {
						return
					}
				}
			}
		}
	}
}

// TestOrderedEarlyEnd: the same runs, ended mid-stream by the sink's
// ErrStop, by a cancellation of the parent, or by a FailFast item: no
// hang, a prefix of the input order, and only the items whose outputs were
// all committed acknowledged (the failed one with its error).
func TestOrderedEarlyEnd(t *testing.T) {
	for _, w := range []int{2, 3, 5, 8, -1} {
		for _, b := range []int{0, 2, 16} {
			for _, mode := range []string{"after", "each"} {
				for _, end := range []r2OrdEnd{r2OrdStop, r2OrdCancel, r2OrdFailFast} {
					for _, at := range []int{1, 2, 7, 30, 111} {
						if !r2OrderedRun(t, 80, w, b, mode, end, at, at%80) {
							return
						}
					}
				}
			}
		}
	}
}

// TestOrderedPolicies: an Ordered Apply whose items emit outputs and
// then fail, under Forward (the *Error takes its place after the item's
// outputs, in input order) and Handle (the failure is dropped): order kept,
// nothing lost, each item told Done once (Done(err) when its forwarded
// error reached the sink, else nil).
func TestOrderedPolicies(t *testing.T) {
	const n = 150
	for _, w := range []int{2, 4, 8} {
		for _, b := range []int{0, 3} {
			for _, pol := range []string{"Forward", "Handle"} {
				for rep := range 3 {
					policy := stage.Forward
					if pol == "Handle" {
						policy = stage.Handle(func(context.Context, *stage.Error) error { return nil })
					}
					fails := func(x int) bool { return x%7 == 3 }
					f := func(ctx context.Context, x int, emit func(int) bool) error {
						for j := range 1 + x%3 {
							if !emit(x*10 + j) {
								return ctx.Err()
							}
						}
						if fails(x) {
							return errR2
						}
						return nil
					}
					src := &r2AckSource{}
					s := stage.Apply(src.stream(n), f, stage.Workers(w), stage.Buffer(b), stage.Ordered(), stage.OnError(policy))
					var got []int
					var err error
					what := fmt.Sprintf("Workers(%d), Buffer(%d), %s, rep %d", w, b, pol, rep)
					if !r2Guard(t, what, nil, func() {
						err = stage.Run(context.Background(), s, func(_ context.Context, v int, ferr error) error {
							var e *stage.Error
							switch {
							case ferr == nil:
								got = append(got, v)
							case errors.As(ferr, &e):
								got = append(got, -1-e.Index)
							default:
								got = append(got, -1_000_000)
							}
							return nil
						})
					}) {
						return
					}
					var want []int
					for x := range n {
						for j := range 1 + x%3 {
							want = append(want, x*10+j)
						}
						if fails(x) && pol == "Forward" {
							want = append(want, -1-x)
						}
					}
					if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("%s: err %v\ngot  %v\nwant %v", what, err, got[:min(len(got), 40)], want[:min(len(want), 40)])
					}
					src.mu.Lock()
					var msgs []string
					for x, c := range src.nils {
						wantNil := 1
						if fails(x) && pol == "Forward" {
							wantNil = 0
						}
						if c != wantNil {
							msgs = append(msgs, fmt.Sprintf("item %d: %d Done(nil), want %d", x, c, wantNil))
						}
					}
					nerr := 0
					for x := range n {
						if fails(x) && pol == "Forward" {
							nerr++
						}
					}
					if len(src.errs) != nerr {
						msgs = append(msgs, fmt.Sprintf("%d Done(err), want %d", len(src.errs), nerr))
					}
					src.mu.Unlock()
					if len(msgs) > 0 {
						t.Fatalf("%s: acknowledgements: %s", what, strings.Join(msgs[:min(len(msgs), 6)], "; "))
					}
				}
			}
		}
	}
}
