package stage_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r14Tracked is a Source that counts its opens, stops and next calls.
type r14Tracked struct {
	opens, stops, nexts atomic.Int64
	panicOpen           bool
	n                   int
}

func (r *r14Tracked) stream() stage.Stream[int] {
	return stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
		r.opens.Add(1)
		if r.panicOpen {
			panic("open panics")
		}
		i := 0
		return func(ctx context.Context) (int, error) {
				r.nexts.Add(1)
				if i >= r.n {
					return 0, errEOF
				}
				i++
				return i - 1, nil
			}, func() {
				r.stops.Add(1)
			}
	})
}

type r14PanicStageObserver struct{ at string }

func (o r14PanicStageObserver) Stage(info stage.Info) stage.Watcher {
	if info.Name == o.at {
		panic("observer Stage panics")
	}
	return nil
}

// A run that fails while it is being opened (a source's open panics, a Tee
// branch is unconsumed, an observer's Stage panics, the ctx is already
// cancelled) still stops every source it opened before the sink returns.
func TestReview14SourcesOpenedAreStoppedOnOpenFailure(t *testing.T) {
	type scenario struct {
		name  string
		run   func(a, b *r14Tracked) error
		check func(t *testing.T, err error)
	}
	isPanic := func(t *testing.T, err error) {
		var pe *stage.PanicError
		if !errors.As(err, &pe) {
			t.Errorf("sink: %v; want a *PanicError", err)
		}
	}
	scenarios := []scenario{
		{"second-open-panics", func(a, b *r14Tracked) error {
			b.panicOpen = true
			_, err := sink.Slice(context.Background(), stage.Merge(stage.Map(a.stream(), double), stage.Map(b.stream(), double)))
			return err
		}, func(t *testing.T, err error) {
			var se *stage.SourceError
			if !errors.As(err, &se) {
				t.Errorf("sink: %v; want a *SourceError", err)
			}
		}},
		{"first-open-panics", func(a, b *r14Tracked) error {
			a.panicOpen = true
			_, err := sink.Slice(context.Background(), stage.Merge(stage.Map(a.stream(), double), stage.Map(b.stream(), double)))
			return err
		}, func(t *testing.T, err error) {
			var se *stage.SourceError
			if !errors.As(err, &se) {
				t.Errorf("sink: %v; want a *SourceError", err)
			}
		}},
		{"tee-unconsumed", func(a, b *r14Tracked) error {
			br := stage.Tee(b.stream(), 2)
			_, err := sink.Slice(context.Background(), stage.Merge(a.stream(), br[1]))
			return err
		}, func(t *testing.T, err error) {
			if !errors.Is(err, stage.ErrUnconsumedBranch) {
				t.Errorf("sink: %v", err)
			}
		}},
		{"observer-stage-panics", func(a, b *r14Tracked) error {
			ctx := stage.Observe(context.Background(), r14PanicStageObserver{"late"})
			m := stage.Merge(stage.Map(a.stream(), double), stage.Map(b.stream(), double))
			_, err := sink.Slice(ctx, stage.Map(m, double, stage.Name("late")))
			return err
		}, isPanic},
		{"ctx-cancelled-before", func(a, b *r14Tracked) error {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := sink.Slice(ctx, stage.Merge(stage.Map(a.stream(), double), b.stream()))
			return err
		}, func(t *testing.T, err error) {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("sink: %v; want Canceled", err)
			}
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			a, b := &r14Tracked{n: 5}, &r14Tracked{n: 5}
			var err error
			r14Watchdog(t, func() { err = sc.run(a, b) })
			sc.check(t, err)
			for name, r := range map[string]*r14Tracked{"a": a, "b": b} {
				opened := r.opens.Load()
				if r.panicOpen {
					opened = 0 // a panicking open returned no stop
				}
				if r.stops.Load() != opened {
					t.Errorf("source %s: opened %d (open panicked: %v), stopped %d", name, r.opens.Load(), r.panicOpen, r.stops.Load())
				}
			}
			if sc.name == "ctx-cancelled-before" && a.nexts.Load()+b.nexts.Load() != 0 {
				t.Errorf("next called %d times in a run cancelled before it started", a.nexts.Load()+b.nexts.Load())
			}
		})
	}
}

var errR14Cause = errors.New("r14 shutdown cause")

