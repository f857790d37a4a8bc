package natsjs_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r63Modes are the ways a run ends.
var r63Modes = []string{"cancel", "until", "stop", "first", "sinkerr", "sinkpanic", "failfast", "mappanic", "decodepanic"}

// r63End runs a first run over shape that ends by mode, then a second run,
// and checks that the second gets exactly every message the first did not
// commit, at once (AckWait is an hour).
//
// Mid-stream (idle false): 60 messages are published up front (within the
// default ReadAhead of 100, so the server sends them all to the run) and the
// end comes at "v7". Idle: 7 messages are published and committed, the run
// waits on the empty stream (a pull request waiting on the server), and the
// end comes then (cancel, until), or at "v7" published to the idle run, or
// (first) at the first message published to a run that waited from its
// start. Before the end, the test waits until the run's client holds every
// message the server sent (quiet), so that no message is on its way (the
// Source doc's exception). After an idle end, 5 more messages published on
// the run's own connection must reach the second run too.
func r63End(t *testing.T, sh r63Shape, mode string, idle bool) {
	e := r63New(t, jetstream.ConsumerConfig{})
	l := r63WatchAcks(t, e.url)
	const trig = "v7"
	var all []string
	seqs := map[string]uint64{}
	if idle {
		if mode != "first" {
			all = r63Vals(0, 7)
			seqs = r63PubSeqs(t, e, all)
		}
	} else {
		all = r63Vals(0, 60)
		seqs = r63PubSeqs(t, e, all)
	}
	pubDone := make(chan struct{}) // closed once the idle driver published
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	ctx, cancelW := context.WithTimeout(parent, r63Watchdog)
	defer cancelW()
	stop, drain := context.WithCancel(context.Background())
	defer drain()

	var hookErr error
	var hookMu sync.Mutex
	quiet := func() {
		if err := e.quiet(context.Background()); err != nil {
			hookMu.Lock()
			hookErr = err
			hookMu.Unlock()
		}
	}
	var decoded atomic.Bool
	decode := func(b []byte) (string, error) {
		if mode == "decodepanic" && string(b) == trig && decoded.CompareAndSwap(false, true) {
			quiet()
			panic(errR63)
		}
		return string(b), nil
	}
	var firstCall atomic.Bool
	f := func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		switch {
		case mode == "first" && firstCall.CompareAndSwap(false, true):
			if idle {
				<-pubDone // every message published, before the wait for them
			}
			quiet()
		case mode == "failfast" && m.Value == trig:
			quiet()
			return m, errR63
		case mode == "mappanic" && m.Value == trig:
			quiet()
			panic(errR63)
		}
		return m, nil
	}
	src := natsjs.Source(e.srcCons, decode, natsjs.Backoff(10*time.Millisecond, time.Second))
	work := sh.build(stage.Until(src, stop), f)

	var got r63Commits
	committed := make(chan struct{}, 1000)
	cb := func(_ context.Context, m natsjs.Msg[string]) error {
		if m.Value == trig {
			switch mode {
			case "sinkerr":
				quiet()
				return errR63
			case "sinkpanic":
				quiet()
				panic(errR63)
			case "stop":
				quiet()
				got.add(m)
				return stage.ErrStop
			case "cancel":
				if !idle {
					quiet()
					got.add(m)
					cancelParent()
					return nil
				}
			case "until":
				if !idle {
					quiet()
					got.add(m)
					drain()
					return nil
				}
			}
		}
		got.add(m)
		committed <- struct{}{}
		return nil
	}

	// The idle driver runs beside the run, on a goroutine of its own: it
	// reports through drv, never with t.Fatal.
	drv := make(chan error, 1)
	var pubMu sync.Mutex
	pub := func(vals ...string) error {
		for _, v := range vals {
			ack, err := e.js.Publish(context.Background(), "w.x", []byte(v))
			if err != nil {
				return err
			}
			pubMu.Lock()
			all = append(all, v)
			seqs[v] = ack.Sequence
			pubMu.Unlock()
		}
		return nil
	}
	waiting := func() error {
		return r63Poll(ctx, "a pull request waiting on the server", func() bool {
			i, err := e.cinfo()
			return err == nil && i.NumWaiting > 0 && i.NumPending == 0
		})
	}
	go func() {
		if !idle {
			drv <- nil
			return
		}
		if mode == "first" {
			if err := waiting(); err != nil {
				drv <- err
				return
			}
			err := pub(r63Vals(0, 7)...)
			close(pubDone)
			drv <- err
			return
		}
		for range 7 {
			select {
			case <-committed:
			case <-ctx.Done():
				drv <- ctx.Err()
				return
			}
		}
		if err := r63Poll(ctx, "the first 7 acknowledged", func() bool {
			n, err := e.count("WORK")
			return err == nil && n == 0
		}); err != nil {
			drv <- err
			return
		}
		if err := waiting(); err != nil {
			drv <- err
			return
		}
		switch mode {
		case "cancel":
			cancelParent()
			drv <- nil
		case "until":
			drain()
			drv <- nil
		default:
			drv <- pub(trig)
		}
	}()
	var runErr error
	r63Run(t, "first run", func() {
		if mode == "first" {
			m, ok, err := sink.First(ctx, work)
			if ok {
				got.add(m)
			}
			runErr = err
			return
		}
		runErr = sink.ForEach(ctx, work, cb)
	})
	if err := r38Recv(t, "the idle driver", drv); err != nil {
		t.Fatalf("idle driver: %v (run error %v)", err, runErr)
	}
	hookMu.Lock()
	if hookErr != nil {
		t.Fatal(hookErr)
	}
	hookMu.Unlock()

	var se *stage.Error
	var pe *stage.PanicError
	var srcErr *stage.SourceError
	switch mode {
	case "cancel":
		if !errors.Is(runErr, context.Canceled) {
			t.Fatalf("run error %v, want context.Canceled", runErr)
		}
	case "until", "stop", "first":
		if runErr != nil {
			t.Fatalf("run error %v, want nil", runErr)
		}
	case "sinkerr":
		if !errors.Is(runErr, errR63) || !errors.As(runErr, &se) || se.Stage != "foreach" {
			t.Fatalf("run error %v, want a *stage.Error of foreach wrapping errR63", runErr)
		}
	case "sinkpanic":
		if !errors.As(runErr, &se) || !errors.As(runErr, &pe) {
			t.Fatalf("run error %v, want a *stage.Error wrapping a *stage.PanicError", runErr)
		}
	case "failfast":
		if !errors.Is(runErr, errR63) || !errors.As(runErr, &se) {
			t.Fatalf("run error %v, want a *stage.Error wrapping errR63", runErr)
		}
	case "mappanic":
		if !errors.As(runErr, &se) || !errors.As(runErr, &pe) {
			t.Fatalf("run error %v, want a *stage.Error wrapping a *stage.PanicError", runErr)
		}
	case "decodepanic":
		if !errors.As(runErr, &srcErr) || !errors.As(runErr, &pe) {
			t.Fatalf("run error %v, want a *stage.SourceError wrapping a *stage.PanicError", runErr)
		}
	}
	first := got.snapshot()
	for v, c := range first {
		if c != 1 {
			t.Fatalf("first run committed %s %d times", v, c)
		}
	}
	if len(got.redl) != 0 {
		t.Fatalf("first run committed redeliveries %v", got.redl)
	}
	// Every message the first run held was settled once: acked if committed,
	// else nak'ed, at once (no delay) unless it is the message a retryable
	// failure was at (Backoff: 10 ms after its first delivery).
	r63WaitFor(t, "a settlement of every message the first run held", func() bool {
		if l.sync(e.src) != nil {
			return false
		}
		for _, v := range all {
			if len(l.of(seqs[v])) == 0 {
				return false
			}
		}
		return true
	})
	failedAt := ""
	switch mode {
	case "sinkerr", "sinkpanic", "failfast", "mappanic":
		failedAt = trig
	}
	for _, v := range all {
		settled := l.of(seqs[v])
		switch {
		case first[v] > 0:
			if !slices.Equal(settled, []string{"ack"}) {
				t.Errorf("first run: %s committed, settled %v, want one ack", v, settled)
			}
		case v == failedAt:
			// Nak'ed at the failure with the Backoff's 10 ms, during the
			// run: on a loaded machine the server may redeliver it before
			// the subscription stops, and the stop naks that delivery too
			// (held, never taken: at once, no delay). Never acked.
			d := l.nakDelays(seqs[v])
			if len(settled) == 0 || slices.ContainsFunc(settled, func(k string) bool { return k != "nak" }) {
				t.Errorf("first run: %s failed, settled %v, want naks only", v, settled)
			} else if len(d) == 0 || d[0] != 10*time.Millisecond || slices.ContainsFunc(d[1:], func(x time.Duration) bool { return x != 0 }) {
				t.Errorf("first run: %s nak'ed with delays %v, want 10ms, then 0 for each redelivery the stop gave back", v, d)
			}
		case !slices.Equal(settled, []string{"nak"}):
			t.Errorf("first run: %s not committed, settled %v, want one nak", v, settled)
		default:
			if d := l.nakDelays(seqs[v]); len(d) != 1 || d[0] != 0 {
				t.Errorf("first run: %s nak'ed with delay %v, want 0", v, d)
			}
		}
	}
	if idle {
		// Published on the run's own connection after its end: the
		// subscription is stopped, so they are the next run's.
		more := r63Vals(100, 5)
		for _, v := range more {
			if _, err := e.srcJS.Publish(context.Background(), "w.x", []byte(v)); err != nil {
				t.Fatal(err)
			}
		}
		all = append(all, more...)
	}
	want := r63Minus(all, first)
	rest := r63Rest(t, e, want)
	r63CheckSet(t, "second run", rest, want)
	t.Logf("first run (%s) committed %d, second run %d of %d", mode, len(first), len(rest), len(all))
}

