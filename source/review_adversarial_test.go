package source_test

// Adversarial review of package source, written from its documentation
// only. Every test fails when a documented promise is broken; none needs
// timing to pass: gates and channels order events, durations only detect
// hangs.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var (
	errAdvSrc = errors.New("adv: source failed")
	errAdvCb  = errors.New("adv: callback failed")
	errAdvEnd = errors.New("adv: stage failed")
)

// advStats counts what a source took from the caller's world.
type advStats struct {
	calls       atomic.Int32 // next calls, iterator steps begun (yields), receives
	entered     atomic.Int32 // iterator bodies entered
	left        atomic.Int32 // iterator bodies left (their defer ran)
	falseYields atomic.Int32 // yields that returned false
	afterFalse  atomic.Int32 // yields after one returned false
	inflight    atomic.Int32
	maxInflight atomic.Int32
}

func (st *advStats) in() {
	n := st.inflight.Add(1)
	for {
		m := st.maxInflight.Load()
		if n <= m || st.maxInflight.CompareAndSwap(m, n) {
			break
		}
	}
}

// advSource makes a fresh source of n items 0..n-1 (then its end: io.EOF,
// the iterator's return, a closed channel). hook, if not nil, is called in
// the step that produces item i, before the item is handed over; when end
// is not nil, the step after the last item fails with it instead of ending.
type advSource struct {
	name string
	make func(n int, hook func(i int), end error) (stage.Stream[int], *advStats)
}

func advFunc(n int, hook func(int), end error) (stage.Stream[int], *advStats) {
	st := &advStats{}
	i := 0
	return source.Func(func(context.Context) (int, error) {
		st.in()
		defer st.inflight.Add(-1)
		st.calls.Add(1)
		for range 3 {
			runtime.Gosched() // widen the window for a concurrent call
		}
		if i == n {
			if end != nil {
				return 999, end
			}
			return 0, io.EOF
		}
		if hook != nil {
			hook(i)
		}
		i++
		return i - 1, nil
	}), st
}

func advSeqBody(st *advStats, n int, hook func(int), yield func(int) bool) {
	st.entered.Add(1)
	defer st.left.Add(1)
	for i := range n {
		if hook != nil {
			hook(i)
		}
		if st.falseYields.Load() > 0 {
			st.afterFalse.Add(1)
		}
		st.calls.Add(1)
		if !yield(i) {
			st.falseYields.Add(1)
			return
		}
	}
}

func advSeq(n int, hook func(int), end error) (stage.Stream[int], *advStats) {
	st := &advStats{}
	if end != nil {
		panic("advSeq cannot fail: use advSeq2")
	}
	return source.Seq(func(yield func(int) bool) { advSeqBody(st, n, hook, yield) }), st
}

func advSeq2(n int, hook func(int), end error) (stage.Stream[int], *advStats) {
	st := &advStats{}
	return source.Seq2(func(yield func(int, error) bool) {
		advSeqBody(st, n, hook, func(v int) bool { return yield(v, nil) })
		if end != nil && st.falseYields.Load() == 0 {
			st.calls.Add(1)
			if !yield(999, end) {
				st.falseYields.Add(1)
				return
			}
			st.afterFalse.Add(1) // the iterator was advanced after its error
			yield(1000, nil)
		}
	}), st
}

func advSources() []advSource {
	nw := func(f func(int, func(int), error) (stage.Stream[int], *advStats)) func(int, func(int), error) (stage.Stream[int], *advStats) {
		return func(n int, hook func(int), end error) (stage.Stream[int], *advStats) {
			s, st := f(n, hook, end)
			return stage.NeverWaits(s), st
		}
	}
	return []advSource{
		{"func", advFunc},
		{"func-neverwaits", nw(advFunc)},
		{"seq", advSeq},
		{"seq-neverwaits", nw(advSeq)},
		{"seq2", advSeq2},
	}
}

// advShape puts a source in a pipeline; ahead is how many items the shape
// may take from its source beyond those its consumer took (the documented
// read-ahead bound: workers+buffer per stage, 2×workers+buffer ordered).
type advShape struct {
	name  string
	wrap  func(s stage.Stream[int]) stage.Stream[int]
	ahead int32
}

func advShapes() []advShape {
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	keep := func(context.Context, int) (bool, error) { return true, nil }
	return []advShape{
		{"bare", func(s stage.Stream[int]) stage.Stream[int] { return s }, 0},
		{"map4", func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, id, stage.Workers(4)) }, 4},
		{"map2-buf1", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(2), stage.Buffer(1))
		}, 3},
		{"map2-ordered", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(2), stage.Ordered())
		}, 4},
		{"filter3-map2", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.Filter(s, keep, stage.Workers(3)), id, stage.Workers(2))
		}, 5},
	}
}

type advSinkFn func(ctx context.Context, s stage.Stream[int]) error

func advSinks() map[string]advSinkFn {
	return map[string]advSinkFn{
		"Slice": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err },
		"Count": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Count(ctx, s); return err },
		"Chan":  func(ctx context.Context, s stage.Stream[int]) error { return sink.Chan(ctx, s, make(chan int, 100)) },
		"Reduce": func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a + v })
			return err
		},
		"ForEach": func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		},
		"First": func(ctx context.Context, s stage.Stream[int]) error {
			_, ok, err := sink.First(ctx, s)
			if ok && err == nil {
				return nil
			}
			return err
		},
		"All": func(ctx context.Context, s stage.Stream[int]) error {
			var last error
			for _, err := range sink.All(ctx, s) {
				last = err
			}
			return last
		},
		"Run": func(ctx context.Context, s stage.Stream[int]) error {
			return stage.Run(ctx, s, func(context.Context, int, error) error { return nil })
		},
	}
}

