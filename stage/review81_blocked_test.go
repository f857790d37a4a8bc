package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// A call that waits for its ctx (not for its consumer nor its peers),
// after cheap calls (so that it may be running on the sink's goroutine):
// the caller's cancellation reaches it ("the user functions see it through
// their ctx") and the sink returns a cancellation, with no goroutine left.
// With a standard context, and with a context type of the caller's whose
// Done channel the context package cannot see ("watched from a goroutine
// of the run, so the functions' ctx ends a moment after it").

// r81ctxType is a context of the caller's own type.
type r81ctxType struct {
	context.Context // Background: values, deadline
	once            sync.Once
	done            chan struct{}
}

func newR81ctxType() *r81ctxType {
	return &r81ctxType{Context: context.Background(), done: make(chan struct{})}
}
func (c *r81ctxType) Done() <-chan struct{} { return c.done }
func (c *r81ctxType) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}
func (c *r81ctxType) cancel() { c.once.Do(func() { close(c.done) }) }

func TestReview81CancelBlockedCall(t *testing.T) {
	for _, kind := range r81failKinds {
		for _, w := range []int{2, 4} {
			for _, k := range []int{0, 1, 200} {
				for _, custom := range []bool{false, true} {
					for _, sk := range r81sinks {
						n := 300
						label := fmt.Sprintf("%s/w=%d/k=%d/custom=%v/%s", kind, w, k, custom, sk.name)
						var ctx context.Context
						var cancel func()
						if custom {
							c := newR81ctxType()
							ctx, cancel = c, c.cancel
						} else {
							ctx, cancel = context.WithCancel(context.Background())
						}
						started := make(chan struct{})
						var blockedOn bool
						s, _ := r81ctxPipe(kind, r81sources[(k+w)%3].make(n), w, func(c context.Context, v int) {
							if v == k {
								close(started)
								<-c.Done() // only the cancellation ends it
								blockedOn = errors.Is(c.Err(), context.Canceled)
							}
						})
						want := r81ctxWant(kind, n)
						var got []int
						var err error
						r81guard(t, label, func() {
							done := make(chan struct{})
							go func() {
								defer close(done)
								got, err = sk.run(t, ctx, s)
							}()
							select {
							case <-started:
								cancel()
							case <-done: // First may stop before item k starts
								cancel()
							}
							select {
							case <-done:
							case <-time.After(r81watchdog):
								buf := make([]byte, 1<<20)
								t.Fatalf("%s: hung after the cancellation\n%s", label, buf[:runtime.Stack(buf, true)])
							}
						})
						if sk.first && err == nil {
							if r81equal(got, want[:1]) != nil {
								t.Fatalf("%s: First %v", label, got)
							}
							continue
						}
						if !errors.Is(err, context.Canceled) {
							t.Fatalf("%s: err %v, want context.Canceled (blocked call saw Canceled: %v)", label, err, blockedOn)
						}
						if e := r81prefix(got, want); e != nil {
							t.Fatalf("%s: %v", label, e)
						}
					}
				}
			}
		}
	}
}
