package stage_test

// Review 64: concurrency and zero-value promises of package stage's API
// surface, from the documentation only. Run with -race: a verdict here is
// often the race detector's.

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "Stats is an Observer that counts, per stage, with atomic counters that
// can be read while runs go on (a progress bar, a status page, a test).
// The zero Stats is ready to use." Every call of the stage's function
// reads the Stats (Get and Snapshot) while 8 workers run, and a goroutine
// of the test reads it too until the run ends.
func TestReview64APIStatsReadWhileRunning(t *testing.T) {
	var stats stage.Stats // the zero Stats
	ctx := stage.Observe(context.Background(), &stats)
	items := make([]int, 2000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, c := range stats.Snapshot() {
				// "Counts is a snapshot": InFlight is "Received -
				// Finished", and no call finishes before it is received.
				if c.InFlight != c.Received-c.Finished || c.InFlight < 0 || c.Finished > c.Received || c.Failed > c.Finished {
					t.Errorf("an inconsistent snapshot during the run: %+v", c)
					return
				}
				_ = c.MeanLatency()
			}
		}
	})
	n, err := sink.Count(ctx, stage.Map(source.Slice(items), func(_ context.Context, v int) (int, error) {
		// "Received: the stage took an item and is about to call its
		// function on it"; Running counts "runs in which the stage has not
		// closed yet": inside a call, both show this call.
		if c, ok := stats.Get("work"); !ok || c.Running != 1 || c.InFlight < 1 || c.Received < 1 || c.Total != len(items) {
			t.Errorf("inside a call: %+v, %v: want Running 1, InFlight and Received >= 1, Total %d", c, ok, len(items))
		}
		_ = stats.Snapshot()
		return v, nil
	}, stage.Workers(8), stage.Buffer(1), stage.Name("work")))
	close(stop)
	wg.Wait()
	if err != nil || n != len(items) {
		t.Fatalf("Count = %d, %v", n, err)
	}
	c, ok := stats.Get("work")
	if !ok || c.Received != int64(len(items)) || c.Finished != int64(len(items)) || c.InFlight != 0 || c.Running != 0 {
		t.Fatalf("after the run: %+v, %v: want %d received and finished, none in flight or running", c, ok, len(items))
	}
	// A snapshot is a value: a later run does not change it.
	snap := stats.Snapshot()
	if _, err := sink.Count(ctx, stage.Map(source.Slice(items), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("work"))); err != nil {
		t.Fatal(err)
	}
	if len(snap) != 1 || snap[0].Received != int64(len(items)) {
		t.Fatalf("the snapshot taken before a second run changed: %+v", snap)
	}
	if c, _ := stats.Get("work"); c.Received != 2*int64(len(items)) {
		t.Fatalf("a Stats attached to two runs: Received %d, want the sum %d", c.Received, 2*len(items))
	}
}

// "Counts ... MeanLatency is Latency / Finished, or 0": the zero Counts.
func TestReview64APIZeroCountsMeanLatency(t *testing.T) {
	var c stage.Counts
	if c.MeanLatency() != 0 {
		t.Fatalf("zero Counts MeanLatency = %v", c.MeanLatency())
	}
	var s stage.Stats
	if _, ok := s.Get("nothing"); ok {
		t.Fatal("zero Stats Get found a stage")
	}
	if len(s.Snapshot()) != 0 {
		t.Fatal("zero Stats Snapshot is not empty")
	}
}

// "Calls of h never overlap within one stage of one run, so h may append
// to a slice or count without a lock of its own" (Handle), and "Calls of h
// never overlap within a stage" (Budget). Every item fails on 8 workers;
// h appends to a plain slice: the race detector is the verdict.
func TestReview64APIHandleCallsNeverOverlap(t *testing.T) {
	boom := errors.New("review64 boom")
	items := make([]int, 500)
	for i := range items {
		items[i] = i
	}
	for _, tc := range []struct {
		name   string
		policy func(h func(context.Context, *stage.Error) error) stage.ErrorPolicy
	}{
		{"Handle", stage.Handle},
		{"Budget", func(h func(context.Context, *stage.Error) error) stage.ErrorPolicy {
			return stage.Budget(len(items), h)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []int // no lock: the doc says none is needed
			inH := 0
			h := func(_ context.Context, e *stage.Error) error {
				inH++
				if inH != 1 {
					t.Errorf("%d calls of h at once", inH)
				}
				seen = append(seen, e.Input.(int))
				inH--
				return nil
			}
			n, err := sink.Count(context.Background(), stage.Map(source.Slice(items),
				func(_ context.Context, v int) (int, error) { return 0, boom },
				stage.Workers(8), stage.Buffer(2), stage.OnError(tc.policy(h))))
			if err != nil || n != 0 {
				t.Fatalf("Count = %d, %v", n, err)
			}
			if len(seen) != len(items) {
				t.Fatalf("h saw %d items, want %d", len(seen), len(items))
			}
		})
	}
}