// advCountingReader counts Read calls.
type advCountingReader struct {
	r     io.Reader
	reads atomic.Int32
}

func (c *advCountingReader) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

// TestReviewAdvPreCancelledRunTakesNothing attacks "A source takes an item
// from the caller's world ... never after the run was cancelled": with a
// ctx cancelled before the sink is called, no source (Func, Seq, Seq2, Chan,
// Lines over a waiting reader, and the NeverWaits forms) is called, stepped,
// received from or read, through any pipeline shape and any sink, and every
// sink reports the cancellation.
func TestReviewAdvPreCancelledRunTakesNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	type taker struct {
		name string
		make func() (stage.Stream[int], func() int32)
	}
	var takers []taker
	for _, src := range advSources() {
		takers = append(takers, taker{src.name, func() (stage.Stream[int], func() int32) {
			s, st := src.make(5, nil, nil)
			return s, func() int32 { return st.calls.Load() + st.entered.Load() }
		}})
	}
	takers = append(takers, taker{"chan", func() (stage.Stream[int], func() int32) {
		ch := make(chan int, 5)
		for i := range 5 {
			ch <- i
		}
		return source.Chan(ch), func() int32 { return int32(5 - len(ch)) }
	}}, taker{"lines-waiting", func() (stage.Stream[int], func() int32) {
		r := &advCountingReader{r: strings.NewReader("0\n1\n2\n")}
		s := stage.Map(source.Lines(r), func(_ context.Context, l string) (int, error) { return len(l), nil }, stage.Workers(1))
		return s, r.reads.Load
	}})
	for _, tk := range takers {
		for _, sh := range advShapes() {
			for sname, run := range advSinks() {
				label := tk.name + "/" + sh.name + "/" + sname
				s, taken := tk.make()
				var err error
				runcheck.Run(t, label, func() { err = run(ctx, sh.wrap(s)) })
				if n := taken(); n != 0 || !errors.Is(err, context.Canceled) {
					t.Errorf("%s: %d items taken, err %v; want none taken and context.Canceled", label, n, err)
				}
			}
		}
	}
}

// TestReviewAdvNothingTakenAfterCancellationInAStep attacks "never after the
// run was cancelled" where the order is certain: the caller's ctx is
// cancelled inside the step that produces item k (in next, or in the
// iterator before it yields), so every later decision to take an item comes
// after the cancellation. Exactly k+1 steps may have run; an iterator must
// see its yield of item k return false (it is stopped, not advanced).
func TestReviewAdvNothingTakenAfterCancellationInAStep(t *testing.T) {
	for _, src := range advSources() {
		for _, sh := range advShapes() {
			for _, k := range []int{0, 1, 4} {
				for _, sname := range []string{"ForEach", "Slice", "All"} {
					for range 3 {
						label := fmt.Sprintf("%s/%s/%s/cancel@%d", src.name, sh.name, sname, k)
						ctx, cancel := context.WithCancel(context.Background())
						s, st := src.make(20, func(i int) {
							if i == k {
								cancel()
							}
						}, nil)
						var err error
						runcheck.Run(t, label, func() { err = advSinks()[sname](ctx, sh.wrap(s)) })
						cancel()
						if !errors.Is(err, context.Canceled) {
							t.Errorf("%s: err %v, want context.Canceled", label, err)
						}
						if c := st.calls.Load(); c != int32(k+1) {
							t.Errorf("%s: %d steps, want %d: the source was asked for an item after the run was cancelled", label, c, k+1)
						}
						if st.entered.Load() > 0 && (st.falseYields.Load() != 1 || st.afterFalse.Load() != 0 || st.left.Load() != 1) {
							t.Errorf("%s: the iterator was not stopped at its yield of item %d (false yields %d, yields after %d, left %d)",
								label, k, st.falseYields.Load(), st.afterFalse.Load(), st.left.Load())
						}
						if t.Failed() {
							return
						}
					}
				}
			}
		}
	}
}

// TestReviewAdvEndAndErrorAreFinal attacks "next returns io.EOF to end the
// stream; any other error ends the run with a *stage.SourceError after the
// items produced before it went through" (Func) and "The first error ends
// the run ... after the items before it went through; the iterator is not
// advanced after it" (Seq2): next is never called again after its io.EOF or
// error, every item before is delivered, the value returned with the error
// is not, and the result is the same in every run.
func TestReviewAdvEndAndErrorAreFinal(t *testing.T) {
	for _, src := range advSources() {
		if strings.HasPrefix(src.name, "seq") && src.name != "seq2" {
			continue
		}
		for _, sh := range advShapes() {
			for _, k := range []int{0, 1, 7} {
				for _, end := range []error{nil, errAdvSrc} {
					if end == nil && src.name == "seq2" {
						continue
					}
					for range 5 {
						label := fmt.Sprintf("%s/%s/%d-then-%v", src.name, sh.name, k, end)
						s, st := src.make(k, nil, end)
						var got []int
						var err error
						runcheck.Run(t, label, func() { got, err = sink.Slice(context.Background(), sh.wrap(s)) })
						slices.Sort(got)
						if !slices.Equal(got, advInts(k)) {
							t.Errorf("%s: got %v, want every item before the end, 0..%d", label, got, k-1)
						}
						var se *stage.SourceError
						if end == nil && err != nil || end != nil && (!errors.Is(err, end) || !errors.As(err, &se)) {
							t.Errorf("%s: err %v", label, err)
						}
						if c := st.calls.Load(); c != int32(k+1) {
							t.Errorf("%s: %d steps, want %d: the source was stepped after its end", label, c, k+1)
						}
						if st.afterFalse.Load() != 0 {
							t.Errorf("%s: the iterator was advanced after its error", label)
						}
						if t.Failed() {
							return
						}
					}
				}
			}
		}
	}
}

