package natsjs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/stage"
)

// r63ExactlyOnce publishes n messages, runs shape over a Source of the run's
// own connection until the sink committed n, and checks:
//   - every message committed exactly once, from its first delivery;
//   - no acknowledgement of a message sent before the sink got it (the
//     run's connection is flushed into the ack log at each sink call);
//   - afterwards every message was acknowledged exactly once and nothing
//     else (no nak, no term): none stranded, none given back;
//   - WORK is empty, and the sink returned with no goroutine of the run
//     left (r63Run).
func r63ExactlyOnce(t *testing.T, cfg jetstream.ConsumerConfig, sh r63Shape, n int, opts ...natsjs.SourceOption) {
	t.Helper()
	e := r63New(t, cfg)
	l := r63WatchAcks(t, e.url)
	vals := r63Vals(0, n)
	e.pub(t, vals...)
	var got r63Commits
	var mu sync.Mutex
	var early []string
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := context.WithTimeout(context.Background(), r63Watchdog)
	defer cancel()
	src := stage.Until(natsjs.Source(e.srcCons, r14Str, opts...), stop)
	var err error
	r63Run(t, "run", func() {
		err = stage.Run(ctx, sh.build(src, r63Ident), func(_ context.Context, m natsjs.Msg[string], ferr error) error {
			if ferr != nil {
				return ferr
			}
			if serr := l.sync(e.src); serr != nil {
				return serr
			}
			if k := l.of(m.Sequence); len(k) != 0 {
				mu.Lock()
				early = append(early, fmt.Sprintf("%s(seq %d: %v)", m.Value, m.Sequence, k))
				mu.Unlock()
			}
			got.add(m)
			if got.n() == n {
				drain()
			}
			return nil
		})
	})
	if err != nil {
		t.Fatalf("run: %v (committed %d of %d)", err, got.n(), n)
	}
	if len(early) != 0 {
		t.Fatalf("settled before the sink got them: %v", early)
	}
	got.checkOnce(t, "committed", vals)
	e.waitWork(t, 0, "every message acknowledged")
	if serr := l.sync(e.src); serr != nil {
		t.Fatal(serr)
	}
	log := l.all()
	for seq := uint64(1); seq <= uint64(n); seq++ {
		if k := log[seq]; len(k) != 1 || k[0] != "ack" {
			t.Errorf("settlements of seq %d = %v, want one ack", seq, k)
		}
	}
	if len(log) != n {
		t.Errorf("settlements for %d sequences, want %d", len(log), n)
	}
}

// TestReview63ExactlyOnceMatrix attacks, for Workers 1, 2 and 8, fused (a
// cheap stage with no Buffer, which may run in its consumer's goroutines,
// "trying" the source with a done context) and not (Buffer, slow calls),
// and for two cheap stages in a row:
//
//	"whose messages are acknowledged only once the sink has committed what
//	they led to" (package doc) and "committed by the sink ...: Ack"
//	(Outcomes), and stage.Interruptible: "a consumer goroutine asks next for
//	an item that is ready, and leaves the waiting to the stage's own
//	workers".
func TestReview63ExactlyOnceMatrix(t *testing.T) {
	for _, sh := range r63Shapes() {
		t.Run(sh.String(), func(t *testing.T) {
			r63ExactlyOnce(t, jetstream.ConsumerConfig{}, sh, 300)
		})
	}
}

// TestReview63ReadAheadExtremes attacks ReadAhead at its extremes and
// against the consumer's limits, with 1 and 8 workers, fused or buffered:
//
//	ReadAhead: "each run keeps one pull subscription, which asks the server
//	for up to n messages at a time ... and asks for more as the pipeline
//	takes them" and "A consumer's MaxRequestBatch, if set and below n, is
//	the read-ahead instead (the server refuses a larger pull request)";
//	Consumer settings: "a MaxRequestBatch below ReadAhead lowers the
//	read-ahead to it".
//
// A ReadAhead above MaxAckPending (one replica) must still deliver
// everything, each message once: the sink's commits free the server's
// window.
func TestReview63ReadAheadExtremes(t *testing.T) {
	cases := []struct {
		name string
		cfg  jetstream.ConsumerConfig
		opts []natsjs.SourceOption
	}{
		{"ra1", jetstream.ConsumerConfig{}, []natsjs.SourceOption{natsjs.ReadAhead(1)}},
		{"ra2", jetstream.ConsumerConfig{}, []natsjs.SourceOption{natsjs.ReadAhead(2)}},
		{"ra500-maxackpending8", jetstream.ConsumerConfig{MaxAckPending: 8}, []natsjs.SourceOption{natsjs.ReadAhead(500)}},
		{"ra1-maxackpending1", jetstream.ConsumerConfig{MaxAckPending: 1}, []natsjs.SourceOption{natsjs.ReadAhead(1)}},
		{"default-maxrequestbatch3", jetstream.ConsumerConfig{MaxRequestBatch: 3}, nil},
		{"ra64-maxrequestbatch1", jetstream.ConsumerConfig{MaxRequestBatch: 1}, []natsjs.SourceOption{natsjs.ReadAhead(64)}},
		{"max-maxrequestbatch5", jetstream.ConsumerConfig{MaxRequestBatch: 5}, []natsjs.SourceOption{natsjs.ReadAhead(natsjs.MaxReadAhead)}},
	}
	for _, c := range cases {
		for _, sh := range []r63Shape{{workers: 1}, {workers: 8}, {workers: 8, buffer: 8}} {
			t.Run(c.name+"/"+sh.String(), func(t *testing.T) {
				r63ExactlyOnce(t, c.cfg, sh, 200, c.opts...)
			})
		}
	}
}

