package prom_test

// Adversarial tests of the Prometheus observer, written from its
// documentation (and stage's Observer/Watcher/Info). Real registry, real
// runs; gates and channels order things, durations are watchdogs only.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const rvWatchdog = 30 * time.Second

const (
	mReceived = "sluice_stage_received_total"
	mFinished = "sluice_stage_finished_total"
	mInFlight = "sluice_stage_in_flight"
	mDuration = "sluice_stage_duration_seconds"
)

// rvSeries is one gathered series.
type rvSeries struct {
	metric, stage, kind, outcome string
	labels                       []string // label names, sorted as gathered
	typ                          string   // COUNTER, GAUGE, HISTOGRAM
	value                        float64  // counter, gauge, histogram sample count
	sum                          float64  // histogram sample sum
}

func rvGather(t testing.TB, g prometheus.Gatherer) []rvSeries {
	t.Helper()
	all, err := rvTryGather(g)
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return all
}

// rvTryGather is rvGather for goroutines other than the test's.
func rvTryGather(g prometheus.Gatherer) ([]rvSeries, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var out []rvSeries
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := rvSeries{metric: mf.GetName(), typ: mf.GetType().String()}
			for _, l := range m.GetLabel() {
				s.labels = append(s.labels, l.GetName())
				switch l.GetName() {
				case "stage":
					s.stage = l.GetValue()
				case "kind":
					s.kind = l.GetValue()
				case "outcome":
					s.outcome = l.GetValue()
				}
			}
			switch {
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Histogram != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
				s.sum = m.GetHistogram().GetSampleSum()
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// rvGet returns the series of metric for stage (and outcome, for finished),
// and whether it exists.
func rvGet(all []rvSeries, metric, stageName, outcome string) (rvSeries, bool) {
	for _, s := range all {
		if s.metric == metric && s.stage == stageName && s.outcome == outcome {
			return s, true
		}
	}
	return rvSeries{}, false
}

func rvVal(all []rvSeries, metric, stageName, outcome string) float64 {
	s, _ := rvGet(all, metric, stageName, outcome)
	return s.value
}

// rvRead reads the four metrics of g for metricstest.
func rvRead(g prometheus.Gatherer) metricstest.Read {
	names := map[string]metricstest.Metric{mReceived: metricstest.Received, mFinished: metricstest.Finished, mInFlight: metricstest.InFlight, mDuration: metricstest.Duration}
	return func() ([]metricstest.Point, error) {
		all, err := rvTryGather(g)
		var out []metricstest.Point
		for _, s := range all {
			out = append(out, metricstest.Point{Metric: names[s.metric], Stage: s.stage, Kind: s.kind, Outcome: s.outcome, Value: s.value, Sum: s.sum})
		}
		return out, err
	}
}

func rvNew(t *testing.T) (*prometheus.Registry, *prom.Observer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	obs, err := prom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return reg, obs
}

func rvRecv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(rvWatchdog):
		t.Fatalf("gave up after %v waiting for %s", rvWatchdog, what)
		panic("unreachable")
	}
}

// rvTake takes k values from c, or reports false after the watchdog (for
// goroutines other than the test's).
func rvTake[T any](c <-chan T, k int) bool {
	deadline := time.After(rvWatchdog)
	for range k {
		select {
		case <-c:
		case <-deadline:
			return false
		}
	}
	return true
}

