package metricstest

// The review7 scenarios: adversarial tests of a metrics adapter written
// from the adapters' documentation (go doc, example_test.go, README.md) and
// the core's only. Each adapter's review7_test.go runs them (Review7) with
// its own backend; only the reading of the backend differs.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
	"go.uber.org/goleak"
)

// Point7 is one series of the backend: metric is received, finished,
// in_flight or duration; for duration, value is the count of observations
// and sum their sum (seconds).
type Point7 struct {
	Metric, Stage, Kind, Outcome string
	Value, Sum                   float64
}

type Env7 struct {
	Obs  stage.Observer
	Read func() ([]Point7, error)
}

const r7Watchdog = 30 * time.Second

func Ident7(_ context.Context, v int) (int, error) { return v, nil }

// r7Src is a waiting source (made with stage.Source, not marked NeverWaits)
// of 0..n-1, so that a stage over it runs its calls in goroutines of its own.
func r7Src(n int) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i >= n {
				return 0, io.EOF
			}
			i++
			return i - 1, nil
		}, nil
	})
}

func r7Recv[T any](t testing.TB, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(r7Watchdog):
		t.Fatalf("watchdog: %s did not happen", what)
		panic("unreachable")
	}
}

// r7Go runs f in a goroutine and returns its result's channel; the test waits
// for it at cleanup so that no goroutine outlives the test.
func r7Go(t *testing.T, f func() error) <-chan error {
	c := make(chan error, 1)
	done := make(chan struct{})
	go func() { defer close(done); c <- f() }()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(r7Watchdog):
			t.Errorf("watchdog: a run did not end")
		}
	})
	return c
}

func Read7(t testing.TB, env Env7) []Point7 {
	t.Helper()
	pts, err := env.Read()
	if err != nil {
		t.Fatalf("reading the backend: %v", err)
	}
	return pts
}

func Find7(pts []Point7, metric, stageName, kind, outcome string) (Point7, bool) {
	for _, p := range pts {
		if p.Metric == metric && p.Stage == stageName && (kind == "*" || p.Kind == kind) && p.Outcome == outcome {
			return p, true
		}
	}
	return Point7{}, false
}

// r7Val sums the matching series (kind "*": any kind); 0 without one.
func r7Val(pts []Point7, metric, stageName, kind, outcome string) float64 {
	v := 0.0
	for _, p := range pts {
		if p.Metric == metric && p.Stage == stageName && (kind == "*" || p.Kind == kind) && p.Outcome == outcome {
			v += p.Value
		}
	}
	return v
}

func r7Sum(pts []Point7, stageName string) float64 {
	v := 0.0
	for _, p := range pts {
		if p.Metric == "duration" && p.Stage == stageName {
			v += p.Sum
		}
	}
	return v
}

func Expect7(t testing.TB, pts []Point7, metric, stageName, kind, outcome string, want float64) {
	t.Helper()
	if got := r7Val(pts, metric, stageName, kind, outcome); got != want {
		t.Errorf("%s{stage=%q,kind=%q,outcome=%q} = %v, want %v", metric, stageName, kind, outcome, got, want)
	}
}

// ExpectDone7 checks a stage after its runs: received n, finished ok/error
// as given, nothing in flight, one duration per finished call.
func ExpectDone7(t testing.TB, pts []Point7, stageName, kind string, received, ok, failed float64) {
	t.Helper()
	Expect7(t, pts, "received", stageName, kind, "", received)
	Expect7(t, pts, "finished", stageName, kind, "ok", ok)
	Expect7(t, pts, "finished", stageName, kind, "error", failed)
	Expect7(t, pts, "in_flight", stageName, kind, "", 0)
	Expect7(t, pts, "duration", stageName, kind, "", ok+failed)
}

// A watcher used directly: Received adds to received and in flight;
// Finished(latency, nil) is ok, Finished with the *stage.Error the policy is
// about to handle is error (even when that error wraps context.Canceled),
// Finished with a run-cancellation error is ok; the duration is the latency
// in seconds; two watchers of one stage (two runs) share the series; Closed
// resets nothing.
func review7DirectWatcherOutcomesAndSeconds(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	w := env.Obs.Stage(stage.Info{Name: "direct", Kind: "map", Workers: 2, Total: -1})
	w2 := env.Obs.Stage(stage.Info{Name: "direct", Kind: "map", Workers: 2, Total: -1})
	other := env.Obs.Stage(stage.Info{Name: "direct", Kind: "weird", Workers: 1, Total: 3})
	if w == nil || w2 == nil || other == nil {
		t.Fatal("Stage returned a nil Watcher: the stage would not be watched")
	}
	w.Received()
	w.Received()
	w2.Received()
	w2.Received()
	other.Received()
	pts := Read7(t, env)
	Expect7(t, pts, "received", "direct", "map", "", 4)
	Expect7(t, pts, "in_flight", "direct", "map", "", 4)
	Expect7(t, pts, "received", "direct", "weird", "", 1)
	Expect7(t, pts, "in_flight", "direct", "weird", "", 1)
	Expect7(t, pts, "duration", "direct", "map", "", 0)
	if _, ok := Find7(pts, "received", "direct", "weird", ""); !ok {
		t.Errorf("no series of its own for the stage of kind weird")
	}

	w.Finished(1500*time.Millisecond, nil)
	w.Finished(250*time.Millisecond, &stage.Error{Stage: "direct", Index: 1, Attempts: 1, Err: errors.New("bad item")})
	w2.Finished(500*time.Millisecond, fmt.Errorf("run ended: %w", context.Canceled))
	w2.Finished(2*time.Second, &stage.Error{Stage: "direct", Index: 3, Attempts: 2, Err: context.Canceled})
	w.Closed()
	w2.Closed()
	pts = Read7(t, env)
	Expect7(t, pts, "received", "direct", "map", "", 4)
	Expect7(t, pts, "finished", "direct", "map", "ok", 2)
	Expect7(t, pts, "finished", "direct", "map", "error", 2)
	Expect7(t, pts, "in_flight", "direct", "map", "", 0)
	Expect7(t, pts, "duration", "direct", "map", "", 4)
	if got := r7Sum(pts, "direct"); got != 4.25 {
		t.Errorf("duration sum = %v s, want 4.25 (1.5+0.25+0.5+2 seconds)", got)
	}
	Expect7(t, pts, "in_flight", "direct", "weird", "", 1)
	other.Finished(time.Millisecond, nil)
	other.Closed()
	pts = Read7(t, env)
	Expect7(t, pts, "finished", "direct", "weird", "ok", 1)
	Expect7(t, pts, "in_flight", "direct", "weird", "", 0)
}

