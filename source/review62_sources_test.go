package source_test

// Review 62: adversarial tests of Slice, Chan, Func, Seq and Seq2, written
// from their documentation only. Order is decided with channels; durations
// are watchdogs.

import (
	"context"
	"errors"
	"io"
	"iter"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errReview62 = errors.New("review62: failure")

// review62Empty and review62Three make a runtime.Error the compiler cannot
// foresee.
var (
	review62Empty []int
	review62Three = 3
)

type review62Key struct{}

// review62Waiting lets a source tell the test it is about to wait (entered)
// and the test release a step that cannot be abandoned (gate).
type review62Waiting struct {
	entered chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func newReview62Waiting() *review62Waiting {
	return &review62Waiting{entered: make(chan struct{}), gate: make(chan struct{})}
}

func (w *review62Waiting) enter() { w.once.Do(func() { close(w.entered) }) }

// "Cancelling the caller's ctx ... makes the sink return an error for which
// errors.Is(err, context.Canceled) holds" — also when the caller cancelled
// with a cause of its own (context.WithCancelCause), and, for a deadline
// that passed, errors.Is(err, context.DeadlineExceeded) even with a cause
// (context.WithDeadlineCause). Every source, while it waits.
func TestReview62CancelWithACauseIsStillCanceled(t *testing.T) {
	errCause := errors.New("review62: the caller's cause")
	type mk func(w *review62Waiting) stage.Stream[int]
	sources := map[string]mk{
		"Chan": func(w *review62Waiting) stage.Stream[int] {
			ch := make(chan int, 1)
			ch <- 0
			// the second receive waits; tell the test when the first
			// value went through (see the callback below).
			return source.Chan(ch)
		},
		"Func": func(w *review62Waiting) stage.Stream[int] {
			var n int
			return source.Func(func(ctx context.Context) (int, error) {
				if n == 1 {
					w.enter()
					<-ctx.Done()
					return 0, ctx.Err()
				}
				n++
				return n - 1, nil
			})
		},
		"Seq": func(w *review62Waiting) stage.Stream[int] {
			return source.Seq(func(yield func(int) bool) {
				if !yield(0) {
					return
				}
				w.enter()
				<-w.gate
				yield(1)
			})
		},
		"Seq2": func(w *review62Waiting) stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {
				if !yield(0, nil) {
					return
				}
				w.enter()
				<-w.gate
				yield(1, nil)
			})
		},
		"Slice+Map": func(w *review62Waiting) stage.Stream[int] {
			return stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, v int) (int, error) {
				if v == 1 {
					w.enter()
					<-ctx.Done()
					return 0, ctx.Err()
				}
				return v, nil
			}, stage.Workers(1), stage.Buffer(1))
		},
	}
	for name, mkSrc := range sources {
		for _, through := range []string{"bare", "map"} {
			t.Run(name+"/"+through, func(t *testing.T) {
				w := newReview62Waiting()
				s := mkSrc(w)
				if through == "map" {
					s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2))
				}
				ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), review62Key{}, 1))
				defer cancel(nil)
				var err error
				var got []int
				runcheck.Run(t, name, func() {
					done := make(chan struct{})
					go func() {
						defer close(done)
						err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
							got = append(got, v)
							if name == "Chan" {
								w.enter()
							}
							return nil
						})
					}()
					select {
					case <-w.entered:
					case <-done:
						t.Errorf("the sink returned %v before the source waited", err)
						return
					case <-time.After(runcheck.Watchdog):
						t.Error("hang: the source never waited")
					}
					cancel(errCause)
					if name == "Seq" || name == "Seq2" {
						// a step cannot be abandoned: end it.
						close(w.gate)
					}
					<-done
				})
				if !errors.Is(err, context.Canceled) {
					t.Errorf("cancelled with a cause: err = %v (%T); want errors.Is(err, context.Canceled)", err, err)
				}
				if len(got) > 1 || (len(got) == 1 && got[0] != 0) {
					t.Errorf("delivered %v; want at most [0]", got)
				}
			})
		}
	}
	t.Run("deadline-cause", func(t *testing.T) {
		ctx, cancel := context.WithDeadlineCause(context.Background(), time.Unix(1, 0), errCause)
		defer cancel()
		var calls atomic.Int32
		s := source.Func(func(context.Context) (int, error) { calls.Add(1); return 1, nil })
		_, _, err := sink.First(ctx, s)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("deadline passed (with a cause): err = %v; want errors.Is(err, context.DeadlineExceeded)", err)
		}
		if calls.Load() != 0 {
			t.Errorf("next called %d times in a run whose ctx was done before it started; want 0", calls.Load())
		}
	})
}

