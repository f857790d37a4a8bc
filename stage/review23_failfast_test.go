package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// FailFast (policy.go:25-28, doc.go:56-58): "the run's context is
// cancelled with the *Error as its cause, calls in flight see ctx.Done(),
// no new item starts". Under KeyBy, an item that waits for its key is
// started by the worker that finishes the key's current item (keyby.go:18:
// "A worker that finishes an item takes the next waiting item of the same
// key itself"). Once a FailFast error has cancelled the run, that waiting
// item must not start.
//
// Items: 0 (key "a") waits for the run's end and then returns nil (it
// finished its work); 1 (key "a") waits for item 0's key; 2 (key "b")
// fails. The function must not be called for item 1.
func TestReview23KeyByWaitingItemStartsAfterFailFast(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		opts []stage.Option
	}{
		{"workers=2", []stage.Option{stage.Workers(2), stage.Buffer(2)}},
		{"workers=-1", []stage.Option{stage.Workers(-1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lateCalls atomic.Int32
			keys := []string{"a", "a", "b"}
			opts := append([]stage.Option{stage.KeyBy(func(v int) string { return keys[v] })}, tc.opts...)
			s := stage.Map(stage.Indexed(3, func(i int) int { return i }), func(ctx context.Context, v int) (int, error) {
				switch v {
				case 0:
					<-ctx.Done() // the run failed at item 2
					return v, nil
				case 1:
					if ctx.Err() != nil {
						lateCalls.Add(1)
					}
					return v, nil
				}
				return 0, boom
			}, opts...)
			err := stage.Run(context.Background(), s, func(context.Context, int, error) error { return nil })
			if !errors.Is(err, boom) {
				t.Fatalf("Run = %v, want boom", err)
			}
			if n := lateCalls.Load(); n != 0 {
				t.Errorf("the function was called for item 1 (waiting for its key) after the FailFast error cancelled the run: %s", fmt.Sprint(n, " late call"))
			}
		})
	}
}
