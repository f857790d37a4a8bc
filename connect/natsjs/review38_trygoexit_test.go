package natsjs_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
		rnc, rjs, tp := tapConnect(t, w.url)
		rc, err := rjs.Consumer(context.Background(), "WORK", "c")
		if err != nil {
			t.Fatal(err)
		}
		var seqMu sync.Mutex
		seqOf := map[string]uint64{}
		var sinkG, published, returned atomic.Int64
		pub := func(v string) {
			published.Add(1)
			ack, err := w.js.Publish(context.Background(), "w.x", []byte(v))
			if err != nil {
				t.Fatal(err)
			}
			seqMu.Lock()
			seqOf[v] = ack.Sequence
			seqMu.Unlock()
		}
		var armed atomic.Bool
		var pubMu sync.Mutex
		held := make(chan struct{})
		goOn := make(chan struct{})
		cons := &r38Cons{Consumer: rc, hook: func(next func() (jetstream.Msg, error)) (jetstream.Msg, error) {
			pubMu.Lock()
			hold := sinkG.Load() != 0 && r38Gid() == sinkG.Load() &&
				returned.Load() == published.Load() && armed.CompareAndSwap(true, false)
			pubMu.Unlock()
			if hold {
				held <- struct{}{}
				<-goOn
			}
			m, err := next()
			if m != nil {
				returned.Add(1)
			}
			return m, err
		}}
		var exited atomic.Value      // the value whose decode called Goexit
		var boomsPassed atomic.Int64 // booms decoded by the Map's own goroutine
		decode := func(b []byte) (string, error) {
			if strings.HasPrefix(string(b), "boom") {
				if r38Gid() == sinkG.Load() {
					exited.Store(string(b))
					runtime.Goexit()
				}
				boomsPassed.Add(1)
			}
			return string(b), nil
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		work := stage.Map(natsjs.Source(cons, decode), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
			return m.Value, nil
		}, stage.Workers(2))
		errc := r31Sink(func() error {
			return sink.ForEach(ctx, work, func(context.Context, string) error {
				if sinkG.Load() == 0 {
					sinkG.Store(r38Gid())
				}
				return nil
			})
		})
		for i := range 64 { // the warm-up: calls prove cheap, a place goes to the sink's goroutine
			pub("w" + strconv.Itoa(i))
		}
		r38WaitFor(t, "the warm-up", func() bool { return returned.Load() == published.Load() && sinkG.Load() != 0 })
		var sinkErr error
		for attempt := 0; sinkErr == nil; attempt++ {
			armed.Store(true)
			// Batches until a try of the sink's goroutine begins with the
			// buffer empty.
		batches:
			for b := 0; ; b++ {
				select {
				case <-held:
					break batches
				default:
				}
				pubMu.Lock()
				if !armed.Load() { // a try is being held: publish nothing
					pubMu.Unlock()
					<-held
					break
				}
				for i := range 4 {
					pub("a" + strconv.Itoa(attempt) + "-" + strconv.Itoa(b) + "-" + strconv.Itoa(i))
				}
				pubMu.Unlock()
				r38WaitFor(t, "a batch taken, or a try held", func() bool {
					return returned.Load() == published.Load() || !armed.Load()
				})
			}
			// Held: nobody else is in next. Put boom in the buffer.
			before := tp.received()
			pub("boom" + strconv.Itoa(attempt))
			r38WaitFor(t, "boom at the run's connection", func() bool { return tp.received() > before })
			if err := rnc.Flush(); err != nil {
				t.Fatal(err)
			}
			goOn <- struct{}{}
			r38WaitFor(t, "boom decoded", func() bool {
				return exited.Load() != nil || boomsPassed.Load() == int64(attempt+1)
			})
			if exited.Load() != nil {
				sinkErr = r38Recv(t, "the sink's end", errc)
			}
		}
		if !errors.Is(sinkErr, errR31Goexited) {
			t.Fatalf("sink: %v, want its goroutine ended by decode's Goexit", sinkErr)
		}
		v := exited.Load().(string)
		seqMu.Lock()
		seq := seqOf[v]
		seqMu.Unlock()
		r38WaitFor(t, "a settlement of "+v, func() bool {
			l.sync(t, rnc)
			return len(l.bySeq()[seq]) > 0
		})
		if acks := l.bySeq()[seq]; len(acks) != 1 || acks[0].kind != "nak" || acks[0].delay != 0 {
			t.Fatalf("settlements of %s (decode called Goexit) = %+v, want one immediate nak", v, acks)
		}
	})
}
