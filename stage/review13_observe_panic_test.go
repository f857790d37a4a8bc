package stage_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r13oPanicky wraps a recording watcher and panics in one method at the
// k-th call of it (before the panic, the call is recorded).
type r13oPanicky struct {
	*r13oW
	where string // "received", "finished", "closed"
	k     int64
	n     atomic.Int64
	// before, if set, runs before the panicking call panics.
	before   func()
	panicked atomic.Bool
	// events counts Received/Finished calls that began after the panic.
	afterPanic atomic.Int64
}

func (p *r13oPanicky) Received() {
	if p.panicked.Load() {
		p.afterPanic.Add(1)
	}
	p.r13oW.Received()
	if p.where == "received" && p.n.Add(1) == p.k {
		if p.before != nil {
			p.before()
		}
		p.panicked.Store(true)
		panic(r13oPanicVal{"received"})
	}
}

func (p *r13oPanicky) Finished(d time.Duration, err error) {
	if p.panicked.Load() {
		p.afterPanic.Add(1)
	}
	p.r13oW.Finished(d, err)
	if p.where == "finished-canceled" && errors.Is(err, context.Canceled) {
		p.panicked.Store(true)
		panic(r13oPanicVal{"finished"})
	}
	if p.where == "finished" && p.n.Add(1) == p.k {
		p.panicked.Store(true)
		panic(r13oPanicVal{"finished"})
	}
}

func (p *r13oPanicky) Closed() {
	p.r13oW.Closed()
	if p.where == "closed" {
		p.panicked.Store(true)
		panic(r13oPanicVal{"closed"})
	}
}

func r13oIsPanic(err error, where string) bool {
	var pe *stage.PanicError
	return errors.As(err, &pe) && errors.Is(err, r13oPanicVal{where})
}

// Promise (Watcher, README "A panic in your code never crashes the
// process"): a panic in Stage or in a Watcher's method fails the run and the
// process goes on; the sink returns an error wrapping a *PanicError (unless
// the run had failed already; a panic in Closed is returned unless the run
// failed or the sink's callback stopped it with ErrStop). After a panic, the
// watcher is told nothing more in that run but its Closed. Run in a child
// process: a broken promise here could crash or hang the test binary. The
// child's TestMain (goleak) also checks that no goroutine is left behind.
func TestReview13ObservePanics(t *testing.T) { runcheck.InChildTest(t, r13oObservePanics) }

