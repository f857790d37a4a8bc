package stage_test

// Review 56 (fresh eyes on review 55's fix, run.sawEnd): every way a
// producer can stop early, or a run can end, while the caller's
// cancellation is on its way to the run's context (the parent's Done
// closed, the run's context not cancelled yet). In each case the caller's
// ctx is cancelled by user code of the pipeline before the sink can have
// seen its stream's end, so Run's doc leaves one result: an error for
// which errors.Is(err, context.Canceled) holds (no failure of the run can
// come first: each failure here comes after the cancellation, when it is
// not the run's). Never nil, and not a *SourceError or ErrGoexit either
// ("even if a source had failed before"; ErrGoexit's "its context was
// cancelled first").
//
// The technique is review 55's: a caller's context type with a Done
// channel of its own, whose Err waits at a gate, so that the run's watcher
// of it (run_userctx.go's watched) passes the end on only once the gate
// opens. The gate opens r56Widen after the cancellation: only so that a
// broken library shows its fault; a correct one returns context.Canceled
// whatever the delay. Durations otherwise serve only as hang watchdogs.

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r56Widen is how long the run's watcher of the parent waits at the gate:
// it widens the window for a broken library; no verdict depends on it.
const r56Widen = 150 * time.Millisecond

// r56Ctx is a caller's context with a Done channel of its own whose Err
// waits at a gate once Done is closed.
type r56Ctx struct {
	done     chan struct{}
	gate     chan struct{}
	doneOnce sync.Once
	gateOnce sync.Once
}

func newR56Ctx() *r56Ctx {
	return &r56Ctx{done: make(chan struct{}), gate: make(chan struct{})}
}

func (c *r56Ctx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *r56Ctx) Done() <-chan struct{}       { return c.done }
func (c *r56Ctx) Value(any) any               { return nil }
func (c *r56Ctx) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	<-c.gate // the run's watcher of this context waits here
	return context.Canceled
}

// cancel closes Done; the gate opens r56Widen later.
func (c *r56Ctx) cancel() {
	c.doneOnce.Do(func() {
		close(c.done)
		time.AfterFunc(r56Widen, c.open)
	})
}

func (c *r56Ctx) open() { c.gateOnce.Do(func() { close(c.gate) }) }

// r56Run runs s under parent with f (nil: accept every item), with a hang
// watchdog, and returns Run's error.
func r56Run[T any](t *testing.T, parent *r56Ctx, s stage.Stream[T], f func(context.Context, T, error) error) error {
	t.Helper()
	if f == nil {
		f = func(context.Context, T, error) error { return nil }
	}
	errc := make(chan error, 1)
	go func() { errc <- stage.Run(parent, s, f) }()
	select {
	case err := <-errc:
		return err
	case <-time.After(30 * time.Second):
		parent.open()
		t.Fatalf("stage.Run hung")
		return nil
	}
}

// r56WantCanceled fails unless err is the parent's cancellation.
func r56WantCanceled(t *testing.T, name string, err error) {
	t.Helper()
	if err == nil || !errors.Is(err, context.Canceled) {
		t.Errorf("%s: stage.Run = %v; want an error matching context.Canceled (the caller cancelled before the sink saw the end)", name, err)
	}
}

func r56Ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

