package stage_test

// Review 66: fresh-eyes tests of run.ending (commit 01838c8): under a
// caller's context type that the context package cannot see into, "sources
// take no new item, and the sink delivers nothing more, from the moment its
// Done channel is closed, as with a standard context" (package doc,
// Cancellation).
//
// The run passes such a parent's end on from a goroutine of its own (its
// watcher), "a moment" later. To make that moment last as long as a test
// needs, r66Gated's Err, once its Done is closed, waits for a gate: the
// watcher asks it (context's cancel(parent.Err(), ...)) before it cancels
// the run's context, so until the gate opens only the parent's Done
// channel says that the run is ending. The gate opens once the run's own
// context is done (the run cancelled it itself: the sink finished, or
// failed), so every verdict is decided by channels, never by timing.
// Durations are hang watchdogs only (runcheck).
//
// Three tests failed on 01838c8 and da74c9d: TestReview66SinkCallbackCutShortAck
// (an older bug: Run's deliver asked run.cancelled, not run.ending; fixed,
// and the same for a Handle handler, TestReview66HandlerCutShortAck),
// TestReview66SinkCallbackErrorAfterDone (left open: see it), and
// TestReview66ChanSourceTakesAfterDone, which found that a next already
// waiting when such a Done closes still takes a value (dropped since
// 01838c8, delivered late before): no code can wake a waiting receive at a
// foreign channel without a goroutine, so the package doc now states it,
// and the test holds what it states.
// TestReview66NothingDeliveredAfterDone and TestReview66ParentKinds pass
// (the first fails on abfb9da, before the commit: 55 items delivered late).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r66Gated is a caller's context type with its own Done channel (a
// ctxtest.DoneCtx's): the context package cannot see into it, so the run
// watches it from a goroutine of its own. Its Err, once Done is closed,
// returns only once the gate is open (a slow Err: the context keeps its
// contract, Err is non-nil once Done is closed). Value and Deadline are the
// embedded context's: Background, or a standard cancellable context whose
// Done this type overrides with its own (the context package then finds
// the standard context through Value, but its Done channel is not this
// type's, so it still cannot see into it).
type r66Gated struct {
	context.Context
	d      *ctxtest.DoneCtx
	gate   chan struct{}
	once   sync.Once
	runCtx chan context.Context
	opened chan struct{} // closed once the opener goroutine is done
}

// r66NewGated returns a live r66Gated over base and starts its opener: a
// goroutine (started before the run, so that it is no goroutine of the
// run's for runcheck) that opens the gate once the run's context, which
// the sink's callback hands it (seen), is done.
func r66NewGated(base context.Context) *r66Gated {
	c := &r66Gated{Context: base, d: ctxtest.NewDoneCtx(), gate: make(chan struct{}), runCtx: make(chan context.Context, 1), opened: make(chan struct{})}
	go func() {
		defer close(c.opened)
		select {
		case ctx := <-c.runCtx:
			select {
			case <-ctx.Done():
			case <-c.gate:
			}
		case <-c.gate:
		}
		c.open()
	}()
	return c
}

func (c *r66Gated) Done() <-chan struct{} { return c.d.Done() }

func (c *r66Gated) Err() error {
	err := c.d.Err()
	if err != nil {
		<-c.gate
	}
	return err
}

// Cancel closes Done (the watcher then waits in Err for the gate).
func (c *r66Gated) Cancel() { c.d.Cancel() }

// closed reports whether Done is closed, without waiting for the gate.
func (c *r66Gated) closed() bool { return c.d.Err() != nil }

// open opens the gate (once).
func (c *r66Gated) open() { c.once.Do(func() { close(c.gate) }) }

// seen hands the opener the run's context (the sink callback's ctx).
func (c *r66Gated) seen(ctx context.Context) {
	select {
	case c.runCtx <- ctx:
	default:
	}
}

// stop ends the opener (after the run).
func (c *r66Gated) stop() {
	c.open()
	<-c.opened
}

// r66Ack records the acknowledgements of an AckSource's items by value.
type r66Acks struct {
	mu   sync.Mutex
	told map[int][]error
}

type r66Ack struct {
	a *r66Acks
	v int
}

func (a r66Ack) Done(err error) {
	a.a.mu.Lock()
	defer a.a.mu.Unlock()
	if a.a.told == nil {
		a.a.told = map[int][]error{}
	}
	a.a.told[a.v] = append(a.a.told[a.v], err)
}

func (a *r66Acks) get(v int) []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]error(nil), a.told[v]...)
}