// A ctx cancelled with a cause (WithCancelCause, WithTimeoutCause): the sink
// still returns an error for which errors.Is(err, context.Canceled) (or
// DeadlineExceeded) holds.
func TestReview14CancelWithCauseStillCanceled(t *testing.T) {
	for _, kind := range []string{"cancel-cause-during", "cancel-cause-before", "timeout-cause"} {
		t.Run(kind, func(t *testing.T) {
			var ctx context.Context
			var cancel context.CancelCauseFunc
			switch kind {
			case "timeout-cause":
				c, stop := context.WithTimeoutCause(context.Background(), 20*time.Millisecond, errR14Cause)
				defer stop()
				ctx = c
				cancel = func(error) {}
			default:
				ctx, cancel = context.WithCancelCause(context.Background())
				defer cancel(nil)
			}
			if kind == "cancel-cause-before" {
				cancel(errR14Cause)
			}
			obs := &r14CountingObserver{}
			started := make(chan struct{}, 8)
			m := stage.Map(source.Slice(ints(8)), func(ctx context.Context, i int) (int, error) {
				started <- struct{}{}
				<-ctx.Done()
				return 0, errors.New("my own error")
			}, stage.Workers(2))
			if kind == "cancel-cause-during" {
				go func() {
					<-started
					cancel(errR14Cause)
				}()
			}
			var err error
			r14Watchdog(t, func() {
				_, err = sink.Slice(stage.Observe(ctx, obs), m)
			})
			want := context.Canceled
			if kind == "timeout-cause" {
				want = context.DeadlineExceeded
			}
			if !errors.Is(err, want) {
				t.Errorf("sink: %v; want errors.Is(err, %v)", err, want)
			}
			var se *stage.Error
			if errors.As(err, &se) {
				t.Errorf("sink: %v; a cancellation is not an item error", err)
			}
			if v := obs.badErr.Load(); v != nil {
				t.Errorf("watcher: %v", v)
			}
			if obs.failed.Load() != 0 {
				t.Errorf("watcher saw %d failures; a call ended by the cancellation is not a failure", obs.failed.Load())
			}
		})
	}
}

// sink.Chan: if the run fails while Chan waits on out, Chan stops waiting and
// returns the error that ended the run.
func TestReview14SinkChanReturnsWhileBlockedOnOut(t *testing.T) {
	out := make(chan int) // nobody reads
	sent := make(chan struct{})
	m := stage.Map(source.Slice(ints(10)), func(ctx context.Context, i int) (int, error) {
		if i == 0 {
			return 0, nil
		}
		if i == 1 {
			// give Chan the time to block on out: not needed for the result
			select {
			case <-sent:
			case <-time.After(20 * time.Millisecond):
			}
			return 0, errR14Fail
		}
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Workers(2), stage.Ordered())
	var err error
	r14Watchdog(t, func() { err = sink.Chan(context.Background(), m, out) })
	if !errors.Is(err, errR14Fail) {
		t.Errorf("Chan: %v", err)
	}
}

// Observers: one that panics in Received (on a fused, cheap stage, where the
// consumer's goroutines make the calls) fails the run with a *PanicError;
// another observer attached to the same run is still told everything, its
// counts balance, and each is Closed once.
func TestReview14ObserverPanicOthersToldEverything(t *testing.T) {
	if os.Getenv("R14_CHILD_OBS") == "1" {
		r14ObserverPanicChild(t)
		return
	}
	r14RunChild(t, "TestReview14ObserverPanicOthersToldEverything", "R14_CHILD_OBS=1")
}

type r14PanicWatcher struct {
	n      atomic.Int64
	closed atomic.Int64
}

func (w *r14PanicWatcher) Stage(stage.Info) stage.Watcher { return w }
func (w *r14PanicWatcher) Received() {
	if w.n.Add(1) == 500 {
		panic("received 500")
	}
}
func (w *r14PanicWatcher) Finished(time.Duration, error) {}
func (w *r14PanicWatcher) Closed()                       { w.closed.Add(1) }

func r14ObserverPanicChild(t *testing.T) {
	pw := &r14PanicWatcher{}
	var st stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), pw), &st)
	m := stage.Map(source.Slice(ints(100000)), double, stage.Workers(4), stage.Name("only"))
	var err error
	r14Watchdog(t, func() { _, err = sink.Count(ctx, m) })
	var pe *stage.PanicError
	if !errors.As(err, &pe) || pe.Value != "received 500" {
		t.Errorf("sink: %v; want a *PanicError of the observer", err)
	}
	if pw.closed.Load() != 1 {
		t.Errorf("panicking watcher closed %d times", pw.closed.Load())
	}
	// (Events concurrent with the panic, which the library cannot know of
	// yet, may still reach the watcher; the causal version of "told nothing
	// more" is TestReview14WatcherPanicNoFinishedAfterCancel.)
	c, _ := st.Get("only")
	if c.Running != 0 || c.Received != c.Finished || c.InFlight != 0 {
		t.Errorf("the other observer: %+v", c)
	}
}

