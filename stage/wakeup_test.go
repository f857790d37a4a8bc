package stage_test

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
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r2Guard runs f and fails the test if it does not return within a long
// watchdog (a deadlock detector, no duration is asserted). On a hang it
// dumps the run's goroutines, then calls release (if any: e.g. cancel the
// parent context) so that the hung run can end and the suite goes on; it
// reports whether f returned in time.
func r2Guard(t *testing.T, what string, release func(), f func()) bool {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
		return true
	case <-time.After(20 * time.Second):
	}
	t.Errorf("%s: the run hung\n%s", what, r2Stacks())
	if release != nil {
		release()
		select {
		case <-done:
			t.Errorf("%s: the hung run returned once the parent context was cancelled", what)
		case <-time.After(20 * time.Second):
			t.Errorf("%s: the hung run did not return even after release", what)
		}
	}
	return false
}

// r2Stacks returns the stacks of the goroutines that are in the library.
func r2Stacks() string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "sluice/stage.") && !strings.Contains(g, "r2Stacks") {
			out = append(out, g)
		}
	}
	s := strings.Join(out, "\n\n")
	if len(s) > 12000 {
		s = s[:12000] + "\n..."
	}
	return s
}

// r2Ctx is a Context implementation of its own (not one of package
// context's): its Done is a channel of its own.
type r2Ctx struct {
	done chan struct{}
	once sync.Once
}

func newR2Ctx() *r2Ctx                       { return &r2Ctx{done: make(chan struct{})} }
func (c *r2Ctx) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c *r2Ctx) Done() <-chan struct{}       { return c.done }
func (c *r2Ctx) Value(any) any               { return nil }
func (c *r2Ctx) cancel()                     { c.once.Do(func() { close(c.done) }) }
func (c *r2Ctx) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// r2Parent is a kind of parent context for a run.
type r2Parent struct {
	name       string
	cancelable bool
	make       func() (context.Context, func())
}

var r2Parents = []r2Parent{
	{"Background", false, func() (context.Context, func()) { return context.Background(), func() {} }},
	{"WithCancel", true, func() (context.Context, func()) { return context.WithCancel(context.Background()) }},
	{"WithTimeout", true, func() (context.Context, func()) { return context.WithTimeout(context.Background(), time.Hour) }},
	{"WithoutCancel(cancelled)", false, func() (context.Context, func()) {
		p, cancel := context.WithCancel(context.Background())
		cancel()
		return context.WithoutCancel(p), func() {}
	}},
	{"custom", true, func() (context.Context, func()) { c := newR2Ctx(); return c, c.cancel }},
	{"custom over WithCancel", true, func() (context.Context, func()) {
		// A custom context whose parent is a standard one: context must
		// watch its Done with a goroutine of its own.
		c := newR2Ctx()
		p, cancel := context.WithCancel(c)
		return p, func() { cancel(); c.cancel() }
	}},
}

var (
	errR2     = errors.New("wakeup: item failed")
	errR2Sink = errors.New("wakeup: sink failed")
)

// r2Ending is how a run ends.
type r2Ending int

const (
	r2Finish       r2Ending = iota // every item reaches the sink
	r2FailFast                     // f returns an error at item trig
	r2Panic                        // f panics at item trig
	r2SinkStop                     // the sink returns ErrStop at its m-th item
	r2SinkErr                      // the sink returns an error at its m-th item
	r2ParentInF                    // f cancels the parent at item trig
	r2ParentInSink                 // the sink cancels the parent at its m-th item
	r2PreCancelled                 // the parent is cancelled before the run
)

func (e r2Ending) String() string {
	return [...]string{"finish", "failfast", "panic", "sinkstop", "sinkerr", "parent-in-f", "parent-in-sink", "precancelled"}[e]
}

// r2Work is a stage function for a run that ends by e: item trig triggers
// the ending (for the endings that come from f), items x >= 8 that are
// even wait for the run's cancellation (unless the run must finish), so
// that the other goroutines of the run go to sleep in queue waits.
type r2Work struct {
	e      r2Ending
	trig   int
	cancel func()
}