func (a *r66Acks) all() map[int][]error {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := map[int][]error{}
	for k, v := range a.told {
		m[k] = append([]error(nil), v...)
	}
	return m
}

// r66Src is an AckSource of base, base+1, ..., base+n-1 that counts the
// calls of next that began once the caller's ctx was closed.
type r66Src struct {
	base, n   int
	acks      *r66Acks
	closed    func() bool
	nexts     atomic.Int32
	lateNexts atomic.Int32
}

func (s *r66Src) stream() stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if s.closed() {
				s.lateNexts.Add(1)
			}
			if i >= s.n {
				return 0, nil, io.EOF
			}
			s.nexts.Add(1)
			v := s.base + i
			i++
			return v, r66Ack{a: s.acks, v: v}, nil
		}, nil
	})
}

func (s *r66Src) indexed() stage.Stream[int] {
	return stage.Indexed(s.n, func(i int) int { return s.base + i })
}

func r66Id(_ context.Context, v int) (int, error) { return v, nil }

// TestReview66NothingDeliveredAfterDone: the commit's promise, made
// deterministic by the gate. For each pipeline shape and both kinds of
// such a parent (one with nothing standard inside; one embedding a
// standard cancellable context but with a Done channel of its own), the
// sink's callback closes the caller's Done at its k-th item and returns
// nil. From then on: no callback (over a bare source, no call of next)
// begins, the sink
// returns context.Canceled, no goroutine is left, and an item's Ack is
// told nil only if the sink committed it (each at most once).
func TestReview66NothingDeliveredAfterDone(t *testing.T) {
	const n, k = 60, 5
	type shape struct {
		name  string
		make  func(s1, s2 *r66Src) stage.Stream[int]
		tee   bool
		noAck bool // Indexed: no acknowledgements
	}
	shapes := []shape{
		{name: "source", make: func(s1, _ *r66Src) stage.Stream[int] { return s1.stream() }},
		{name: "map-w1", make: func(s1, _ *r66Src) stage.Stream[int] { return stage.Map(s1.stream(), r66Id, stage.Workers(1)) }},
		{name: "map-w4", make: func(s1, _ *r66Src) stage.Stream[int] { return stage.Map(s1.stream(), r66Id, stage.Workers(4)) }},
		{name: "map-w4-ordered", make: func(s1, _ *r66Src) stage.Stream[int] {
			return stage.Map(s1.stream(), r66Id, stage.Workers(4), stage.Ordered())
		}},
		{name: "map-w-1", make: func(s1, _ *r66Src) stage.Stream[int] { return stage.Map(s1.stream(), r66Id, stage.Workers(-1)) }},
		{name: "keyby", make: func(s1, _ *r66Src) stage.Stream[int] {
			return stage.Map(s1.stream(), r66Id, stage.Workers(4), stage.KeyBy(func(v int) int { return v % 3 }))
		}},
		{name: "merge", make: func(s1, s2 *r66Src) stage.Stream[int] {
			return stage.Merge(stage.Map(s1.stream(), r66Id, stage.Workers(2)), s2.stream())
		}},
		{name: "tee", tee: true, make: func(s1, _ *r66Src) stage.Stream[int] {
			b := stage.Tee(s1.stream(), 2)
			return stage.Merge(stage.Map(b[0], r66Id, stage.Workers(2)), stage.Map(b[1], r66Id))
		}},
		{name: "until", make: func(s1, _ *r66Src) stage.Stream[int] {
			// A stop context that never ends (of the caller's own type,
			// watched too, but it is not the parent): a live drain scope.
			return stage.Until(stage.Map(s1.stream(), r66Id, stage.Workers(3)), ctxtest.NewDoneCtx())
		}},
		{name: "batch", make: func(s1, _ *r66Src) stage.Stream[int] {
			return stage.Unbatch(stage.Batch(s1.stream(), 3, 0))
		}},
		{name: "indexed-w4", noAck: true, make: func(s1, _ *r66Src) stage.Stream[int] { return stage.Map(s1.indexed(), r66Id, stage.Workers(4)) }},
		{name: "indexed-ordered", noAck: true, make: func(s1, _ *r66Src) stage.Stream[int] {
			return stage.Map(s1.indexed(), r66Id, stage.Workers(4), stage.Ordered())
		}},
		{name: "nested-fn", make: func(s1, _ *r66Src) stage.Stream[int] {
			// A stage whose function runs a run of its own under its ctx
			// (the outer run's context: a standard one).
			return stage.Map(s1.stream(), func(ctx context.Context, v int) (int, error) {
				c, err := sink.Count(ctx, stage.Map(source.Slice([]int{v, v}), r66Id, stage.Workers(2)))
				if err != nil {
					return 0, err
				}
				return v + c - 2, nil
			}, stage.Workers(2))
		}},
	}
	bases := []struct {
		name string
		make func() (context.Context, func())
	}{
		{name: "ownDone", make: func() (context.Context, func()) { return context.Background(), func() {} }},
		{name: "embedsStd", make: func() (context.Context, func()) { return context.WithCancel(context.Background()) }},
	}
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, b := range bases {
			for _, sh := range shapes {
				t.Run(b.name+"/"+sh.name, func(t *testing.T) {
					for range 5 {
						base, baseCancel := b.make()
						c := r66NewGated(base)
						acks := &r66Acks{}
						s1 := &r66Src{base: 0, n: n, acks: acks, closed: c.closed}
						s2 := &r66Src{base: 1000, n: n, acks: acks, closed: c.closed}
						in := sh.make(s1, s2)
						var delivered []int
						late := 0
						var err error
						runcheck.Run(t, sh.name, func() {
							err = stage.Run(c, in, func(ctx context.Context, v int, ferr error) error {
								c.seen(ctx)
								if c.closed() {
									late++
									return nil
								}
								delivered = append(delivered, v)
								if len(delivered) == k {
									c.Cancel()
								}
								return ferr
							})
						})
						c.stop()
						baseCancel()
						if !errors.Is(err, context.Canceled) {
							t.Fatalf("err = %v; want context.Canceled", err)
						}
						if late != 0 {
							t.Fatalf("the sink delivered %d items after the caller's Done closed", late)
						}
						// A call of next that began once Done closed: only the
						// sink's goroutine calls it here, so none may (with
						// goroutines of stages, one may be on its way already,
						// as under a standard context).
						if l := s1.lateNexts.Load(); sh.name == "source" && l != 0 {
							t.Fatalf("%d calls of next (or at) began after the caller's Done closed", l)
						}
						if len(delivered) != k {
							t.Fatalf("delivered %v; want %d items", delivered, k)
						}
						committed := map[int]bool{}
						for _, v := range delivered {
							committed[v] = true
						}
						for v, errs := range acks.all() {
							if len(errs) != 1 || errs[0] != nil || !committed[v] {
								t.Fatalf("item %d told %v (committed: %v); want nil once, and only if committed", v, errs, committed[v])
							}
						}
						if !sh.tee && !sh.noAck {
							for v := range committed {
								if errs := acks.get(v); len(errs) != 1 {
									t.Fatalf("committed item %d told %v; want nil once", v, errs)
								}
							}
						}
					}
				})
			}
		}
	})
}

