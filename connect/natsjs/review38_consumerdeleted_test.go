package natsjs_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview38ConsumerDeletedMetByATry
//
// Source: "An error of the consumer ends the run with a *stage.SourceError."
// stage.Interruptible: a next called with a done context returns "an item if
// one is ready without waiting, else the context's error".
//
// Over a cheap unordered Map of two workers, one place goes to the sink's
// goroutine, which takes messages through tries: next with a context done
// from the start, under the source's lock (so nobody else is in next). The
// consumer is deleted while such a try has begun and every message the run
// received was taken: the server's "409 Consumer Deleted" is the only thing
// in the subscription's buffer when the try calls nats.go's Next, which
// picks at random between it and the done context. When it picks the
// status, it stops the subscription and returns jetstream.ErrConsumerDeleted;
// natsjs's next replaces that with the context's error (case ctx.Err() !=
// nil), which the engine takes for "nothing ready": the consumer's error is
// gone. The Map's own goroutine then finds the iterator closed, and the run
// fails with a *stage.SourceError wrapping jetstream.ErrMsgIteratorClosed
// ("nats: messages iterator closed"), which says nothing of the consumer:
// errors.Is(err, jetstream.ErrConsumerDeleted) is false. When Next picks the
// context, the Map's goroutine reads the status itself and the run reports
// jetstream.ErrConsumerDeleted: the control, in the same rounds.
//
// The test's consumer wrapper only orders events: it holds the sink
// goroutine's try (as a slow scheduler would) until the status is in the
// buffer. Each round is one coin toss; the test runs up to 10 rounds and
// fails at the first that loses the error. Failure rate: 10/10 (-race,
// -count=10).
func TestReview38ConsumerDeletedMetByATry(t *testing.T) {
	url := startServer(t)
	_, tjs := connect(t, url)
	rnc, rjs, watch := r38WatchConnect(t, url, "409 Consumer Deleted")
	controls := 0
	for round := range 10 {
		res := r38TryRound(t, tjs, rnc, rjs, watch, round)
		if !res.conclusive {
			t.Logf("round %d inconclusive: %s", round, res.why)
			continue
		}
		var se *stage.SourceError
		if !errors.As(res.err, &se) {
			t.Fatalf("round %d: run returned %v, want a *stage.SourceError", round, res.err)
		}
		if !errors.Is(res.err, jetstream.ErrConsumerDeleted) {
			t.Fatalf("round %d: the consumer was deleted; the sink goroutine's try (its context done from the start) met %v, "+
				"and the run returned %q, which does not wrap jetstream.ErrConsumerDeleted: the consumer's error was taken for \"nothing ready\" "+
				"(%d control rounds before reported it)", round, res.tryErr, res.err, controls)
		}
		t.Logf("round %d (control): the try met %v; run: %v", round, res.tryErr, res.err)
		controls++
	}
	t.Logf("%d conclusive rounds, every one reported the consumer's error", controls)
}

type r38RoundResult struct {
	conclusive bool
	why        string
	tryErr     error // what the sink goroutine's held try met
	err        error // the run's error
}