func r13oObservePanics(t *testing.T) {

	t.Run("in-Stage", func(t *testing.T) {
		other := &r13oRec{}
		rec := &r13oRec{}
		rec.hook = func(info stage.Info) {
			if info.Name == "b" {
				panic(r13oPanicVal{"stage"})
			}
		}
		var nexts atomic.Int64
		src := stage.Map(source.Slice(ints(10)), func(_ context.Context, x int) (int, error) { nexts.Add(1); return x, nil }, stage.Name("a"))
		s := stage.Map(src, double, stage.Name("b"))
		var err error
		r13oWatchdog(t, func() {
			_, err = sink.Slice(stage.Observe(stage.Observe(context.Background(), rec), other), s)
		})
		if !r13oIsPanic(err, "stage") {
			t.Fatalf("sink returned %v, want a *PanicError of the Stage panic", err)
		}
		// Watcher a was returned before the panic: it is closed once and
		// balanced; so is every watcher of the other observer.
		for _, w := range append(rec.watchers(), other.watchers()...) {
			w.check(t)
		}
		if len(rec.watchers()) != 1 {
			t.Errorf("panicking observer's watchers: %v", rec.names())
		}
	})

	t.Run("in-Received-sequential", func(t *testing.T) {
		other := &r13oRec{}
		var p *r13oPanicky
		rec := &r13oRec{mk: func(_ stage.Info, w *r13oW) stage.Watcher {
			p = &r13oPanicky{r13oW: w, where: "received", k: 1}
			return p
		}}
		s := stage.Map(source.Slice(ints(50)), double, stage.Workers(1))
		var err error
		r13oWatchdog(t, func() {
			_, err = sink.Slice(stage.Observe(stage.Observe(context.Background(), rec), other), s)
		})
		if !r13oIsPanic(err, "received") {
			t.Fatalf("sink returned %v", err)
		}
		if p.afterPanic.Load() != 0 || p.finished.Load() != 0 || p.received.Load() != 1 {
			t.Errorf("after the panic: %d events (received %d finished %d), want none", p.afterPanic.Load(), p.received.Load(), p.finished.Load())
		}
		if p.closed.Load() != 1 {
			t.Errorf("Closed %d times", p.closed.Load())
		}
		for _, w := range other.watchers() {
			w.check(t)
		}
	})

	t.Run("in-Finished", func(t *testing.T) {
		var p *r13oPanicky
		rec := &r13oRec{mk: func(_ stage.Info, w *r13oW) stage.Watcher {
			p = &r13oPanicky{r13oW: w, where: "finished", k: 1}
			return p
		}}
		s := stage.Map(source.Slice(ints(50)), double, stage.Workers(1))
		var err error
		r13oWatchdog(t, func() { _, err = sink.Slice(stage.Observe(context.Background(), rec), s) })
		if !r13oIsPanic(err, "finished") {
			t.Fatalf("sink returned %v", err)
		}
		if p.afterPanic.Load() != 0 || p.finished.Load() != 1 {
			t.Errorf("after the panic: %d events", p.afterPanic.Load())
		}
		if p.closed.Load() != 1 {
			t.Errorf("Closed %d times", p.closed.Load())
		}
	})

	t.Run("in-Finished-after-the-run-failed", func(t *testing.T) {
		// Item 0 fails (FailFast) once item 1 is in its call; item 1 then
		// ends because the run did, and the watcher panics on that
		// (cut-short) Finished: the run had failed already, so the sink
		// returns the item's error, not the panic.
		var p *r13oPanicky
		rec := &r13oRec{mk: func(_ stage.Info, w *r13oW) stage.Watcher {
			p = &r13oPanicky{r13oW: w, where: "finished-canceled"}
			return p
		}}
		peer := make(chan struct{})
		s := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, x int) (int, error) {
			if x == 0 {
				<-peer
				return 0, errR13o
			}
			close(peer)
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Workers(2), stage.Buffer(1))
		var err error
		r13oWatchdog(t, func() { _, err = sink.Slice(stage.Observe(context.Background(), rec), s) })
		var pe *stage.PanicError
		if !errors.Is(err, errR13o) || errors.As(err, &pe) {
			t.Fatalf("sink returned %v, want the item's error and not the later panic", err)
		}
		if !p.panicked.Load() {
			t.Fatalf("the cut-short Finished never came (failed %d canceled %d)", p.failed.Load(), p.canceled.Load())
		}
		if p.closed.Load() != 1 {
			t.Errorf("Closed %d times", p.closed.Load())
		}
	})

	closedRun := func(t *testing.T, failAt int, run func(ctx context.Context, s stage.Stream[int]) error) error {
		var p *r13oPanicky
		rec := &r13oRec{mk: func(_ stage.Info, w *r13oW) stage.Watcher {
			p = &r13oPanicky{r13oW: w, where: "closed"}
			return p
		}}
		s := stage.Map(source.Slice(ints(20)), func(_ context.Context, x int) (int, error) {
			if x == failAt {
				return 0, errR13o
			}
			return x, nil
		}, stage.Workers(1))
		var err error
		r13oWatchdog(t, func() { err = run(stage.Observe(context.Background(), rec), s) })
		if p.closed.Load() != 1 {
			t.Errorf("Closed %d times", p.closed.Load())
		}
		return err
	}

	t.Run("in-Closed-after-success", func(t *testing.T) {
		err := closedRun(t, -1, func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Count(ctx, s)
			return err
		})
		if !r13oIsPanic(err, "closed") {
			t.Fatalf("sink returned %v, want the Closed panic", err)
		}
	})

	t.Run("in-Closed-after-ErrStop", func(t *testing.T) {
		err := closedRun(t, 5, func(ctx context.Context, s stage.Stream[int]) error {
			return stage.Run(ctx, s, func(_ context.Context, v int, _ error) error {
				if v == 2 {
					return stage.ErrStop
				}
				return nil
			})
		})
		if err != nil {
			t.Fatalf("sink returned %v, want nil (ErrStop stopped the run)", err)
		}
	})

	t.Run("in-Closed-after-failure", func(t *testing.T) {
		err := closedRun(t, 5, func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Count(ctx, s)
			return err
		})
		var se *stage.Error
		if !errors.Is(err, errR13o) || !errors.As(err, &se) {
			t.Fatalf("sink returned %v, want the item's *Error", err)
		}
		var pe *stage.PanicError
		if errors.As(err, &pe) {
			t.Errorf("sink returned %v: the Closed panic must not be returned after a failed run", err)
		}
	})
}