// TestReview66ParentKinds: which parents end the run "as with a standard
// context", checked through what the sink delivers once the parent ended
// inside the callback: a caller's type already done when the run starts
// delivers nothing (and calls next never); context.WithoutCancel of one
// never ends the run; a standard context's end is at once.
func TestReview66ParentKinds(t *testing.T) {
	const n = 20
	t.Run("preClosedOwnDone", func(t *testing.T) {
		c := ctxtest.NewDoneCtx()
		c.Cancel()
		s := &r66Src{n: n, acks: &r66Acks{}, closed: func() bool { return false }}
		for _, in := range []stage.Stream[int]{s.stream(), stage.Map(s.stream(), r66Id, stage.Workers(4))} {
			var got int
			var err error
			runcheck.Run(t, "pre", func() { got, err = sink.Count(c, in) })
			if got != 0 || !errors.Is(err, context.Canceled) || s.nexts.Load() != 0 {
				t.Fatalf("got %d items, err %v, %d nexts; want none, Canceled, 0", got, err, s.nexts.Load())
			}
		}
	})
	t.Run("withoutCancelOfOwnDone", func(t *testing.T) {
		c := ctxtest.NewDoneCtx()
		s := &r66Src{n: n, acks: &r66Acks{}, closed: func() bool { return false }}
		var got []int
		var err error
		runcheck.Run(t, "wc", func() {
			err = stage.Run(context.WithoutCancel(c), stage.Map(s.stream(), r66Id, stage.Workers(2)), func(_ context.Context, v int, _ error) error {
				got = append(got, v)
				if len(got) == 3 {
					c.Cancel()
				}
				return nil
			})
		})
		if err != nil || len(got) != n {
			t.Fatalf("got %d items, err %v; want all %d, nil", len(got), err, n)
		}
	})
}

