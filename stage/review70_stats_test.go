package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Stats: "The zero Stats is ready to use; attach it with Observe." Counts:
// Received "items taken for a call", Finished "calls ended (successes and
// failures)", Failed "calls that ended in an item error", InFlight
// "Received - Finished", Running "runs in which the stage has not closed
// yet". Snapshot: "every stage's counters, in the order the stages were
// first seen." Get: "the counters of the stage named name."
func TestReview70StatsAfterRun(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var st stage.Stats
			if c := st.Snapshot(); len(c) != 0 {
				t.Fatalf("zero Stats has %d stages", len(c))
			}
			a := stage.Map(source.Slice(ints(50)), func(_ context.Context, v int) (int, error) {
				if v%7 == 0 {
					return 0, errR70
				}
				return v, nil
			}, m.opts(stage.OnError(stage.Forward))...)
			b := stage.Filter(a, func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil }, m.opts(stage.Name("even"))...)
			c := stage.FlatMap(b, func(_ context.Context, v int) ([]int, error) {
				if v == 20 {
					return nil, errors.New("twenty")
				}
				return []int{v, v}, nil
			}, m.opts(stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))...)
			got, err := sink.Slice(stage.Observe(context.Background(), &st), c)
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 8 || len(got) != 2*(21-1) {
				t.Fatalf("%d values, err %v", len(got), err)
			}
			snap := st.Snapshot()
			var names []string
			for _, c := range snap {
				names = append(names, c.Name)
			}
			if !slices.Equal(names, []string{"map#1", "even", "flatmap#3"}) {
				t.Fatalf("Snapshot names %v, want [map#1 even flatmap#3]", names)
			}
			want := map[string][3]int64{"map#1": {50, 50, 8}, "even": {42, 42, 0}, "flatmap#3": {21, 21, 1}}
			for _, c := range snap {
				w := want[c.Name]
				if c.Received != w[0] || c.Finished != w[1] || c.Failed != w[2] || c.InFlight != 0 || c.Running != 0 || c.Latency < 0 {
					t.Errorf("%s: %+v; want received %d, finished %d, failed %d, nothing in flight or running", c.Name, c, w[0], w[1], w[2])
				}
				g, ok := st.Get(c.Name)
				if !ok || g != c {
					t.Errorf("Get(%q) = %+v, %v; Snapshot has %+v", c.Name, g, ok, c)
				}
				if c.Finished > 0 && c.MeanLatency() != c.Latency/time.Duration(c.Finished) {
					t.Errorf("%s: MeanLatency %v, want Latency/Finished", c.Name, c.MeanLatency())
				}
			}
			if _, ok := st.Get("nope"); ok {
				t.Error("Get of an unknown name reports ok")
			}
			if fe.Count != int(want["map#1"][2]) {
				t.Errorf("ForwardedError.Count %d differs from the stage's Failed", fe.Count)
			}
		})
	}
	if (stage.Counts{}).MeanLatency() != 0 {
		t.Error("MeanLatency of zero Counts is not 0")
	}
}

// Counts.Running: "runs in which the stage has not closed yet"; InFlight:
// "Received - Finished"; "a Stats attached to several runs adds the counts of
// stages of the same name up."
func TestReview70StatsRunningWhileRuns(t *testing.T) {
	var st stage.Stats
	const runs = 3
	in := newR70gate(runs)
	release := make(chan struct{})
	s := stage.Map(source.Slice(ints(4)), func(_ context.Context, v int) (int, error) {
		if v == 1 {
			in.Arrive()
			<-release
		}
		return v, nil
	}, stage.Name("held"), stage.Workers(1))
	ctx := stage.Observe(context.Background(), &st)
	var wg sync.WaitGroup
	errs := make(chan error, runs)
	for range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := sink.Slice(ctx, s)
			errs <- err
		}()
	}
	runcheck.NoHang(t, "all runs inside", func() { <-in.Wait() })
	c, ok := st.Get("held")
	if !ok || c.Running != runs || c.InFlight != runs || c.Received != 2*runs || c.Finished != runs {
		t.Errorf("while %d runs hold item 1: %+v; want Running %d, InFlight %d, Received %d, Finished %d", runs, c, runs, runs, 2*runs, runs)
	}
	close(release)
	runcheck.NoHang(t, "runs", wg.Wait)
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	c, _ = st.Get("held")
	if c.Running != 0 || c.InFlight != 0 || c.Received != 4*runs || c.Finished != 4*runs || c.Info.Total != 4 || c.Info.Workers != 1 || c.Info.Kind != "map" {
		t.Errorf("after the runs: %+v", c)
	}
}

