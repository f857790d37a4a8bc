package otelmetric_test

// Adversarial tests of the OpenTelemetry observer, written from its
// documentation (and stage's Observer/Watcher/Info). A real SDK meter
// provider with a manual reader, real runs; gates and channels order
// things, durations are watchdogs only.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const rvWatchdog = 30 * time.Second

const (
	mReceived = "sluice.stage.received"
	mFinished = "sluice.stage.finished"
	mInFlight = "sluice.stage.in_flight"
	mDuration = "sluice.stage.duration"
)

// rvPoint is one collected data point.
type rvPoint struct {
	metric, unit         string
	shape                string // "counter" (monotonic sum), "updown" (non-monotonic sum), "histogram"
	cumulative           bool
	stage, kind, outcome string
	keys                 []string // attribute keys, sorted
	value                float64  // sum value, or histogram count
	sum                  float64  // histogram sum
}

func rvAttrs(p *rvPoint, set attribute.Set) {
	for _, kv := range set.ToSlice() {
		p.keys = append(p.keys, string(kv.Key))
		switch kv.Key {
		case "sluice.stage":
			p.stage = kv.Value.AsString()
		case "sluice.kind":
			p.kind = kv.Value.AsString()
		case "sluice.outcome":
			p.outcome = kv.Value.AsString()
		}
	}
	sort.Strings(p.keys)
}

func rvSum[N int64 | float64](m metricdata.Metrics, d metricdata.Sum[N]) []rvPoint {
	var out []rvPoint
	for _, dp := range d.DataPoints {
		p := rvPoint{metric: m.Name, unit: m.Unit, shape: "updown", cumulative: d.Temporality == metricdata.CumulativeTemporality, value: float64(dp.Value)}
		if d.IsMonotonic {
			p.shape = "counter"
		}
		rvAttrs(&p, dp.Attributes)
		out = append(out, p)
	}
	return out
}

func rvHist[N int64 | float64](m metricdata.Metrics, d metricdata.Histogram[N]) []rvPoint {
	var out []rvPoint
	for _, dp := range d.DataPoints {
		p := rvPoint{metric: m.Name, unit: m.Unit, shape: "histogram", cumulative: d.Temporality == metricdata.CumulativeTemporality,
			value: float64(dp.Count), sum: float64(dp.Sum)}
		rvAttrs(&p, dp.Attributes)
		out = append(out, p)
	}
	return out
}

// rvTryCollect collects every data point (usable from any goroutine).
func rvTryCollect(r *sdkmetric.ManualReader) ([]rvPoint, error) {
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		return nil, err
	}
	var out []rvPoint
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				out = append(out, rvSum(m, d)...)
			case metricdata.Sum[float64]:
				out = append(out, rvSum(m, d)...)
			case metricdata.Histogram[float64]:
				out = append(out, rvHist(m, d)...)
			case metricdata.Histogram[int64]:
				out = append(out, rvHist(m, d)...)
			default:
				return nil, fmt.Errorf("%s: unexpected aggregation %T", m.Name, m.Data)
			}
		}
	}
	return out, nil
}