// "The run calls next ... with the run's context": the run's context is
// derived from the caller's (its values are there), and "a sink that stops
// early (sink.First ...) cancels the run; the user functions see it through
// their ctx".
func TestReview62FuncNextGetsTheRunsContext(t *testing.T) {
	for _, workers := range []int{0, 1, 3} {
		ctx := context.WithValue(context.Background(), review62Key{}, "v")
		var mu sync.Mutex
		var ctxs []context.Context
		var n int
		s := source.Func(func(c context.Context) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			ctxs = append(ctxs, c)
			n++
			return n, nil
		})
		if workers > 0 {
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
		}
		var v int
		var ok bool
		var err error
		runcheck.Run(t, "First", func() { v, ok, err = sink.First(ctx, s) })
		if err != nil || !ok || v < 1 {
			t.Fatalf("workers %d: First = %v, %v, %v", workers, v, ok, err)
		}
		mu.Lock()
		for i, c := range ctxs {
			if c.Value(review62Key{}) != "v" {
				t.Errorf("workers %d: call %d of next: its ctx lacks the caller's value", workers, i)
			}
			if c.Err() == nil {
				t.Errorf("workers %d: call %d of next: its ctx is not done once First returned (the early stop cancels the run)", workers, i)
			}
		}
		if len(ctxs) == 0 {
			t.Errorf("workers %d: next never called", workers)
		}
		mu.Unlock()
	}
}

// "A panic in next becomes a *stage.PanicError in a *stage.SourceError"
// and PanicError "Unwrap returns Value when it is an error (for example a
// runtime.Error)"; "the items produced before it still go through". Also
// panic(nil) (README: "and panic(nil), even under GODEBUG=panicnil=1").
func TestReview62PanicsInNextAreTypedAfterTheItemsBefore(t *testing.T) {
	cases := map[string]func(){
		"runtime.Error": func() {
			// an index out of range, which the compiler cannot see
			_ = review62Empty[len(review62Empty)+review62Three]
		},
		"nil":    func() { panic(nil) },
		"error":  func() { panic(errReview62) },
		"string": func() { panic("review62") },
	}
	for name, boom := range cases {
		for _, kind := range []string{"Func", "Seq", "Seq2"} {
			for _, workers := range []int{0, 1, 4} {
				var s stage.Stream[int]
				switch kind {
				case "Func":
					var n int
					s = source.Func(func(context.Context) (int, error) {
						if n == 3 {
							boom()
						}
						n++
						return n, nil
					})
				case "Seq":
					s = source.Seq(func(yield func(int) bool) {
						for i := 1; ; i++ {
							if i == 4 {
								boom()
							}
							if !yield(i) {
								return
							}
						}
					})
				case "Seq2":
					s = source.Seq2(func(yield func(int, error) bool) {
						for i := 1; ; i++ {
							if i == 4 {
								boom()
							}
							if !yield(i, nil) {
								return
							}
						}
					})
				}
				if workers > 0 {
					s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers), stage.Ordered())
				}
				var got []int
				var err error
				runcheck.Run(t, kind, func() { got, err = sink.Slice(context.Background(), s) })
				var se *stage.SourceError
				var pe *stage.PanicError
				if !errors.As(err, &se) || !errors.As(se, &pe) {
					t.Errorf("%s %s workers %d: err = %v (%T); want a *PanicError in a *SourceError", name, kind, workers, err, err)
					continue
				}
				if !slices.Equal(got, []int{1, 2, 3}) {
					t.Errorf("%s %s workers %d: delivered %v; want [1 2 3], the items before the panic", name, kind, workers, got)
				}
				switch name {
				case "runtime.Error":
					var re runtime.Error
					if !errors.As(err, &re) {
						t.Errorf("%s %s: errors.As(err, runtime.Error) false for an index out of range", name, kind)
					}
				case "error":
					if !errors.Is(err, errReview62) {
						t.Errorf("%s %s: errors.Is(err, the panic's error) false", name, kind)
					}
				}
			}
		}
	}
}

