package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Package doc, Outcomes: "the run ended first (cancelled, ...; or a commit
// that failed with the context's error as the run ended): Nak, when the run
// stops, so that another consumer gets it at once". stage.Ack: Done is not
// called for "an item whose function was cut short, or whose ... sink
// callback, once the run was ending, returned an error that says so (the
// context's error or the run's cause ...)".
//
// The attack: the caller cancels with a cause that is itself a Permanent
// error. A commit (or a stage's call) cut short returns that cause, which is
// the run's cause: the message must be given back (nak, no delay), not
// terminated and dead-lettered. A cause that is a plain error is the control.
// The caller's ctx is a standard one, or a context type of the caller's that
// the context package cannot see into.
func TestReview75CancelCauseCutsShortNotPermanent(t *testing.T) {
	type where int
	const (
		inSink where = iota
		inMapForward
		inMapFailFast
	)
	for _, w := range []where{inSink, inMapForward, inMapFailFast} {
		for _, custom := range []bool{false, true} {
			for _, permanent := range []bool{true, false} {
				name := fmt.Sprintf("where%d-custom%v-permanent%v", w, custom, permanent)
				t.Run(name, func(t *testing.T) {
					e := r63New(t, jetstream.ConsumerConfig{})
					log := r63WatchAcks(t, e.url)
					vals := r63Vals(0, 6)
					e.pub(t, vals...)
					base, cancelCause := context.WithCancelCause(context.Background())
					defer cancelCause(nil)
					var ctx context.Context = base
					if custom {
						ctx = &r75OpaqueCtx{Context: base}
					}
					entered := make(chan struct{})
					var once sync.Once
					block := func(fctx context.Context, m natsjs.Msg[string]) error {
						if m.Value != "v0" {
							return nil
						}
						once.Do(func() { close(entered) })
						select {
						case <-fctx.Done():
						case <-time.After(r75Watchdog):
							return errors.New("hang: the call's ctx never ended")
						}
						return context.Cause(fctx)
					}
					src := natsjs.Source(e.srcCons, r14Str, natsjs.DeadLetter(e.srcJS, "dlq"), natsjs.Backoff(time.Hour, time.Hour))
					var work stage.Stream[natsjs.Msg[string]] = src
					switch w {
					case inMapForward, inMapFailFast:
						pol := stage.Forward
						if w == inMapFailFast {
							pol = stage.FailFast
						}
						work = stage.Map(src, func(fctx context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
							return m, block(fctx, m)
						}, stage.Workers(1), stage.Buffer(1), stage.OnError(pol))
					}
					done := make(chan error, 1)
					go func() {
						done <- sink.ForEach(ctx, work, func(fctx context.Context, m natsjs.Msg[string]) error {
							if w == inSink {
								return block(fctx, m)
							}
							return nil
						})
					}()
					r75Recv(t, "v0's call", entered)
					qctx, qcancel := context.WithTimeout(context.Background(), r75Watchdog)
					if err := e.quiet(qctx); err != nil {
						qcancel()
						t.Fatal(err)
					}
					qcancel()
					cause := errR75
					if permanent {
						cause = natsjs.Permanent(errR75)
					}
					cancelCause(cause)
					err := r75Recv(t, "the run's end", done)
					t.Logf("run: %v", err)
					if err := log.sync(e.src); err != nil {
						t.Fatal(err)
					}
					all := log.all()
					for seq, ks := range all {
						if slices.Contains(ks, "term") || slices.Contains(ks, "ack") {
							t.Errorf("seq %d settled %v: the run was cancelled before anything was committed; want a nak", seq, ks)
						}
						for _, d := range log.nakDelays(seq) {
							if d != 0 {
								t.Errorf("seq %d nak'ed with delay %v; a message the run gives back as it stops goes back at once", seq, d)
							}
						}
					}
					if n := e.streamMsgs(t, "DLQ"); n != 0 {
						t.Errorf("DLQ holds %d: a cut-short message was dead-lettered", n)
					}
					if t.Failed() {
						t.Logf("settlements %v", all)
						return
					}
					got := r63Rest(t, e, vals)
					r63CheckSet(t, "second run", got, vals)
				})
			}
		}
	}
}

// r75OpaqueCtx is a context whose Done channel the context package cannot see
// into (not one of its own types).
type r75OpaqueCtx struct{ context.Context }

func (c *r75OpaqueCtx) Done() <-chan struct{} { return c.Context.Done() }