// Promise (Logger): logs a stage's start and close (Info), each failed item
// (Warn); never per successful item; a call ended by the run's cancellation
// is not a failure. Logger panics if l is nil.
func TestReview13ObserveLogger(t *testing.T) {
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Logger(nil) did not panic")
			}
		}()
		stage.Logger(nil)
	}()
	run := func(t *testing.T, n int, fail func(int) bool, policy stage.ErrorPolicy) *r13oLogCapture {
		h := &r13oLogCapture{}
		ctx := stage.Observe(context.Background(), stage.Logger(r13oSlog(h)))
		s := stage.Map(source.Slice(ints(n)), func(_ context.Context, x int) (int, error) {
			if fail(x) {
				return 0, errR13o
			}
			return x, nil
		}, stage.Workers(4), stage.OnError(policy))
		r13oWatchdog(t, func() { _, _ = sink.Count(ctx, s) })
		return h
	}
	none := func(int) bool { return false }
	handle := stage.Handle(func(context.Context, *stage.Error) error { return nil })
	small, big := run(t, 1, none, handle), run(t, 500, none, handle)
	if small.count(slogLevelInfo) != big.count(slogLevelInfo) || big.total() != small.total() || big.count(slogLevelWarn) != 0 {
		t.Errorf("records for 1 item: %v; for 500 items: %v (want the same: no per-item success logs)", small.levels(), big.levels())
	}
	if small.count(slogLevelInfo) < 2 {
		t.Errorf("want a start and a close record at Info, got %v", small.levels())
	}
	failing := run(t, 100, func(x int) bool { return x%10 == 3 }, handle)
	if got := failing.count(slogLevelWarn); got != 10 {
		t.Errorf("%d Warn records for 10 failed items: %v", got, failing.levels())
	}

	// Cut short: item 0 fails (FailFast) once items 1 and 2 are in their
	// calls waiting for the run's end; they are not failures.
	h := &r13oLogCapture{}
	ctx := stage.Observe(context.Background(), stage.Logger(r13oSlog(h)))
	peers := make(chan struct{}, 2)
	s := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, x int) (int, error) {
		if x == 0 {
			<-peers
			<-peers
			return 0, errR13o
		}
		peers <- struct{}{}
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Workers(3), stage.Buffer(1))
	var err error
	r13oWatchdog(t, func() { _, err = sink.Count(ctx, s) })
	if !errors.Is(err, errR13o) {
		t.Fatalf("sink %v", err)
	}
	if got := h.count(slogLevelWarn); got != 1 {
		t.Errorf("%d Warn records, want 1 (cut-short calls are not failures): %v", got, h.levels())
	}
}

// Promise (Watcher.Finished, Stats, Counts.InFlight): every call a watcher
// was told about ends with a Finished ("the call ... ended"); only the
// watcher that panicked is told nothing more. Here one observer panics while
// three calls of the stage are in flight; the other observers attached to
// the same run (a recording one and a Stats) must still be told that those
// calls finished, or their in-flight counts stay up for ever. Child process,
// as above.
func TestReview13ObservePanicSilencesOtherObservers(t *testing.T) {
	runcheck.InChildTest(t, r13oObservePanicSilencesOtherObservers)
}

func r13oObservePanicSilencesOtherObservers(t *testing.T) {
	t.Run("in-Received-peers-in-flight", func(t *testing.T) {
		other := &r13oRec{}
		var st stage.Stats
		started := make(chan struct{}, 4)
		var p *r13oPanicky
		rec := &r13oRec{mk: func(_ stage.Info, w *r13oW) stage.Watcher {
			p = &r13oPanicky{r13oW: w, where: "received", k: 4, before: func() {
				for range 3 {
					<-started
				}
			}}
			return p
		}}
		s := stage.Map(source.Slice(ints(4)), func(ctx context.Context, x int) (int, error) {
			started <- struct{}{}
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Workers(4), stage.Buffer(1))
		var err error
		r13oWatchdog(t, func() {
			_, err = sink.Slice(stage.Observe(stage.Observe(stage.Observe(context.Background(), rec), other), &st), s)
		})
		if !r13oIsPanic(err, "received") {
			t.Fatalf("sink returned %v", err)
		}
		// Another observer's counts must balance: the run is over, nothing
		// is in flight.
		if c, _ := st.Get("map#1"); c.InFlight != 0 || c.Running != 0 {
			t.Errorf("Stats attached next to the panicking observer, after the sink returned: %+v", c)
		}
		// The three calls in flight end after the panic (they wait for the
		// run's end, which the panic causes): their Finished must not reach
		// the panicked watcher.
		if p.afterPanic.Load() != 0 || p.finished.Load() != 0 {
			t.Errorf("after the panic the watcher was told %d more events (finished %d)", p.afterPanic.Load(), p.finished.Load())
		}
		if p.closed.Load() != 1 {
			t.Errorf("Closed %d times", p.closed.Load())
		}
		// The other observer is told everything: the three calls in flight
		// and the fourth, whose Received panicked in the first observer
		// only, each received and cut short.
		for _, w := range other.watchers() {
			w.check(t)
			if w.canceled.Load() != w.received.Load() || w.received.Load() < 3 {
				t.Errorf("other observer: received %d canceled %d, want 3 or 4 of each", w.received.Load(), w.canceled.Load())
			}
		}
	})

	t.Run("in-Finished-other-observer", func(t *testing.T) {
		other := &r13oRec{}
		var st stage.Stats
		var p *r13oPanicky
		rec := &r13oRec{mk: func(_ stage.Info, w *r13oW) stage.Watcher {
			p = &r13oPanicky{r13oW: w, where: "finished", k: 1}
			return p
		}}
		s := stage.Map(source.Slice(ints(50)), double, stage.Workers(1))
		var err error
		r13oWatchdog(t, func() {
			_, err = sink.Slice(stage.Observe(stage.Observe(stage.Observe(context.Background(), rec), other), &st), s)
		})
		if !r13oIsPanic(err, "finished") {
			t.Fatalf("sink returned %v", err)
		}
		for _, w := range other.watchers() {
			w.check(t)
		}
		if c, _ := st.Get("map#1"); c.InFlight != 0 || c.Running != 0 {
			t.Errorf("Stats attached next to the panicking observer, after the sink returned: %+v", c)
		}
	})
}