// review62Iter is an iterator over 0..n-1 that counts its steps, the yields
// after a false one, and its deferred calls (its stop).
type review62Iter struct {
	n       int
	steps   atomic.Int32
	stops   atomic.Int32
	block   chan struct{} // if non-nil, the step of item blockAt waits on it
	blockAt int
	entered chan struct{}
}

func (it *review62Iter) seq(yield func(int) bool) {
	defer it.stops.Add(1)
	for i := range it.n {
		if it.block != nil && i == it.blockAt {
			close(it.entered)
			<-it.block
		}
		it.steps.Add(1)
		if !yield(i) {
			return
		}
	}
}

func (it *review62Iter) seq2(yield func(int, error) bool) {
	defer it.stops.Add(1)
	for i := range it.n {
		it.steps.Add(1)
		if !yield(i, nil) {
			return
		}
	}
}

// "when the run ends, early or not, the iterator is stopped (its deferred
// calls run) before the sink returns": exactly once per run, for every way
// a run ends (every sink's early exit, a failing stage, a failing callback,
// a cancellation between items, the end), over the bare source and through
// stages; each run ranges over seq again.
func TestReview62SeqStoppedOnceByEveryEnd(t *testing.T) {
	type end struct {
		name string
		run  func(ctx context.Context, s stage.Stream[int]) error
	}
	ends := []end{
		{"First", func(ctx context.Context, s stage.Stream[int]) error { _, _, err := sink.First(ctx, s); return err }},
		{"All-break", func(ctx context.Context, s stage.Stream[int]) error {
			for _, err := range sink.All(ctx, s) {
				if err != nil {
					return err
				}
				break
			}
			return nil
		}},
		{"ErrStop", func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				if v >= 2 {
					return stage.ErrStop
				}
				return nil
			})
		}},
		{"callback-error", func(ctx context.Context, s stage.Stream[int]) error {
			err := sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				if v >= 2 {
					return errReview62
				}
				return nil
			})
			if !errors.Is(err, errReview62) {
				return errors.Join(errors.New("want the callback's error"), err)
			}
			return nil
		}},
		{"cancel-between-items", func(ctx context.Context, s stage.Stream[int]) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			err := sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				if v >= 2 {
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				return errors.Join(errors.New("want Canceled"), err)
			}
			return nil
		}},
		{"panic-in-All-body", func(ctx context.Context, s stage.Stream[int]) (err error) {
			defer func() {
				if r := recover(); r != errReview62 {
					err = errors.New("the loop body's panic did not continue")
				}
			}()
			for range sink.All(ctx, s) {
				panic(errReview62)
			}
			return nil
		}},
		{"end", func(ctx context.Context, s stage.Stream[int]) error {
			n, err := sink.Count(ctx, s)
			if err == nil && n != 50 {
				return errors.New("Count is not 50")
			}
			return err
		}},
	}
	stagesOver := map[string]func(stage.Stream[int]) stage.Stream[int]{
		"bare": func(s stage.Stream[int]) stage.Stream[int] { return s },
		"map1": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
		},
		"map4-ordered": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4), stage.Ordered())
		},
		"failing-map": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, func(_ context.Context, v int) (int, error) {
				if v == 40 {
					return 0, errReview62
				}
				return v, nil
			}, stage.Workers(3), stage.Ordered())
		},
	}
	for _, e := range ends {
		for sname, over := range stagesOver {
			for _, two := range []bool{false, true} {
				it := &review62Iter{n: 50}
				var s stage.Stream[int]
				if two {
					s = source.Seq2(it.seq2)
				} else {
					s = source.Seq(it.seq)
				}
				s = over(s)
				for run := 1; run <= 2; run++ {
					var err error
					runcheck.Run(t, e.name, func() { err = e.run(context.Background(), s) })
					if stops := it.stops.Load(); stops != int32(run) {
						t.Errorf("%s over %s (Seq2 %v), run %d: the iterator was stopped %d times in all; want %d (once per run, before the sink returned)", e.name, sname, two, run, stops, run)
					}
					if err != nil && !(sname == "failing-map" && errors.Is(err, errReview62)) {
						t.Errorf("%s over %s (Seq2 %v), run %d: %v", e.name, sname, two, run, err)
					}
				}
			}
		}
	}
}

