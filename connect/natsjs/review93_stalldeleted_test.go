package natsjs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview93DeletedDuringAStallIsNamed
//
// Source: "If the subscription misses its heartbeats (a stalled connection
// or pull request) ... the source asks the server again ... (after a stall
// it first asks for the consumer's info: a consumer or stream deleted
// meanwhile ... end the run with a *stage.SourceError" wrapping
// jetstream.ErrConsumerNotFound or ErrStreamNotFound, as one missing at
// the run's start does.
//
// The run's connection goes through a proxy that stalls it once the
// source's pull request has passed; the consumer (or its stream) is
// deleted meanwhile over another connection; the proxy resumes once the
// source, having missed its heartbeats, asked for the consumer's info. The
// stall ends on that event, not after a guessed time.
func TestReview93DeletedDuringAStallIsNamed(t *testing.T) {
	for _, what := range []string{"consumer", "stream"} {
		t.Run(what, func(t *testing.T) {
			url := startServer(t)
			_, js := connect(t, url)
			rvSetup(t, js, "STALL", time.Hour, 0)
			proxy := newStallProxy(t, strings.TrimPrefix(url, "nats://"))
			pcons, _ := proxy.consumer(t, "STALL")
			proxy.armPause("CONSUMER.MSG.NEXT.STALL.c")
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, natsjs.Source(pcons, decodeString), func(context.Context, natsjs.Msg[string]) error { return nil })
			}()
			rvRecv(t, "the source's first pull request", proxy.paused1)
			var err error
			want := jetstream.ErrConsumerNotFound
			if what == "consumer" {
				err = js.DeleteConsumer(context.Background(), "STALL", "c")
			} else {
				err = js.DeleteStream(context.Background(), "STALL")
				want = jetstream.ErrStreamNotFound
			}
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the source to ask for the consumer's info after the stall", func() bool {
				return proxy.sentSincePause("$JS.API.CONSUMER.INFO.STALL.c")
			})
			proxy.resume()
			select {
			case err = <-errc:
			case <-time.After(rvWatchdog):
				cancel()
				t.Fatalf("hang: the run did not end after its %s was deleted (after cancel: %v)", what, <-errc)
			}
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, want) {
				t.Fatalf("run: %v, want a *stage.SourceError wrapping %v", err, want)
			}
		})
	}
}
