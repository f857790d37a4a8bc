package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r63Kinds are the outcomes of TestReview63Outcomes, by value prefix, with
// the settlements each message must get, in order.
var r63Kinds = []struct {
	prefix string
	want   []string
}{
	{"ok", []string{"ack"}},                    // committed
	{"retry", []string{"nak", "ack"}},          // a forwarded error on its first delivery, then committed
	{"perm", []string{"term"}},                 // Permanent
	{"poison", []string{"nak", "nak", "term"}}, // fails on every delivery: MaxDeliver 3
	{"bad", []string{"term"}},                  // decode rejects it
	{"drop", []string{"ack"}},                  // a Filter drops it
	{"handled", []string{"ack"}},               // a Handle policy accepts its failure
}

// r63PubSeqs publishes vals on e.js and returns their stream sequences.
func r63PubSeqs(t *testing.T, e *r63Env, vals []string) map[string]uint64 {
	t.Helper()
	seqs := map[string]uint64{}
	for _, v := range vals {
		ack, err := e.js.Publish(context.Background(), "w.x", []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		seqs[v] = ack.Sequence
	}
	return seqs
}

func r63Decode(b []byte) (string, error) {
	if strings.HasPrefix(string(b), "bad") {
		return "", errR63
	}
	return string(b), nil
}

// TestReview63Outcomes attacks the outcomes table under concurrency: a first
// stage of Workers(8) over the source (fused, with a Buffer, or slow), a
// Filter and a Handle stage of 8 workers each, messages of every outcome
// interleaved:
//
//	Outcomes: "committed by the sink (or ... dropped on purpose by a Filter
//	or a Handle policy): Ack; failed with a retryable error (a forwarded
//	*stage.Error ...): Nak with a delay that grows with the delivery count;
//	failed with an error wrapped by Permanent, failed on its last allowed
//	delivery (MaxDeliver), or not decodable: Term, after publishing it to
//	the dead-letter subject if one is set (DeadLetter)"; DeadLetter: "with
//	headers Sluice-Reason, Sluice-Subject, Sluice-Stream-Seq and
//	Sluice-Deliveries"; Source: "A message that decode rejects is terminated
//	(and dead-lettered) at once, or by a later call ..., and never enters
//	the pipeline".
//
// Each message's settlements, as a subscriber of the acknowledgement
// subjects sees them, must be exactly its kind's, and the run must settle
// everything (WORK empty, the dead letters stored) before it is drained.
func TestReview63Outcomes(t *testing.T) {
	for _, sh := range []r63Shape{{workers: 8}, {workers: 8, buffer: 8}, {workers: 8, slow: true}} {
		t.Run(sh.String(), func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{MaxDeliver: 3})
			l := r63WatchAcks(t, e.url)
			var vals []string
			for i := range 8 {
				for _, k := range r63Kinds {
					vals = append(vals, fmt.Sprintf("%s-%d", k.prefix, i))
				}
			}
			seqs := r63PubSeqs(t, e, vals)
			var got r63Commits
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			ctx, cancel := context.WithTimeout(context.Background(), r63Watchdog)
			defer cancel()
			src := natsjs.Source(e.srcCons, r63Decode, natsjs.DeadLetter(e.srcJS, "dlq"), natsjs.Backoff(time.Millisecond, 4*time.Millisecond))
			a := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
				if sh.slow {
					for start := time.Now(); time.Since(start) < 50*time.Microsecond; {
					}
				}
				switch {
				case strings.HasPrefix(m.Value, "retry") && m.Deliveries == 1, strings.HasPrefix(m.Value, "poison"):
					return m, errR63
				case strings.HasPrefix(m.Value, "perm"):
					return m, natsjs.Permanent(errR63)
				}
				return m, nil
			}, append([]stage.Option{stage.Workers(8), stage.OnError(stage.Forward)}, r63BufOpt(sh)...)...)
			b := stage.Filter(a, func(_ context.Context, m natsjs.Msg[string]) (bool, error) {
				return !strings.HasPrefix(m.Value, "drop"), nil
			}, stage.Workers(8))
			c := stage.Map(b, func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
				if strings.HasPrefix(m.Value, "handled") {
					return m, errR63
				}
				return m, nil
			}, stage.Workers(8), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
			go func() {
				_ = r63Poll(ctx, "everything settled", func() bool {
					w, err1 := e.count("WORK")
					d, err2 := e.count("DLQ")
					return err1 == nil && err2 == nil && w == 0 && d == 24
				})
				drain()
			}()
			var err error
			var forwarded int
			r63Run(t, "run", func() {
				err = stage.Run(ctx, c, func(_ context.Context, m natsjs.Msg[string], ferr error) error {
					if ferr != nil {
						forwarded++
						if !errors.Is(ferr, errR63) {
							return fmt.Errorf("forwarded %w, want errR63", ferr)
						}
						return nil
					}
					got.add(m)
					return nil
				})
			})
			if err != nil {
				w, _ := e.count("WORK")
				d, _ := e.count("DLQ")
				t.Fatalf("run: %v (WORK %d, DLQ %d of 24, log %v)", err, w, d, l.all())
			}
			// Committed: ok (first delivery), retry (second delivery).
			var want []string
			for i := range 8 {
				want = append(want, fmt.Sprintf("ok-%d", i), fmt.Sprintf("retry-%d", i))
			}
			r63CheckSet(t, "committed", got.snapshot(), want)
			if forwarded != 8+8+24 { // retry once, perm once, poison three times
				t.Errorf("the sink saw %d forwarded errors, want 40", forwarded)
			}
			if serr := l.sync(e.src); serr != nil {
				t.Fatal(serr)
			}
			for _, k := range r63Kinds {
				for i := range 8 {
					v := fmt.Sprintf("%s-%d", k.prefix, i)
					if got := l.of(seqs[v]); !slices.Equal(got, k.want) {
						t.Errorf("settlements of %s (seq %d) = %v, want %v", v, seqs[v], got, k.want)
					}
				}
			}
			// The dead letters: perm and bad from their first delivery, poison
			// from its third, each once, with the documented headers.
			dead := map[string]int{}
			for _, m := range e.dlq(t) {
				v := string(m.Data)
				dead[v]++
				wantDel := "1"
				if strings.HasPrefix(v, "poison") {
					wantDel = "3"
				}
				h := m.Header
				if h.Get("Sluice-Deliveries") != wantDel || h.Get("Sluice-Subject") != "w.x" ||
					h.Get("Sluice-Stream-Seq") != strconv.FormatUint(seqs[v], 10) || h.Get("Sluice-Reason") == "" {
					t.Errorf("dead letter %q: headers %v, want Sluice-Deliveries %s, Sluice-Subject w.x, Sluice-Stream-Seq %d, a reason",
						v, h, wantDel, seqs[v])
				}
			}
			var wantDead []string
			for i := range 8 {
				wantDead = append(wantDead, fmt.Sprintf("perm-%d", i), fmt.Sprintf("poison-%d", i), fmt.Sprintf("bad-%d", i))
			}
			r63CheckSet(t, "dead letters", dead, wantDead)
		})
	}
}