// "A step of seq cannot be abandoned": when the run is cancelled while
// the iterator waits in a step, the sink waits for the step (no user
// function is running once it returns), then the iterator is stopped (the
// yield of the item the cancelled run did not want returns false) and the
// sink returns the cancellation.
func TestReview62SeqStepInProgressAtCancellation(t *testing.T) {
	for _, workers := range []int{0, 1, 4} {
		it := &review62Iter{n: 10, block: make(chan struct{}), blockAt: 3, entered: make(chan struct{})}
		var yieldedAfter atomic.Int32
		s := source.Seq(func(yield func(int) bool) {
			it.seq(func(v int) bool {
				ok := yield(v)
				if ok && v >= 3 {
					yieldedAfter.Add(1)
				}
				return ok
			})
		})
		if workers > 0 {
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
		}
		ctx, cancel := context.WithCancel(context.Background())
		var released atomic.Bool
		var returnedEarly atomic.Bool
		var err error
		runcheck.Run(t, "ForEach", func() {
			done := make(chan struct{})
			go func() {
				defer close(done)
				err = sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
				if !released.Load() {
					returnedEarly.Store(true)
				}
			}()
			select {
			case <-it.entered:
			case <-time.After(runcheck.Watchdog):
				t.Error("hang: the iterator never reached its waiting step")
			}
			cancel()
			// poll: give an early return every chance to show (no duration decides).
			for range 2000 {
				runtime.Gosched()
				select {
				case <-done:
				default:
					continue
				}
				break
			}
			released.Store(true)
			close(it.block)
			<-done
		})
		if returnedEarly.Load() {
			t.Errorf("workers %d: the sink returned while the iterator was still in a step", workers)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("workers %d: err = %v; want Canceled", workers, err)
		}
		if it.stops.Load() != 1 {
			t.Errorf("workers %d: stopped %d times; want 1", workers, it.stops.Load())
		}
		if n := yieldedAfter.Load(); n != 0 {
			t.Errorf("workers %d: %d yields at or after the cancelled step returned true; want 0 (the run wants nothing more)", workers, n)
		}
		cancel()
	}
}