// r14RunChild re-runs the test binary for one test in a child process, so
// that a crash or a hang of the scenario does not take the suite with it.
func r14RunChild(t *testing.T, name, env string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+name+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, r14Tail(string(out), 4000))
	}
	if !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("child did not pass:\n%s", r14Tail(string(out), 4000))
	}
}

func r14Tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// sink.First over a Merge of a channel that never sends and a stage over a
// slice: First returns a value and every goroutine has exited; over a bare
// source exactly one item is taken.
func TestReview14FirstOverMergeWithSilentChannel(t *testing.T) {
	ch := make(chan int)
	var taken atomic.Int64
	src := stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) { return int(taken.Add(1)), nil }, nil
	})
	m := stage.Merge(source.Chan(ch), stage.Map(source.Slice(ints(100)), double, stage.Workers(3)))
	var v int
	var ok bool
	var err error
	r14Watchdog(t, func() { v, ok, err = sink.First(context.Background(), m) })
	if !ok || err != nil || v%2 != 0 {
		t.Errorf("First: %v %v %v", v, ok, err)
	}
	r14Watchdog(t, func() { v, ok, err = sink.First(context.Background(), src) })
	if !ok || err != nil || v != 1 || taken.Load() != 1 {
		t.Errorf("First over a bare source: %v %v %v, %d taken", v, ok, err, taken.Load())
	}
}

// "After a panic, the watcher is told nothing more in that run but its
// Closed." Here the calls that report Finished after the panic are causally
// after it: they return only once they saw the run's context done, which the
// panic's failure of the run caused.
func TestReview14WatcherPanicNoFinishedAfterCancel(t *testing.T) {
	if os.Getenv("R14_CHILD_OBS2") == "1" {
		r14WatcherPanicCausalChild(t)
		return
	}
	r14RunChild(t, "TestReview14WatcherPanicNoFinishedAfterCancel", "R14_CHILD_OBS2=1")
}

type r14CausalWatcher struct {
	received     atomic.Int64
	sawDone      *atomic.Bool
	lateFinished atomic.Int64
	lateReceived atomic.Int64
	closed       atomic.Int64
}

func (w *r14CausalWatcher) Stage(stage.Info) stage.Watcher { return w }
func (w *r14CausalWatcher) Received() {
	if w.sawDone.Load() {
		w.lateReceived.Add(1)
	}
	if w.received.Add(1) == 4 {
		panic("watcher panics at the 4th Received")
	}
}
func (w *r14CausalWatcher) Finished(time.Duration, error) {
	if w.sawDone.Load() {
		w.lateFinished.Add(1)
	}
}
func (w *r14CausalWatcher) Closed() { w.closed.Add(1) }

func r14WatcherPanicCausalChild(t *testing.T) {
	for _, c := range []struct {
		name string
		opts []stage.Option
	}{
		{"buffer", []stage.Option{stage.Workers(4), stage.Buffer(1)}},
		{"plain", []stage.Option{stage.Workers(4)}},
		{"ordered", []stage.Option{stage.Workers(4), stage.Ordered()}},
		{"unlimited", []stage.Option{stage.Workers(-1)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var sawDone atomic.Bool
			w := &r14CausalWatcher{sawDone: &sawDone}
			m := stage.Map(source.Slice(ints(8)), func(ctx context.Context, i int) (int, error) {
				<-ctx.Done() // only the watcher's panic ends the run
				sawDone.Store(true)
				return 0, ctx.Err()
			}, c.opts...)
			var err error
			r14Watchdog(t, func() { _, err = sink.Count(stage.Observe(context.Background(), w), m) })
			var pe *stage.PanicError
			if !errors.As(err, &pe) {
				t.Errorf("sink: %v; want the watcher's *PanicError", err)
			}
			if n := w.lateFinished.Load() + w.lateReceived.Load(); n != 0 {
				t.Errorf("the watcher that panicked was told %d Finished and %d Received after the run it failed was cancelled", w.lateFinished.Load(), w.lateReceived.Load())
			}
			if w.closed.Load() != 1 {
				t.Errorf("Closed %d times", w.closed.Load())
			}
		})
	}
}