func r63BufOpt(sh r63Shape) []stage.Option {
	if sh.buffer > 0 {
		return []stage.Option{stage.Buffer(sh.buffer)}
	}
	return nil
}

// TestReview63RejectedWhileRunning attacks the dead-lettering of a message
// that decode rejects while the run goes on, when the pipeline is idle
// (only such a message published) and when a good message follows it:
//
//	Source: "A consumer's look answers at once also when it meets a message
//	decode rejects: with a DeadLetter subject, whose publish waits for the
//	server, that message is terminated and dead-lettered by the next call
//	that may wait (a stage's own worker asking for its next message), or at
//	the run's stop if none comes".
//
// The run waits on the empty stream afterwards, which is a stage's worker
// asking for its next message with the run's context: the dead letter must
// come while the run runs, not only at its stop.
func TestReview63RejectedWhileRunning(t *testing.T) {
	for _, sh := range []r63Shape{{workers: 1}, {workers: 2}, {workers: 8}, {workers: 8, buffer: 4}, {workers: 8, chain: true}} {
		t.Run(sh.String(), func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{})
			var got r63Commits
			committed := make(chan struct{}, 100)
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			ctx, cancel := context.WithTimeout(context.Background(), 2*r63Watchdog)
			defer cancel()
			src := natsjs.Source(e.srcCons, r63Decode, natsjs.DeadLetter(e.srcJS, "dlq"))
			errc := make(chan error, 1)
			got.consume(ctx, sh.build(stage.Until(src, stop), r63Ident), committed, errc)
			dlq := func(want uint64, why string) {
				t.Helper()
				r63WaitFor(t, fmt.Sprintf("%d dead letters (%s) while the run goes on", want, why), func() bool {
					d, err := e.count("DLQ")
					return err == nil && d == want
				})
			}
			var good []string
			for round := range 3 {
				// Alone, to the idle run.
				e.waiting(t)
				e.pub(t, fmt.Sprintf("bad-a%d", round))
				dlq(uint64(2*round+1), "a rejected message published to the idle run")
				e.waitWork(t, 0, "the rejected message terminated")
				// Followed by a good one.
				e.waiting(t)
				g := fmt.Sprintf("good-%d", round)
				good = append(good, g)
				e.pub(t, fmt.Sprintf("bad-b%d", round), g)
				r38Recv(t, "the good message after a rejected one", committed)
				dlq(uint64(2*round+2), "a rejected message before a good one")
				e.waitWork(t, 0, "both settled")
			}
			drain()
			if err := r38Recv(t, "the run's end", errc); err != nil {
				t.Fatalf("run: %v", err)
			}
			r63CheckSet(t, "committed", got.snapshot(), good)
		})
	}
}

