package natsjs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// DeadLetter: "js may be a wrapper of yours: a publish that panics is a
// failed one (the message is nak'ed as above, and the run's other messages
// still go back to the server when it stops) ...; one that calls
// runtime.Goexit is a failed one too". Source: "every message the run held
// but did not settle ... is nak'ed once the run's goroutines have exited".
// Here the dead-letter publish of a message that decode rejects (inside
// next) panics or calls Goexit, on the sink's goroutine (a bare sink) or a
// worker's (Map), with KeepAlive sending in-progress acks meanwhile: the
// rejected message and the two read-ahead messages behind it must all go
// back at once (AckWait is an hour): a second run gets them all. (Passes: a guard.)
func TestReview32DeadLetterFailsAtDecodeGivesEverythingBack(t *testing.T) {
	for _, c := range []struct{ name, how, shape string }{
		{"panic/bare", "panic", "bare"},
		{"panic/map", "panic", "map"},
		{"goexit/bare", "goexit", "bare"},
		{"goexit/map", "goexit", "map"},
	} {
		t.Run(c.name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				w := r14World(t, jetstream.ConsumerConfig{})
				w.pub(t, "bad", "1", "2")
				var js jetstream.JetStream = &r31PanicJS{JetStream: w.js, panics: 1}
				if c.how == "goexit" {
					js = &r31GoexitJS{JetStream: w.js, exits: 1}
				}
				decode := func(b []byte) (string, error) {
					if string(b) == "bad" {
						return "", errors.New("undecodable")
					}
					return string(b), nil
				}
				// The read-ahead holds all three before the first is decoded:
				// the run's first next waits for "bad", and the others arrive
				// in the same pull.
				src := natsjs.Source(w.cons, decode, natsjs.DeadLetter(js, "dlq"), natsjs.KeepAlive(time.Millisecond),
					natsjs.Backoff(time.Millisecond, time.Millisecond))
				var s stage.Stream[natsjs.Msg[string]] = src
				if c.shape == "map" {
					s = stage.Map(src, func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) { return m, nil }, stage.Workers(2))
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang bound
				defer cancel()
				var delivered []string
				err := <-r31Sink(func() error {
					return sink.ForEach(ctx, s, func(_ context.Context, m natsjs.Msg[string]) error {
						delivered = append(delivered, m.Value)
						return nil
					})
				})
				t.Logf("run: %v (delivered %q)", err, delivered)
				var se *stage.SourceError
				switch {
				case c.how == "panic" && !errors.As(err, &se):
					t.Fatalf("run: %v, want a *stage.SourceError", err)
				case c.how == "goexit" && err == nil:
					t.Fatalf("run: nil, want it ended by the Goexit")
				}
				// The next run must get every message not delivered, at once
				// (a stranded one waits out AckWait: the collection hangs).
				want := map[string]bool{"bad": true, "1": true, "2": true}
				for _, v := range delivered {
					delete(want, v)
				}
				r14Collect(t, w.cons, func(s *r14Seen) bool {
					for v := range want {
						if !s.has(v) {
							return false
						}
					}
					return true
				})
			})
		})
	}
}