// TestReviewAdvFuncNeverConcurrent attacks "The run calls next only when a
// stage is ready for an item, never concurrently, and with the run's
// context": many workers, a buffer, one goroutine per item; next yields the
// processor inside each call to widen the window; at most one call at a
// time, and next's ctx carries the caller's values.
func TestReviewAdvFuncNeverConcurrent(t *testing.T) {
	type key struct{}
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	opts := map[string][]stage.Option{
		"w16-buf4":    {stage.Workers(16), stage.Buffer(4)},
		"unbounded":   {stage.Workers(-1)},
		"w8-ordered":  {stage.Workers(8), stage.Ordered()},
		"w8-keyby":    {stage.Workers(8), stage.KeyBy(func(x int) int { return x % 4 })},
		"w8-unbuffer": {stage.Workers(8)},
	}
	for name, o := range opts {
		for _, nw := range []bool{false, true} {
			var badCtx atomic.Int32
			st := &advStats{}
			i := 0
			fs := source.Func(func(ctx context.Context) (int, error) {
				if ctx.Value(key{}) != "caller" {
					badCtx.Add(1)
				}
				st.in()
				defer st.inflight.Add(-1)
				runtime.Gosched()
				if i == 300 {
					return 0, io.EOF
				}
				i++
				return i, nil
			})
			if nw {
				fs = stage.NeverWaits(fs)
			}
			ctx := context.WithValue(context.Background(), key{}, "caller")
			var n int
			var err error
			runcheck.Run(t, name, func() { n, err = sink.Count(ctx, stage.Map(fs, id, o...)) })
			if n != 300 || err != nil || st.maxInflight.Load() != 1 || badCtx.Load() != 0 {
				t.Errorf("%s neverwaits=%v: Count %d, %v; %d calls of next at once; %d calls without the caller's ctx values",
					name, nw, n, err, st.maxInflight.Load(), badCtx.Load())
			}
		}
	}
}

// TestReviewAdvStepsOnlyWhenAStageIsReady attacks "A source takes an item
// ... only when a stage, or the sink, is ready to work on it" and the
// read-ahead bound it implies: while the sink's callback holds the first
// item, the source may have produced at most 1 + the shape's documented
// read-ahead (workers+buffer per stage, 2×workers+buffer ordered). The
// callback watches the count while yielding the processor, then stops the run.
func TestReviewAdvStepsOnlyWhenAStageIsReady(t *testing.T) {
	type taker struct {
		name string
		make func() (stage.Stream[int], func() int32)
	}
	var takers []taker
	for _, src := range advSources() {
		takers = append(takers, taker{src.name, func() (stage.Stream[int], func() int32) {
			s, st := src.make(100, nil, nil)
			return s, st.calls.Load
		}})
	}
	takers = append(takers, taker{"chan", func() (stage.Stream[int], func() int32) {
		ch := make(chan int, 100)
		for i := range 100 {
			ch <- i
		}
		close(ch)
		return source.Chan(ch), func() int32 { return int32(100 - len(ch)) }
	}})
	for _, tk := range takers {
		for _, sh := range advShapes() {
			for range 3 {
				label := tk.name + "/" + sh.name
				s, taken := tk.make()
				bound := 1 + sh.ahead
				var maxSeen int32
				var err error
				runcheck.Run(t, label, func() {
					err = stage.Run(context.Background(), sh.wrap(s), func(context.Context, int, error) error {
						for range 300 {
							maxSeen = max(maxSeen, taken())
							runtime.Gosched()
						}
						return stage.ErrStop
					})
				})
				maxSeen = max(maxSeen, taken())
				if err != nil || maxSeen > bound {
					t.Errorf("%s: %d items taken while the sink held the first (bound %d); Run = %v", label, maxSeen, bound, err)
				}
			}
		}
	}
}