// TestReview66ChanSourceTakesAfterDone: source.Chan's next waits in a
// select on the caller's channel and its ctx, the run's (the sources')
// context. Under a standard caller's ctx, its end closes that context at
// once, and a waiting next takes nothing more ("A receive is abandoned
// when the run ends"; package source: a source takes an item from the
// caller's world "never after the run was cancelled"). Under a caller's
// type with its own Done channel, the waiting next is not woken by that
// channel, only by the watcher a moment later; meanwhile it receives a
// value the caller sends, which the run (ending) then throws away: the
// value is neither delivered nor left in the channel. Before 01838c8 that
// value went on to the sink (delivered late). The package doc states this
// (Cancellation: "A next already waiting ... may still take an item until
// the functions' ctx ends; the run drops it"): under the standard context
// nothing is taken; under the caller's type a value taken is not
// delivered, and the sink still returns Canceled.
//
// The sink reads the source directly: once it has delivered item 0 it
// waits in next (its goroutine parked in source.Chan's select, read from
// the goroutines' stacks). Then the caller closes its Done and tries a
// send that does not wait: it must find no receiver.
func TestReview66ChanSourceTakesAfterDone(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range []string{"WithCancel", "ownDone"} {
			t.Run(kind, func(t *testing.T) {
				parent, cancel, g := r66Parent(kind)
				if g != nil {
					defer g.stop()
				}
				ch := make(chan int)
				var got []int
				var err error
				sawFirst := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					err = stage.Run(parent, source.Chan(ch), func(ctx context.Context, v int, _ error) error {
						if g != nil {
							g.seen(ctx)
						}
						got = append(got, v)
						if v == 0 {
							close(sawFirst)
						}
						return nil
					})
				}()
				ch <- 0
				<-sawFirst
				r66WaitParkedIn(t, "sluice/source.Chan", "[select")
				cancel()
				took := false
				select {
				case ch <- 1:
					took = true
				default:
				}
				if g != nil {
					g.open() // the watcher passes the end on (if next took 1, the run's own end has opened it)
				}
				<-done
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v; want context.Canceled", err)
				}
				if took && g == nil {
					t.Fatalf("source.Chan received 1 from the caller's channel after a standard ctx was cancelled (delivered %v)", got)
				}
				if len(got) != 1 {
					t.Fatalf("delivered %v after the caller's Done closed; want [0]", got)
				}
			})
		}
	})
}

// r66Parent makes a caller's ctx of a kind: a standard one ("WithCancel"),
// or a gated caller's own type ("ownDone"), which it returns as g too (nil
// for the standard one).
func r66Parent(kind string) (parent context.Context, cancel func(), g *r66Gated) {
	if kind == "WithCancel" {
		parent, cancel = context.WithCancel(context.Background())
		return parent, cancel, nil
	}
	g = r66NewGated(context.Background())
	return g, g.Cancel, g
}

// r66WaitParkedIn waits until a goroutine is parked in a wait whose state
// starts with state ("[select") inside a function whose name contains fn.
func r66WaitParkedIn(t *testing.T, fn, state string) {
	t.Helper()
	for {
		_, all := runcheck.Goroutines()
		for _, st := range all {
			head, _, _ := strings.Cut(st, "\n")
			if strings.Contains(head, state) && strings.Contains(st, fn) {
				return
			}
		}
		runtime.Gosched()
	}
}

// TestReview66SinkCallbackCutShortAck: stage.Ack: "Done is not called when
// ... [the] sink callback, once the run was ending, returned an error that
// says so (the context's error ...)"; stage.Run: then "the commit was cut
// short, and the item's fate is unknown (its acknowledgement is not
// told)". The callback commits with the caller's ctx, which ends while it
// works (here: the callback ends it itself), and returns context.Canceled.
// Under a standard ctx the run is ending at once: item k is not told.
// Under a caller's type with its own Done channel the run is "ending" too,
// by the commit's own definition (run.ending: its Done is closed), but
// Run's deliver asks run.cancelled, which waits for the watcher: item k's
// Ack is told context.Canceled, a failure, whenever the watcher is slower
// than the callback (here always).
func TestReview66SinkCallbackCutShortAck(t *testing.T) {
	const n, k = 10, 3
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range []string{"WithCancel", "ownDone"} {
			t.Run(kind, func(t *testing.T) {
				parent, cancel, g := r66Parent(kind)
				if g != nil {
					defer g.stop()
				}
				acks := &r66Acks{}
				s := &r66Src{n: n, acks: acks, closed: func() bool { return false }}
				var err error
				runcheck.Run(t, "ack", func() {
					err = stage.Run(parent, s.stream(), func(ctx context.Context, v int, _ error) error {
						if g != nil {
							g.seen(ctx)
						}
						if v == k {
							cancel()                // the caller's request ends while the commit works
							return context.Canceled // the commit's write, with the caller's ctx, says so
						}
						return nil
					})
				})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v; want context.Canceled", err)
				}
				if errs := acks.get(k); len(errs) != 0 {
					t.Fatalf("BROKEN PROMISE: item %d's Ack was told %v; want it not told (the commit was cut short by the caller's end)", k, errs)
				}
			})
		}
	})
}

