package source_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview30FuncDrainedErrorIsQuiet attacks stage.Source's "The ctx
// given to open and next is the run's context; it also ends ... under Until
// when the stop context is done: an error next then returns ends the stream
// quietly" for source.Func ("written with stage.Source"), and the sinks'
// "its result is a function of the items and errors it saw, never of
// timing". next honours its ctx, as Func asks: it waits on a queue and on
// ctx.Done(). The service's shutdown first drains (stop is done), then
// closes the queue; next, woken by the closed queue, returns the error its
// transport gives. That error comes after stop was done, so the drain must
// end quietly (nil), with the value before it delivered; the events are in
// the same order in every repetition, so the result must not vary.
func TestReview30FuncDrainedErrorIsQuiet(t *testing.T) {
	for _, e := range []error{
		errors.New("connection reset"),
		context.Canceled,
		io.ErrClosedPipe,
		os.ErrClosed,
		net.ErrClosed,
		io.ErrUnexpectedEOF,
		fmt.Errorf("receive: %w", io.ErrClosedPipe),
	} {
		for range 5 {
			entered := make(chan struct{})
			release := make(chan struct{})
			i := 0
			f := source.Func(func(ctx context.Context) (string, error) {
				i++
				if i == 1 {
					return "x", nil
				}
				close(entered)
				select {
				case <-release: // the queue was closed by the shutdown
					return "", e
				case <-ctx.Done():
					return "", ctx.Err()
				}
			})
			stop, drain := context.WithCancel(context.Background())
			var got []string
			var err error
			runcheck.Run(t, e.Error(), func() {
				done := make(chan error, 1)
				go func() {
					done <- sink.ForEach(context.Background(), stage.Until(f, stop), func(_ context.Context, s string) error {
						got = append(got, s)
						return nil
					})
				}()
				r30Wait(t, entered)
				drain()
				close(release)
				err = <-done
			})
			if err != nil || len(got) != 1 {
				t.Errorf("next failed with %q after stop: drained run returned %v, values %q; want nil, [x]", e, err, got)
				break
			}
		}
	}
}