// While calls are held at a gate: received and in flight count them, nothing
// finished. Released: all ok, nothing in flight, one duration each.
func review7InFlightWhileHeld(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	entered := make(chan int, 3)
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	s := stage.Map(r7Src(3), func(ctx context.Context, v int) (int, error) {
		entered <- v
		select {
		case <-release:
			return v, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, stage.Name("held"), stage.Workers(3))
	done := r7Go(t, func() error {
		_, err := sink.Count(stage.Observe(context.Background(), env.Obs), s)
		return err
	})
	t.Cleanup(open) // runs before r7Go's wait (cleanups run last first)
	for range 3 {
		r7Recv(t, "a call entering", entered)
	}
	pts := Read7(t, env)
	Expect7(t, pts, "received", "held", "map", "", 3)
	Expect7(t, pts, "in_flight", "held", "map", "", 3)
	Expect7(t, pts, "finished", "held", "map", "ok", 0)
	Expect7(t, pts, "finished", "held", "map", "error", 0)
	Expect7(t, pts, "duration", "held", "map", "", 0)
	open()
	if err := r7Recv(t, "the run", done); err != nil {
		t.Fatal(err)
	}
	ExpectDone7(t, Read7(t, env), "held", "map", 3, 3, 0)
}

var errR7 = errors.New("review7: item failed")

// What counts as a failure: an error or a panic under Forward, an error a
// Handle accepts, an error that is context.Canceled or DeadlineExceeded from
// the function itself (the run goes on) are "error"; a Filter that drops is
// "ok"; forwarded errors passing a later stage are not received there.
func review7OutcomesByPolicy(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)

	a := stage.Map(source.Slice(Ints(12)), func(_ context.Context, v int) (int, error) {
		if v%2 == 1 {
			return 0, errR7
		}
		return v, nil
	}, stage.Name("fwd"), stage.OnError(stage.Forward), stage.Workers(3))
	b := stage.Map(a, Ident7, stage.Name("after"), stage.Workers(2))
	var handled atomic.Int32
	c := stage.Map(b, func(_ context.Context, v int) (int, error) {
		if v%4 == 0 {
			return 0, errR7
		}
		return v, nil
	}, stage.Name("dlq"), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
		handled.Add(1)
		return nil
	})))
	d := stage.Filter(c, func(_ context.Context, v int) (bool, error) { return v == 2, nil }, stage.Name("drop"))
	e := stage.Map(d, func(_ context.Context, v int) (int, error) {
		if v == 2 {
			panic("review7 boom")
		}
		return v, nil
	}, stage.Name("boom"), stage.OnError(stage.Forward))
	_, err := sink.Slice(ctx, e)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 7 {
		t.Fatalf("run = %v, want a *sink.ForwardedError of 7", err)
	}
	var pe *stage.PanicError
	if !errors.As(err, &pe) {
		t.Errorf("the forwarded panic is not a *stage.PanicError: %v", err)
	}
	if handled.Load() != 3 {
		t.Fatalf("Handle saw %d, want 3", handled.Load())
	}

	uc := stage.Map(source.Slice(Ints(4)), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return 0, context.Canceled // the function's own, not the run's
		}
		return v, nil
	}, stage.Name("usercancel"), stage.OnError(stage.Forward), stage.Workers(1))
	if _, err := sink.Count(ctx, uc); !errors.Is(err, context.Canceled) {
		t.Fatalf("usercancel run = %v, want the forwarded context.Canceled", err)
	}

	to := stage.Map(r7Src(2), func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			<-ctx.Done() // the call's own Timeout
			return 0, ctx.Err()
		}
		return v, nil
	}, stage.Name("timeout"), stage.Timeout(time.Millisecond), stage.OnError(stage.Forward), stage.Workers(2))
	if _, err := sink.Count(ctx, to); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("timeout run = %v, want the forwarded DeadlineExceeded", err)
	}

	pts := Read7(t, env)
	ExpectDone7(t, pts, "fwd", "map", 12, 6, 6)
	ExpectDone7(t, pts, "after", "map", 6, 6, 0)
	ExpectDone7(t, pts, "dlq", "map", 6, 3, 3)
	ExpectDone7(t, pts, "drop", "filter", 3, 3, 0)
	ExpectDone7(t, pts, "boom", "map", 1, 0, 1)
	ExpectDone7(t, pts, "usercancel", "map", 4, 3, 1)
	ExpectDone7(t, pts, "timeout", "map", 2, 1, 1)
}