func (w r2Work) do(ctx context.Context, x int) (int, error) {
	if x == w.trig {
		switch w.e {
		case r2FailFast:
			return 0, errR2
		case r2Panic:
			panic("wakeup panic")
		case r2ParentInF:
			w.cancel()
		}
	}
	if w.e != r2Finish && x >= 8 && x%2 == 0 {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	if x%5 == 0 {
		runtime.Gosched()
	}
	return x, nil
}

// r2Shape is a pipeline over the items 0..k-1, with the number of sink
// items a finished run delivers.
type r2Shape struct {
	name  string
	build func(w r2Work, k int) (stage.Stream[int], int)
}

func r2Emit3(w r2Work) func(context.Context, int, func(int) bool) error {
	return func(ctx context.Context, x int, emit func(int) bool) error {
		v, err := w.do(ctx, x)
		if err != nil {
			return err
		}
		for i := range 3 {
			if !emit(v*3 + i) {
				return ctx.Err()
			}
		}
		return nil
	}
}

var r2Shapes = []r2Shape{
	{"Map W4 (fused)", func(w r2Work, k int) (stage.Stream[int], int) {
		return stage.Map(source.Slice(ints(k)), w.do, stage.Workers(4)), k
	}},
	{"Map W4 Buffer(2)", func(w r2Work, k int) (stage.Stream[int], int) {
		return stage.Map(source.Slice(ints(k)), w.do, stage.Workers(4), stage.Buffer(2)), k
	}},
	{"Map W3 Ordered", func(w r2Work, k int) (stage.Stream[int], int) {
		return stage.Map(source.Slice(ints(k)), w.do, stage.Workers(3), stage.Ordered()), k
	}},
	{"Map W1 (serial)", func(w r2Work, k int) (stage.Stream[int], int) {
		return stage.Map(source.Slice(ints(k)), w.do, stage.Workers(1)), k
	}},
	{"Map W-1", func(w r2Work, k int) (stage.Stream[int], int) {
		return stage.Map(source.Slice(ints(k)), w.do, stage.Workers(-1)), k
	}},
	{"Apply W3 x3", func(w r2Work, k int) (stage.Stream[int], int) {
		return stage.Apply(source.Slice(ints(k)), r2Emit3(w), stage.Workers(3)), 3 * k
	}},
	{"Apply W3 x3 Ordered", func(w r2Work, k int) (stage.Stream[int], int) {
		return stage.Apply(source.Slice(ints(k)), r2Emit3(w), stage.Workers(3), stage.Ordered()), 3 * k
	}},
	{"Map W2 over Map W4 (nested fused)", func(w r2Work, k int) (stage.Stream[int], int) {
		return stage.Map(stage.Map(source.Slice(ints(k)), w.do, stage.Workers(4)), double, stage.Workers(2)), k
	}},
	{"Apply W4 over Map W4", func(w r2Work, k int) (stage.Stream[int], int) {
		m := stage.Map(source.Slice(ints(k)), w.do, stage.Workers(4))
		return stage.Apply(m, func(_ context.Context, x int, emit func(int) bool) error { emit(x); return nil }, stage.Workers(4)), k
	}},
	{"Merge of two Maps", func(w r2Work, k int) (stage.Stream[int], int) {
		a := stage.Map(source.Slice(ints(k)), w.do, stage.Workers(2))
		b := stage.Map(source.Slice(ints(k)), double, stage.Workers(2))
		return stage.Merge(a, b), 2 * k
	}},
	{"Batch Unbatch Map", func(w r2Work, k int) (stage.Stream[int], int) {
		m := stage.Map(source.Slice(ints(k)), w.do, stage.Workers(2))
		return stage.Map(stage.Unbatch(stage.Batch(m, 3, 0)), double, stage.Workers(2)), k
	}},
	{"waiting Source, Map W3", func(w r2Work, k int) (stage.Stream[int], int) {
		src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			i := 0
			return func(context.Context) (int, error) {
				if i >= k {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			}, nil
		})
		return stage.Map(src, w.do, stage.Workers(3)), k
	}},
	{"Tee Merge", func(w r2Work, k int) (stage.Stream[int], int) {
		b := stage.Tee(stage.Map(source.Slice(ints(k)), w.do, stage.Workers(2)), 2)
		return stage.Merge(stage.Map(b[0], double, stage.Workers(2)), b[1]), 2 * k
	}},
}