// TestReviewAdvIteratorStoppedBeforeTheSinkReturns attacks "when the run
// ends, early or not, the iterator is stopped (its deferred calls run)
// before the sink returns": every way a run can end, over Seq, Seq2 and
// NeverWaits(Seq), through several shapes; the iterator's defer has run
// exactly once when the sink returns, it was never advanced after a yield
// returned false, and no goroutine (an iter.Pull coroutine included) is left.
func TestReviewAdvIteratorStoppedBeforeTheSinkReturns(t *testing.T) {
	bg := context.Background()
	endings := map[string]func(s stage.Stream[int]) string{
		"Count-full": func(s stage.Stream[int]) string {
			if n, err := sink.Count(bg, s); n != 30 || err != nil {
				return fmt.Sprintf("Count = %d, %v", n, err)
			}
			return ""
		},
		"First": func(s stage.Stream[int]) string {
			if _, ok, err := sink.First(bg, s); !ok || err != nil {
				return fmt.Sprintf("First = %v, %v", ok, err)
			}
			return ""
		},
		"All-break@0": func(s stage.Stream[int]) string {
			for range sink.All(bg, s) {
				break
			}
			return ""
		},
		"All-break@3": func(s stage.Stream[int]) string {
			i := 0
			for range sink.All(bg, s) {
				if i++; i == 4 {
					break
				}
			}
			return ""
		},
		"All-panic@3": func(s stage.Stream[int]) (msg string) {
			defer func() {
				if r := recover(); r != "body" {
					msg = fmt.Sprintf("recovered %v", r)
				}
			}()
			i := 0
			for range sink.All(bg, s) {
				if i++; i == 4 {
					panic("body")
				}
			}
			return "no panic"
		},
		"ForEach-error@3": func(s stage.Stream[int]) string {
			i := 0
			err := sink.ForEach(bg, s, func(context.Context, int) error {
				if i++; i == 4 {
					return errAdvCb
				}
				return nil
			})
			if !errors.Is(err, errAdvCb) {
				return fmt.Sprintf("ForEach = %v", err)
			}
			return ""
		},
		"ForEach-panic@3": func(s stage.Stream[int]) string {
			i := 0
			err := sink.ForEach(bg, s, func(context.Context, int) error {
				if i++; i == 4 {
					panic("cb")
				}
				return nil
			})
			var pe *stage.PanicError
			if !errors.As(err, &pe) {
				return fmt.Sprintf("ForEach = %v", err)
			}
			return ""
		},
		"cancel@3": func(s stage.Stream[int]) string {
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			i := 0
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				if i++; i == 4 {
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				return fmt.Sprintf("ForEach = %v", err)
			}
			return ""
		},
		"failfast-downstream@3": func(s stage.Stream[int]) string {
			var i atomic.Int32
			_, err := sink.Slice(bg, stage.Map(s, func(_ context.Context, x int) (int, error) {
				if i.Add(1) == 4 {
					return 0, errAdvEnd
				}
				return x, nil
			}, stage.Workers(2)))
			if !errors.Is(err, errAdvEnd) {
				return fmt.Sprintf("Slice = %v", err)
			}
			return ""
		},
		"Run-ErrStop@3": func(s stage.Stream[int]) string {
			i := 0
			err := stage.Run(bg, s, func(context.Context, int, error) error {
				if i++; i == 4 {
					return stage.ErrStop
				}
				return nil
			})
			if err != nil {
				return fmt.Sprintf("Run = %v", err)
			}
			return ""
		},
	}
	iters := map[string]func() (stage.Stream[int], *advStats){
		"seq":            func() (stage.Stream[int], *advStats) { return advSeq(30, nil, nil) },
		"seq2":           func() (stage.Stream[int], *advStats) { return advSeq2(30, nil, nil) },
		"seq-neverwaits": func() (stage.Stream[int], *advStats) { s, st := advSeq(30, nil, nil); return stage.NeverWaits(s), st },
	}
	for iname, mk := range iters {
		for _, sh := range advShapes() {
			for ename, end := range endings {
				for range 3 {
					label := iname + "/" + sh.name + "/" + ename
					s, st := mk()
					var msg string
					runcheck.Run(t, label, func() { msg = end(sh.wrap(s)) })
					if msg != "" {
						t.Errorf("%s: %s", label, msg)
					}
					if st.entered.Load() != 1 || st.left.Load() != 1 || st.afterFalse.Load() != 0 {
						t.Errorf("%s: iterator entered %d times, left %d times, advanced %d times after a false yield, when the sink returned",
							label, st.entered.Load(), st.left.Load(), st.afterFalse.Load())
					}
					if t.Failed() {
						return
					}
				}
			}
		}
	}
}

// TestReviewAdvSourcePanicsAreSourceErrors attacks "A panic in next becomes
// a *stage.PanicError in a *stage.SourceError" (Func) and the same for Seq
// and Seq2, "after the items produced before it went through": a panic before
// any item, and after 3 items through 4 unordered workers (all 3 delivered,
// every run); a panic value that is an error is found by errors.Is.
func TestReviewAdvSourcePanicsAreSourceErrors(t *testing.T) {
	boom := errors.New("adv: panic value")
	makers := map[string]func(after int) stage.Stream[int]{
		"func": func(after int) stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				if i == after {
					panic(boom)
				}
				i++
				return i - 1, nil
			})
		},
		"seq": func(after int) stage.Stream[int] {
			return source.Seq(func(yield func(int) bool) {
				for i := range after {
					if !yield(i) {
						return
					}
				}
				panic(boom)
			})
		},
		"seq2": func(after int) stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {
				for i := range after {
					if !yield(i, nil) {
						return
					}
				}
				panic(boom)
			})
		},
	}
	for name, mk := range makers {
		for _, sh := range advShapes() {
			for _, after := range []int{0, 3} {
				for range 5 {
					label := fmt.Sprintf("%s/%s/after-%d", name, sh.name, after)
					var got []int
					var err error
					runcheck.Run(t, label, func() { got, err = sink.Slice(context.Background(), sh.wrap(mk(after))) })
					slices.Sort(got)
					var se *stage.SourceError
					var pe *stage.PanicError
					if !slices.Equal(got, advInts(after)) || !errors.As(err, &se) || !errors.As(se.Err, &pe) || !errors.Is(err, boom) {
						t.Fatalf("%s: got %v, %v; want 0..%d, then a *stage.PanicError in a *stage.SourceError", label, got, err, after-1)
					}
				}
			}
		}
	}
}

