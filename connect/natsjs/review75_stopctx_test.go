package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Source: "A message that decode rejects is terminated (and dead-lettered)
// at once, or by a later call (see below), and never enters the pipeline".
// Hostile rejection values: stage.ErrStop (bare and wrapped), which a sink
// would take for a quiet stop. The run goes on: the other messages are
// committed; the rejected one is terminated and dead-lettered.
func TestReview75DecodeRejectsWithStopValues(t *testing.T) {
	for name, rej := range map[string]error{
		"ErrStop":   stage.ErrStop,
		"wrapped":   fmt.Errorf("review75: %w", stage.ErrStop),
		"permanent": natsjs.Permanent(stage.ErrStop),
		"canceled":  context.Canceled,
	} {
		t.Run(name, func(t *testing.T) {
			e := r63New(t, jetstream.ConsumerConfig{})
			log := r63WatchAcks(t, e.url)
			e.pub(t, "a", "bad", "c")
			decode := func(b []byte) (string, error) {
				if string(b) == "bad" {
					return "", rej
				}
				return string(b), nil
			}
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			ctx, cancel := r75HangCtx()
			defer cancel()
			var got []string
			err := sink.ForEach(ctx, stage.Until(natsjs.Source(e.srcCons, decode, natsjs.DeadLetter(e.srcJS, "dlq")), stop),
				func(_ context.Context, m natsjs.Msg[string]) error {
					if got = append(got, m.Value); m.Value == "c" {
						drain()
					}
					return nil
				})
			if err != nil {
				t.Fatalf("run: %v (committed %v)", err, got)
			}
			if !slices.Equal(got, []string{"a", "c"}) {
				t.Fatalf("committed %v, want [a c]", got)
			}
			if err := log.sync(e.src); err != nil {
				t.Fatal(err)
			}
			if ks := log.of(2); !slices.Equal(ks, []string{"term"}) {
				t.Fatalf("bad settled %v, want [term]", ks)
			}
			if n := e.streamMsgs(t, "DLQ"); n != 1 {
				t.Fatalf("DLQ holds %d, want 1", n)
			}
		})
	}
}

// stage.Until with a stop context of the caller's own type (its Done channel
// is not a standard context's): Source: "A drained run (stage.Until) takes no
// more messages and settles what it took; every message the run held but did
// not settle ... is nak'ed". The message in the sink when the drain starts
// is committed and acknowledged; the rest go back at once.
func TestReview75OpaqueStopContextDrains(t *testing.T) {
	e := r63New(t, jetstream.ConsumerConfig{})
	log := r63WatchAcks(t, e.url)
	vals := r63Vals(0, 10)
	e.pub(t, vals...)
	base, drain := context.WithCancel(context.Background())
	defer drain()
	stop := &r75OpaqueCtx{Context: base}
	ctx, cancel := r75HangCtx()
	defer cancel()
	var c r63Commits
	err := sink.ForEach(ctx, stage.Until(natsjs.Source(e.srcCons, r14Str, natsjs.Backoff(0, 0)), stop),
		func(fctx context.Context, m natsjs.Msg[string]) error {
			if m.Value == "v1" {
				qctx, qcancel := context.WithTimeout(context.Background(), r75Watchdog)
				defer qcancel()
				if err := e.quiet(qctx); err != nil {
					return err
				}
				drain()
			}
			c.add(m)
			return nil
		})
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	if err := log.sync(e.src); err != nil {
		t.Fatal(err)
	}
	done := c.snapshot()
	if done["v0"] != 1 || done["v1"] != 1 {
		t.Fatalf("committed %v, want v0 and v1 (at least)", done)
	}
	for i, v := range vals {
		seq := uint64(i + 1)
		ks := log.of(seq)
		if done[v] == 1 {
			if !slices.Equal(ks, []string{"ack"}) {
				t.Errorf("%s (committed) settled %v, want [ack]", v, ks)
			}
		} else if !slices.Equal(ks, []string{"nak"}) {
			t.Errorf("%s (held) settled %v, want [nak]", v, ks)
		}
	}
}

// stage, Leaks: "If the caller's ctx, or the stop context of an Until, is a
// context type of the caller's whose methods panic when the run calls them,
// the run is cancelled and the sink raises that panic again once the run is
// over". With the Source: a cancelled run gives back what it held; nothing
// is acknowledged that was not committed, and nothing is stranded.
func TestReview75PanickingStopContext(t *testing.T) {
	for _, atStart := range []bool{false, true} {
		t.Run(fmt.Sprintf("armed-at-start=%v", atStart), func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				e := r63New(t, jetstream.ConsumerConfig{})
				vals := r63Vals(0, 10)
				e.pub(t, vals...)
				base, drain := context.WithCancel(context.Background())
				defer drain()
				stop := &r75PanicCtx{Context: base}
				stop.armed.Store(atStart)
				ctx, cancel := r75HangCtx()
				defer cancel()
				var c r63Commits
				var recovered any
				var err error
				func() {
					defer func() { recovered = recover() }()
					err = sink.ForEach(ctx, stage.Until(natsjs.Source(e.srcCons, r14Str, natsjs.Backoff(0, 0)), stop),
						func(fctx context.Context, m natsjs.Msg[string]) error {
							if m.Value == "v1" {
								qctx, qcancel := context.WithTimeout(context.Background(), r75Watchdog)
								defer qcancel()
								if err := e.quiet(qctx); err != nil {
									return err
								}
								stop.armed.Store(true)
								drain()
							}
							c.add(m)
							return nil
						})
				}()
				t.Logf("run: err %v, panic %v (called after arming: %v)", err, recovered, stop.called.Load())
				if stop.called.Load() && recovered == nil {
					t.Errorf("the stop context panicked in the run, and the sink did not raise the panic again (returned %v)", err)
				}
				if recovered != nil && recovered != errR75StopPanic {
					t.Errorf("the sink raised %v, want the stop context's own panic value", recovered)
				}
				want := r63Minus(vals, c.snapshot())
				rest := r63Rest(t, e, want)
				r63CheckSet(t, "second run", rest, want)
			})
		})
	}
}

var errR75StopPanic = errors.New("review75: the stop context's Err panics")

// r75PanicCtx is an opaque context whose Done and Err panic once armed.
type r75PanicCtx struct {
	context.Context
	armed, called atomic.Bool
}

func (c *r75PanicCtx) Done() <-chan struct{} {
	if c.armed.Load() {
		c.called.Store(true)
		panic(errR75StopPanic)
	}
	return c.Context.Done()
}
func (c *r75PanicCtx) Err() error {
	if c.armed.Load() {
		c.called.Store(true)
		panic(errR75StopPanic)
	}
	return c.Context.Err()
}