// r2RunOnce runs shape under parent kind pk, ending by e, and checks the
// result; it reports false if the run hung.
func r2RunOnce(t *testing.T, pk r2Parent, sh r2Shape, e r2Ending, trig, m int) bool {
	t.Helper()
	const k = 40
	parent, cancel := pk.make()
	defer cancel()
	if e == r2PreCancelled {
		cancel()
	}
	w := r2Work{e: e, trig: trig, cancel: cancel}
	s, want := sh.build(w, k)
	seen := 0
	var err error
	what := fmt.Sprintf("parent %s, %s, ending %v, trig %d, m %d", pk.name, sh.name, e, trig, m)
	ok := r2Guard(t, what, cancel, func() {
		err = stage.Run(parent, s, func(ctx context.Context, v int, ferr error) error {
			seen++
			if seen%7 == 0 {
				runtime.Gosched() // a slow sink now and then: producers wait for room
			}
			if seen == m {
				switch e {
				case r2SinkStop:
					return stage.ErrStop
				case r2SinkErr:
					return errR2Sink
				case r2ParentInSink:
					cancel()
				}
			}
			return nil
		})
	})
	if !ok {
		return false
	}
	var pe *stage.PanicError
	switch e {
	case r2Finish:
		if err != nil || seen != want {
			t.Errorf("%s: err %v, %d items, want nil and %d", what, err, seen, want)
		}
	case r2FailFast:
		if !errors.Is(err, errR2) {
			t.Errorf("%s: err %v, want %v", what, err, errR2)
		}
	case r2Panic:
		if !errors.As(err, &pe) {
			t.Errorf("%s: err %v, want a *PanicError", what, err)
		}
	case r2SinkStop:
		if err != nil {
			t.Errorf("%s: err %v, want nil", what, err)
		}
	case r2SinkErr:
		if !errors.Is(err, errR2Sink) {
			t.Errorf("%s: err %v, want %v", what, err, errR2Sink)
		}
	case r2ParentInF, r2ParentInSink, r2PreCancelled:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err %v, want context.Canceled", what, err)
		}
	}
	return true
}

// TestWakeEveryEnding: whatever ends a run (a FailFast error, a
// panic, the sink's ErrStop or error, the parent's cancellation before or
// during the run, or its end), every goroutine sleeping in a queue wait is
// woken and the sink returns, for every kind of parent context.
func TestWakeEveryEnding(t *testing.T) {
	iters := 6
	if testing.Short() {
		iters = 2
	}
	for _, pk := range r2Parents {
		for _, sh := range r2Shapes {
			for e := r2Finish; e <= r2PreCancelled; e++ {
				if !pk.cancelable && (e == r2ParentInF || e == r2ParentInSink || e == r2PreCancelled) {
					continue
				}
				for i := range iters {
					if !r2RunOnce(t, pk, sh, e, i%8, i%3+1) {
						return // one hang is enough: the rest would wait as long
					}
				}
			}
		}
	}
}

// TestWakeWithoutCancelOfCancelled: a parent that is
// WithoutCancel(a cancelled context) is never done: the run goes to its end.
func TestWakeWithoutCancelOfCancelled(t *testing.T) {
	p, cancel := context.WithCancel(context.Background())
	cancel()
	ctx := context.WithoutCancel(p)
	for _, sh := range r2Shapes {
		for range 5 {
			s, want := sh.build(r2Work{e: r2Finish, trig: -1}, 40)
			var got []int
			var err error
			if !r2Guard(t, sh.name, nil, func() { got, err = sink.Slice(ctx, s) }) {
				return
			}
			if err != nil || len(got) != want {
				t.Fatalf("%s: %d items, err %v; want %d, nil", sh.name, len(got), err, want)
			}
		}
	}
}