// TestReview63DeadLettersStoredBeforeReturn attacks:
//
//	DeadLetter: "a run that ends, even cancelled, returns only once the dead
//	letters of its messages are stored or have failed (a message on its last
//	delivery that a cancelled run leaves is dead-lettered too ...)";
//	Outcomes: "A message on its last allowed delivery (MaxDeliver) is not
//	delivered again after a Nak, so it goes to the dead-letter subject
//	instead (Term), if one is set".
//
// MaxDeliver 1: every message is on its last delivery. A rejected message
// comes first (the run meets it before any other), then 30 good ones; the
// sink cancels the run at its third commit, once the run's client holds
// every message. When the sink returns, the DLQ must already hold the
// rejected message and every good one not committed: read once, not polled.
func TestReview63DeadLettersStoredBeforeReturn(t *testing.T) {
	for _, sh := range []r63Shape{{workers: 1}, {workers: 2}, {workers: 8}, {workers: 8, buffer: 4}, {workers: 8, slow: true}} {
		t.Run(sh.String(), func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{MaxDeliver: 1})
			l := r63WatchAcks(t, e.url)
			vals := append([]string{"bad-0"}, r63Vals(0, 30)...)
			seqs := r63PubSeqs(t, e, vals)
			var got r63Commits
			parent, cancelParent := context.WithCancel(context.Background())
			defer cancelParent()
			ctx, cancel := context.WithTimeout(parent, r63Watchdog)
			defer cancel()
			var quietErr error
			src := natsjs.Source(e.srcCons, r63Decode, natsjs.DeadLetter(e.srcJS, "dlq"))
			var err error
			r63Run(t, "run", func() {
				err = sink.ForEach(ctx, sh.build(src, r63Ident), func(_ context.Context, m natsjs.Msg[string]) error {
					got.add(m)
					if got.n() == 3 {
						quietErr = e.quiet(context.Background())
						cancelParent()
					}
					return nil
				})
			})
			if quietErr != nil {
				t.Fatal(quietErr)
			}
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("run error %v, want context.Canceled", err)
			}
			d, cerr := e.count("DLQ")
			if cerr != nil {
				t.Fatal(cerr)
			}
			first := got.snapshot()
			if want := uint64(len(vals) - len(first)); d != want {
				t.Fatalf("when the cancelled run returned, the DLQ held %d dead letters, want %d (31 messages on their last delivery, %d committed)",
					d, want, len(first))
			}
			dead := map[string]int{}
			for _, m := range e.dlq(t) {
				dead[string(m.Data)]++
			}
			r63CheckSet(t, "dead letters", dead, r63Minus(vals, first))
			e.waitWork(t, 0, "every message acknowledged or terminated")
			if serr := l.sync(e.src); serr != nil {
				t.Fatal(serr)
			}
			for _, v := range vals {
				want := []string{"term"}
				if first[v] > 0 {
					want = []string{"ack"}
				}
				if got := l.of(seqs[v]); !slices.Equal(got, want) {
					t.Errorf("settlements of %s = %v, want %v", v, got, want)
				}
			}
		})
	}
}