// A retried call is one received item and one finished call, whose duration
// covers all its attempts; a call that fails all its attempts is one error.
// Durations are seconds: at least the time spent in the function, at most
// the run's wall time.
func review7RetryIsOneCallCoveringAttempts(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	var attempts atomic.Int32
	var inner atomic.Int64
	busy := func() {
		start := time.Now()
		for time.Since(start) < time.Millisecond {
		}
		inner.Add(int64(time.Since(start)))
	}
	s := stage.Map(r7Src(1), func(_ context.Context, v int) (int, error) {
		busy()
		if attempts.Add(1) < 3 {
			return 0, errR7
		}
		return v, nil
	}, stage.Name("retry"), stage.Retry(3, 0))
	start := time.Now()
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(start)
	if attempts.Load() != 3 {
		t.Fatalf("attempts = %d, want 3", attempts.Load())
	}
	pts := Read7(t, env)
	ExpectDone7(t, pts, "retry", "map", 1, 1, 0)
	sum := r7Sum(pts, "retry")
	if in := time.Duration(inner.Load()).Seconds(); sum < in {
		t.Errorf("duration sum %v s < %v s spent in the 3 attempts: not all attempts, or not seconds", sum, in)
	}
	if sum > wall.Seconds() {
		t.Errorf("duration sum %v s > the run's wall time %v: not seconds", sum, wall)
	}

	f := stage.Map(r7Src(1), func(context.Context, int) (int, error) { return 0, errR7 },
		stage.Name("retryfail"), stage.Retry(2, 0), stage.OnError(stage.Forward))
	_, err := sink.Count(ctx, f)
	var se *stage.Error
	if !errors.As(err, &se) || se.Attempts != 2 || !errors.Is(err, errR7) {
		t.Fatalf("retryfail run = %v, want a forwarded *stage.Error of 2 attempts", err)
	}
	ExpectDone7(t, Read7(t, env), "retryfail", "map", 1, 0, 1)
}

// Calls cut short by a cancellation, or by a sink that stops early
// (sink.First), did not fail: "ok", whatever the function returned; nothing
// stays in flight.
func review7CutShortCallsAreOK(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	entered := make(chan int, 3)
	s := stage.Map(r7Src(3), func(ctx context.Context, v int) (int, error) {
		entered <- v
		<-ctx.Done()
		if v == 1 {
			return 0, errors.New("gave up") // not wrapping ctx.Err()
		}
		return 0, ctx.Err()
	}, stage.Name("cut"), stage.Workers(3))
	done := r7Go(t, func() error {
		_, err := sink.Count(stage.Observe(ctx, env.Obs), s)
		return err
	})
	for range 3 {
		r7Recv(t, "a call entering", entered)
	}
	cancel()
	if err := r7Recv(t, "the cancelled run", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run = %v, want context.Canceled", err)
	}
	ExpectDone7(t, Read7(t, env), "cut", "map", 3, 3, 0)

	others := make(chan int, 3)
	first := stage.Map(r7Src(4), func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			if !take(others, 3) {
				return 0, errors.New("watchdog: the other calls never entered")
			}
			return 100, nil
		}
		others <- v
		<-ctx.Done()
		return 0, errors.New("stopped")
	}, stage.Name("first"), stage.Workers(4))
	v, ok, err := sink.First(stage.Observe(context.Background(), env.Obs), first)
	if err != nil || !ok || v != 100 {
		t.Fatalf("First = %v, %v, %v; want 100, true, nil", v, ok, err)
	}
	ExpectDone7(t, Read7(t, env), "first", "map", 4, 4, 0)
}

// FailFast: the failing item is the only "error"; the calls it cut short
// are "ok". A panic under FailFast is an error too, also when the calls run
// in the consumer's goroutines (a cheap stage over a slice).
func review7FailFastAndPanics(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	entered := make(chan int, 2)
	s := stage.Map(r7Src(3), func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			if !take(entered, 2) {
				return 0, errors.New("watchdog")
			}
			return 0, errR7
		}
		entered <- v
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Name("ff"), stage.Workers(3))
	_, err := sink.Count(ctx, s)
	var se *stage.Error
	if !errors.Is(err, errR7) || !errors.As(err, &se) || se.Stage != "ff" {
		t.Fatalf("FailFast run = %v, want the *stage.Error of ff", err)
	}
	ExpectDone7(t, Read7(t, env), "ff", "map", 3, 2, 1)

	p := stage.Map(r7Src(1), func(context.Context, int) (int, error) { panic("review7 kaboom") }, stage.Name("pff"))
	_, err = sink.Count(ctx, p)
	var pe *stage.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("panicking run = %v, want a *stage.PanicError", err)
	}
	ExpectDone7(t, Read7(t, env), "pff", "map", 1, 0, 1)

	cheap := stage.Map(source.Slice(Ints(3000)), func(_ context.Context, v int) (int, error) {
		if v == 2500 {
			panic("review7 late")
		}
		return v, nil
	}, stage.Name("cheap"), stage.Workers(4), stage.OnError(stage.Forward))
	n, err := sink.Count(ctx, cheap)
	if n != 2999 || !errors.As(err, &pe) {
		t.Fatalf("cheap run = %d, %v; want 2999 and a forwarded panic", n, err)
	}
	ExpectDone7(t, Read7(t, env), "cheap", "map", 3000, 2999, 1)

	fast := stage.Map(source.Slice(Ints(3000)), func(_ context.Context, v int) (int, error) {
		if v == 2500 {
			panic("review7 failfast late")
		}
		return v, nil
	}, stage.Name("cheapff"), stage.Workers(4))
	if _, err := sink.Count(ctx, fast); !errors.As(err, &pe) {
		t.Fatalf("cheapff run = %v, want a *stage.PanicError", err)
	}
	pts := Read7(t, env)
	Expect7(t, pts, "finished", "cheapff", "map", "error", 1)
	Expect7(t, pts, "in_flight", "cheapff", "map", "", 0)
	rec := r7Val(pts, "received", "cheapff", "map", "")
	fin := r7Val(pts, "finished", "cheapff", "map", "ok") + r7Val(pts, "finished", "cheapff", "map", "error")
	// Items 0..2500 were claimed in order, but one that another of the
	// 4 places claimed as item 2500 failed is not taken once the run is
	// cancelled (never received): at most 3 of them.
	if rec != fin || rec < 2501-3 {
		t.Errorf("cheapff: received %v, finished %v; want equal and at least 2498", rec, fin)
	}
}

