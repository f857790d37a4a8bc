package stage_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r41DeadlineCtx is a parent context that the test ends as a deadline would.
type r41DeadlineCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newR41DeadlineCtx() *r41DeadlineCtx {
	return &r41DeadlineCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *r41DeadlineCtx) Done() <-chan struct{} { return c.done }
func (c *r41DeadlineCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}
func (c *r41DeadlineCtx) expire() { c.once.Do(func() { close(c.done) }) }

// r41Unbounded is how many outputs a later item tries before the test calls
// its emits unbounded.
const r41Unbounded = 1_000_000

// TestReview41OrderedEndWhileLaterItemsWait attacks Apply's "emit returns
// false, and drops the output, once the run is cancelled; f should then
// return" and the sink's "returns only when every goroutine of its run has
// exited", for an Ordered Apply whose later items wait in emit for room (the
// window full behind the head, Apply's "a further output waits while the
// window holds 2×workers + buffer outputs waiting so"). The head waits until
// they wait, emits one output, and then the run ends in each way the docs
// give: cancel, a deadline, sink.First, ErrStop, break from sink.All, a sink
// error, FailFast (error, panic, Handle error), runtime.Goexit (in a child
// process), and Until (graceful: the later items' emits must then go on and
// every output produced arrive in order).
func TestReview41OrderedEndWhileLaterItemsWait(t *testing.T) {
	for _, end := range []string{"cancel", "deadline", "first", "errstop", "break", "sinkerr", "failfast", "panic", "handle", "goexit", "until", "later-failfast", "later-panic", "later-goexit"} {
		t.Run(end, func(t *testing.T) {
			if end == "goexit" || end == "later-goexit" {
				runcheck.InChildTest(t, func(t *testing.T) { r41EndWhileWaiting(t, end) })
				return
			}
			r41EndWhileWaiting(t, end)
		})
	}
}