// TestReviewAdvIteratorPanicsWhenStopped attacks "a panic in seq becomes a
// *stage.PanicError in a *stage.SourceError" where it is hardest: the
// iterator's own deferred cleanup panics when the run stops it (after First,
// a break, a FailFast error) or when it ends. The process must not crash
// (so the scenario runs in a child); First and a break keep the first item
// ("what happens in the run after the first item never changes it"); a
// FailFast error that ended the run first is what Slice returns; a panic at
// the natural end comes after every item, as a SourceError.
func TestReviewAdvIteratorPanicsWhenStopped(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		seq := func(n int) stage.Stream[int] {
			return source.Seq(func(yield func(int) bool) {
				defer func() { panic("cleanup") }()
				for i := range n {
					if !yield(i) {
						return
					}
				}
			})
		}
		var res []string
		v, ok, err := sink.First(context.Background(), seq(10))
		res = append(res, fmt.Sprintf("First=(%d,%v,%v)", v, ok, err))
		var pairs []string
		for v, err := range sink.All(context.Background(), seq(10)) {
			pairs = append(pairs, fmt.Sprint(v, err))
			break
		}
		res = append(res, fmt.Sprintf("All-break=%v", pairs))
		_, err = sink.Slice(context.Background(), stage.Map(seq(10), func(_ context.Context, x int) (int, error) {
			if x == 2 {
				return 0, errAdvEnd
			}
			return x, nil
		}, stage.Workers(1)))
		res = append(res, fmt.Sprintf("FailFast=%v", errors.Is(err, errAdvEnd)))
		n, err := sink.Count(context.Background(), seq(5))
		var se *stage.SourceError
		var pe *stage.PanicError
		res = append(res, fmt.Sprintf("Count=%d SourceError=%v PanicError=%v", n, errors.As(err, &se), errors.As(err, &pe)))
		return strings.Join(res, " ")
	})
	if !parent {
		return
	}
	want := "First=(0,true,<nil>) All-break=[0 <nil>] FailFast=true Count=5 SourceError=true PanicError=true"
	if out != want {
		t.Fatalf("child outcome\n %s\nwant\n %s", out, want)
	}
}

// TestReviewAdvChanLeavesWhatItDidNotNeed attacks "A value is received only
// when a stage is ready to work on it, so a run that stops early ... leaves
// the rest in ch" with the bare source, where the sink is the only consumer:
// after a callback error, a break or ErrStop at item k, exactly k+1 values
// were received; after the sink returns nothing receives from ch (a send
// that needs a waiting receiver fails).
func TestReviewAdvChanLeavesWhatItDidNotNeed(t *testing.T) {
	bg := context.Background()
	stops := map[string]func(s stage.Stream[int], k int) error{
		"ForEach-error": func(s stage.Stream[int], k int) error {
			i := 0
			err := sink.ForEach(bg, s, func(context.Context, int) error {
				if i++; i == k+1 {
					return errAdvCb
				}
				return nil
			})
			if !errors.Is(err, errAdvCb) {
				return fmt.Errorf("ForEach = %v", err)
			}
			return nil
		},
		"All-break": func(s stage.Stream[int], k int) error {
			i := 0
			for range sink.All(bg, s) {
				if i++; i == k+1 {
					break
				}
			}
			return nil
		},
		"Run-ErrStop": func(s stage.Stream[int], k int) error {
			i := 0
			return stage.Run(bg, s, func(context.Context, int, error) error {
				if i++; i == k+1 {
					return stage.ErrStop
				}
				return nil
			})
		},
	}
	for name, stop := range stops {
		for _, k := range []int{0, 1, 5} {
			for range 5 {
				ch := make(chan int, 20)
				for i := range 20 {
					ch <- i
				}
				var err error
				runcheck.Run(t, name, func() { err = stop(source.Chan(ch), k) })
				if err != nil || len(ch) != 20-(k+1) {
					t.Fatalf("%s@%d: %d values left of 20 (want %d); %v", name, k, len(ch), 20-(k+1), err)
				}
			}
			// Unbuffered: a producer hands over exactly k+1 values; then
			// nothing may be waiting to receive.
			ch := make(chan int)
			release := make(chan struct{})
			sent := make(chan int, 1)
			go func() {
				n := 0
				defer func() { sent <- n }()
				for ; ; n++ {
					select {
					case ch <- n:
					case <-release:
						return
					}
					if n == k {
						n++
						return
					}
				}
			}()
			var err error
			runcheck.Run(t, name+"-unbuffered", func() { err = stop(source.Chan(ch), k) })
			close(release)
			if n := <-sent; err != nil || n != k+1 {
				t.Fatalf("%s@%d unbuffered: %d values handed over, want %d; %v", name, k, n, k+1, err)
			}
			select {
			case ch <- -1:
				t.Fatalf("%s@%d: a value was received from ch after the sink returned", name, k)
			default:
			}
		}
	}
}

