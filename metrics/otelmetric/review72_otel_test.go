package otelmetric_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r72Point is one collected data point: its instrument's name and unit,
// its value (a histogram's count), what data it is ("sum", "histogram" for
// a float64 one, "histogram-int", else the data's type), a sum's
// monotonicity and a histogram's bounds.
type r72Point struct {
	metric    string
	unit      string
	value     float64
	kind      string
	bounds    []float64
	monotonic bool
}

func r72Collect(t *testing.T, reader sdkmetric.Reader) []r72Point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	var out []r72Point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			p := r72Point{metric: m.Name, unit: m.Unit}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					p.value, p.kind, p.monotonic = float64(dp.Value), "sum", d.IsMonotonic
					out = append(out, p)
				}
			case metricdata.Sum[float64]:
				for _, dp := range d.DataPoints {
					p.value, p.kind, p.monotonic = dp.Value, "sum", d.IsMonotonic
					out = append(out, p)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					p.value, p.kind, p.bounds = float64(dp.Count), "histogram", dp.Bounds
					out = append(out, p)
				}
			case metricdata.Histogram[int64]:
				for _, dp := range d.DataPoints {
					p.value, p.kind, p.bounds = float64(dp.Count), "histogram-int", dp.Bounds
					out = append(out, p)
				}
			default:
				p.kind = fmt.Sprintf("%T", m.Data)
				out = append(out, p)
			}
		}
	}
	return out
}

// "sluice.stage.received items taken for a call {sluice.stage, sluice.kind}
// sluice.stage.finished calls ended {..., sluice.outcome = ok | error}
// sluice.stage.in_flight items taken and not finished {sluice.stage, sluice.kind}
// sluice.stage.duration call durations, in seconds {sluice.stage, sluice.kind}"
// and "an up-down counter of items in flight"; "The duration histogram's
// buckets are in seconds, from 1 µs to about 4 s, each bound 4 times the one
// before (as the prom package's ...)".
func TestReview72InstrumentsAttributesBuckets(t *testing.T) {
	reader, _, env := newMeterEnv(t)
	metricstest.R72NamesCounts(t, env)
	metricstest.R72SeriesForm(t, metricstest.MustRead(t, env.Read), otelLabels)
	seen := map[string]bool{}
	for _, p := range r72Collect(t, reader) {
		switch p.metric {
		case "sluice.stage.received", "sluice.stage.finished":
			if p.kind != "sum" || !p.monotonic {
				t.Errorf("%s: %s monotonic=%v, want a counter", p.metric, p.kind, p.monotonic)
			}
		case "sluice.stage.in_flight":
			if p.kind != "sum" || p.monotonic {
				t.Errorf("%s: %s monotonic=%v, want an up-down counter", p.metric, p.kind, p.monotonic)
			}
		case "sluice.stage.duration":
			if p.kind != "histogram" {
				t.Errorf("%s: %s, want a float64 histogram (seconds)", p.metric, p.kind)
			}
			if p.unit != "s" {
				t.Errorf("%s unit %q, want \"s\" (in seconds)", p.metric, p.unit)
			}
		default:
			t.Errorf("undocumented instrument %s (%s)", p.metric, p.kind)
			continue
		}
		seen[p.metric] = true
	}
	for _, m := range []string{"sluice.stage.received", "sluice.stage.finished", "sluice.stage.in_flight", "sluice.stage.duration"} {
		if !seen[m] {
			t.Errorf("instrument %s missing", m)
		}
	}
}

// "(as the prom package's; a View can change them)".
func TestReview72ViewChangesBuckets(t *testing.T) {
	bounds := []float64{0.5, 1, 2}
	view := sdkmetric.NewView(sdkmetric.Instrument{Name: "sluice.stage.duration"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: bounds}})
	reader, _, env := newMeterEnv(t, sdkmetric.WithView(view))
	ctx := stage.Observe(context.Background(), env.Obs)
	s := stage.Map(source.Slice(metricstest.Ints(5)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("v"))
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	for _, p := range r72Collect(t, reader) {
		if p.metric == "sluice.stage.duration" {
			if fmt.Sprint(p.bounds) != fmt.Sprint(bounds) || p.value != 5 {
				t.Errorf("with a View: bounds %v count %v, want %v and 5", p.bounds, p.value, bounds)
			}
			return
		}
	}
	t.Fatal("no duration")
}

// "A call's outcome is error when its item failed (the stage's error policy
// handles it) and ok otherwise: a call cut short by the end of the run
// (another stage's failure, a cancellation) did not fail." The peers return
// an error of their own once the run has ended: still cut short (stage.Watcher:
// "whatever error the function returned").
func TestReview72FailFastCountsOnlyTheFailure(t *testing.T) {
	metricstest.R72FailFastCountsOnlyTheFailure(t, newEnv)
}