// TestReview56StageFailureShapes: a FailFast failure right after the
// caller's cancellation, in the shapes whose early stops review 55 did not
// try: an Ordered window with items parked behind the lost one, a fused
// stage of many items, KeyBy with items waiting for the failed key,
// Workers(-1), an eager Ordered Apply, a FlatMap, Merge (the other input
// runs on), Tee (the other branch runs on), Batch (which flushes its
// partial batch at its input's early end).
func TestReview56StageFailureShapes(t *testing.T) {
	boom := errors.New("boom")
	// failAt returns a stage function that cancels parent and fails at v == at.
	failAt := func(parent *r56Ctx, at int) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) {
			if v == at {
				parent.cancel()
				return 0, boom
			}
			return v, nil
		}
	}
	cases := []struct {
		name  string
		build func(parent *r56Ctx) stage.Stream[int]
	}{
		{"ordered-w3", func(p *r56Ctx) stage.Stream[int] {
			return stage.Map(source.Slice(r56Ints(10)), failAt(p, 4), stage.Workers(3), stage.Ordered())
		}},
		{"ordered-w1-buffer", func(p *r56Ctx) stage.Stream[int] {
			return stage.Map(source.Slice(r56Ints(5)), failAt(p, 2), stage.Workers(1), stage.Ordered(), stage.Buffer(2))
		}},
		{"fused-w2-many", func(p *r56Ctx) stage.Stream[int] {
			return stage.Map(source.Slice(r56Ints(200)), failAt(p, 150), stage.Workers(2))
		}},
		{"buffered-w2", func(p *r56Ctx) stage.Stream[int] {
			return stage.Map(source.Slice(r56Ints(6)), failAt(p, 3), stage.Workers(2), stage.Buffer(1))
		}},
		{"keyby-w2", func(p *r56Ctx) stage.Stream[int] {
			return stage.Map(source.Slice(r56Ints(8)), failAt(p, 2), stage.Workers(2),
				stage.KeyBy(func(int) int { return 0 })) // one key: the items after the failed one wait for it
		}},
		{"keyby-unbounded", func(p *r56Ctx) stage.Stream[int] {
			return stage.Map(source.Slice(r56Ints(8)), failAt(p, 2), stage.Workers(-1),
				stage.KeyBy(func(int) int { return 0 }))
		}},
		{"unbounded", func(p *r56Ctx) stage.Stream[int] {
			return stage.Map(source.Slice(r56Ints(5)), failAt(p, 0), stage.Workers(-1))
		}},
		{"apply-ordered-w2", func(p *r56Ctx) stage.Stream[int] {
			return stage.Apply(source.Slice(r56Ints(6)), func(ctx context.Context, v int, emit func(int) bool) error {
				if v == 3 {
					p.cancel()
					return boom
				}
				emit(v)
				emit(v)
				return nil
			}, stage.Workers(2), stage.Ordered())
		}},
		{"flatmap", func(p *r56Ctx) stage.Stream[int] {
			return stage.FlatMap(source.Slice(r56Ints(4)), func(_ context.Context, v int) ([]int, error) {
				if v == 1 {
					p.cancel()
					return nil, boom
				}
				return []int{v, v}, nil
			})
		}},
		{"merge", func(p *r56Ctx) stage.Stream[int] {
			return stage.Merge(stage.Map(source.Slice([]int{1}), failAt(p, 1), stage.Buffer(1)), source.Slice([]int{10, 11, 12}))
		}},
		{"tee", func(p *r56Ctx) stage.Stream[int] {
			b := stage.Tee(source.Slice(r56Ints(4)), 2)
			return stage.Merge(stage.Map(b[0], failAt(p, 1)), stage.Map(b[1], func(_ context.Context, v int) (int, error) { return v, nil }))
		}},
		{"batch", func(p *r56Ctx) stage.Stream[int] {
			batches := stage.Batch(stage.Map(source.Slice(r56Ints(5)), failAt(p, 3), stage.Workers(1)), 10, 0)
			return stage.Map(batches, func(_ context.Context, b []int) (int, error) { return len(b), nil })
		}},
		{"until-other-stop", func(p *r56Ctx) stage.Stream[int] {
			return stage.Map(stage.Until(source.Slice(r56Ints(4)), context.Background()), failAt(p, 2), stage.Workers(2), stage.Ordered())
		}},
	}
	for _, c := range cases {
		parent := newR56Ctx()
		err := r56Run(t, parent, c.build(parent), nil)
		r56WantCanceled(t, c.name, err)
	}
}

// TestReview56HandlerFailure: a Handle or Budget policy's error (not cut
// short: the run is not cancelled when the handler returns) after the
// caller's cancellation goes through run.fail too.
func TestReview56HandlerFailure(t *testing.T) {
	bad := errors.New("bad item")
	for _, c := range []struct {
		name   string
		policy func(p *r56Ctx) stage.ErrorPolicy
		cancel bool // the stage's function cancels (else the handler does)
	}{
		{"handle", func(p *r56Ctx) stage.ErrorPolicy {
			return stage.Handle(func(_ context.Context, e *stage.Error) error { p.cancel(); return e })
		}, false},
		{"budget0", func(*r56Ctx) stage.ErrorPolicy { return stage.Budget(0, nil) }, true},
		{"budget1", func(p *r56Ctx) stage.ErrorPolicy {
			return stage.Budget(1, func(context.Context, *stage.Error) error { return errors.New("handler says stop") })
		}, true},
	} {
		parent := newR56Ctx()
		s := stage.Map(source.Slice(r56Ints(4)), func(_ context.Context, v int) (int, error) {
			if v == 1 {
				if c.cancel {
					parent.cancel()
				}
				return 0, bad
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(c.policy(parent)))
		r56WantCanceled(t, c.name, r56Run(t, parent, s, nil))
	}
}

// TestReview56GoexitAfterParentEnded: a Goexit in a stage's function on a
// goroutine of the stage's own (Buffer(1)), after the caller's
// cancellation: goexitLate, which cancels nothing, while its worker's
// queue ends early. ErrGoexit's doc: a run whose context was cancelled
// first returns that cancellation's error.
func TestReview56GoexitAfterParentEnded(t *testing.T) {
	for _, opts := range [][]stage.Option{
		{stage.Workers(1), stage.Buffer(1)},
		{stage.Workers(2), stage.Ordered()},
		{stage.Workers(-1)},
	} {
		parent := newR56Ctx()
		s := stage.Map(source.Slice(r56Ints(4)), func(_ context.Context, v int) (int, error) {
			if v == 1 {
				parent.cancel()
				runtime.Goexit()
			}
			return v, nil
		}, opts...)
		r56WantCanceled(t, "goexit", r56Run(t, parent, s, nil))
	}
}

// TestReview56SourceFailureAfterParentEnded: a source's failure after the
// caller's cancellation (sourceFailed records it: the run is not
// cancelled yet) drains the input; the sink sees the end. Run's doc: the
// cancellation's error "even if a source had failed before".
func TestReview56SourceFailureAfterParentEnded(t *testing.T) {
	for _, withStage := range []bool{false, true} {
		parent := newR56Ctx()
		i := 0
		var s stage.Stream[int] = source.Func(func(context.Context) (int, error) {
			i++
			if i == 3 {
				parent.cancel()
				return 0, errors.New("source broke")
			}
			return i, nil
		})
		if withStage {
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2))
		}
		err := r56Run(t, parent, s, nil)
		var se *stage.SourceError
		if errors.As(err, &se) {
			t.Errorf("withStage=%v: stage.Run = %v, a *SourceError; the caller cancelled before the source failed", withStage, err)
			continue
		}
		r56WantCanceled(t, "source failure", err)
	}
}