// TestReviewAdvChanClosedAndBlocked attacks "until ch is closed" and "A
// receive is abandoned when the run ends": a closed empty channel is an empty
// stream for every sink; a closed channel with values gives them all, in
// order over the bare source; a run blocked receiving on an open empty
// channel ends when ctx is cancelled (Canceled) or when Until's stop is done
// (nil), without taking anything sent later.
func TestReviewAdvChanClosedAndBlocked(t *testing.T) {
	bg := context.Background()
	closed := make(chan int)
	close(closed)
	for name, run := range advSinks() {
		var err error
		runcheck.Run(t, "closed-empty/"+name, func() { err = run(bg, source.Chan(closed)) })
		if err != nil {
			t.Errorf("closed empty channel, %s: %v", name, err)
		}
	}
	if v, ok, err := sink.First(bg, source.Chan(closed)); v != 0 || ok || err != nil {
		t.Errorf("First over a closed empty channel = (%d, %v, %v)", v, ok, err)
	}
	if got, err := sink.Slice(bg, source.Chan(closed)); got != nil || err != nil {
		t.Errorf("Slice over a closed empty channel = %#v, %v", got, err)
	}
	full := make(chan int, 10)
	for i := range 10 {
		full <- i
	}
	close(full)
	if got, err := sink.Slice(bg, source.Chan(full)); !slices.Equal(got, advInts(10)) || err != nil {
		t.Errorf("Slice over a closed channel of 10 = %v, %v", got, err)
	}
	for _, sh := range advShapes() {
		for _, how := range []string{"cancel", "until"} {
			for range 3 {
				ch := make(chan int)
				ctx, cancel := context.WithCancel(bg)
				stop, stopNow := context.WithCancel(bg)
				var s stage.Stream[int] = source.Chan(ch)
				if how == "until" {
					s = stage.Until(s, stop)
				}
				var got []int
				var err error
				fed := make(chan struct{})
				go func() {
					defer close(fed)
					ch <- 0
					ch <- 1
					if how == "cancel" {
						cancel()
					} else {
						stopNow()
					}
				}()
				runcheck.Run(t, how+"/"+sh.name, func() { got, err = sink.Slice(ctx, sh.wrap(s)) })
				<-fed
				cancel()
				stopNow()
				select {
				case ch <- 2:
					t.Fatalf("%s/%s: a value was received after the sink returned", how, sh.name)
				default:
				}
				slices.Sort(got)
				if how == "cancel" && !errors.Is(err, context.Canceled) {
					t.Fatalf("cancel/%s: Slice = %v, %v; want context.Canceled", sh.name, got, err)
				}
				if how == "until" && (err != nil || !slices.Equal(got, []int{0, 1})) {
					t.Fatalf("until/%s: Slice = %v, %v; want [0 1], nil", sh.name, got, err)
				}
			}
		}
	}
}

// TestReviewAdvSliceSourceEdges attacks source.Slice: a nil or empty slice is
// an empty stream for every sink (Len 0), each run yields every item again
// from the first (also after an early stop, and in two runs at once), and
// large and zero-size element types go through intact.
func TestReviewAdvSliceSourceEdges(t *testing.T) {
	bg := context.Background()
	for _, items := range [][]int{nil, {}} {
		s := source.Slice(items)
		if s.Len() != 0 {
			t.Errorf("Len of Slice(%#v) = %d", items, s.Len())
		}
		for name, run := range advSinks() {
			var err error
			runcheck.Run(t, "empty/"+name, func() { err = run(bg, s) })
			if err != nil {
				t.Errorf("Slice(%#v), %s: %v", items, name, err)
			}
		}
		if v, ok, err := sink.First(bg, s); v != 0 || ok || err != nil {
			t.Errorf("First over Slice(%#v) = (%d, %v, %v)", items, v, ok, err)
		}
	}
	s := source.Slice(advInts(50))
	if _, ok, _ := sink.First(bg, s); !ok {
		t.Fatal("First found nothing")
	}
	var wg sync.WaitGroup
	results := make([][]int, 3)
	for g := range results {
		wg.Go(func() {
			results[g], _ = sink.Slice(bg, stage.Map(s, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(3), stage.Ordered()))
		})
	}
	wg.Wait()
	for g, r := range results {
		if !slices.Equal(r, advInts(50)) {
			t.Errorf("concurrent run %d: %v", g, r)
		}
	}
	type big [1 << 16]byte // 64 KiB: as large as a channel element may be
	bigs := make([]big, 5)
	for i := range bigs {
		bigs[i][0], bigs[i][len(bigs[i])-1] = byte(i+1), byte(i+1)
	}
	var gotBig []big
	var err error
	runcheck.Run(t, "big", func() {
		gotBig, err = sink.Slice(bg, stage.Map(source.Slice(bigs), func(_ context.Context, b big) (big, error) { return b, nil }, stage.Workers(3), stage.Ordered()))
	})
	if err != nil || len(gotBig) != 5 {
		t.Fatalf("64 KiB elements: %d, %v", len(gotBig), err)
	}
	for i := range gotBig {
		if gotBig[i] != bigs[i] {
			t.Fatalf("64 KiB element %d changed", i)
		}
	}
	var huge [][1 << 17]byte = make([][1 << 17]byte, 3)
	huge[2][5] = 7
	var n int
	runcheck.Run(t, "huge", func() {
		n, err = sink.Count(bg, stage.Map(source.Slice(huge), func(_ context.Context, b [1 << 17]byte) (int, error) { return int(b[5]), nil }, stage.Workers(2)))
	})
	if n != 3 || err != nil {
		t.Fatalf("128 KiB elements: Count = %d, %v", n, err)
	}
	zeros := make([]struct{}, 200_000)
	runcheck.Run(t, "zero-size", func() { n, err = sink.Count(bg, source.Slice(zeros)) })
	if n != len(zeros) || err != nil {
		t.Fatalf("zero-size elements: Count = %d, %v", n, err)
	}
}