// Seq2: "The first error ends the run with a *stage.SourceError after the
// items before it went through; the iterator is not advanced after it",
// and sink.First returns "(zero, false, err) when ... the run failed before
// any item", when the very first pair is an error; its value is not
// delivered.
func TestReview62Seq2ErrorFirstAndAfterItems(t *testing.T) {
	for _, at := range []int{0, 3} {
		for _, workers := range []int{0, 1, 4} {
			var advancedAfter, stops atomic.Int32
			s := source.Seq2(func(yield func(int, error) bool) {
				defer stops.Add(1)
				for i := 0; ; i++ {
					if i == at {
						if yield(-1, errReview62) {
							advancedAfter.Add(1)
						}
						advancedAfter.Add(1) // any step after the error
						return
					}
					if !yield(i, nil) {
						return
					}
				}
			})
			if workers > 0 {
				s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers), stage.Ordered())
			}
			var got []int
			var err error
			runcheck.Run(t, "Slice", func() { got, err = sink.Slice(context.Background(), s) })
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, errReview62) {
				t.Errorf("at %d workers %d: err = %v; want a *SourceError wrapping the error", at, workers, err)
			}
			want := []int{0, 1, 2}[:at]
			if !slices.Equal(got, want) {
				t.Errorf("at %d workers %d: got %v; want %v", at, workers, got, want)
			}
			// the iterator's yield after the error must return false (it is
			// "not advanced"): a true yield counts 2 here.
			if n := advancedAfter.Load(); n > 1 {
				t.Errorf("at %d workers %d: the yield of the error returned true: the iterator was advanced after it", at, workers)
			}
			if stops.Load() != 1 {
				t.Errorf("at %d workers %d: stopped %d times; want 1", at, workers, stops.Load())
			}
			if at == 0 {
				var v int
				var ok bool
				runcheck.Run(t, "First", func() { v, ok, err = sink.First(context.Background(), s) })
				if ok || v != 0 || !errors.As(err, &se) || !errors.Is(err, errReview62) {
					t.Errorf("workers %d: First over a first pair that is an error = %v, %v, %v; want 0, false, *SourceError", workers, v, ok, err)
				}
			}
		}
	}
}

// Chan: "A value is received only when a stage is ready to work on it, so
// a run that stops early ... leaves the rest in ch: Chan never closes ch and
// never drains it", with the backpressure bound "no stage pulls more than its
// workers plus its buffer ahead of its consumer (at the sink, one item
// more)": sink.First through Map(Workers(2)) takes at most 3 values, and
// what is left is the rest of ch, in order.
func TestReview62ChanFirstThroughAStageLeavesTheTailInOrder(t *testing.T) {
	const n = 64
	for round := range 20 {
		for _, workers := range []int{1, 2} {
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			s := stage.Map(source.Chan(ch), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
			var v int
			var ok bool
			var err error
			runcheck.Run(t, "First", func() { v, ok, err = sink.First(context.Background(), s) })
			if err != nil || !ok {
				t.Fatalf("First = %v, %v, %v", v, ok, err)
			}
			taken := n - len(ch)
			if taken > workers+1 {
				t.Errorf("round %d, workers %d: First took %d values from ch; want at most workers+1 = %d", round, workers, taken, workers+1)
			}
			if v >= taken {
				t.Errorf("round %d: First returned %d, which it did not take (took %d)", round, v, taken)
			}
			for i := taken; i < n; i++ {
				if got := <-ch; got != i {
					t.Fatalf("round %d: left in ch: %d at position %d; want %d", round, got, i, i)
				}
			}
			close(ch)
		}
	}
}

// "Func ... next returns io.EOF to end the stream": after io.EOF the run
// calls next no more (the run's input has ended), even with several workers
// that were waiting for an item; and a new run calls it again.
func TestReview62FuncNoCallAfterEOFWithManyWorkers(t *testing.T) {
	for _, workers := range []int{2, 8, -1} {
		var calls, afterEOF atomic.Int32
		var eof atomic.Bool
		var n atomic.Int32
		s := source.Func(func(context.Context) (int, error) {
			calls.Add(1)
			if eof.Load() {
				afterEOF.Add(1)
			}
			if v := n.Add(1); v <= 20 {
				return int(v), nil
			}
			eof.Store(true)
			return 0, io.EOF
		})
		m := stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
		var got []int
		var err error
		runcheck.Run(t, "Slice", func() { got, err = sink.Slice(context.Background(), m) })
		if err != nil || len(got) != 20 {
			t.Fatalf("workers %d: %d items, %v", workers, len(got), err)
		}
		if afterEOF.Load() != 0 {
			t.Errorf("workers %d: next called %d times after it returned io.EOF in the run", workers, afterEOF.Load())
		}
		eof.Store(false)
		n.Store(0)
		got, err = sink.Slice(context.Background(), m)
		if err != nil || len(got) != 20 {
			t.Errorf("workers %d: second run: %d items, %v", workers, len(got), err)
		}
	}
}

// "Each run yields them all again from the first": a Slice whose earlier
// runs stopped early (First, a break, a failure mid-way) still yields every
// item to the next run; concurrent runs each get all.
func TestReview62SliceRestartsAfterEarlyEnds(t *testing.T) {
	items := make([]int, 200)
	for i := range items {
		items[i] = i
	}
	s := stage.Map(source.Slice(items), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3), stage.Ordered())
	if v, ok, err := sink.First(context.Background(), s); v != 0 || !ok || err != nil {
		t.Fatalf("First = %v %v %v", v, ok, err)
	}
	for v := range sink.All(context.Background(), s) {
		if v == 100 {
			break
		}
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := sink.Slice(context.Background(), s)
			if err != nil || !slices.Equal(got, items) {
				t.Errorf("a run after early stops: %d items (first %v), %v; want all 200 in order", len(got), got[:min(3, len(got))], err)
			}
		}()
	}
	wg.Wait()
}