func rvInts(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// 1. The four metrics, their types and label names, as documented.
func TestReviewPromMetricShapes(t *testing.T) {
	reg, obs := rvNew(t)
	ctx := stage.Observe(context.Background(), obs)
	s := stage.Map(source.Slice(rvInts(10)), func(_ context.Context, i int) (int, error) {
		if i == 3 {
			return 0, errors.New("three")
		}
		return i, nil
	}, stage.Name("m"), stage.OnError(stage.Forward))
	if _, err := sink.Count(ctx, s); err == nil {
		t.Fatal("want the forwarded error")
	}
	want := map[string]struct {
		typ    string
		labels []string
	}{
		mReceived: {"COUNTER", []string{"kind", "stage"}},
		mFinished: {"COUNTER", []string{"kind", "outcome", "stage"}},
		mInFlight: {"GAUGE", []string{"kind", "stage"}},
		mDuration: {"HISTOGRAM", []string{"kind", "stage"}},
	}
	seen := map[string]int{}
	for _, s := range rvGather(t, reg) {
		w, ok := want[s.metric]
		if !ok {
			t.Errorf("undocumented metric %s", s.metric)
			continue
		}
		seen[s.metric]++
		if s.typ != w.typ || fmt.Sprint(s.labels) != fmt.Sprint(w.labels) {
			t.Errorf("%s: type %v labels %v, want %v %v", s.metric, s.typ, s.labels, w.typ, w.labels)
		}
		if s.stage != "m" || s.kind != "map" {
			t.Errorf("%s: stage %q kind %q, want m, map", s.metric, s.stage, s.kind)
		}
		if s.metric == mFinished && s.outcome != "ok" && s.outcome != "error" {
			t.Errorf("%s: outcome %q", s.metric, s.outcome)
		}
	}
	for m := range want {
		if seen[m] == 0 {
			t.Errorf("no %s series after a run", m)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Logf("promlint (not a documented promise): %v %v", problems, err)
	}
}

// 2-4: the scenarios every adapter runs (see metricstest).
func TestReviewPromInFlightAndSecondsDuringARun(t *testing.T) {
	reg, obs := rvNew(t)
	metricstest.InFlightAndSeconds(t, obs, rvRead(reg))
}

func TestReviewPromDurationCoversAllAttempts(t *testing.T) {
	reg, obs := rvNew(t)
	metricstest.DurationCoversAllAttempts(t, obs, rvRead(reg))
}

func TestReviewPromOutcomesAndKinds(t *testing.T) {
	reg, obs := rvNew(t)
	metricstest.OutcomesAndKinds(t, obs, rvRead(reg))
}

var errReview = errors.New("review")

// 5. Runs that end early (cancelled while calls wait; a FailFast error while
// others are in flight): every received call is finished in some outcome,
// nothing stays in flight, every call's duration is counted.
func TestReviewPromEarlyEndLeavesNothingInFlight(t *testing.T) {
	for _, how := range []string{"cancel", "failfast"} {
		t.Run(how, func(t *testing.T) {
			reg, obs := rvNew(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const workers = 4
			entered := make(chan int, 100)
			s := stage.Map(source.Slice(rvInts(100)), func(ctx context.Context, i int) (int, error) {
				entered <- i
				if how == "failfast" && i == 0 {
					if !rvTake(entered, workers) { // its own entry and the 3 others': all in their calls
						return 0, errors.New("watchdog: the calls did not come")
					}
					return 0, errReview
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Name("w"), stage.Workers(workers), stage.Buffer(1))
			s2 := stage.Map(s, func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name("after"))
			errc := make(chan error, 1)
			go func() {
				_, err := sink.Count(stage.Observe(ctx, obs), s2)
				errc <- err
			}()
			if how == "cancel" {
				for k := range workers {
					rvRecv(t, fmt.Sprintf("call %d", k), entered)
				}
				cancel()
			}
			err := rvRecv(t, "the run", errc)
			if err == nil {
				t.Fatal("the run ended without an error")
			}
			all := rvGather(t, reg)
			rec := rvVal(all, mReceived, "w", "")
			fin := rvVal(all, mFinished, "w", "ok") + rvVal(all, mFinished, "w", "error")
			if rec < workers || fin != rec || rvVal(all, mInFlight, "w", "") != 0 || rvVal(all, mDuration, "w", "") != rec {
				t.Fatalf("after the run (%v): received %v, finished %v (ok %v, error %v), in flight %v, durations %v",
					err, rec, fin, rvVal(all, mFinished, "w", "ok"), rvVal(all, mFinished, "w", "error"),
					rvVal(all, mInFlight, "w", ""), rvVal(all, mDuration, "w", ""))
			}
			if how == "failfast" && rvVal(all, mFinished, "w", "error") < 1 {
				t.Fatal("the failing call is not counted as an error")
			}
			if rvVal(all, mInFlight, "after", "") != 0 {
				t.Fatal("a later stage left calls in flight")
			}
		})
	}
}

// 5b. A call that a run's end cut short did not fail: a stage whose
// function never fails, whose calls are in flight when the sink's callback
// fails (or when the caller cancels), counts no "error" outcome, as the
// library's own Stats (Failed: "calls that ended in an item error") and
// Logger ("a call ended by the run's cancellation is not a failure") see
// it; and the outcome of such a call does not depend on what ended the run.
func TestReviewPromCutShortCallsAreNotErrors(t *testing.T) {
	for _, how := range []string{"sink error", "cancel", "failfast upstream", "failfast upstream, returns the cause"} {
		t.Run(how, func(t *testing.T) {
			reg, obs := rvNew(t)
			var stats stage.Stats
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx = stage.Observe(stage.Observe(ctx, obs), &stats)
			entered := make(chan int, 100)
			in := stage.Map(source.Slice(rvInts(100)), func(_ context.Context, i int) (int, error) {
				if strings.HasPrefix(how, "failfast upstream") && i == 2 {
					if !rvTake(entered, 2) { // no t.Fatal in a stage's goroutine
						return 0, errors.New("watchdog: the calls did not come")
					}
					return 0, errReview // FailFast: the run's cause is this *stage.Error
				}
				return i, nil
			}, stage.Name("upstream"), stage.Workers(1), stage.Buffer(1))
			s := stage.Map(in, func(ctx context.Context, i int) (int, error) {
				if i == 0 && !strings.HasPrefix(how, "failfast upstream") {
					return 0, nil
				}
				entered <- i
				<-ctx.Done() // cut short by the run's end
				if strings.HasSuffix(how, "returns the cause") {
					return 0, context.Cause(ctx) // the idiom: the reason the run ended
				}
				return 0, ctx.Err()
			}, stage.Name("innocent"), stage.Workers(2), stage.Buffer(1))
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				rvRecv(t, "a call in flight", entered)
				rvRecv(t, "a second call in flight", entered)
				if how == "cancel" {
					cancel()
					return nil
				}
				return errReview
			})
			if err == nil {
				t.Fatal("the run ended without an error")
			}
			c, _ := stats.Get("innocent")
			all := rvGather(t, reg)
			if rec := rvVal(all, mReceived, "innocent", ""); rec < 2 || rvVal(all, mFinished, "innocent", "ok")+rvVal(all, mFinished, "innocent", "error") != rec {
				t.Fatalf("innocent stage: received %v, finished %v + %v: want every call (at least the 2 held) finished", rec,
					rvVal(all, mFinished, "innocent", "ok"), rvVal(all, mFinished, "innocent", "error"))
			}
			if got := rvVal(all, mFinished, "innocent", "error"); got != float64(c.Failed) || got != 0 {
				t.Fatalf("innocent stage: %v calls with outcome error (ok %v, received %v); Stats counts %d failed of %d finished; the stage's function never failed (run: %v)",
					got, rvVal(all, mFinished, "innocent", "ok"), rvVal(all, mReceived, "innocent", ""), c.Failed, c.Finished, err)
			}
		})
	}
}

// 6: a scenario every adapter runs (see metricstest).
func TestReviewPromConcurrentRunsShareTheObserver(t *testing.T) {
	reg, obs := rvNew(t)
	metricstest.ConcurrentRunsShareTheObserver(t, obs, rvRead(reg))
}

// 7. Stage names that need escaping in the exposition format keep their
// exact value as a label; a name that is not valid UTF-8 (which a
// Prometheus label value cannot hold) does not take the run down.
func TestReviewPromAwkwardStageNames(t *testing.T) {
	reg, obs := rvNew(t)
	ctx := stage.Observe(context.Background(), obs)
	names := []string{"a\"b\\c\nd", `x{stage="y"}`, "é ünïcödé 段", " ", "sluice_stage_in_flight"}
	for _, name := range names {
		s := stage.Map(source.Slice(rvInts(3)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name(name))
		if _, err := sink.Count(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	all := rvGather(t, reg)
	for _, name := range names {
		if got := rvVal(all, mReceived, name, ""); got != 3 {
			t.Errorf("stage %q: received %v, want 3", name, got)
		}
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 5*len(names) {
		t.Errorf("%d series (%v), want %d", n, err, 5*len(names))
	}

	t.Run("invalid UTF-8", func(t *testing.T) {
		s := stage.Map(source.Slice(rvInts(3)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name("bad\xff"))
		var got int
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("the run panicked: %v", p)
				}
			}()
			got, err = sink.Count(ctx, s)
		}()
		if err != nil || got != 3 {
			t.Fatalf("the run: %d items, %v", got, err)
		}
		if _, err := reg.Gather(); err != nil {
			t.Fatalf("the registry no longer gathers: %v", err)
		}
	})
}

// 8. New on a registry that already holds one of the names (another
// observer) returns the registry's error, and the observer that holds the
// metrics goes on recording into them.
func TestReviewPromSecondNewLeavesTheFirstWorking(t *testing.T) {
	reg, obs := rvNew(t)
	_, err := prom.New(reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("second New: %v, want AlreadyRegisteredError", err)
	}
	s := stage.Map(source.Slice(rvInts(5)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name("s"))
	if _, err := sink.Count(stage.Observe(context.Background(), obs), s); err != nil {
		t.Fatal(err)
	}
	if got := rvVal(rvGather(t, reg), mReceived, "s", ""); got != 5 {
		t.Fatalf("received %v, want 5", got)
	}
}