// TestReview66SinkCallbackErrorAfterDone: stage.Run returns "the error f
// returned, or the error that had cut the run short before", and its
// result "depends only on what f saw and returned, never on timing". The
// callback ends the caller's ctx and then returns an error of its own (a
// commit that failed for another reason). Under a standard ctx the
// caller's end cut the run short first: the sink returns
// context.Canceled. Under a caller's type with its own Done channel the
// sink returns the callback's error when the watcher is slower than the
// callback (here always), context.Canceled when it is faster: the result
// depends on timing, and differs from a standard context's. Left open (the
// sink cannot take the parent's end as the result without cancelling the
// run's context with a cause it can only read from the user's context,
// while calls in flight must see the same end): this test asserts the
// standard half and logs the other.
func TestReview66SinkCallbackErrorAfterDone(t *testing.T) {
	const n, k = 10, 3
	errX := errors.New("r66: the commit failed")
	runcheck.InChildTest(t, func(t *testing.T) {
		var results []string
		for _, kind := range []string{"WithCancel", "ownDone"} {
			parent, cancel, g := r66Parent(kind)
			s := &r66Src{n: n, acks: &r66Acks{}, closed: func() bool { return false }}
			var err error
			runcheck.Run(t, kind, func() {
				err = stage.Run(parent, s.stream(), func(ctx context.Context, v int, _ error) error {
					if g != nil {
						g.seen(ctx)
					}
					if v == k {
						cancel()
						return errX
					}
					return nil
				})
			})
			if g != nil {
				g.stop()
			}
			results = append(results, fmt.Sprintf("%s: %v (Canceled: %v)", kind, err, errors.Is(err, context.Canceled)))
		}
		if !strings.Contains(results[0], "Canceled: true") {
			t.Fatalf("under a standard ctx: %s; want context.Canceled", results[0])
		}
		t.Logf("under the caller's own type (left open): %s", results[1])
	})
}

// TestReview66HandlerCutShortAck: as TestReview66SinkCallbackCutShortAck,
// for a Handle policy's handler (Handle: "Once the run is ending, an error
// of h's that is the context's error or the run's cause means h was cut
// short: ... the item is left unacknowledged"). The handler of item k's
// failure ends the caller's ctx and returns context.Canceled: under both
// kinds of caller's ctx item k's Ack is not told, and the sink returns
// Canceled (before run.ending was asked there, the caller's own type had
// the Ack told context.Canceled).
func TestReview66HandlerCutShortAck(t *testing.T) {
	const n, k = 10, 3
	errItem := errors.New("r66: item k fails")
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, kind := range []string{"WithCancel", "ownDone"} {
			t.Run(kind, func(t *testing.T) {
				parent, cancel, g := r66Parent(kind)
				if g != nil {
					defer g.stop()
				}
				acks := &r66Acks{}
				s := &r66Src{n: n, acks: acks, closed: func() bool { return false }}
				m := stage.Map(s.stream(), func(_ context.Context, v int) (int, error) {
					if v == k {
						return 0, errItem
					}
					return v, nil
				}, stage.Workers(1), stage.OnError(stage.Handle(func(ctx context.Context, _ *stage.Error) error {
					if g != nil {
						g.seen(ctx)
					}
					cancel()                // the caller's request ends while the handler works
					return context.Canceled // its dead-letter write, with the caller's ctx, says so
				})))
				var err error
				runcheck.Run(t, "handle", func() {
					err = stage.Run(parent, m, func(context.Context, int, error) error { return nil })
				})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v; want context.Canceled", err)
				}
				if errs := acks.get(k); len(errs) != 0 {
					t.Fatalf("item %d's Ack was told %v; want it not told (the handler was cut short by the caller's end)", k, errs)
				}
			})
		}
	})
}