// Stage names: given ones as given, unnamed ones by kind and position
// counted over every stage that calls a function, named or not; the same
// names in every run, whose counts add up; no other stage appears.
func review7GivenAndDefaultNames(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	m := stage.Map(source.Slice(Ints(6)), Ident7)
	f := stage.Filter(m, func(_ context.Context, v int) (bool, error) { return v < 4, nil }, stage.Name("keep"))
	fm := stage.FlatMap(f, func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil })
	for run := range 2 {
		n, err := sink.Count(ctx, fm)
		if err != nil || n != 8 {
			t.Fatalf("run %d: %d, %v", run, n, err)
		}
	}
	pts := Read7(t, env)
	ExpectDone7(t, pts, "map#1", "map", 12, 12, 0)
	ExpectDone7(t, pts, "keep", "filter", 12, 12, 0)
	ExpectDone7(t, pts, "flatmap#3", "flatmap", 8, 8, 0)
	for _, p := range pts {
		switch p.Stage {
		case "map#1", "keep", "flatmap#3":
		default:
			t.Errorf("unexpected series %+v", p)
		}
	}
}

// Several runs of one pipeline at once share the observer, read all along
// (-race): counters never go down, in flight stays within 0 and the runs'
// workers, and the totals are exact at the end.
func review7ConcurrentRunsReadAlong(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	const runs, items, w1, w2 = 4, 300, 3, 2
	firstRead := make(chan struct{})
	var gate sync.Once
	stop := make(chan struct{})
	build := func(src stage.Stream[int]) stage.Stream[int] {
		a := stage.Map(src, func(_ context.Context, v int) (int, error) {
			if v == 0 {
				select {
				case <-firstRead:
				case <-time.After(r7Watchdog):
				}
			}
			return v, nil
		}, stage.Name("c1"), stage.Workers(w1))
		return stage.Filter(a, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("c2"), stage.Workers(w2))
	}
	fromSlice := build(source.Slice(Ints(items)))
	reads := 0
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		last := map[string]float64{}
		for {
			pts, err := env.Read()
			if err != nil {
				t.Errorf("read during runs: %v", err)
				return
			}
			reads++
			for _, p := range pts {
				key := p.Metric + "|" + p.Stage + "|" + p.Kind + "|" + p.Outcome
				switch p.Metric {
				case "in_flight":
					bound := float64(runs * w1)
					if p.Stage == "c2" {
						bound = float64(runs * w2)
					}
					if p.Value < 0 || p.Value > bound {
						t.Errorf("in_flight{%s} = %v, outside [0, %v]", p.Stage, p.Value, bound)
					}
				default:
					if p.Value < last[key] {
						t.Errorf("%s went down: %v after %v", key, p.Value, last[key])
					}
					last[key] = p.Value
				}
			}
			if r7Val(pts, "received", "c1", "map", "") >= 1 {
				// a run holds its item 0 until this read: reads happen during runs
				gate.Do(func() { close(firstRead) })
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range runs {
		s := fromSlice
		if i%2 == 1 {
			s = build(r7Src(items)) // another pipeline of the same shape and names
		}
		wg.Go(func() {
			n, err := sink.Count(stage.Observe(context.Background(), env.Obs), s)
			if err != nil || n != items {
				t.Errorf("run %d: %d, %v", i, n, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	select {
	case <-readerDone:
	case <-time.After(r7Watchdog):
		t.Fatal("watchdog: reader")
	}
	if reads < 2 {
		t.Errorf("only %d reads", reads)
	}
	pts := Read7(t, env)
	ExpectDone7(t, pts, "c1", "map", runs*items, runs*items, 0)
	ExpectDone7(t, pts, "c2", "filter", runs*items, runs*items, 0)
}

// Runs of different pipelines share one observer: series are told apart by
// stage and kind (one name on a map and on a filter are two series);
// stages of one name and kind add up across pipelines.
func review7DifferentPipelinesShareOneObserver(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	const nA, nB = 7, 11
	// A: shared (map) -> map#2 ; B: map#1 -> shared (filter)
	pa := stage.Map(stage.Map(source.Slice(Ints(nA)), Ident7, stage.Name("shared")), Ident7)
	pb := stage.Filter(stage.Map(r7Src(nB), Ident7), func(context.Context, int) (bool, error) { return true, nil }, stage.Name("shared"))
	da := r7Go(t, func() error { _, err := sink.Count(ctx, pa); return err })
	db := r7Go(t, func() error { _, err := sink.Count(ctx, pb); return err })
	if err := r7Recv(t, "run A", da); err != nil {
		t.Fatal(err)
	}
	if err := r7Recv(t, "run B", db); err != nil {
		t.Fatal(err)
	}
	pts := Read7(t, env)
	ExpectDone7(t, pts, "shared", "map", nA, nA, 0)
	ExpectDone7(t, pts, "shared", "filter", nB, nB, 0)
	ExpectDone7(t, pts, "map#2", "map", nA, nA, 0)
	ExpectDone7(t, pts, "map#1", "map", nB, nB, 0)
}

// Two observers (two backends) attached to one run both see everything.
func review7TwoObserversOneRun(t *testing.T, newEnv func(*testing.T) Env7) {
	e1, e2 := newEnv(t), newEnv(t)
	ctx := stage.Observe(stage.Observe(context.Background(), e1.Obs), e2.Obs)
	s := stage.Map(source.Slice(Ints(9)), Ident7, stage.Name("both"))
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	ExpectDone7(t, Read7(t, e1), "both", "map", 9, 9, 0)
	ExpectDone7(t, Read7(t, e2), "both", "map", 9, 9, 0)
}

// Every kind of stage that calls a function, run twice with failures of
// every sort: each stage's series match the library's own stage.Stats
// (received; finished split into ok and error; in flight; one duration per
// finished call; the kind label), and no other stage has series.
func review7MatchesStatsEveryKind(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), env.Obs), &stats)
	m := stage.Map(source.Slice(Ints(60)), func(_ context.Context, v int) (int, error) {
		if v%7 == 3 {
			return 0, errR7
		}
		return v, nil
	}, stage.OnError(stage.Forward), stage.Workers(3))
	fl := stage.Filter(m, func(_ context.Context, v int) (bool, error) {
		if v == 10 {
			panic("review7 filter")
		}
		return v%3 != 0, nil
	}, stage.OnError(stage.Forward))
	fm := stage.FlatMap(fl, func(_ context.Context, v int) ([]int, error) { return []int{v, v + 1000}, nil }, stage.Workers(2))
	tasks := stage.Map(fm, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
		return func(context.Context) (int, error) {
			if v%5 == 0 {
				return 0, errR7
			}
			return v, nil
		}, nil
	}, stage.Name("mktask"))
	cc := stage.Concurrent(tasks, stage.OnError(stage.Forward), stage.Workers(4))
	ap := stage.Apply(cc, func(_ context.Context, v int, emit func(int) bool) error {
		if v%11 == 0 {
			return errR7
		}
		emit(v)
		emit(-v)
		return nil
	}, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	ub := stage.Unbatch(stage.Batch(ap, 5, 0))
	var flaky atomic.Int32
	tail := stage.Map(ub, func(_ context.Context, v int) (int, error) {
		if v%13 == 0 && flaky.Add(1)%2 == 1 {
			return 0, errR7
		}
		return v, nil
	}, stage.Name("tail"), stage.Retry(2, 0), stage.OnError(stage.Budget(1000, nil)))
	for run := range 2 {
		_, err := sink.Slice(ctx, tail)
		var fe *sink.ForwardedError
		if !errors.As(err, &fe) {
			t.Fatalf("run %d: %v, want forwarded errors", run, err)
		}
	}
	pts := Read7(t, env)
	snap := stats.Snapshot()
	kinds := map[string]bool{}
	names := map[string]bool{}
	for _, c := range snap {
		names[c.Name] = true
		kinds[c.Kind] = true
		Expect7(t, pts, "received", c.Name, c.Kind, "", float64(c.Received))
		Expect7(t, pts, "finished", c.Name, c.Kind, "ok", float64(c.Finished-c.Failed))
		Expect7(t, pts, "finished", c.Name, c.Kind, "error", float64(c.Failed))
		Expect7(t, pts, "in_flight", c.Name, c.Kind, "", float64(c.InFlight))
		Expect7(t, pts, "duration", c.Name, c.Kind, "", float64(c.Finished))
		if c.InFlight != 0 {
			t.Errorf("stats: %s in flight %d after the runs", c.Name, c.InFlight)
		}
	}
	for _, k := range []string{"map", "filter", "flatmap", "concurrent", "apply", "unbatch"} {
		if !kinds[k] {
			t.Errorf("stats saw no stage of kind %s (saw %v)", k, kinds)
		}
	}
	for _, p := range pts {
		if !names[p.Stage] {
			t.Errorf("series of a stage Stats never saw: %+v", p)
		}
	}
}

// No goroutine is left once a sink returns: after a success, a FailFast
// failure, a cancellation, an early stop and a panic, with the observer
// attached (the observer starts none of its own).
func review7NoGoroutineLeft(t *testing.T, newEnv func(*testing.T) Env7) {
	ignore := goleak.IgnoreCurrent()
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	ok := stage.Map(r7Src(50), Ident7, stage.Workers(4), stage.Name("leak-ok"))
	if _, err := sink.Count(ctx, ok); err != nil {
		t.Fatal(err)
	}
	bad := stage.Map(source.Slice(Ints(50)), func(_ context.Context, v int) (int, error) {
		if v == 20 {
			return 0, errR7
		}
		return v, nil
	}, stage.Workers(4), stage.Name("leak-ff"))
	if _, err := sink.Count(ctx, bad); !errors.Is(err, errR7) {
		t.Fatalf("leak-ff: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	entered := make(chan struct{}, 4)
	blocked := stage.Map(r7Src(4), func(ctx context.Context, v int) (int, error) {
		entered <- struct{}{}
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Workers(4), stage.Name("leak-cancel"))
	done := r7Go(t, func() error { _, err := sink.Count(cctx, blocked); return err })
	for range 4 {
		r7Recv(t, "entering", entered)
	}
	cancel()
	if err := r7Recv(t, "cancelled run", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("leak-cancel: %v", err)
	}
	if _, _, err := sink.First(ctx, stage.Map(r7Src(100), Ident7, stage.Workers(8), stage.Name("leak-first"))); err != nil {
		t.Fatal(err)
	}
	var pe *stage.PanicError
	if err := sink.ForEach(ctx, stage.Map(r7Src(10), Ident7, stage.Name("leak-panic")), func(context.Context, int) error {
		panic("review7 sink")
	}); !errors.As(err, &pe) {
		t.Fatalf("leak-panic: %v", err)
	}
	goleak.VerifyNone(t, ignore)
	pts := Read7(t, env)
	for _, name := range []string{"leak-ok", "leak-ff", "leak-cancel", "leak-first", "leak-panic"} {
		Expect7(t, pts, "in_flight", name, "map", "", 0)
		rec := r7Val(pts, "received", name, "map", "")
		fin := r7Val(pts, "finished", name, "map", "ok") + r7Val(pts, "finished", name, "map", "error")
		if rec != fin {
			t.Errorf("%s: received %v, finished %v", name, rec, fin)
		}
	}
	Expect7(t, pts, "finished", "leak-ff", "map", "error", 1)
	Expect7(t, pts, "finished", "leak-cancel", "map", "error", 0)
	Expect7(t, pts, "finished", "leak-first", "map", "error", 0)
	Expect7(t, pts, "finished", "leak-panic", "map", "error", 0)
}

// Item failures that happen without the function being called (a panic in
// KeyBy's key, a nil task in Concurrent) go to the policy: what the
// backend says about them agrees with what the policy saw, and nothing
// stays in flight. Unlimited workers: every held call is in flight.
// A drained run (Until) finishes every call it took, all ok.
func review7PolicyFailuresWithoutCallsAndUnlimitedWorkers(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	var keyHandled, nilHandled atomic.Int32
	kb := stage.Map(source.Slice(Ints(20)), Ident7, stage.Name("keyed"), stage.Workers(3),
		stage.KeyBy(func(v int) int {
			if v == 7 {
				panic("review7 key")
			}
			return v % 3
		}),
		stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { keyHandled.Add(1); return nil })))
	if n, err := sink.Count(ctx, kb); err != nil || n != 19 {
		t.Fatalf("keyed run: %d, %v", n, err)
	}
	tasks := make([]func(context.Context) (int, error), 6)
	for i := range tasks {
		if i != 2 {
			tasks[i] = func(context.Context) (int, error) { return i, nil }
		}
	}
	cc := stage.Concurrent(source.Slice(tasks), stage.Name("tasks"),
		stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
			if errors.Is(e, stage.ErrNilTask) {
				nilHandled.Add(1)
			}
			return nil
		})))
	if n, err := sink.Count(ctx, cc); err != nil || n != 5 {
		t.Fatalf("tasks run: %d, %v", n, err)
	}
	pts := Read7(t, env)
	if keyHandled.Load() != 1 || nilHandled.Load() != 1 {
		t.Fatalf("policies saw %d key panics and %d nil tasks, want 1 and 1", keyHandled.Load(), nilHandled.Load())
	}
	for _, name := range []string{"keyed", "tasks"} {
		kind := map[string]string{"keyed": "map", "tasks": "concurrent"}[name]
		Expect7(t, pts, "finished", name, kind, "error", 1)
		Expect7(t, pts, "in_flight", name, kind, "", 0)
		rec := r7Val(pts, "received", name, kind, "")
		fin := r7Val(pts, "finished", name, kind, "ok") + r7Val(pts, "finished", name, kind, "error")
		if rec != fin || fin != map[string]float64{"keyed": 20, "tasks": 6}[name] {
			t.Errorf("%s: received %v, finished %v", name, rec, fin)
		}
	}

	const held = 10
	entered := make(chan int, held)
	release := make(chan struct{})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	un := stage.Map(r7Src(held), func(ctx context.Context, v int) (int, error) {
		entered <- v
		select {
		case <-release:
			return v, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}, stage.Name("unlimited"), stage.Workers(-1))
	done := r7Go(t, func() error { _, err := sink.Count(ctx, un); return err })
	t.Cleanup(open)
	for range held {
		r7Recv(t, "a call entering", entered)
	}
	pts = Read7(t, env)
	Expect7(t, pts, "received", "unlimited", "map", "", held)
	Expect7(t, pts, "in_flight", "unlimited", "map", "", held)
	open()
	if err := r7Recv(t, "the unlimited run", done); err != nil {
		t.Fatal(err)
	}
	ExpectDone7(t, Read7(t, env), "unlimited", "map", held, held, 0)

	stop, drain := context.WithCancel(context.Background())
	defer drain()
	dEntered := make(chan int, 2)
	dRelease := make(chan struct{})
	var dOnce sync.Once
	dOpen := func() { dOnce.Do(func() { close(dRelease) }) }
	queue := make(chan int) // never closed: only the drain ends the input
	go func() {
		for i := range 2 {
			select {
			case queue <- i:
			case <-time.After(r7Watchdog):
				return
			}
		}
	}()
	dr := stage.Map(stage.Until(source.Chan(queue), stop), func(_ context.Context, v int) (int, error) {
		dEntered <- v
		<-dRelease
		return v, nil
	}, stage.Name("drained"), stage.Workers(2), stage.Buffer(1))
	dDone := r7Go(t, func() error { _, err := sink.Count(ctx, dr); return err })
	t.Cleanup(dOpen)
	for range 2 {
		r7Recv(t, "a drained call entering", dEntered)
	}
	drain()
	dOpen()
	if err := r7Recv(t, "the drained run", dDone); err != nil {
		t.Fatalf("drained run: %v, want nil", err)
	}
	ExpectDone7(t, Read7(t, env), "drained", "map", 2, 2, 0)
}

// "A call cut short by the end of the run (another stage's failure, a
// cancellation) did not fail": calls in flight upstream when a downstream
// stage fails FailFast, or when the sink's callback fails, are ok; a call
// whose retry backoff is cut by a cancellation is ok (whatever its attempts
// returned); items failed under Budget, the one that exceeds it included,
// and one whose Handle returns an error, are errors.
func review7OtherFailuresCutShortAndBudget(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)

	upstream := func(name string, entered chan<- int) stage.Stream[int] {
		return stage.Map(r7Src(10), func(ctx context.Context, v int) (int, error) {
			if v == 0 {
				return v, nil
			}
			entered <- v
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Name(name), stage.Workers(2), stage.Buffer(1))
	}
	entered := make(chan int, 10)
	down := stage.Map(upstream("up", entered), func(ctx context.Context, v int) (int, error) {
		if !take(entered, 1) { // an upstream call is in flight
			return 0, errors.New("watchdog")
		}
		return 0, errR7
	}, stage.Name("down"), stage.Workers(1))
	_, err := sink.Count(ctx, down)
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "down" || !errors.Is(err, errR7) {
		t.Fatalf("run = %v, want down's *stage.Error", err)
	}
	pts := Read7(t, env)
	ExpectDone7(t, pts, "down", "map", 1, 0, 1)
	Expect7(t, pts, "finished", "up", "map", "error", 0)
	Expect7(t, pts, "in_flight", "up", "map", "", 0)
	if rec, ok := r7Val(pts, "received", "up", "map", ""), r7Val(pts, "finished", "up", "map", "ok"); rec != ok || rec < 2 {
		t.Errorf("up: received %v, ok %v; want equal, at least 2", rec, ok)
	}

	entered2 := make(chan int, 10)
	err = sink.ForEach(ctx, upstream("up2", entered2), func(context.Context, int) error {
		if !take(entered2, 1) {
			return errors.New("watchdog")
		}
		return errR7
	})
	if !errors.As(err, &se) || !errors.Is(err, errR7) {
		t.Fatalf("ForEach = %v, want its callback's error in a *stage.Error", err)
	}
	pts = Read7(t, env)
	Expect7(t, pts, "finished", "up2", "map", "error", 0)
	Expect7(t, pts, "in_flight", "up2", "map", "", 0)
	if rec, ok := r7Val(pts, "received", "up2", "map", ""), r7Val(pts, "finished", "up2", "map", "ok"); rec != ok || rec < 2 {
		t.Errorf("up2: received %v, ok %v; want equal, at least 2", rec, ok)
	}
	for _, p := range pts {
		if p.Stage == "foreach" {
			t.Errorf("the sink's callback has series: %+v", p)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	failedOnce := make(chan struct{})
	var calls atomic.Int32
	rb := stage.Map(r7Src(1), func(context.Context, int) (int, error) {
		if calls.Add(1) == 1 {
			close(failedOnce)
		}
		return 0, errR7
	}, stage.Name("backoff"), stage.Retry(3, time.Hour))
	done := r7Go(t, func() error { _, err := sink.Count(cctx, rb); return err })
	r7Recv(t, "the first attempt", failedOnce)
	cancel()
	if err := r7Recv(t, "the cancelled run", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("backoff run = %v, want context.Canceled", err)
	}
	ExpectDone7(t, Read7(t, env), "backoff", "map", 1, 1, 0)

	bud := stage.Map(r7Src(5), func(_ context.Context, v int) (int, error) {
		if v == 1 || v == 3 {
			return 0, errR7
		}
		return v, nil
	}, stage.Name("budget"), stage.Workers(1), stage.OnError(stage.Budget(1, nil)))
	_, err = sink.Count(ctx, bud)
	if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || se.Index != 3 {
		t.Fatalf("budget run = %v, want ErrBudget at item 3", err)
	}
	pts = Read7(t, env)
	Expect7(t, pts, "finished", "budget", "map", "error", 2)
	Expect7(t, pts, "in_flight", "budget", "map", "", 0)

	errH := errors.New("review7: handler gives up")
	hd := stage.Map(r7Src(3), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return 0, errR7
		}
		return v, nil
	}, stage.Name("handlerr"), stage.Workers(1), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return errH })))
	if _, err := sink.Count(ctx, hd); !errors.Is(err, errH) {
		t.Fatalf("handlerr run = %v, want the handler's error", err)
	}
	pts = Read7(t, env)
	Expect7(t, pts, "finished", "handlerr", "map", "error", 1)
	Expect7(t, pts, "in_flight", "handlerr", "map", "", 0)

	// A run that fails before it starts (an unconsumed Tee branch) leaves
	// nothing received and nothing in flight.
	br := stage.Tee(stage.Map(source.Slice(Ints(3)), Ident7, stage.Name("teed")), 2)
	if _, err := sink.Count(ctx, stage.Map(br[0], Ident7, stage.Name("branch"))); !errors.Is(err, stage.ErrUnconsumedBranch) {
		t.Fatalf("tee run = %v, want ErrUnconsumedBranch", err)
	}
	pts = Read7(t, env)
	for _, name := range []string{"teed", "branch"} {
		Expect7(t, pts, "received", name, "map", "", 0)
		Expect7(t, pts, "in_flight", name, "map", "", 0)
	}
}