// sink.ForEach: "calls f for each value, one call at a time". f keeps a
// plain counter while 8 workers feed it.
func TestReview64APIForEachOneCallAtATime(t *testing.T) {
	items := make([]int, 1000)
	count := 0
	err := sink.ForEach(context.Background(), stage.Map(source.Slice(items),
		func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(8), stage.Buffer(4)),
		func(context.Context, int) error { count++; return nil })
	if err != nil || count != len(items) {
		t.Fatalf("ForEach: %d calls, %v", count, err)
	}
}

// "Logger ... A handler that panics (the zero slog.Logger's has none to
// call) fails the run with a *PanicError, as any observer's panic does."
// The zero *slog.Logger is not nil, so Logger accepts it; the run must
// fail with an error wrapping a *PanicError, and the process goes on.
func TestReview64APILoggerZeroSlogLogger(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		ctx := stage.Observe(context.Background(), stage.Logger(&slog.Logger{}))
		_, err := sink.Slice(ctx, stage.Map(source.Slice([]int{1, 2}),
			func(_ context.Context, v int) (int, error) { return v, nil }))
		var pe *stage.PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("a run logged by a zero slog.Logger returned %v: want an error wrapping a *PanicError", err)
		}
	})
}

// Option: "The zero Option is not an option: building a stage with one
// panics" (when it is built, "never during a run"), with the "sluice:"
// prefix of a programmer error.
func TestReview64APIZeroOptionPanicsWhenBuilt(t *testing.T) {
	msg := panicMessage(func() {
		stage.Map(source.Slice([]int{1, 2, 3}), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2), stage.Option{})
	})
	if !strings.HasPrefix(msg, "sluice: stage.Map") {
		t.Fatalf("a Map built with the zero Option: panic %q, want one that starts with %q", msg, "sluice: stage.Map")
	}
}

// "RateLimit panics if perSecond <= 0 or burst < 1", and options are
// checked when made, "never during a run". A NaN rate is not <= 0; it
// must either be refused when made or give a run that completes (it may
// not hang or crash the run).
func TestReview64APIRateLimitNaN(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var opt stage.Option
		refused := func() (r any) {
			defer func() { r = recover() }()
			opt = stage.RateLimit(math.NaN(), 1)
			return nil
		}()
		if refused != nil {
			t.Logf("RateLimit(NaN, 1) refused when made: %v", refused)
			return
		}
		got, err := sink.Slice(context.Background(), stage.Map(source.Slice([]int{1, 2, 3}),
			func(_ context.Context, v int) (int, error) { return v, nil }, opt))
		if err != nil || len(got) != 3 {
			t.Fatalf("RateLimit(NaN, 1) accepted, and a run of 3 items gave %v, %v", got, err)
		}
	})
}

// "Observe panics if o is nil" and "An observer is user code: a panic in
// Stage or in a Watcher's method fails the run, and the process goes on."
// A nil *Stats is a non-nil Observer (Stats' methods are on the pointer):
// Observe takes it, and the run must fail (an error wrapping a
// *PanicError), not crash the process.
func TestReview64APITypedNilStatsObserver(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var stats *stage.Stats
		var ctx context.Context
		refused := func() (r any) {
			defer func() { r = recover() }()
			ctx = stage.Observe(context.Background(), stats)
			return nil
		}()
		if refused != nil {
			t.Logf("Observe refused a nil *Stats: %v", refused)
			return
		}
		_, err := sink.Slice(ctx, stage.Map(source.Slice([]int{1, 2}),
			func(_ context.Context, v int) (int, error) { return v, nil }))
		var pe *stage.PanicError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("a run observed by a nil *Stats returned %v: want nil or an error wrapping a *PanicError", err)
		}
	})
}

// Stats: "a Stats attached to several runs adds the counts of stages of
// the same name up", and Counts.Running is "runs in which the stage has
// not closed yet". Two runs at once (each Stage call comes from its own
// sink goroutine) both hold a call open behind a gate: Running is 2, and
// once both are over, 0, with the counts added up.
func TestReview64APIStatsTwoRunsAtOnce(t *testing.T) {
	var stats stage.Stats
	ctx := stage.Observe(context.Background(), &stats)
	entered := make(chan struct{}, 2)
	release := make(chan struct{})
	build := func() stage.Stream[int] {
		return stage.Map(source.Slice([]int{1, 2, 3}), func(_ context.Context, v int) (int, error) {
			if v == 1 {
				entered <- struct{}{}
				<-release
			}
			return v, nil
		}, stage.Workers(1), stage.Buffer(1), stage.Name("shared"))
	}
	errc := make(chan error, 2)
	for range 2 {
		go func() { _, err := sink.Count(ctx, build()); errc <- err }()
	}
	<-entered
	<-entered
	c, ok := stats.Get("shared")
	close(release)
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	if !ok || c.Running != 2 || c.InFlight != 2 {
		t.Fatalf("with two runs each inside a call: %+v, %v: want Running 2, InFlight 2", c, ok)
	}
	if c, _ := stats.Get("shared"); c.Running != 0 || c.Received != 6 || c.Finished != 6 || len(stats.Snapshot()) != 1 {
		t.Fatalf("after both runs: %+v (%d stages): want Running 0, 6 received and finished, one stage", c, len(stats.Snapshot()))
	}
}