func r41EndWhileWaiting(t *testing.T, end string) {
	const workers, items = 3, 40
	const window = 2 * workers
	const untilOutputs = 3 * window // a later item's outputs under Until
	var emitted, inEmit, falses, started, unbounded atomic.Int64
	parent := newR41DeadlineCtx()
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	stop, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	var in stage.Stream[int] = source.Slice(ints(items))
	if end == "until" {
		in = stage.Until(in, stop)
	}
	opts := []stage.Option{stage.Workers(workers), stage.Ordered()}
	if end == "handle" {
		opts = append(opts, stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error { return errR41 })))
	}
	later := strings.HasPrefix(end, "later-")
	s := stage.Apply(in, func(fctx context.Context, v int, emit func(r41Out) bool) error {
		if later && v == 0 {
			<-fctx.Done() // silent: the run ends at a later item
			return fctx.Err()
		}
		if later && v == 2 {
			// Item 2 emits once, then, with item 1 waiting in emit, fails.
			emit(r41Out{2, 0, 0})
			if !r41Until(func() bool { return emitted.Load() >= window-1 && inEmit.Load() == 1 }) {
				return errors.New("item 1 never waited in emit")
			}
			switch end {
			case "later-panic":
				panic(errR41)
			case "later-goexit":
				runtime.Goexit()
			}
			return errR41
		}
		if v == 0 {
			if !r41Until(func() bool { return emitted.Load() >= window && inEmit.Load() == workers-1 }) {
				return errors.New("the later items never waited in emit")
			}
			if end == "until" {
				stopNow()
			}
			emit(r41Out{0, 0, 0})
			switch end {
			case "failfast", "handle":
				return errR41
			case "panic":
				panic(errR41)
			case "goexit":
				runtime.Goexit()
			case "until":
				return nil
			}
			<-fctx.Done()
			return fctx.Err()
		}
		started.Add(1)
		for j := 0; ; j++ {
			if end == "until" && j == untilOutputs {
				return nil
			}
			if j == r41Unbounded {
				unbounded.Add(1)
				return nil
			}
			inEmit.Add(1)
			ok := emit(r41Out{v, j, 0})
			inEmit.Add(-1)
			if !ok {
				falses.Add(1)
				return fctx.Err()
			}
			emitted.Add(1)
		}
	}, opts...)
	var got []r41Out
	var err error
	onFirst := func(o r41Out) error {
		got = append(got, o)
		if len(got) > 1 {
			return nil
		}
		switch end {
		case "cancel":
			cancel()
		case "deadline":
			parent.expire()
		case "errstop":
			return stage.ErrStop
		case "sinkerr":
			return errR41
		}
		return nil
	}
	runcheck.Run(t, end, func() {
		switch end {
		case "first":
			var o r41Out
			var ok bool
			o, ok, err = sink.First(ctx, s)
			if ok {
				got = append(got, o)
			}
		case "break":
			for o, e := range sink.All(ctx, s) {
				if e != nil {
					err = e
					break
				}
				got = append(got, o)
				break
			}
		default:
			err = sink.ForEach(ctx, s, func(_ context.Context, o r41Out) error { return onFirst(o) })
		}
	})
	if unbounded.Load() > 0 {
		t.Errorf("%s: %d later items had %d emits return true", end, unbounded.Load(), r41Unbounded)
	}
	if later {
		// The run ended at item 2 while item 0 was silent: nothing left.
		switch {
		case len(got) != 0:
			t.Errorf("%s: the sink got %v", end, got)
		case end == "later-failfast" && !errors.Is(err, errR41),
			end == "later-panic" && !errors.As(err, new(*stage.PanicError)),
			end == "later-goexit" && !errors.Is(err, stage.ErrGoexit):
			t.Errorf("%s: err %v", end, err)
		}
		if f, s := falses.Load(), started.Load(); f != s {
			t.Errorf("%s: %d later items looped and %d saw emit return false (they only return on false)", end, s, f)
		}
		return
	}
	// Under FailFast the run ends at the head's error: its output may not
	// have reached the sink by then.
	failed := end == "failfast" || end == "panic" || end == "handle" || end == "goexit"
	if !failed && (len(got) == 0 || got[0] != (r41Out{0, 0, 0})) {
		t.Fatalf("%s: the sink got %v first, want the head's output; err %v", end, got, err)
	}
	var pe *stage.PanicError
	switch end {
	case "cancel":
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err %v", end, err)
		}
	case "deadline":
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: err %v", end, err)
		}
	case "first", "errstop", "break":
		if err != nil {
			t.Errorf("%s: err %v", end, err)
		}
	case "sinkerr", "failfast", "handle":
		if !errors.Is(err, errR41) {
			t.Errorf("%s: err %v", end, err)
		}
	case "panic":
		if !errors.As(err, &pe) {
			t.Errorf("%s: err %v, want a *PanicError", end, err)
		}
	case "goexit":
		if !errors.Is(err, stage.ErrGoexit) {
			t.Errorf("%s: err %v, want ErrGoexit", end, err)
		}
	}
	if end != "until" {
		if f, s := falses.Load(), started.Load(); f != s {
			t.Errorf("%s: %d later items were called and %d saw emit return false (they only return on false)", end, s, f)
		}
		if end != "first" && end != "break" && len(got) > 1 {
			t.Errorf("%s: the sink got %d outputs after the end, first %v", end, len(got)-1, got[1])
		}
		return
	}
	// Until: every item taken goes on; its outputs arrive in order.
	if err != nil {
		t.Fatalf("until: err %v", err)
	}
	if falses.Load() != 0 {
		t.Errorf("until: %d emits returned false in a graceful drain", falses.Load())
	}
	want := []r41Out{{0, 0, 0}}
	for i := 1; i <= int(started.Load()); i++ {
		for j := range untilOutputs {
			want = append(want, r41Out{i, j, 0})
		}
	}
	r41SameOutputs(t, got, want)
}