// Seq: "Each run ranges over seq again" — a one-shot iterator (a Pull
// of another) is not restarted: "for ... a one-shot iterator, from wherever
// the previous run left it". Two runs over one one-shot Seq together see
// each value once.
func TestReview62SeqOneShotRunsGoOn(t *testing.T) {
	next, stop := iter.Pull(slices.Values([]int{0, 1, 2, 3, 4, 5, 6, 7}))
	defer stop()
	oneShot := func(yield func(int) bool) {
		for {
			v, ok := next()
			if !ok || !yield(v) {
				return
			}
		}
	}
	s := source.Seq(oneShot)
	v, ok, err := sink.First(context.Background(), s)
	if v != 0 || !ok || err != nil {
		t.Fatalf("First = %v %v %v", v, ok, err)
	}
	got, err := sink.Slice(context.Background(), s)
	if err != nil || !slices.Equal(got, []int{1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("second run over a one-shot iterator: %v, %v; want [1..7] (First stepped exactly one)", got, err)
	}
}

// Until: "Once stop is done, no source upstream is asked for another item"
// and "Drain is not abort" (the sink returns nil); with Seq, "A step of seq
// cannot be abandoned": a step in progress when stop is done completes, then
// the iterator is stopped (the yield returns false: no further step) once,
// before the sink returns nil.
func TestReview62UntilOverASeqBlockedInAStep(t *testing.T) {
	for _, workers := range []int{1, 2, 5} {
		for _, two := range []bool{false, true} {
			var steps, stops atomic.Int32
			entered, gate := make(chan struct{}), make(chan struct{})
			body := func(yield func(int) bool) {
				defer stops.Add(1)
				for i := 0; ; i++ {
					if i == 3 {
						close(entered)
						<-gate
					}
					steps.Add(1)
					if !yield(i) {
						return
					}
				}
			}
			var s stage.Stream[int]
			if two {
				s = source.Seq2(func(yield func(int, error) bool) {
					body(func(v int) bool { return yield(v, nil) })
				})
			} else {
				s = source.Seq(body)
			}
			stop, drain := context.WithCancel(context.Background())
			m := stage.Map(stage.Until(s, stop), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
			var got []int
			var err error
			runcheck.Run(t, "drain", func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					got, err = sink.Slice(context.Background(), m)
				}()
				select {
				case <-entered:
				case <-time.After(runcheck.Watchdog):
					t.Error("hang: the iterator never reached its waiting step")
				}
				drain()
				close(gate)
				<-done
			})
			if err != nil {
				t.Errorf("workers %d Seq2 %v: drained run = %v; want nil", workers, two, err)
			}
			slices.Sort(got)
			if !slices.Equal(got, []int{0, 1, 2}) && !slices.Equal(got, []int{0, 1, 2, 3}) {
				t.Errorf("workers %d Seq2 %v: delivered %v; want [0 1 2] (and perhaps the item of the step in progress)", workers, two, got)
			}
			if n := steps.Load(); n != 4 {
				t.Errorf("workers %d Seq2 %v: %d steps; want 4 (no step once stop was done but the one in progress)", workers, two, n)
			}
			if stops.Load() != 1 {
				t.Errorf("workers %d Seq2 %v: stopped %d times; want 1", workers, two, stops.Load())
			}
		}
	}
}

