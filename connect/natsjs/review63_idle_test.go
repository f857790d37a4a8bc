package natsjs_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview63IdleBursts attacks idle latency: bursts published to a run that
// waits on an empty stream (its pull request waiting on the server, every
// earlier message acknowledged) must each be committed, decided by the
// sink's channel, for Workers 1, 2 and 8, fused or not, under ReadAhead 1,
// the default, and a MaxRequestBatch below it:
//
//	stage.Interruptible: "a consumer goroutine asks next for an item that is
//	ready, and leaves the waiting to the stage's own workers, at least one
//	of which stays a goroutine of the stage" and "the stage's own goroutines
//	also ask with a done context first, and call next with the run's context
//	only when that found nothing ready"; Source: "asks the server for more
//	as the pipeline takes them".
//
// A burst that the run never takes leaves the test waiting until the
// watchdog; at the end every message was committed once, from its first
// delivery, and acknowledged.
func TestReview63IdleBursts(t *testing.T) {
	cases := []struct {
		name string
		cfg  jetstream.ConsumerConfig
		opts []natsjs.SourceOption
	}{
		{"default", jetstream.ConsumerConfig{}, nil},
		{"ra1", jetstream.ConsumerConfig{}, []natsjs.SourceOption{natsjs.ReadAhead(1)}},
		{"maxrequestbatch2", jetstream.ConsumerConfig{MaxRequestBatch: 2}, nil},
	}
	for _, c := range cases {
		for _, sh := range r63Shapes() {
			t.Run(c.name+"/"+sh.String(), func(t *testing.T) {
				e := r63New(t, c.cfg)
				var got r63Commits
				committed := make(chan struct{}, 1000)
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				ctx, cancel := context.WithTimeout(context.Background(), 4*r63Watchdog)
				defer cancel()
				work := sh.build(stage.Until(natsjs.Source(e.srcCons, r14Str, c.opts...), stop), r63Ident)
				errc := make(chan error, 1)
				got.consume(ctx, work, committed, errc)
				var all []string
				for round := range 12 {
					e.waitWork(t, 0, "the earlier bursts acknowledged")
					e.waiting(t)
					burst := r63Vals(len(all), round*5%11+1)
					e.pub(t, burst...)
					all = append(all, burst...)
					for range burst {
						r38Recv(t, fmt.Sprintf("a commit of burst %d (%d messages) published to the idle run", round, len(burst)), committed)
					}
				}
				drain()
				if err := r38Recv(t, "the run's end", errc); err != nil {
					t.Fatalf("run: %v", err)
				}
				got.checkOnce(t, "committed", all)
				e.waitWork(t, 0, "every message acknowledged")
			})
		}
	}
}

// TestReview63FirstOnIdleSource attacks sink.First over a fused stage over the
// source waiting on an empty stream:
//
//	sink.First: "runs s until its first item arrives, then stops the run";
//	stage.Ack: "the item sink.First returns ... counts" as committed;
//	Source: "every message the run held but did not settle ... is nak'ed".
//
// Each round runs First with nothing published, publishes one message
// once the run's pull request waits on the server, and checks that First
// returns that message and that it was acknowledged (WORK empty), for
// Workers 1, 2, 8, with and without Buffer. The sink must return with no
// goroutine of its run left.
func TestReview63FirstOnIdleSource(t *testing.T) {
	for _, sh := range []r63Shape{{workers: 1}, {workers: 2}, {workers: 8}, {workers: 8, buffer: 8}, {workers: 8, chain: true}} {
		t.Run(sh.String(), func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{})
			for round := range 5 {
				ctx, cancel := context.WithTimeout(context.Background(), r63Watchdog)
				v := fmt.Sprintf("first-%d", round)
				pubErr := make(chan error, 1)
				go func() {
					err := r63Poll(ctx, "a waiting pull request", func() bool {
						i, err := e.cinfo()
						return err == nil && i.NumWaiting > 0
					})
					if err == nil {
						_, err = e.js.Publish(context.Background(), "w.x", []byte(v))
					}
					pubErr <- err
				}()
				var m natsjs.Msg[string]
				var ok bool
				var err error
				r63Run(t, "First", func() {
					m, ok, err = sink.First(ctx, sh.build(natsjs.Source(e.srcCons, r14Str), r63Ident))
				})
				cancel()
				if perr := r38Recv(t, "the publisher", pubErr); perr != nil {
					t.Fatalf("publish: %v", perr)
				}
				if err != nil || !ok || m.Value != v || m.Deliveries != 1 {
					t.Fatalf("round %d: First = %+v, %v, %v; want %q from its first delivery", round, m, ok, err, v)
				}
				e.waitWork(t, 0, "the message First returned acknowledged")
			}
		})
	}
}