// Same promise for sink.First and the caller's cancellation.
func TestReview72EarlyExitsAreNotFailures(t *testing.T) {
	metricstest.R72EarlyExitsAreNotFailures(t, newEnv, false)
}

// "sluice.stage.duration call durations" — one per call, all attempts: a
// retried item is one finished call; a KeyBy panic is a failed item.
func TestReview72RetriesAndKeyPanicsCountOnce(t *testing.T) {
	metricstest.R72RetriesAndKeyPanicsCountOnce(t, newEnv(t))
}

// "A stage name (or kind) that is not valid UTF-8, which OTLP's string
// attributes cannot carry, is recorded with each run of invalid bytes
// replaced by one U+FFFD, as in package prom (so names that differ only there
// share a series)."
func TestReview72InvalidUTF8NameAndKind(t *testing.T) {
	metricstest.R72InvalidUTF8Names(t, newEnv(t))
	metricstest.R72InvalidUTF8Kind(t, newEnv(t))
}

// Hostile valid names, the same name twice in a run and across runs:
// "Attributes are per stage only (sluice.stage, sluice.kind, and the outcome
// of a call)".
func TestReview72HostileAndSharedNames(t *testing.T) {
	metricstest.R72HostileValidNames(t, newEnv(t))
	metricstest.R72SameNameShares(t, newEnv(t))
}

// "the same meter may serve several observers, which then add into the same
// series"; and many runs at once through them.
func TestReview72SharedMeterConcurrentRuns(t *testing.T) {
	_, meter, env := newMeterEnv(t)
	var observers []*otelmetric.Observer
	for range 3 {
		o, err := otelmetric.New(meter)
		if err != nil {
			t.Fatalf("New on a meter that already serves an observer: %v", err)
		}
		observers = append(observers, o)
	}
	metricstest.R72ConcurrentRuns(t, env.Read, 150, func(i int) (context.Context, int) {
		ctx := stage.Observe(context.Background(), observers[i%3])
		if i%4 == 0 { // two observers on this run: it counts twice
			return stage.Observe(ctx, observers[(i+1)%3]), 2
		}
		return ctx, 1
	})
	points := 0
	for _, p := range metricstest.MustRead(t, env.Read) {
		if p.Stage == "shared" && p.Metric == metricstest.Received {
			points++
		}
	}
	if points != 1 {
		t.Errorf("%d received points for one stage, want 1: observers of one meter add into the same series", points)
	}
}

// r72ErrMeter fails to create every synchronous instrument, each with its own error.
type r72ErrMeter struct {
	noop.Meter
	fail func(name string) bool
	mu   sync.Mutex
	errs map[string]error
}