func rvCollect(t testing.TB, r *sdkmetric.ManualReader) []rvPoint {
	t.Helper()
	all, err := rvTryCollect(r)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func rvGet(all []rvPoint, metric, stageName, outcome string) (rvPoint, bool) {
	for _, p := range all {
		if p.metric == metric && p.stage == stageName && p.outcome == outcome {
			return p, true
		}
	}
	return rvPoint{}, false
}

func rvVal(all []rvPoint, metric, stageName, outcome string) float64 {
	p, _ := rvGet(all, metric, stageName, outcome)
	return p.value
}

// rvRead reads the four instruments of r for metricstest.
func rvRead(r *sdkmetric.ManualReader) metricstest.Read {
	names := map[string]metricstest.Metric{mReceived: metricstest.Received, mFinished: metricstest.Finished, mInFlight: metricstest.InFlight, mDuration: metricstest.Duration}
	return func() ([]metricstest.Point, error) {
		all, err := rvTryCollect(r)
		var out []metricstest.Point
		for _, p := range all {
			out = append(out, metricstest.Point{Metric: names[p.metric], Stage: p.stage, Kind: p.kind, Outcome: p.outcome, Value: p.value, Sum: p.sum})
		}
		return out, err
	}
}

func rvNew(t *testing.T) (*sdkmetric.ManualReader, *otelmetric.Observer) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	obs, err := otelmetric.New(provider.Meter("review"))
	if err != nil {
		t.Fatal(err)
	}
	return reader, obs
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

func rvInts(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// 1. The four instruments, their kinds (counter, up-down counter,
// histogram), attribute keys and unit, as documented.
func TestReviewOtelInstrumentShapes(t *testing.T) {
	reader, obs := rvNew(t)
	s := stage.Map(source.Slice(rvInts(10)), func(_ context.Context, i int) (int, error) {
		if i == 3 {
			return 0, errors.New("three")
		}
		return i, nil
	}, stage.Name("m"), stage.OnError(stage.Forward))
	if _, err := sink.Count(stage.Observe(context.Background(), obs), s); err == nil {
		t.Fatal("want the forwarded error")
	}
	want := map[string]struct {
		shape string
		keys  []string
	}{
		mReceived: {"counter", []string{"sluice.kind", "sluice.stage"}},
		mFinished: {"counter", []string{"sluice.kind", "sluice.outcome", "sluice.stage"}},
		mInFlight: {"updown", []string{"sluice.kind", "sluice.stage"}},
		mDuration: {"histogram", []string{"sluice.kind", "sluice.stage"}},
	}
	seen := map[string]int{}
	for _, p := range rvCollect(t, reader) {
		w, ok := want[p.metric]
		if !ok {
			t.Errorf("undocumented instrument %s", p.metric)
			continue
		}
		seen[p.metric]++
		if p.shape != w.shape || fmt.Sprint(p.keys) != fmt.Sprint(w.keys) || !p.cumulative {
			t.Errorf("%s: %s (cumulative %v) with %v, want %s with %v", p.metric, p.shape, p.cumulative, p.keys, w.shape, w.keys)
		}
		if p.stage != "m" || p.kind != "map" {
			t.Errorf("%s: stage %q kind %q, want m, map", p.metric, p.stage, p.kind)
		}
		if p.metric == mFinished && p.outcome != "ok" && p.outcome != "error" {
			t.Errorf("%s: outcome %q", p.metric, p.outcome)
		}
		if p.metric == mDuration && p.unit != "s" {
			t.Errorf("%s: unit %q, want \"s\" (durations in seconds)", p.metric, p.unit)
		}
	}
	for m := range want {
		if seen[m] == 0 {
			t.Errorf("no %s point after a run", m)
		}
	}
	all := rvCollect(t, reader)
	if rvVal(all, mReceived, "m", "") != 10 || rvVal(all, mFinished, "m", "ok") != 9 || rvVal(all, mFinished, "m", "error") != 1 {
		t.Errorf("values: %+v", all)
	}
}

// 2-4: the scenarios every adapter runs (see metricstest).
func TestReviewOtelInFlightAndSecondsDuringARun(t *testing.T) {
	reader, obs := rvNew(t)
	metricstest.InFlightAndSeconds(t, obs, rvRead(reader))
}

func TestReviewOtelDurationCoversAllAttempts(t *testing.T) {
	reader, obs := rvNew(t)
	metricstest.DurationCoversAllAttempts(t, obs, rvRead(reader))
}

func TestReviewOtelOutcomesAndKinds(t *testing.T) {
	reader, obs := rvNew(t)
	metricstest.OutcomesAndKinds(t, obs, rvRead(reader))
}

var errReview = errors.New("review")

// 5. Runs that end early (cancelled while calls wait; a FailFast error
// while others are in flight): every received call is finished, nothing
// stays in flight, every duration is counted; a call cut short by the run's
// end (the sink failed, the caller cancelled, another stage failed) is not
// an "error" of its stage, as Stats sees it.
func TestReviewOtelEarlyEndLeavesNothingInFlight(t *testing.T) {
	for _, how := range []string{"cancel", "failfast", "sink error", "failfast upstream", "failfast upstream, returns the cause"} {
		t.Run(how, func(t *testing.T) {
			reader, obs := rvNew(t)
			var stats stage.Stats
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx = stage.Observe(stage.Observe(ctx, obs), &stats)
			const workers = 4
			entered := make(chan int, 100)
			// waitCalls takes k entries (from a stage's or the sink's
			// goroutine: no t.Fatal there; false after the watchdog).
			waitCalls := func(k int) bool {
				deadline := time.After(rvWatchdog)
				for range k {
					select {
					case <-entered:
					case <-deadline:
						return false
					}
				}
				return true
			}
			errWatchdog := errors.New("watchdog: the calls did not come")
			in := stage.Map(source.Slice(rvInts(100)), func(_ context.Context, i int) (int, error) {
				if strings.HasPrefix(how, "failfast upstream") && i == workers {
					if !waitCalls(workers) {
						return 0, errWatchdog
					}
					return 0, errReview // FailFast: the run's cause is this *stage.Error
				}
				return i, nil
			}, stage.Name("upstream"), stage.Workers(1), stage.Buffer(1))
			s := stage.Map(in, func(ctx context.Context, i int) (int, error) {
				entered <- i
				if i == 0 && how == "failfast" {
					if !waitCalls(workers) { // its own entry and the 3 others': all in their calls
						return 0, errWatchdog
					}
					return 0, errReview
				}
				if i == 0 && how == "sink error" {
					return i, nil
				}
				<-ctx.Done() // cut short by the run's end
				if strings.HasSuffix(how, "returns the cause") {
					return 0, context.Cause(ctx) // the idiom: the reason the run ended
				}
				return 0, ctx.Err()
			}, stage.Name("w"), stage.Workers(workers), stage.Buffer(1))
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, s, func(context.Context, int) error {
					if !waitCalls(workers) { // item 0's entry and 3 calls held
						return errWatchdog
					}
					return errReview
				})
			}()
			if how == "cancel" {
				if !waitCalls(workers) {
					t.Fatal(errWatchdog)
				}
				cancel()
			}
			err := rvRecv(t, "the run", errc)
			if err == nil || errors.Is(err, errWatchdog) {
				t.Fatalf("the run: %v", err)
			}
			all := rvCollect(t, reader)
			rec := rvVal(all, mReceived, "w", "")
			okN, errN := rvVal(all, mFinished, "w", "ok"), rvVal(all, mFinished, "w", "error")
			if rec < workers || okN+errN != rec || rvVal(all, mInFlight, "w", "") != 0 || rvVal(all, mDuration, "w", "") != rec {
				t.Fatalf("after the run (%v): received %v, finished ok %v error %v, in flight %v, durations %v",
					err, rec, okN, errN, rvVal(all, mInFlight, "w", ""), rvVal(all, mDuration, "w", ""))
			}
			c, _ := stats.Get("w")
			if how != "failfast" && errN != 0 {
				t.Fatalf("w: %v calls with outcome error (Stats: %d failed of %d); its function failed none", errN, c.Failed, c.Finished)
			}
			if errN != float64(c.Failed) {
				t.Fatalf("w: %v calls with outcome error, Stats counts %d failed (of %d)", errN, c.Failed, c.Finished)
			}
			if how == "failfast" && errN != 1 {
				t.Fatalf("w: %v errors, want the 1 call that failed", errN)
			}
		})
	}
}