func r38TryRound(t *testing.T, tjs jetstream.JetStream, rnc *nats.Conn, rjs jetstream.JetStream, watch *r38Watch, round int) r38RoundResult {
	t.Helper()
	ctx := context.Background()
	name := "R38T" + strconv.Itoa(round)
	subj := "r38t." + strconv.Itoa(round)
	if _, err := tjs.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := tjs.CreateOrUpdateConsumer(ctx, name, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: time.Hour}); err != nil {
		t.Fatal(err)
	}
	rc, err := rjs.Consumer(ctx, name, "c")
	if err != nil {
		t.Fatal(err)
	}

	var sinkG, published, returned atomic.Int64
	var armed atomic.Bool
	var pubMu sync.Mutex // published changes only with no try held (see hook)
	inTry := newR38Once()
	goOn := newR38Once()
	triedC := make(chan error, 1)
	cons := &r38Cons{Consumer: rc, hook: func(next func() (jetstream.Msg, error)) (jetstream.Msg, error) {
		// A try of the sink's goroutine that begins once every message
		// published was taken: nobody else is in next (it holds the
		// source's lock), and the buffer holds nothing.
		pubMu.Lock()
		held := sinkG.Load() != 0 && r38Gid() == sinkG.Load() &&
			returned.Load() == published.Load() && armed.CompareAndSwap(true, false)
		pubMu.Unlock()
		if held {
			inTry.fire()
			<-goOn.ch
		}
		m, err := next()
		if m != nil {
			returned.Add(1)
		}
		if held {
			triedC <- err
		}
		return m, err
	}}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer goOn.fire()
	work := stage.Map(natsjs.Source(cons, r14Str), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		return m.Value, nil
	}, stage.Workers(2))
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(runCtx, work, func(_ context.Context, v string) error {
			if sinkG.Load() == 0 {
				sinkG.Store(r38Gid())
			}
			return nil
		})
	}()
	pub := func(n int) {
		pubMu.Lock()
		defer pubMu.Unlock()
		if armed.Load() == false && published.Load() > 0 {
			return // a try is held: the buffer must stay empty
		}
		published.Add(int64(n))
		for i := range n {
			if _, err := tjs.Publish(ctx, subj, []byte("m"+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	pub(64) // the warm-up: the calls prove cheap, a place goes to the sink's goroutine
	r38WaitFor(t, "the warm-up", func() bool { return returned.Load() == published.Load() && sinkG.Load() != 0 })
	armed.Store(true)
	for batch := 0; ; batch++ {
		select {
		case <-inTry.ch:
		case <-time.After(0):
			if batch == 200 {
				cancel()
				goOn.fire()
				r38Recv(t, "the run's end", errc)
				return r38RoundResult{why: "the sink's goroutine never tried with the buffer empty"}
			}
			pub(4)
			r38WaitFor(t, "a batch taken", func() bool {
				select {
				case <-inTry.ch:
					return true
				default:
					return returned.Load() == published.Load()
				}
			})
			continue
		}
		break
	}
	// The sink's goroutine is in a try, holding the source's lock, with
	// the buffer empty; a pull request waits at the server (ReadAhead 100
	// is not reached).
	before := watch.n.Load()
	if err := tjs.DeleteConsumer(ctx, name, "c"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(r38Watchdog)
	for watch.n.Load() == before {
		if time.Now().After(deadline) {
			cancel()
			goOn.fire()
			r38Recv(t, "the run's end", errc)
			return r38RoundResult{why: "no 409 reached the run's connection (no pull request was waiting)"}
		}
		time.Sleep(time.Millisecond)
	}
	if err := rnc.Flush(); err != nil { // the reader has put the 409 in the subscription's buffer
		t.Fatal(err)
	}
	goOn.fire()
	tryErr := r38Recv(t, "the sink goroutine's try", triedC)
	select {
	case err := <-errc:
		return r38RoundResult{conclusive: true, tryErr: tryErr, err: err}
	case <-time.After(r38Watchdog):
		cancel()
		err := r38Recv(t, "the run's end after cancel", errc)
		t.Fatalf("hang: the run over a deleted consumer had not ended after %v (the try met %v; after cancel: %v)", r38Watchdog, tryErr, err)
		panic("unreachable")
	}
}

// TestReview38ConsumerDeletedUnderUnlimitedWorkers: a Map of Workers(-1)
// keeps its calls in goroutines of its own (stage.Workers: "Workers(-1)
// keep their calls in goroutines of their own"), so the source is never
// asked with a done context: the consumer deleted while the run waits in
// its pull request ends the run with a *stage.SourceError wrapping
// jetstream.ErrConsumerDeleted (Source: "An error of the consumer ends the
// run with a *stage.SourceError"). Passes; it guards the consumer's error
// on the path without tries.
func TestReview38ConsumerDeletedUnderUnlimitedWorkers(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pubN(t, 8)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var taken atomic.Int64
	work := stage.Map(natsjs.Source(w.cons, r14Str), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
		return m.Value, nil
	}, stage.Workers(-1))
	errc := make(chan error, 1)
	go func() {
		errc <- sink.ForEach(ctx, work, func(context.Context, string) error {
			taken.Add(1)
			return nil
		})
	}()
	r38WaitFor(t, "every message taken and a pull request waiting", func() bool {
		return taken.Load() == 8 && w.info(t).NumWaiting > 0
	})
	if err := w.js.DeleteConsumer(context.Background(), "WORK", "c"); err != nil {
		t.Fatal(err)
	}
	err := r38Recv(t, "the run's end", errc)
	var se *stage.SourceError
	if !errors.As(err, &se) || !errors.Is(err, jetstream.ErrConsumerDeleted) {
		t.Fatalf("run: %v, want a *stage.SourceError wrapping jetstream.ErrConsumerDeleted", err)
	}
}
