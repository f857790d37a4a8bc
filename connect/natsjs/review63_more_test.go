package natsjs_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview63KeepAliveInCalls attacks KeepAlive for messages whose calls run
// in the stage's own goroutines or in its consumer's (Workers(1), the
// sequential path; a cheap stage of 8 workers):
//
//	KeepAlive: "sends an in-progress acknowledgement every d for each
//	message still on its way through the pipeline, so that items that take
//	longer than the consumer's AckWait are not redelivered meanwhile".
//
// AckWait is 2 s and d 100 ms. The messages published (as many as the stage
// runs calls at once, so none waits in the read-ahead, which is not kept
// alive) block in their calls until each has had 25 in-progress acks on the
// wire (2.5 s at least, more than AckWait); the server must not have
// delivered any of them again, and each is then committed once and acked.
// (Real time enters only as a stall: a process stalled for all of AckWait,
// 20 ticks, would let the server redeliver. AckWait is 2 s rather than 1 s
// to make that unlikely on a loaded machine; if a stall that could explain
// it was seen (runcheck.Stalls), a redelivery is the machine's and the run checks
// nothing.)
func TestReview63KeepAliveInCalls(t *testing.T) {
	cases := []struct {
		sh r63Shape
		n  int
	}{
		{r63Shape{workers: 1}, 1},
		{r63Shape{workers: 8}, 1},
		{r63Shape{workers: 8, buffer: 1}, 8},
		{r63Shape{workers: 2, chain: true}, 1},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s-n%d", c.sh, c.n), func(t *testing.T) {
			const ackWait, every = 2 * time.Second, 100 * time.Millisecond
			e := r63New(t, jetstream.ConsumerConfig{AckWait: ackWait})
			l := r63WatchAcks(t, e.url)
			stalls := runcheck.WatchStalls(t)
			vals := r63Vals(0, c.n)
			seqs := r63PubSeqs(t, e, vals)
			release := make(chan struct{})
			entered := make(chan string, 100)
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			ctx, cancel := context.WithTimeout(context.Background(), r63Watchdog)
			defer cancel()
			src := natsjs.Source(e.srcCons, r14Str, natsjs.KeepAlive(every))
			work := c.sh.build(stage.Until(src, stop), func(ctx context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
				entered <- m.Value
				select {
				case <-release:
				case <-ctx.Done():
				}
				return m, nil
			})
			var got r63Commits
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, work, func(_ context.Context, m natsjs.Msg[string]) error {
					got.add(m)
					if got.n() == c.n {
						drain()
					}
					return nil
				})
			}()
			for range c.n {
				r38Recv(t, "every message in a call", entered)
			}
			r63WaitFor(t, "25 in-progress acks of each message in a call", func() bool {
				if l.sync(e.src) != nil {
					return false
				}
				l.mu.Lock()
				defer l.mu.Unlock()
				for _, v := range vals {
					wpi := 0
					for _, k := range l.by[seqs[v]] {
						if k == "wpi" {
							wpi++
						}
					}
					if wpi < 25 {
						return false
					}
				}
				return true
			})
			i, err := e.cinfo()
			if err != nil {
				t.Fatal(err)
			}
			redelivered := func(i *jetstream.ConsumerInfo) bool {
				return i.Delivered.Consumer != uint64(c.n) || i.NumRedelivered != 0
			}
			if redelivered(i) {
				if stalls.Excuse(ackWait - every) {
					close(release)
					r38Recv(t, "the run's end", errc)
					t.Skipf("messages kept alive were delivered again (consumer %+v), but the process stalled for %v (AckWait %v, KeepAlive %v): not checked", i, stalls.Longest(), ackWait, every)
				}
				t.Fatalf("messages kept alive were delivered again: consumer %+v", i)
			}
			close(release)
			if err := r38Recv(t, "the run's end", errc); err != nil {
				t.Fatalf("run: %v", err)
			}
			// Kept alive until acked: a redelivery after the check above
			// (a second commit) is excused by a stall alike.
			if i, err := e.cinfo(); err == nil && redelivered(i) && stalls.Excuse(ackWait-every) {
				t.Skipf("a message kept alive was delivered again before its ack (consumer %+v), but the process stalled for %v (AckWait %v, KeepAlive %v): not checked", i, stalls.Longest(), ackWait, every)
			}
			got.checkOnce(t, "committed", vals)
			e.waitWork(t, 0, "every message acknowledged")
		})
	}
}

// TestReview63TwoReplicasFused attacks the sharing of one consumer by two
// runs at once, each a cheap stage of 8 workers (fused) or 1, with bursts
// published while both are idle:
//
//	package doc: "Run the same pipeline in N processes on N machines against
//	one consumer and they share the work, with at-least-once delivery";
//	Outcomes: "committed by the sink ...: Ack"; stage.Stream: "a Source's
//	open is called once per run".
//
// No message fails and AckWait is an hour, so nothing is delivered twice:
// every message must be committed exactly once across both runs, from its
// first delivery, and acknowledged.
func TestReview63TwoReplicasFused(t *testing.T) {
	for _, sh := range []r63Shape{{workers: 8}, {workers: 1}, {workers: 8, buffer: 4}} {
		t.Run(sh.String(), func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{MaxAckPending: 32})
			_, js2 := connect(t, e.url)
			cons2, err := js2.Consumer(context.Background(), "WORK", "c")
			if err != nil {
				t.Fatal(err)
			}
			var got r63Commits
			committed := make(chan struct{}, 10000)
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			ctx, cancel := context.WithTimeout(context.Background(), 2*r63Watchdog)
			defer cancel()
			errc := make(chan error, 2)
			for _, cons := range []jetstream.Consumer{e.srcCons, cons2} {
				work := sh.build(stage.Until(natsjs.Source(cons, r14Str, natsjs.ReadAhead(8)), stop), r63Ident)
				got.consume(ctx, work, committed, errc)
			}
			var all []string
			for round := range 6 {
				burst := r63Vals(len(all), 1+round*37)
				e.pub(t, burst...)
				all = append(all, burst...)
				for range burst {
					r38Recv(t, fmt.Sprintf("a commit of burst %d", round), committed)
				}
				e.waitWork(t, 0, "the burst acknowledged")
			}
			drain()
			for range 2 {
				if err := r38Recv(t, "a run's end", errc); err != nil {
					t.Fatalf("run: %v", err)
				}
			}
			got.checkOnce(t, "committed across both runs", all)
		})
	}
}