func (m *r72ErrMeter) err(name string) error {
	if !m.fail(name) {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := fmt.Errorf("cannot create %s", name)
	m.errs[name] = e
	return e
}

func (m *r72ErrMeter) Int64Counter(n string, o ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	i, _ := m.Meter.Int64Counter(n, o...)
	return i, m.err(n)
}
func (m *r72ErrMeter) Int64UpDownCounter(n string, o ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	i, _ := m.Meter.Int64UpDownCounter(n, o...)
	return i, m.err(n)
}
func (m *r72ErrMeter) Int64Histogram(n string, o ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	i, _ := m.Meter.Int64Histogram(n, o...)
	return i, m.err(n)
}
func (m *r72ErrMeter) Float64Counter(n string, o ...metric.Float64CounterOption) (metric.Float64Counter, error) {
	i, _ := m.Meter.Float64Counter(n, o...)
	return i, m.err(n)
}
func (m *r72ErrMeter) Float64UpDownCounter(n string, o ...metric.Float64UpDownCounterOption) (metric.Float64UpDownCounter, error) {
	i, _ := m.Meter.Float64UpDownCounter(n, o...)
	return i, m.err(n)
}
func (m *r72ErrMeter) Float64Histogram(n string, o ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	i, _ := m.Meter.Float64Histogram(n, o...)
	return i, m.err(n)
}

// "New returns the meter's errors, joined, if it could not create an
// instrument".
func TestReview72MeterErrorsJoined(t *testing.T) {
	t.Run("all", func(t *testing.T) {
		m := &r72ErrMeter{fail: func(string) bool { return true }, errs: map[string]error{}}
		o, err := otelmetric.New(m)
		if err == nil {
			t.Fatal("New succeeded although every instrument failed")
		}
		if o != nil { // "New returns the meter's errors, joined, and no observer"
			t.Fatalf("New returned an observer with its error: %v", o)
		}
		for _, name := range []string{"sluice.stage.received", "sluice.stage.finished", "sluice.stage.in_flight", "sluice.stage.duration"} {
			e, ok := m.errs[name]
			if !ok {
				t.Errorf("instrument %s was not created through the meter's synchronous instruments", name)
				continue
			}
			if !errors.Is(err, e) {
				t.Errorf("New's error %q does not hold %q", err, e)
			}
		}
	})
	for _, only := range []string{"sluice.stage.received", "sluice.stage.finished", "sluice.stage.in_flight", "sluice.stage.duration"} {
		t.Run(only, func(t *testing.T) {
			m := &r72ErrMeter{fail: func(n string) bool { return n == only }, errs: map[string]error{}}
			_, err := otelmetric.New(m)
			e := m.errs[only]
			if e == nil {
				t.Skipf("%s not created as a synchronous instrument", only)
			}
			if !errors.Is(err, e) {
				t.Errorf("New = %v, want the error of %s", err, only)
			}
		})
	}
}

// r72PanicMeter's instruments panic when they record.
type r72PanicMeter struct{ noop.Meter }

type r72PC struct{ noop.Int64Counter }

func (r72PC) Add(context.Context, int64, ...metric.AddOption) { panic("backend down") }

type r72PU struct{ noop.Int64UpDownCounter }

func (r72PU) Add(context.Context, int64, ...metric.AddOption) { panic("backend down") }

type r72PH struct{ noop.Float64Histogram }

func (r72PH) Record(context.Context, float64, ...metric.RecordOption) { panic("backend down") }

type r72PFC struct{ noop.Float64Counter }

func (r72PFC) Add(context.Context, float64, ...metric.AddOption) { panic("backend down") }

type r72PIH struct{ noop.Int64Histogram }

func (r72PIH) Record(context.Context, int64, ...metric.RecordOption) { panic("backend down") }

func (r72PanicMeter) Int64Counter(string, ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return r72PC{}, nil
}
func (r72PanicMeter) Int64UpDownCounter(string, ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	return r72PU{}, nil
}
func (r72PanicMeter) Float64Histogram(string, ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return r72PH{}, nil
}
func (r72PanicMeter) Float64Counter(string, ...metric.Float64CounterOption) (metric.Float64Counter, error) {
	return r72PFC{}, nil
}
func (r72PanicMeter) Int64Histogram(string, ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	return r72PIH{}, nil
}

// stage.Watcher: "An observer is user code: a panic in Stage or in a
// Watcher's method fails the run, and the process goes on. The sink returns an
// error wrapping a *PanicError". With the adapter over a backend whose
// instruments panic: the process survives, nothing is left running, and the
// run fails with a *PanicError (in a child process: it could crash).
func TestReview72PanickingBackend(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		obs, err := otelmetric.New(r72PanicMeter{})
		if err != nil {
			t.Fatal(err)
		}
		ctx := stage.Observe(context.Background(), obs)
		s := stage.Map(source.Slice(metricstest.Ints(50)), func(_ context.Context, v int) (int, error) { return v, nil },
			stage.Name("p"), stage.Workers(4))
		var runErr error
		runcheck.Run(t, "panicking backend", func() { _, runErr = sink.Count(ctx, s) })
		var pe *stage.PanicError
		if !errors.As(runErr, &pe) {
			t.Fatalf("sink = %v, want an error wrapping *stage.PanicError", runErr)
		}
	})
}

// stage.Observer: Stage "returns what watches that stage in that run"; Watcher
// Finished's err: nil success, an *Error failure, a context.Canceled error
// cut short (outcome ok: "ok otherwise").
func TestReview72WatcherDirect(t *testing.T) {
	metricstest.R72WatcherDirect(t, newEnv(t))
}

// "sluice.stage.in_flight items taken and not finished", while the run goes on.
func TestReview72InFlightDuringRun(t *testing.T) {
	metricstest.R72InFlightDuringRun(t, newEnv(t))
}

// "A call's outcome is error when its item failed (the stage's error policy
// handles it)": an item whose function returns a context error of its own
// while the run goes on (context.Canceled, its per-call Timeout) failed.
func TestReview72ContextErrorsOfItemsAreFailures(t *testing.T) {
	metricstest.R72ContextErrorsOfItemsAreFailures(t, newEnv(t))
}

// Budget(n, h): the n+1 failed items all failed; Handle with an error: failed.
func TestReview72BudgetAndHandleFailures(t *testing.T) {
	metricstest.R72BudgetAndHandleFailures(t, newEnv(t))
}
