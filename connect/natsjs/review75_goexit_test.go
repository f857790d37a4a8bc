package natsjs_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// stage.ErrGoexit: a Goexit in a stage's function: "the item it held is
// lost, so the run fails with ErrGoexit". natsjs Source: "every message the
// run held but did not settle (received and not yet taken, or taken and cut
// short by a cancellation) is nak'ed once the run's goroutines have exited".
// Package doc: "the run ended first ...: Nak, when the run stops, so that
// another consumer gets it at once".
//
// Goexit in the stage's function on its own worker (Buffer(1)): every message
// is either committed once or given back; none is terminated or stranded.
func TestReview75GoexitInStageFunctionGivesBack(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		e := r63New(t, jetstream.ConsumerConfig{})
		log := r63WatchAcks(t, e.url)
		vals := r63Vals(0, 8)
		e.pub(t, vals...)
		ctx, cancel := r75HangCtx()
		defer cancel()
		var c r63Commits
		work := stage.Map(natsjs.Source(e.srcCons, r14Str, natsjs.DeadLetter(e.srcJS, "dlq")),
			func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
				if m.Value == "v2" {
					runtime.Goexit()
				}
				return m, nil
			}, stage.Workers(1), stage.Buffer(1))
		err := sink.ForEach(ctx, work, func(_ context.Context, m natsjs.Msg[string]) error {
			c.add(m)
			return nil
		})
		if !errors.Is(err, stage.ErrGoexit) {
			t.Fatalf("run: %v, want stage.ErrGoexit", err)
		}
		if err := log.sync(e.src); err != nil {
			t.Fatal(err)
		}
		for seq, ks := range log.all() {
			if slices.Contains(ks, "term") {
				t.Fatalf("seq %d settled %v, want no term", seq, ks)
			}
		}
		if ks := log.of(3); !slices.Equal(ks, []string{"nak"}) {
			t.Fatalf("v2 (its call ended by Goexit) settled %v, want [nak]", ks)
		}
		if n := e.streamMsgs(t, "DLQ"); n != 0 {
			t.Fatalf("DLQ holds %d", n)
		}
		done := c.snapshot()
		rest := r63Rest(t, e, r63Minus(vals, done))
		r63CheckSet(t, "second run", rest, r63Minus(vals, done))
	})
}

// stage.ErrGoexit: "A function that calls Goexit on the sink's own goroutine
// ends that goroutine: the sink does not return, as with any function, and
// the run's goroutines exit." With the Source: every message the run held
// and did not settle is nak'ed once the run's goroutines have exited; the
// callback's own message was never committed. The sink is ForEach, or
// Publish (its msg function).
func TestReview75GoexitInSinkCallbackGivesBack(t *testing.T) {
	for _, publish := range []bool{false, true} {
		name := "foreach"
		if publish {
			name = "publish"
		}
		t.Run(name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				e := r63New(t, jetstream.ConsumerConfig{})
				log := r63WatchAcks(t, e.url)
				vals := r63Vals(0, 8)
				e.pub(t, vals...)
				ctx, cancel := r75HangCtx()
				defer cancel()
				var c r63Commits
				exited := make(chan struct{})
				returned := make(chan error, 1)
				go func() {
					defer close(exited)
					src := natsjs.Source(e.srcCons, r14Str, natsjs.DeadLetter(e.srcJS, "dlq"))
					if publish {
						returned <- natsjs.Publish(ctx, e.srcJS, src, func(m natsjs.Msg[string]) (*nats.Msg, error) {
							if m.Value == "v2" {
								runtime.Goexit()
							}
							c.add(m)
							out := nats.NewMsg("out")
							out.Data = []byte(m.Value)
							return out, nil
						}, func(m natsjs.Msg[string]) string { return m.Value }, nil)
						return
					}
					returned <- sink.ForEach(ctx, src, func(_ context.Context, m natsjs.Msg[string]) error {
						if m.Value == "v2" {
							runtime.Goexit()
						}
						c.add(m)
						return nil
					})
				}()
				r75Recv(t, "the sink's goroutine to end", exited)
				select {
				case err := <-returned:
					t.Fatalf("the sink returned %v after its callback called Goexit", err)
				default:
				}
				// v0, v1 were committed; v2..v7 must come back at once (AckWait is
				// an hour): r63Rest fails the test on a hang.
				want := r63Minus(vals, c.snapshot())
				rest := r63Rest(t, e, want)
				r63CheckSet(t, "second run", rest, want)
				if err := log.sync(e.src); err != nil {
					t.Fatal(err)
				}
				// The log holds the second run's ack too: v2's first settlement
				// must be the first run's nak.
				if ks := log.of(3); len(ks) == 0 || ks[0] != "nak" || slices.Contains(ks, "term") {
					t.Fatalf("v2 settled %v, want the first run's nak, then the second run's ack", ks)
				}
				if n := e.streamMsgs(t, "DLQ"); n != 0 {
					t.Fatalf("DLQ holds %d", n)
				}
			})
		})
	}
}
