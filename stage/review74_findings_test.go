package stage_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The caller's ctx is cancelled inside an observer's Stage (while the run
// is opened), then a later Stage panics. Under a standard parent the
// cancellation reaches the run's context at once, the panic's failure
// comes after it and is not recorded, and the sink returns
// context.Canceled. Under a parent of the caller's own type the run hears
// the parent from its watcher, a moment later; the failure came after the
// parent's end all the same and must not be recorded as the run's own (it
// was, the observer's *PanicError, in about half of the runs, until run.fail
// treated every failure but the sink's callback's as stageFailed did;
// "own-watcher-late" forces that order: see the test below).
//
// Run: "the error that cut the run short before f saw the end of s: ...
// or, when ctx was cancelled, an error for which errors.Is(err,
// context.Canceled)"; run.ending: a watched parent's closed Done is
// treated "as they do once a standard parent is cancelled ...; the run's
// decisions treat such an end as the parent's". Every kind of caller's
// context should give the same answer.
func TestReview74ParentEndedInOpeningThenStagePanics(t *testing.T) {
	for _, kind := range []string{ctxtest.Std, ctxtest.Own, "own-watcher-late", ctxtest.Wrap, ctxtest.Cause} {
		t.Run(kind, func(t *testing.T) {
			var sinkG atomic.Int64
			ctx, cancel := r74parent(kind, &sinkG)
			defer cancel()
			o := &r74obs{hook: func(n int, _ stage.Info) {
				switch n {
				case 1:
					cancel()
				case 2:
					panic("review74: Stage panics after the caller's cancellation")
				}
			}}
			src := &r74src{n: 5}
			s := stage.Map(stage.Map(src.stream(), double), double)
			var got int
			var err error
			runcheck.Run(t, "count", func() {
				id, _ := runcheck.Goroutines()
				sinkG.Store(id)
				got, err = sink.Count(stage.Observe(ctx, o), s)
			})
			if got != 0 || src.nexts.Load() != 0 {
				t.Errorf("%d items delivered, next called %d times; want none", got, src.nexts.Load())
			}
			if !r74isCanceled(err) {
				t.Errorf("err = %v; want context.Canceled, as under a standard parent: the caller's cancellation came first", err)
			}
		})
	}
}

// The same with the run's checks: a Tee with a branch nobody reads fails
// the run at start, after the caller cancelled its ctx in Stage. A
// standard parent: context.Canceled. A parent of the caller's own type:
// whether its watcher passes the parent's end on before the check's
// failure is decided is a race (the check won in 196 of 200 runs, and the
// sink returned ErrUnconsumedBranch); "own" leaves it to timing, and
// "own-watcher-late" forces the check first: the watcher is held in the
// parent's Err until the sink's goroutine has left the opening and parks
// (in a pull, or in finish). Both must give context.Canceled.
func TestReview74ParentEndedInOpeningThenCheckFails(t *testing.T) {
	for _, kind := range []string{ctxtest.Std, ctxtest.Own, "own-watcher-late", ctxtest.Wrap, ctxtest.Cause} {
		t.Run(kind, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				var sinkG atomic.Int64
				parent, cancel := r74parent(kind, &sinkG)
				defer cancel()
				o := &r74obs{hook: func(n int, _ stage.Info) {
					if n == 1 {
						cancel()
					}
				}}
				b := stage.Tee(stage.Map(source.Slice([]int{1, 2, 3}), double), 2)
				var err error
				runcheck.Run(t, "count", func() {
					id, _ := runcheck.Goroutines()
					sinkG.Store(id)
					_, err = sink.Count(stage.Observe(parent, o), stage.Map(b[0], double))
				})
				if !r74isCanceled(err) {
					t.Errorf("err = %v; want context.Canceled, as under a standard parent: the caller's cancellation came first", err)
				}
			})
		})
	}
}

// A source's open that waits on its context (a dial with ctx, a lock taken
// with ctx) while the caller's ctx, or Until's stop context, ends: the ctx
// open was given must end too. Source: "Each run calls open once, when the
// run is opened, with the run's context"; Run: "ctx is the run's context,
// derived from the ctx passed to Run" (a derived context's Done closes when
// its parent's does); Source: the context "ends ... under Until when the
// stop context is done (a moment after: it is cancelled from a goroutine of
// the run's)". The watcher of a context of the caller's own type must run
// while the pipeline is opened: c057ca4 started it only at start, which
// comes after open returns, and the sink hung until open gave up by itself
// (reverted; the watcher runs from newRun again, as the context package
// passes a standard context's end on at once).
//
// Deterministic: the context is ended (by the test's goroutine) while open
// waits; then, if open's context is still live and no goroutine of the run
// is alive (the sink's goroutine is the one in open), nothing can ever end
// it: open reports that and returns, instead of hanging for ever.
func TestReview74OpenWaitingHearsTheEnd(t *testing.T) {
	for _, what := range []string{"parent", "stop"} {
		for _, kind := range []string{ctxtest.Std, ctxtest.Own, ctxtest.Wrap, ctxtest.Cause} {
			t.Run(what+"/"+kind, func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) {
					ended, cancel := ctxtest.New(kind)
					defer cancel()
					parent, stop := context.Background(), context.Context(ctxtest.NewDoneCtx())
					if what == "parent" {
						parent = ended
					} else {
						stop = ended
					}
					opening, cancelled := make(chan struct{}), make(chan struct{})
					go func() {
						<-opening
						cancel()
						close(cancelled)
					}()
					var before map[int64]string
					var stuck atomic.Bool
					src := stage.Source(func(ctx context.Context) (func(context.Context) (int, error), func()) {
						close(opening)
						<-cancelled
						leaked := runcheck.LeakedSince(before)
						if ctx.Err() == nil && len(leaked) == 0 {
							stuck.Store(true) // nothing left to end ctx: open would wait for ever
						} else {
							<-ctx.Done()
						}
						return func(context.Context) (int, error) { return 0, io.EOF }, nil
					})
					var err error
					runcheck.Run(t, "count", func() {
						_, before = runcheck.Goroutines()
						_, err = sink.Count(parent, stage.Map(stage.Until(src, stop), double))
					})
					if stuck.Load() {
						t.Errorf("the %s (%s) ended while the source's open waited on its context, and nothing of the run could end that context: open waits for ever (err %v)", what, kind, err)
					}
				})
			})
		}
	}
}
