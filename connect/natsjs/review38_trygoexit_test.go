package natsjs_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview38GoexitInDecodeOnATryNaksTheMessage: decode calls
// runtime.Goexit on the sink's own goroutine, in a try (a cheap Map of two
// workers gives a place to the sink's goroutine, which takes messages
// with a context done from the start). stage.ErrGoexit: the sink does not
// return; stage.Source: "stop is called once every goroutine of the run has
// exited, whether the run succeeded, failed or stopped early"; natsjs
// Source: every message the run held but did not settle "is nak'ed once the
// run's goroutines have exited". The message decode did not return for
// must get one immediate Nak. The consumer wrapper only orders events: it
// holds a try of the sink's goroutine (begun with the buffer empty) until
// a "boom" message is in the subscription's buffer; nats.go's Next then
// picks the message or the done context at random, so the test repeats
// until the try takes it. In a child process. Passes; it guards the
// give-back when the goroutine of a try is the one that ends.
func TestReview38GoexitInDecodeOnATryNaksTheMessage(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		w := r14World(t, jetstream.ConsumerConfig{})
		l := r13WatchAcks(t, w.url, "WORK")
		f := newTryForce(t, w)
		var exited atomic.Value      // the value whose decode called Goexit
		var boomsPassed atomic.Int64 // booms decoded by the Map's own goroutine
		decode := func(b []byte) (string, error) {
			if strings.HasPrefix(string(b), "boom") {
				if f.onSink() {
					exited.Store(string(b))
					runtime.Goexit()
				}
				boomsPassed.Add(1)
			}
			return string(b), nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		work := stage.Map(natsjs.Source(f.cons, decode), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
			return m.Value, nil
		}, stage.Workers(2))
		errc := r31Sink(func() error {
			return sink.ForEach(ctx, work, func(context.Context, string) error {
				f.sinkRan()
				return nil
			})
		})
		f.warmUp()
		f.meet("boom", func() bool { return exited.Load() != nil }, boomsPassed.Load)
		sinkErr := r38Recv(t, "the sink's end", errc)
		if !errors.Is(sinkErr, errR31Goexited) {
			t.Fatalf("sink: %v, want its goroutine ended by decode's Goexit", sinkErr)
		}
		v := exited.Load().(string)
		seq := f.seq(v)
		r38WaitFor(t, "a settlement of "+v, func() bool {
			l.sync(t, f.rnc)
			return len(l.bySeq()[seq]) > 0
		})
		if acks := l.bySeq()[seq]; len(acks) != 1 || acks[0].kind != "nak" || acks[0].delay != 0 {
			t.Fatalf("settlements of %s (decode called Goexit) = %+v, want one immediate nak", v, acks)
		}
	})
}