// 6: a scenario every adapter runs (see metricstest).
func TestReviewOtelConcurrentRunsShareTheObserver(t *testing.T) {
	reader, obs := rvNew(t)
	metricstest.ConcurrentRunsShareTheObserver(t, obs, rvRead(reader))
}

// 7. Awkward stage names keep their exact value as the sluice.stage
// attribute (a name that is not valid UTF-8 with U+FFFD for its invalid
// bytes), and each name is its own set of points; an invalid name does not
// take the run down.
func TestReviewOtelAwkwardStageNames(t *testing.T) {
	reader, obs := rvNew(t)
	ctx := stage.Observe(context.Background(), obs)
	names := []string{"a\"b\\c\nd", `x{stage="y"}`, "é ünïcödé 段", " ", "sluice.stage", "bad\xff"}
	for _, name := range names {
		s := stage.Map(source.Slice(rvInts(3)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name(name))
		var got int
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("stage %q: the run panicked: %v", name, p)
				}
			}()
			got, err = sink.Count(ctx, s)
		}()
		if err != nil || got != 3 {
			t.Fatalf("stage %q: %d items, %v", name, got, err)
		}
	}
	all := rvCollect(t, reader)
	for _, name := range names {
		// An invalid name's invalid bytes become U+FFFD (New's doc).
		if got := rvVal(all, mReceived, strings.ToValidUTF8(name, "\uFFFD"), ""); got != 3 {
			t.Errorf("stage %q: received %v, want 3", name, got)
		}
	}
}