// TestReview63DeadLetterFailsNakThenStays attacks, under Workers(8):
//
//	DeadLetter: "If the publish fails, the message is nak'ed instead, so
//	that it is not lost, with the delay of a retryable failure (Backoff) ...:
//	it is delivered again, unless that was its last allowed delivery
//	(MaxDeliver); then it stays in the stream, undelivered."
//
// The dead-letter stream is full (DiscardNew), so every publish fails.
// MaxDeliver 2: each Permanent message is nak'ed twice and never terminated,
// each good one acknowledged once; WORK ends holding the Permanent ones.
func TestReview63DeadLetterFailsNakThenStays(t *testing.T) {
	for _, sh := range []r63Shape{{workers: 8}, {workers: 8, buffer: 8}} {
		t.Run(sh.String(), func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{MaxDeliver: 2})
			l := r63WatchAcks(t, e.url)
			var vals []string
			for i := range 10 {
				vals = append(vals, fmt.Sprintf("ok-%d", i), fmt.Sprintf("perm-%d", i))
			}
			seqs := r63PubSeqs(t, e, vals)
			// The dead-letter stream is full and refuses new messages.
			if _, err := e.js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "FULL", Subjects: []string{"full"},
				MaxMsgs: 1, Discard: jetstream.DiscardNew}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.js.Publish(context.Background(), "full", []byte("x")); err != nil {
				t.Fatal(err)
			}
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			ctx, cancel := context.WithTimeout(context.Background(), r63Watchdog)
			defer cancel()
			src := natsjs.Source(e.srcCons, r14Str, natsjs.DeadLetter(e.srcJS, "full"), natsjs.Backoff(time.Millisecond, time.Millisecond))
			work := stage.Map(stage.Until(src, stop), func(_ context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
				if strings.HasPrefix(m.Value, "perm") {
					return m, natsjs.Permanent(errR63)
				}
				return m, nil
			}, append([]stage.Option{stage.Workers(sh.workers), stage.OnError(stage.Forward)}, r63BufOpt(sh)...)...)
			var got r63Commits
			errc := make(chan error, 1)
			go func() {
				errc <- stage.Run(ctx, work, func(_ context.Context, m natsjs.Msg[string], ferr error) error {
					if ferr == nil {
						got.add(m)
					}
					return nil
				})
			}()
			r63WaitFor(t, "two naks of each Permanent message and an ack of each good one", func() bool {
				if l.sync(e.src) != nil {
					return false
				}
				for _, v := range vals {
					n := 1
					if strings.HasPrefix(v, "perm") {
						n = 2
					}
					if len(l.of(seqs[v])) < n {
						return false
					}
				}
				return true
			})
			e.waitWork(t, 10, "the Permanent messages stay")
			drain()
			if err := r38Recv(t, "the run's end", errc); err != nil {
				t.Fatalf("run: %v", err)
			}
			if serr := l.sync(e.src); serr != nil {
				t.Fatal(serr)
			}
			for _, v := range vals {
				want := []string{"ack"}
				if strings.HasPrefix(v, "perm") {
					want = []string{"nak", "nak"}
				}
				if got := l.of(seqs[v]); !slices.Equal(got, want) {
					t.Errorf("settlements of %s = %v, want %v", v, got, want)
				}
			}
			var wantOK []string
			for i := range 10 {
				wantOK = append(wantOK, fmt.Sprintf("ok-%d", i))
			}
			r63CheckSet(t, "committed", got.snapshot(), wantOK)
		})
	}
}