// A source's failure is a failure whatever its error: a source that
// returns or panics with stage.ErrStop fails the run ("panic(ErrStop) does
// not stop a run"; IsStop: an ErrStop "inside ... a *SourceError" is a
// failure), with a *SourceError after the items before it, on every path
// (NeverWaits fast path, unlimited workers).
func TestReview62ErrStopFromASourceFailsTheRun(t *testing.T) {
	mk := map[string]func() stage.Stream[int]{
		"Func-return": func() stage.Stream[int] {
			var n int
			return source.Func(func(context.Context) (int, error) {
				if n == 3 {
					return 0, errors.Join(errReview62, stage.ErrStop)
				}
				n++
				return n - 1, nil
			})
		},
		"Func-panic": func() stage.Stream[int] {
			var n int
			return source.Func(func(context.Context) (int, error) {
				if n == 3 {
					panic(stage.ErrStop)
				}
				n++
				return n - 1, nil
			})
		},
		"Seq-panic": func() stage.Stream[int] {
			return source.Seq(func(yield func(int) bool) {
				for i := range 3 {
					if !yield(i) {
						return
					}
				}
				panic(stage.ErrStop)
			})
		},
		"Seq2-error": func() stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {
				for i := range 3 {
					if !yield(i, nil) {
						return
					}
				}
				yield(0, stage.ErrStop)
			})
		},
	}
	for name, build := range mk {
		for _, path := range []string{"bare", "neverwaits-cheap", "unlimited-ordered"} {
			s := build()
			switch path {
			case "neverwaits-cheap":
				s = stage.Map(stage.NeverWaits(s), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4))
			case "unlimited-ordered":
				s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(-1), stage.Ordered())
			}
			var got []int
			var err error
			runcheck.Run(t, name, func() { got, err = sink.Slice(context.Background(), s) })
			var se *stage.SourceError
			if !errors.As(err, &se) || !errors.Is(err, stage.ErrStop) {
				t.Errorf("%s %s: err = %v; want a *SourceError holding ErrStop (a failure)", name, path, err)
			}
			slices.Sort(got)
			if !slices.Equal(got, []int{0, 1, 2}) {
				t.Errorf("%s %s: delivered %v; want [0 1 2]", name, path, got)
			}
			if stage.IsStop(err) {
				t.Errorf("%s %s: IsStop(the run's error) = true; a source's ErrStop is a failure", name, path)
			}
		}
	}
}

// "Every blocking step of a run ... can be abandoned through the run's
// context": a deadline of the caller's (with a cause of its own) that passes
// while next waits on ctx ends the run with an error for which
// errors.Is(err, context.DeadlineExceeded) holds.
func TestReview62DeadlineWhileNextWaits(t *testing.T) {
	errCause := errors.New("review62: too slow")
	for _, workers := range []int{0, 1, 3} {
		ctx, cancel := context.WithTimeoutCause(context.Background(), 20*time.Millisecond, errCause)
		var n int
		s := source.Func(func(ctx context.Context) (int, error) {
			if n == 2 {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			n++
			return n, nil
		})
		if workers > 0 {
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
		}
		var err error
		var got int
		runcheck.Run(t, "Count", func() { got, err = sink.Count(ctx, s) })
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("workers %d: err = %v; want errors.Is(err, context.DeadlineExceeded)", workers, err)
		}
		if got > 2 {
			t.Errorf("workers %d: counted %d; want at most 2", workers, got)
		}
		cancel()
	}
}
