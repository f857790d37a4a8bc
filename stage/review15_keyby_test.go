package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Review 15 (white-box): KeyBy[T, K comparable] accepts an interface key
// type (K = any satisfies comparable), and then a key whose dynamic type is
// not hashable (a []byte, a map) passes the type checker and panics only
// where the gate uses it as a map key: keyGate.admit does g.busy[k] after
// the guarded call of the key function, outside guard.Call. The panic then
// unwinds a goroutine of the run: with Workers(n) while workKeyed holds
// keyMu (locked without defer), so the next worker to pull blocks on it for
// ever and the run never finishes; with Workers(-1), in the dispatcher, and
// Run re-raises it as a library bug ("sluice: internal panic").
//
// KeyBy's doc: "A panic in key fails the item as a panic in the stage's
// function does: an *Error wrapping a *PanicError goes to the stage's
// policy". engine.go: "Every call of a function the user gave goes through
// guard.Call, so that its panic becomes an error and never unwinds a
// goroutine of the run: ... a KeyBy key". The key's value is the user's, and
// the run must end with an error, neither hang nor crash.

type review15Keyed struct {
	key any
	n   int
}

// review15UnhashableKey runs a KeyBy stage of the given workers over two
// items: the first has a hashable key and its function waits for the run to
// end, then returns nil; the second's key is a []byte. It returns Run's
// error, or a description of the panic Run raised.
func review15UnhashableKey(workers int) (res string) {
	defer func() {
		if p := recover(); p != nil {
			res = fmt.Sprintf("Run panicked: %v", p)
		}
	}()
	items := []review15Keyed{{key: "a", n: 0}, {key: []byte("b"), n: 1}}
	out := stage.Map(source.Slice(items), func(ctx context.Context, v review15Keyed) (int, error) {
		if v.n == 0 {
			<-ctx.Done() // the run ends because of the other item
		}
		return v.n, nil
	}, stage.Workers(workers), stage.KeyBy(func(v review15Keyed) any { return v.key }))
	err := stage.Run(context.Background(), out, func(context.Context, int, error) error { return nil })
	var e *stage.Error
	var pe *stage.PanicError
	if errors.As(err, &e) && errors.As(err, &pe) {
		return "item error"
	}
	return fmt.Sprintf("Run returned %v", err)
}

// A KeyBy stage of two workers whose key is not hashable: the worker that
// pulled it dies holding keyMu, the other one blocks on it, Run hangs.
func TestReview15KeyByUnhashableKeyWorkers(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string { return review15UnhashableKey(2) })
	if !ok {
		return
	}
	if out != "item error" {
		t.Fatalf("want the item to fail with an *Error wrapping a *PanicError; got: %s", out)
	}
}

// The same with Workers(-1): the dispatcher admits the item, panics, and
// Run re-raises the panic as a library bug.
func TestReview15KeyByUnhashableKeyUnlimited(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string { return review15UnhashableKey(-1) })
	if !ok {
		return
	}
	if out != "item error" {
		t.Fatalf("want the item to fail with an *Error wrapping a *PanicError; got: %s", out)
	}
}