// TestReview63ReadAheadBound attacks the bound of what a run holds:
//
//	ReadAhead: "So one replica holds at most n messages beyond what its
//	pipeline works on" and "A consumer's MaxRequestBatch, if set and below
//	n, is the read-ahead instead".
//
// Every call of a Map of 3 workers blocks, so the pipeline works on at most
// its 3 workers' items (plus one in a hand-off); the server's NumAckPending
// (nothing is acknowledged meanwhile) must stay within ReadAhead + 4 once
// the server delivers no more. The check samples an invariant; it may pass
// without the run ever reaching the bound, never fail by timing.
func TestReview63ReadAheadBound(t *testing.T) {
	cases := []struct {
		name  string
		cfg   jetstream.ConsumerConfig
		opts  []natsjs.SourceOption
		ahead int
	}{
		{"ra5", jetstream.ConsumerConfig{}, []natsjs.SourceOption{natsjs.ReadAhead(5)}, 5},
		{"ra1", jetstream.ConsumerConfig{}, []natsjs.SourceOption{natsjs.ReadAhead(1)}, 1},
		{"ra50-maxrequestbatch2", jetstream.ConsumerConfig{MaxRequestBatch: 2}, []natsjs.SourceOption{natsjs.ReadAhead(50)}, 2},
	}
	for _, c := range cases {
		for _, buffer := range []int{0, 2} {
			t.Run(fmt.Sprintf("%s/buf%d", c.name, buffer), func(t *testing.T) {
				const workers = 3
				e := r63New(t, c.cfg)
				e.pub(t, r63Vals(0, 200)...)
				release := make(chan struct{})
				entered := make(chan struct{}, 200)
				ctx, cancel := context.WithTimeout(context.Background(), r63Watchdog)
				defer cancel()
				opts := []stage.Option{stage.Workers(workers)}
				if buffer > 0 {
					opts = append(opts, stage.Buffer(buffer))
				}
				work := stage.Map(natsjs.Source(e.srcCons, r14Str, c.opts...), func(ctx context.Context, m natsjs.Msg[string]) (string, error) {
					entered <- struct{}{}
					select {
					case <-release:
					case <-ctx.Done():
					}
					return m.Value, nil
				}, opts...)
				errc := make(chan error, 1)
				go func() {
					errc <- stage.Run(ctx, work, func(context.Context, string, error) error { return nil })
				}()
				for range workers {
					r38Recv(t, "a call of each worker", entered)
				}
				// Wait until the server delivers no more: two reads alike
				// around a flush, with the client holding all it was sent.
				var last uint64
				r63WaitFor(t, "deliveries to settle", func() bool {
					i, err := e.cinfo()
					if err != nil {
						return false
					}
					d := i.Delivered.Consumer
					if err := e.src.Flush(); err != nil {
						return false
					}
					j, err := e.cinfo()
					ok := err == nil && j.Delivered.Consumer == d && d == last && uint64(e.reads.n.Load()) >= d
					last = d
					return ok
				})
				bound := c.ahead + workers + buffer + 1
				for range 50 {
					i, err := e.cinfo()
					if err != nil {
						t.Fatal(err)
					}
					if i.NumAckPending > bound {
						t.Fatalf("the run holds %d unacknowledged messages (%d calls blocked), want at most ReadAhead %d + %d workers + %d buffer + 1",
							i.NumAckPending, workers, c.ahead, workers, buffer)
					}
				}
				close(release)
				cancel()
				r38Recv(t, "the run's end", errc)
			})
		}
	}
}