// TestReviewAdvNilArgumentsPanic attacks "A nil ch panics", "A nil next
// panics", "A nil seq panics" and "A nil r panics": each must panic in the
// caller's goroutine (when the stream is built, or at the latest when a sink
// runs it), not hang and not crash the process in a goroutine of the run.
// In a child process.
func TestReviewAdvNilArgumentsPanic(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		try := func(build func() stage.Stream[int]) (r string) {
			defer func() {
				if p := recover(); p != nil && r == "" {
					r = "build-panic"
				}
			}()
			s := build()
			defer func() {
				if p := recover(); p != nil {
					r = "run-panic"
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second) // unblocks a hang only
			defer cancel()
			_, err := sink.Count(ctx, s)
			return fmt.Sprintf("no-panic(%v)", err)
		}
		lines := func(r io.Reader) stage.Stream[int] {
			return stage.Map(source.Lines(r), func(_ context.Context, l string) (int, error) { return len(l), nil })
		}
		return strings.Join([]string{
			"Chan:" + try(func() stage.Stream[int] { return source.Chan[int](nil) }),
			"Func:" + try(func() stage.Stream[int] { return source.Func[int](nil) }),
			"Seq:" + try(func() stage.Stream[int] { return source.Seq[int](nil) }),
			"Seq2:" + try(func() stage.Stream[int] { return source.Seq2[int](nil) }),
			"Lines:" + try(func() stage.Stream[int] { return lines(nil) }),
		}, " ")
	})
	if !parent {
		return
	}
	for f := range strings.FieldsSeq(out) {
		if !strings.HasSuffix(f, "-panic") {
			t.Errorf("%s: want a panic in the caller", f)
		}
	}
}

func advInts(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

// advSourceFails checks that each stream delivers 0 and 1 and then fails
// with a *stage.SourceError that wraps io.EOF (a *stage.PanicError in it
// when panicked is true), through every shape.
func advSourceFails(t *testing.T, makers map[string]func() stage.Stream[int], panicked bool) {
	for name, mk := range makers {
		for _, sh := range advShapes() {
			label := name + "/" + sh.name
			var got []int
			var err error
			runcheck.Run(t, label, func() { got, err = sink.Slice(context.Background(), sh.wrap(mk())) })
			slices.Sort(got)
			var se *stage.SourceError
			var pe *stage.PanicError
			if !slices.Equal(got, []int{0, 1}) || !errors.As(err, &se) || !errors.Is(err, io.EOF) || panicked != errors.As(err, &pe) {
				t.Errorf("%s: Slice = %v, %v; want [0 1] and a *stage.SourceError (the source failed, it did not end)", label, got, err)
			}
		}
	}
}

// TestReviewAdvSeq2EOFErrorIsAFailure attacks Seq2's "(anything, err) for a
// failure. The first error ends the run with a *stage.SourceError": the
// promise makes no exception for io.EOF, and an iterator over pages may well
// report a wrapped io.EOF from a truncated body. It must not pass for the
// quiet end of the stream, which reports a truncated run as a success.
func TestReviewAdvSeq2EOFErrorIsAFailure(t *testing.T) {
	wrapped := fmt.Errorf("page 3: %w", io.EOF)
	advSourceFails(t, map[string]func() stage.Stream[int]{
		"seq2-error-EOF": func() stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {
				if yield(0, nil) && yield(1, nil) {
					yield(0, io.EOF)
				}
			})
		},
		"seq2-error-wrapped-EOF": func() stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {
				if yield(0, nil) && yield(1, nil) {
					yield(0, wrapped)
				}
			})
		},
	}, false)
}

// TestReviewAdvPanicWithEOFIsAFailure attacks "A panic in next becomes a
// *stage.PanicError in a *stage.SourceError" (Func) and "A panic in seq
// becomes a *stage.PanicError in a *stage.SourceError" (Seq, Seq2) with a
// panic whose value is io.EOF (or wraps it): a panic is never the end of a
// stream.
func TestReviewAdvPanicWithEOFIsAFailure(t *testing.T) {
	wrapped := fmt.Errorf("decode: %w", io.EOF)
	advSourceFails(t, map[string]func() stage.Stream[int]{
		"func-panic-EOF": func() stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				if i == 2 {
					panic(io.EOF)
				}
				i++
				return i - 1, nil
			})
		},
		"seq-panic-EOF": func() stage.Stream[int] {
			return source.Seq(func(yield func(int) bool) {
				if yield(0) && yield(1) {
					panic(io.EOF)
				}
			})
		},
		"seq2-panic-wrapped-EOF": func() stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {
				if yield(0, nil) && yield(1, nil) {
					panic(wrapped)
				}
			})
		},
	}, true)
}

// TestReviewAdvFirstTakesExactlyOneFromEveryBareSource attacks "over a bare
// source, exactly one item is taken" (sink.First) for the sources the
// existing tests leave out: the NeverWaits forms of Func and Seq, Seq2, and
// an Indexed source (source.Slice's primitive: at is called once).
func TestReviewAdvFirstTakesExactlyOneFromEveryBareSource(t *testing.T) {
	for _, src := range advSources() {
		for range 10 {
			s, st := src.make(50, nil, nil)
			var v int
			var ok bool
			var err error
			runcheck.Run(t, src.name, func() { v, ok, err = sink.First(context.Background(), s) })
			if v != 0 || !ok || err != nil || st.calls.Load() != 1 {
				t.Fatalf("%s: First = (%d, %v, %v) after %d items taken, want (0, true, nil) after 1", src.name, v, ok, err, st.calls.Load())
			}
		}
	}
	for range 10 {
		var calls atomic.Int32
		s := stage.Indexed(50, func(i int) int { calls.Add(1); return i })
		var v int
		var ok bool
		runcheck.Run(t, "indexed", func() { v, ok, _ = sink.First(context.Background(), s) })
		if v != 0 || !ok || calls.Load() != 1 {
			t.Fatalf("Indexed: First = (%d, %v) after %d calls of at, want (0, true) after 1", v, ok, calls.Load())
		}
	}
}