// Stats "counts, per stage, with atomic counters that can be read while runs
// go on": a reader sees each counter never go down, and every snapshot
// consistent with the field definitions (InFlight = Received - Finished,
// Failed among Finished, Running >= 0), while many runs of every kind of
// ending go on at once; at the end the totals add up.
func TestReview70StatsReadWhileRunning(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	done := make(chan struct{})
	var bad []string
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		last := map[string]stage.Counts{}
		for {
			select {
			case <-done:
				return
			default:
			}
			for _, c := range st.Snapshot() {
				p := last[c.Name]
				if c.Received < p.Received || c.Finished < p.Finished || c.Failed < p.Failed || c.Latency < p.Latency {
					bad = append(bad, fmt.Sprintf("%s went down: %+v after %+v", c.Name, c, p))
				}
				if c.InFlight != c.Received-c.Finished || c.Failed > c.Finished || c.Running < 0 {
					bad = append(bad, fmt.Sprintf("%s inconsistent: %+v", c.Name, c))
				}
				last[c.Name] = c
			}
		}
	}()
	const runs = 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	wantFailed := 0
	for i := range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := []stage.Option{stage.Workers([]int{1, 3, -1, 1000}[i%4]), stage.OnError(stage.Forward)}
			if i%3 == 0 {
				opts = append(opts, stage.Ordered())
			}
			a := stage.Map(source.Slice(ints(100)), func(_ context.Context, v int) (int, error) {
				if v%10 == i%10 {
					return 0, errR70
				}
				return v, nil
			}, append(opts, stage.Name("a"))...)
			b := stage.Map(a, double, stage.Name("b"), stage.Workers(2))
			switch i % 4 {
			case 0, 1:
				_, err := sink.Slice(ctx, b)
				var fe *sink.ForwardedError
				if !errors.As(err, &fe) || fe.Count != 10 {
					t.Errorf("run %d: %v", i, err)
				}
				mu.Lock()
				wantFailed += 10
				mu.Unlock()
			case 2:
				_, _, _ = sink.First(ctx, b)
			case 3:
				k := 0
				_ = sink.ForEach(ctx, b, func(context.Context, int) error {
					if k++; k == 20 {
						return errors.New("enough")
					}
					return nil
				})
			}
		}()
	}
	runcheck.NoHang(t, "runs", wg.Wait)
	close(done)
	<-readerDone
	for i, b := range bad {
		if i == 5 {
			break
		}
		t.Error(b)
	}
	for _, c := range st.Snapshot() {
		if c.Received != c.Finished || c.InFlight != 0 || c.Running != 0 {
			t.Errorf("after every run: %+v", c)
		}
	}
	a, _ := st.Get("a")
	if a.Failed < int64(wantFailed) {
		t.Errorf("stage a failed %d, want at least the %d forwarded by the complete runs", a.Failed, wantFailed)
	}
}

// README: "A call's outcome is `error` when its item failed and `ok`
// otherwise: a call cut short by the end of the run (another stage's failure,
// a cancellation) did not fail." Counts.Failed: "calls that ended in an item
// error".
func TestReview70StatsCutShortNotFailed(t *testing.T) {
	var st stage.Stats
	const w = 6
	started := newR70gate(w - 1)
	s := stage.Map(source.Slice(ints(w)), func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			<-started.Wait()
			return 0, errR70
		}
		started.Arrive()
		<-ctx.Done()
		return 0, fmt.Errorf("gave up: %w", ctx.Err())
	}, stage.Name("cut"), stage.Workers(w), stage.Buffer(1))
	var err error
	runcheck.Run(t, "slice", func() { _, err = sink.Slice(stage.Observe(context.Background(), &st), s) })
	if !errors.Is(err, errR70) {
		t.Fatalf("err %v", err)
	}
	c, _ := st.Get("cut")
	if c.Received != w || c.Finished != w || c.Failed != 1 {
		t.Errorf("%+v; want %d received and finished, 1 failed (cut-short calls did not fail)", c, w)
	}
}

// SourceError: "reports that a source failed to produce its next item" — not
// an item error, so no stage counts it as failed; the items before it went
// through and were counted.
func TestReview70StatsSourceErrorNotAnItemFailure(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var st stage.Stats
			k := 0
			src := source.Func(func(context.Context) (int, error) {
				if k++; k > 9 {
					return 0, errors.New("source broke")
				}
				return k, nil
			})
			s := stage.Map(src, double, m.opts(stage.Name("m"))...)
			got, err := sink.Slice(stage.Observe(context.Background(), &st), s)
			var se *stage.SourceError
			if !errors.As(err, &se) || len(got) != 9 {
				t.Fatalf("%d values, err %v; want 9 and a *SourceError", len(got), err)
			}
			c, _ := st.Get("m")
			if c.Received != 9 || c.Finished != 9 || c.Failed != 0 {
				t.Errorf("%+v; want 9 received and finished, none failed", c)
			}
		})
	}
}

// Stats "is an Observer": used by hand, its watcher counts what it is told
// (Failed counts an *Error, not a cut-short call's error).
func TestReview70StatsByHand(t *testing.T) {
	var st stage.Stats
	w := st.Stage(stage.Info{Name: "x", Kind: "map", Workers: 2, Total: 3})
	w.Received()
	w.Received()
	w.Received()
	c, ok := st.Get("x")
	if !ok || c.Received != 3 || c.InFlight != 3 || c.Running != 1 || c.Total != 3 || c.Workers != 2 {
		t.Errorf("after 3 Received: %+v", c)
	}
	w.Finished(2*time.Millisecond, nil)
	w.Finished(3*time.Millisecond, &stage.Error{Stage: "x", Err: errR70, Attempts: 1})
	w.Finished(4*time.Millisecond, fmt.Errorf("cut short: %w", context.Canceled))
	w.Closed()
	c, _ = st.Get("x")
	if c.Received != 3 || c.Finished != 3 || c.Failed != 1 || c.InFlight != 0 || c.Running != 0 || c.Latency != 9*time.Millisecond || c.MeanLatency() != 3*time.Millisecond {
		t.Errorf("after the calls: %+v", c)
	}
}