// TestWakeStopLoop: 500 runs that stop early (sink.First, ErrStop
// at a varying item, a break out of sink.All) under a cancellable parent
// that is cancelled only after the sink returned (the usual `defer
// cancel()`), with workers still busy when the sink stops, so that some of
// them first go to sleep while the run is being finished.
func TestWakeStopLoop(t *testing.T) {
	runs := 500
	if testing.Short() {
		runs = 100
	}
	for i := range runs {
		for _, pk := range r2Parents {
			if !pk.cancelable {
				continue
			}
			parent, cancel := pk.make()
			k := 2 + i%7
			var s stage.Stream[int]
			switch i % 5 {
			case 0:
				s = stage.Map(source.Slice(ints(k)), double, stage.Workers(4))
			case 1:
				s = stage.Map(source.Slice(ints(k)), double, stage.Workers(2))
			case 2:
				s = stage.Apply(source.Slice(ints(k)), r2Emit3(r2Work{e: r2Finish}), stage.Workers(2))
			case 3:
				s = stage.Map(stage.Map(source.Slice(ints(k)), double, stage.Workers(3)), double, stage.Workers(2))
			case 4:
				s = stage.FlatMap(source.Slice(ints(k)), func(_ context.Context, x int) ([]int, error) { return []int{x, x, x}, nil }, stage.Workers(3))
			}
			what := fmt.Sprintf("run %d, parent %s, shape %d, k %d", i, pk.name, i%5, k)
			ok := r2Guard(t, what, cancel, func() {
				switch i % 3 {
				case 0:
					_, _, _ = sink.First(parent, s)
				case 1:
					n := 0
					_ = stage.Run(parent, s, func(context.Context, int, error) error {
						n++
						if n == 1+i%3 {
							return stage.ErrStop
						}
						return nil
					})
				case 2:
					for range sink.All(parent, s) {
						break
					}
				}
			})
			cancel()
			if !ok {
				return
			}
		}
	}
}

// TestWakeParentCancelRace: the parent is cancelled from another
// goroutine at a point of the run chosen by a gate in the stage function
// (before the first call returns, after the n-th call), while the other
// goroutines go to sleep: the run must end with context.Canceled.
func TestWakeParentCancelRace(t *testing.T) {
	runs := 500
	if testing.Short() {
		runs = 100
	}
	for i := range runs {
		pk := r2Parents[1+i%2] // WithCancel, WithTimeout
		if i%5 == 4 {
			pk = r2Parents[4] // custom
		}
		parent, cancel := pk.make()
		at := i % 4 // calls 1..4 always happen (items 0..2 never wait, item 3 is the first that does)
		var calls atomic.Int32
		gate := make(chan struct{})
		var once sync.Once
		f := func(ctx context.Context, x int) (int, error) {
			if int(calls.Add(1)) == at+1 {
				once.Do(func() { close(gate) })
			}
			if x >= 3 {
				<-ctx.Done() // hold the workers: the others sleep in queue waits
				return 0, ctx.Err()
			}
			return x, nil
		}
		var s stage.Stream[int]
		switch i % 4 {
		case 0:
			s = stage.Map(source.Slice(ints(20)), f, stage.Workers(4))
		case 1:
			s = stage.Map(source.Slice(ints(20)), f, stage.Workers(2), stage.Ordered())
		case 2:
			s = stage.Map(stage.Map(source.Slice(ints(20)), f, stage.Workers(2)), double, stage.Workers(3), stage.Buffer(1))
		case 3:
			s = stage.Merge(stage.Map(source.Slice(ints(20)), f, stage.Workers(2)), stage.Map(source.Slice(ints(3)), double))
		}
		go func() {
			<-gate
			cancel()
		}()
		var err error
		what := fmt.Sprintf("run %d, parent %s, shape %d, cancel after call %d", i, pk.name, i%4, at+1)
		ok := r2Guard(t, what, nil, func() { _, err = sink.Count(parent, s) })
		once.Do(func() { close(gate) })
		cancel()
		if !ok {
			return
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s: err %v, want context.Canceled", what, err)
		}
	}
}

// TestWakeFirstUnderWithCancel: the plainest use, `ctx, cancel :=
// context.WithCancel(...); defer cancel(); sink.First(ctx, Map(slice,
// Workers(2)))`, run up to 3000 times. A worker that first goes to sleep
// (acquire, no token: the sink holds the first output's) after the sink
// stopped arms the parent hook after finish looked for it; finish then
// waits for that hook, which only the caller's deferred cancel would run.
func TestWakeFirstUnderWithCancel(t *testing.T) {
	runs := 3000
	if testing.Short() {
		runs = 500
	}
	for i := range runs {
		ctx, cancel := context.WithCancel(context.Background())
		s := stage.Map(source.Slice(ints(2+i%3)), double, stage.Workers(2))
		var err error
		ok := r2Guard(t, fmt.Sprintf("run %d", i), cancel, func() { _, _, err = sink.First(ctx, s) })
		cancel()
		if !ok {
			return
		}
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
}