// TestReview63EndsMidStream attacks, for every way a run ends while messages
// wait in its read-ahead and in its stages (cancel, Until's stop, ErrStop,
// sink.First, a sink error, a sink panic, a FailFast error, a panic in the
// stage's function, a panic in decode), with Workers 1, 2, 8, fused or with
// a Buffer:
//
//	Source: "every message the run held but did not settle (received and not
//	yet taken, or taken and cut short by a cancellation) is nak'ed once the
//	run's goroutines have exited, so that another consumer gets it at once
//	rather than after AckWait", "a panic in decode ends the run with a
//	*stage.SourceError wrapping a *stage.PanicError, and its message is
//	nak'ed with the others the run held"; Outcomes: "committed by the sink
//	...: Ack"; stage.Run: "An item for which f returned nil or ErrStop is
//	committed"; sink: returns "only when every goroutine of its run has
//	exited".
//
// Each case runs in a child process: a panic that escaped would crash the
// suite.
func TestReview63EndsMidStream(t *testing.T) {
	for _, mode := range r63Modes {
		for _, sh := range []r63Shape{{workers: 1}, {workers: 2}, {workers: 8}, {workers: 8, buffer: 4}, {workers: 2, chain: true}} {
			t.Run(mode+"_"+sh.String(), func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) { r63End(t, sh, mode, false) })
			})
		}
	}
}

// TestReview63EndsWhileIdle attacks the same promises for a run that ends
// while its source waits on an empty stream (cancel, Until's stop), or at a
// message published to the idle run (the failures, ErrStop), or (First) at
// the first message published to a run that waited from the start; and
//
//	Source: "The run's end stops the subscription": messages published after
//	the run returned go to the next run at once.
//
// Each case runs in a child process: a panic that escaped would crash the
// suite.
func TestReview63EndsWhileIdle(t *testing.T) {
	for _, mode := range r63Modes {
		for _, sh := range []r63Shape{{workers: 1}, {workers: 2}, {workers: 8}, {workers: 8, buffer: 4}, {workers: 2, chain: true}} {
			t.Run(mode+"_"+sh.String(), func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) { r63End(t, sh, mode, true) })
			})
		}
	}
}