// TestReview56UntilStopIsParent: Until's stop is the caller's ctx itself.
// Its end drains the sources at once (they look at stop's Done) while the
// run's context is not cancelled yet; the sink sees the end of a drained
// stream. Until's doc: cancelling the run's context aborts, and the sink
// returns the cancellation error; Run's: a cancellation before the end
// wins. (Before review 55's fix: nil while the parent's end was on its way.)
func TestReview56UntilStopIsParent(t *testing.T) {
	for _, withStage := range []bool{false, true} {
		parent := newR56Ctx()
		i := 0
		var s stage.Stream[int] = stage.Until(source.Func(func(context.Context) (int, error) {
			i++
			if i == 3 {
				parent.cancel()
			}
			if i > 10 {
				return 0, io.EOF
			}
			return i, nil
		}), parent)
		if withStage {
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2), stage.Buffer(1))
		}
		r56WantCanceled(t, "until(parent)", r56Run(t, parent, s, nil))
	}
}

// TestReview56CancelDuringLastItem: question 2 of the brief. Every item is
// delivered, and the caller cancels while f works on the last one (or
// while a stage works on it): Run's doc, "a cancellation of ctx while f
// works on the last item comes before the end", so the result is the
// cancellation's, as it always was with a standard context (whose
// cancellation reaches the run's at once). Review 55's fix made it so for
// a context whose end takes a while to arrive (before: nil).
func TestReview56CancelDuringLastItem(t *testing.T) {
	// In f.
	parent := newR56Ctx()
	seen := 0
	err := r56Run(t, parent, source.Slice(r56Ints(3)), func(_ context.Context, v int, _ error) error {
		seen++
		if v == 2 {
			parent.cancel()
		}
		return nil
	})
	if seen != 3 {
		t.Fatalf("f saw %d items, want 3", seen)
	}
	r56WantCanceled(t, "cancel in f on the last item", err)

	// In a stage, which succeeds.
	parent = newR56Ctx()
	s := stage.Map(source.Slice(r56Ints(3)), func(_ context.Context, v int) (int, error) {
		if v == 2 {
			parent.cancel()
		}
		return v, nil
	}, stage.Workers(1))
	r56WantCanceled(t, "cancel in a stage on the last item", r56Run(t, parent, s, nil))

	// Control: the same with a standard context, whose end reaches the run
	// at once: the same verdict.
	ctx, cancel := context.WithCancel(context.Background())
	err = stage.Run(ctx, source.Slice(r56Ints(3)), func(_ context.Context, v int, _ error) error {
		if v == 2 {
			cancel()
		}
		return nil
	})
	r56WantCanceled(t, "standard context, cancel in f on the last item", err)

	// Control: a cancellation after Run returned changes nothing.
	parent = newR56Ctx()
	if err := r56Run(t, parent, source.Slice(r56Ints(3)), nil); err != nil {
		t.Errorf("live parent: stage.Run = %v, want nil", err)
	}
	parent.cancel()
	parent.open()
}

// TestReview56UntilOwnStopStillDrains: the control for the Until case: a
// stop context of its own (a context type with its own Done channel and a
// slow Err, not the caller's ctx, which stays live) drains the run, and the
// sink returns nil as at the end of the input: review 55's fix looks at the
// parent only, so a drain is still a complete end.
func TestReview56UntilOwnStopStillDrains(t *testing.T) {
	for _, withStage := range []bool{false, true} {
		parent, stop := newR56Ctx(), newR56Ctx()
		i := 0
		var s stage.Stream[int] = stage.Until(source.Func(func(context.Context) (int, error) {
			i++
			if i == 3 {
				stop.cancel()
			}
			if i > 10 {
				return 0, io.EOF
			}
			return i, nil
		}), stop)
		if withStage {
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2), stage.Buffer(1))
		}
		seen := 0
		err := r56Run(t, parent, s, func(context.Context, int, error) error { seen++; return nil })
		if err != nil || seen != 3 {
			t.Errorf("withStage=%v: stage.Run = %v after %d items; want nil after 3 (a drain is a complete end)", withStage, err, seen)
		}
		stop.open()
	}
}