// TestReview63RejectedRuns attacks runs of messages that decode rejects,
// published to an idle run around a few good ones, with and without a
// dead-letter subject, for Workers 1, 2 and 8, fused or not:
//
//	Source: "A message that decode rejects is terminated (and dead-lettered)
//	at once, or by a later call (see below), and never enters the pipeline"
//	and "A consumer's look answers at once also when it meets a message
//	decode rejects: with a DeadLetter subject ... that message is terminated
//	and dead-lettered by the next call that may wait ..., or at the run's
//	stop if none comes".
//
// While the run goes on (it then waits on the empty stream, a call that may
// wait), every rejected message must be terminated (and dead-lettered, once
// each) and every good one committed once and acknowledged.
func TestReview63RejectedRuns(t *testing.T) {
	for _, withDLQ := range []bool{false, true} {
		for _, sh := range []r63Shape{{workers: 1}, {workers: 2}, {workers: 8}, {workers: 8, buffer: 8}, {workers: 8, chain: true}} {
			t.Run(fmt.Sprintf("dlq=%v/%s", withDLQ, sh), func(t *testing.T) {
				e := r63New(t, jetstream.ConsumerConfig{})
				l := r63WatchAcks(t, e.url)
				var opts []natsjs.SourceOption
				if withDLQ {
					opts = append(opts, natsjs.DeadLetter(e.srcJS, "dlq"))
				}
				var got r63Commits
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				ctx, cancel := context.WithTimeout(context.Background(), r63Watchdog)
				defer cancel()
				errc := make(chan error, 1)
				go func() {
					errc <- sink.ForEach(ctx, sh.build(stage.Until(natsjs.Source(e.srcCons, r63Decode, opts...), stop), r63Ident),
						func(_ context.Context, m natsjs.Msg[string]) error {
							got.add(m)
							return nil
						})
				}()
				e.waiting(t)
				var vals, good, bad []string
				for i := range 40 {
					bad = append(bad, fmt.Sprintf("bad-%d", i))
					vals = append(vals, bad[len(bad)-1])
					if i%8 == 7 {
						good = append(good, fmt.Sprintf("good-%d", i))
						vals = append(vals, good[len(good)-1])
					}
				}
				seqs := r63PubSeqs(t, e, vals)
				r63WaitFor(t, "every message settled while the run goes on", func() bool {
					w, err1 := e.count("WORK")
					d, err2 := e.count("DLQ")
					return err1 == nil && err2 == nil && w == 0 && (!withDLQ || d == uint64(len(bad)))
				})
				drain()
				if err := r38Recv(t, "the run's end", errc); err != nil {
					t.Fatalf("run: %v", err)
				}
				r63CheckSet(t, "committed", got.snapshot(), good)
				if serr := l.sync(e.src); serr != nil {
					t.Fatal(serr)
				}
				for _, v := range vals {
					want := []string{"ack"}
					if strings.HasPrefix(v, "bad") {
						want = []string{"term"}
					}
					if s := l.of(seqs[v]); !slices.Equal(s, want) {
						t.Errorf("settlements of %s = %v, want %v", v, s, want)
					}
				}
				if withDLQ {
					dead := map[string]int{}
					for _, m := range e.dlq(t) {
						dead[string(m.Data)]++
					}
					r63CheckSet(t, "dead letters", dead, bad)
				} else if d, err := e.count("DLQ"); err != nil || d != 0 {
					t.Fatalf("DLQ holds %d (%v) without a DeadLetter option", d, err)
				}
			})
		}
	}
}