// Many pipelines with names of their own and one common name, run at once
// while the backend is read (-race): every stage's totals are exact.
func review7ManyPipelinesAtOnce(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	const pipelines, items = 12, 200
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			if _, err := env.Read(); err != nil {
				t.Errorf("read: %v", err)
				return
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	for i := range pipelines {
		wg.Go(func() {
			var src stage.Stream[int]
			if i%2 == 0 {
				src = source.Slice(Ints(items))
			} else {
				src = r7Src(items)
			}
			own := stage.Map(src, Ident7, stage.Name(fmt.Sprintf("own%d", i)), stage.Workers(1+i%4))
			common := stage.Filter(own, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("common"), stage.Workers(-1+2*(i%3)))
			if n, err := sink.Count(ctx, common); err != nil || n != items {
				t.Errorf("pipeline %d: %d, %v", i, n, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	select {
	case <-readerDone:
	case <-time.After(r7Watchdog):
		t.Fatal("watchdog: reader")
	}
	pts := Read7(t, env)
	for i := range pipelines {
		ExpectDone7(t, pts, fmt.Sprintf("own%d", i), "map", items, items, 0)
	}
	ExpectDone7(t, pts, "common", "filter", pipelines*items, pipelines*items, 0)
}

// A stage whose input holds one item runs the call in its consumer's
// goroutine (no goroutine of its own): it is counted all the same, a success
// as ok, a panic as error, nothing left in flight.
func review7SingleItemInConsumer(t *testing.T, newEnv func(*testing.T) Env7) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	one := stage.Map(source.Slice([]int{5}), Ident7, stage.Name("one"), stage.Workers(1))
	if v, ok, err := sink.First(ctx, one); err != nil || !ok || v != 5 {
		t.Fatalf("one: %v %v %v", v, ok, err)
	}
	bad := stage.Map(source.Slice([]int{5}), func(context.Context, int) (int, error) { panic("review7 one") },
		stage.Name("onebad"), stage.Workers(1))
	var pe *stage.PanicError
	if _, err := sink.Slice(ctx, bad); !errors.As(err, &pe) {
		t.Fatalf("onebad: %v", err)
	}
	pts := Read7(t, env)
	ExpectDone7(t, pts, "one", "map", 1, 1, 0)
	ExpectDone7(t, pts, "onebad", "map", 1, 0, 1)
}

// Review7 runs the review7 scenarios (written from the adapters' docs
// only) against an adapter: newEnv makes a fresh observer on a fresh
// backend, and the function that reads it.
func Review7(t *testing.T, newEnv func(*testing.T) Env7) {
	for _, s := range []struct {
		name string
		f    func(*testing.T, func(*testing.T) Env7)
	}{
		{"DirectWatcherOutcomesAndSeconds", review7DirectWatcherOutcomesAndSeconds},
		{"InFlightWhileHeld", review7InFlightWhileHeld},
		{"OutcomesByPolicy", review7OutcomesByPolicy},
		{"RetryIsOneCallCoveringAttempts", review7RetryIsOneCallCoveringAttempts},
		{"CutShortCallsAreOK", review7CutShortCallsAreOK},
		{"FailFastAndPanics", review7FailFastAndPanics},
		{"GivenAndDefaultNames", review7GivenAndDefaultNames},
		{"ConcurrentRunsReadAlong", review7ConcurrentRunsReadAlong},
		{"DifferentPipelinesShareOneObserver", review7DifferentPipelinesShareOneObserver},
		{"TwoObserversOneRun", review7TwoObserversOneRun},
		{"MatchesStatsEveryKind", review7MatchesStatsEveryKind},
		{"NoGoroutineLeft", review7NoGoroutineLeft},
		{"PolicyFailuresWithoutCallsAndUnlimitedWorkers", review7PolicyFailuresWithoutCallsAndUnlimitedWorkers},
		{"OtherFailuresCutShortAndBudget", review7OtherFailuresCutShortAndBudget},
		{"ManyPipelinesAtOnce", review7ManyPipelinesAtOnce},
		{"SingleItemInConsumer", review7SingleItemInConsumer},
	} {
		t.Run(s.name, func(t *testing.T) { s.f(t, newEnv) })
	}
}

// bucketOf is the index of the histogram bucket (upper bounds inclusive,
// as both backends have them) that v falls into.
func bucketOf(bounds []float64, v float64) int {
	i := 0
	for i < len(bounds) && bounds[i] < v {
		i++
	}
	return i
}

// CheckBuckets7 checks that a duration histogram in seconds has buckets
// that tell typical call durations apart: 1 ms, 100 ms and 1 s fall in
// three different buckets.
func CheckBuckets7(t *testing.T, bounds []float64) {
	t.Helper()
	a, b, c := bucketOf(bounds, 0.001), bucketOf(bounds, 0.1), bucketOf(bounds, 1)
	if a == b || b == c {
		t.Errorf("duration buckets %v put 1 ms, 100 ms and 1 s into buckets %d, %d, %d: a histogram in seconds that cannot tell calls of 1 ms from calls of 1 s", bounds, a, b, c)
	}
}