// TestReviewAdvSeqRunsAnewAtTheSameTime attacks "Each run ranges over seq
// again" with runs at the same time (Stream: "Several sinks may run one
// Stream at the same time"): every run sees the whole sequence, and every
// range is stopped.
func TestReviewAdvSeqRunsAnewAtTheSameTime(t *testing.T) {
	var entered, left atomic.Int32
	s := source.Seq(func(yield func(int) bool) {
		entered.Add(1)
		defer left.Add(1)
		for i := range 40 {
			if !yield(i) {
				return
			}
		}
	})
	m := stage.Map(s, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(3), stage.Ordered())
	results := make([][]int, 4)
	runcheck.NoHang(t, "concurrent", func() {
		var wg sync.WaitGroup
		for g := range results {
			wg.Go(func() { results[g], _ = sink.Slice(context.Background(), m) })
		}
		wg.Wait()
	})
	for g, r := range results {
		if !slices.Equal(r, advInts(40)) {
			t.Errorf("run %d saw %v", g, r)
		}
	}
	if entered.Load() != 4 || left.Load() != 4 {
		t.Errorf("%d ranges entered, %d left; want 4, 4", entered.Load(), left.Load())
	}
}

// advLineReader hands out one complete line per Read (a waiting reader: its
// type is not one Lines treats as in-memory), and calls hook with the Read's
// 0-based number first.
type advLineReader struct {
	reads atomic.Int32
	n     int
	hook  func(i int)
}

func (r *advLineReader) Read(p []byte) (int, error) {
	i := int(r.reads.Add(1) - 1)
	if r.hook != nil {
		r.hook(i)
	}
	if i >= r.n {
		return 0, io.EOF
	}
	return copy(p, fmt.Sprintf("%d\n", i)), nil
}

// TestReviewAdvLinesNoReadAfterCancellation attacks "never after the run
// was cancelled" for Lines over a waiting reader: the caller's ctx is
// cancelled inside the Read that returns line k (complete, with its newline);
// no Read may follow.
func TestReviewAdvLinesNoReadAfterCancellation(t *testing.T) {
	for _, sh := range advShapes() {
		for _, k := range []int{0, 1, 4} {
			for range 3 {
				ctx, cancel := context.WithCancel(context.Background())
				r := &advLineReader{n: 20, hook: func(i int) {
					if i == k {
						cancel()
					}
				}}
				s := stage.Map(source.Lines(r), func(_ context.Context, l string) (int, error) { return len(l), nil }, stage.Workers(1))
				var err error
				runcheck.Run(t, sh.name, func() { _, err = sink.Count(ctx, sh.wrap(s)) })
				cancel()
				if !errors.Is(err, context.Canceled) || r.reads.Load() != int32(k+1) {
					t.Fatalf("%s/cancel@%d: %d Reads, want %d; err %v", sh.name, k, r.reads.Load(), k+1, err)
				}
			}
		}
	}
}

// TestReviewAdvContextErrorFromNextIsAFailure attacks "any other error ends
// the run with a *stage.SourceError after the items produced before it went
// through" (Func) and Seq2's "The first error ends the run with a
// *stage.SourceError" with errors that look like a cancellation (a request
// of the source's own that timed out or was cancelled) while the run itself
// is live: they are the source's failure, not the end of the stream and not
// a cancellation of the run.
func TestReviewAdvContextErrorFromNextIsAFailure(t *testing.T) {
	for _, cause := range []error{
		context.Canceled,
		context.DeadlineExceeded,
		fmt.Errorf("GET /page/3: %w", context.DeadlineExceeded),
	} {
		makers := map[string]func() stage.Stream[int]{
			"func": func() stage.Stream[int] {
				i := 0
				return source.Func(func(context.Context) (int, error) {
					if i == 2 {
						return 0, cause
					}
					i++
					return i - 1, nil
				})
			},
			"func-neverwaits": func() stage.Stream[int] {
				i := 0
				return stage.NeverWaits(source.Func(func(context.Context) (int, error) {
					if i == 2 {
						return 0, cause
					}
					i++
					return i - 1, nil
				}))
			},
			"seq2": func() stage.Stream[int] {
				return source.Seq2(func(yield func(int, error) bool) {
					if yield(0, nil) && yield(1, nil) {
						yield(0, cause)
					}
				})
			},
		}
		for name, mk := range makers {
			for _, sh := range advShapes() {
				for range 3 {
					label := fmt.Sprintf("%s/%s/%v", name, sh.name, cause)
					var got []int
					var err error
					runcheck.Run(t, label, func() { got, err = sink.Slice(context.Background(), sh.wrap(mk())) })
					slices.Sort(got)
					var se *stage.SourceError
					if !slices.Equal(got, []int{0, 1}) || !errors.As(err, &se) || !errors.Is(se, cause) {
						t.Fatalf("%s: Slice = %v, %v; want [0 1] and a *stage.SourceError wrapping the source's error", label, got, err)
					}
				}
			}
		}
	}
}
