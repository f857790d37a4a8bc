package otelmetric_test

// Adversarial tests of metrics/otelmetric, written from its documentation
// (go doc, example_test.go, README.md) and the core's (stage, sink) only.
//
// The scenarios every adapter shares are in internal/metricstest
// (review7.go); this file runs them and holds the SDK's own promises.

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r7NewEnv is newEnv for the review7 scenarios.
func r7NewEnv(t *testing.T) metricstest.Env7 { return newEnv(t).Env7() }

// r7Collect collects what reader holds.
func r7Collect(reader sdkmetric.Reader) (metricdata.ResourceMetrics, error) {
	var rm metricdata.ResourceMetrics
	err := reader.Collect(context.Background(), &rm)
	return rm, err
}

// ---------------------------------------------------------------------------
// OpenTelemetry-only promises.

// New creates the four documented instruments: received and finished are
// counters (monotonic sums), in_flight an up-down counter (a non-monotonic
// sum), duration a histogram, in seconds; each point carries exactly the
// documented attributes, per stage, never per item.
func TestReview7OtelInstruments(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = provider.Shutdown(context.Background()) }()
	obs, err := otelmetric.New(provider.Meter("review7"))
	if err != nil {
		t.Fatal(err)
	}
	metricstest.RunSquare7(t, obs)
	rm, err := r7Collect(reader)
	if err != nil {
		t.Fatal(err)
	}
	wantKeys := map[string][]attribute.Key{
		mReceived: {"sluice.kind", "sluice.stage"},
		mFinished: {"sluice.kind", "sluice.outcome", "sluice.stage"},
		mInFlight: {"sluice.kind", "sluice.stage"},
		mDuration: {"sluice.kind", "sluice.stage"},
	}
	checkSet := func(name string, set attribute.Set) {
		keys := set.ToSlice()
		want := wantKeys[name]
		if len(keys) != len(want) {
			t.Errorf("%s: attributes %v, want keys %v", name, keys, want)
			return
		}
		for i, kv := range keys { // ToSlice is sorted by key
			if kv.Key != want[i] {
				t.Errorf("%s: attributes %v, want keys %v", name, keys, want)
				return
			}
		}
		if v, _ := set.Value("sluice.stage"); v.AsString() != "square" {
			t.Errorf("%s: sluice.stage=%q", name, v.AsString())
		}
		if v, _ := set.Value("sluice.kind"); v.AsString() != "map" {
			t.Errorf("%s: sluice.kind=%q", name, v.AsString())
		}
		if v, ok := set.Value("sluice.outcome"); ok && v.AsString() != "ok" && v.AsString() != "error" {
			t.Errorf("%s: sluice.outcome=%q", name, v.AsString())
		}
	}
	seen := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if _, ok := wantKeys[m.Name]; !ok {
				t.Errorf("unexpected instrument %q", m.Name)
				continue
			}
			seen[m.Name] = true
			switch m.Name {
			case mReceived, mFinished, mInFlight:
				d, ok := m.Data.(metricdata.Sum[int64])
				if !ok {
					t.Errorf("%s: data %T, want metricdata.Sum[int64]", m.Name, m.Data)
					continue
				}
				if mono := m.Name != mInFlight; d.IsMonotonic != mono {
					t.Errorf("%s: monotonic %v, want %v", m.Name, d.IsMonotonic, mono)
				}
				if d.Temporality != metricdata.CumulativeTemporality {
					t.Errorf("%s: temporality %v", m.Name, d.Temporality)
				}
				for _, dp := range d.DataPoints {
					checkSet(m.Name, dp.Attributes)
				}
			case mDuration:
				if m.Unit != "s" {
					t.Errorf("%s: unit %q, want \"s\" (durations in seconds)", m.Name, m.Unit)
				}
				d, ok := m.Data.(metricdata.Histogram[float64])
				if !ok {
					t.Errorf("%s: data %T, want metricdata.Histogram[float64]", m.Name, m.Data)
					continue
				}
				for _, dp := range d.DataPoints {
					checkSet(m.Name, dp.Attributes)
				}
			}
		}
	}
	for name := range wantKeys {
		if !seen[name] {
			t.Errorf("instrument %s missing after a run", name)
		}
	}
	pts := metricstest.Points7(metricstest.MustRead(t, read(reader)))
	metricstest.CheckSquare7(t, pts)
}

var errR7Meter = errors.New("review7: meter refuses")

// r7FailingMeter is a real SDK meter whose failAt-th instrument creation
// reports an error (with a working instrument, as the API's convention is).
type r7FailingMeter struct {
	metric.Meter
	failAt int
	calls  int
	names  []string
}

func (m *r7FailingMeter) next(name string) error {
	m.calls++
	m.names = append(m.names, name)
	if m.calls == m.failAt {
		return errR7Meter
	}
	return nil
}

func (m *r7FailingMeter) Int64Counter(name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	i, err := m.Meter.Int64Counter(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Int64UpDownCounter(name string, opts ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	i, err := m.Meter.Int64UpDownCounter(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Int64Histogram(name string, opts ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	i, err := m.Meter.Int64Histogram(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Int64Gauge(name string, opts ...metric.Int64GaugeOption) (metric.Int64Gauge, error) {
	i, err := m.Meter.Int64Gauge(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Float64Counter(name string, opts ...metric.Float64CounterOption) (metric.Float64Counter, error) {
	i, err := m.Meter.Float64Counter(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Float64UpDownCounter(name string, opts ...metric.Float64UpDownCounterOption) (metric.Float64UpDownCounter, error) {
	i, err := m.Meter.Float64UpDownCounter(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Float64Histogram(name string, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	i, err := m.Meter.Float64Histogram(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Float64Gauge(name string, opts ...metric.Float64GaugeOption) (metric.Float64Gauge, error) {
	i, err := m.Meter.Float64Gauge(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Int64ObservableCounter(name string, opts ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	i, err := m.Meter.Int64ObservableCounter(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Int64ObservableUpDownCounter(name string, opts ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	i, err := m.Meter.Int64ObservableUpDownCounter(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Int64ObservableGauge(name string, opts ...metric.Int64ObservableGaugeOption) (metric.Int64ObservableGauge, error) {
	i, err := m.Meter.Int64ObservableGauge(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Float64ObservableCounter(name string, opts ...metric.Float64ObservableCounterOption) (metric.Float64ObservableCounter, error) {
	i, err := m.Meter.Float64ObservableCounter(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Float64ObservableUpDownCounter(name string, opts ...metric.Float64ObservableUpDownCounterOption) (metric.Float64ObservableUpDownCounter, error) {
	i, err := m.Meter.Float64ObservableUpDownCounter(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

func (m *r7FailingMeter) Float64ObservableGauge(name string, opts ...metric.Float64ObservableGaugeOption) (metric.Float64ObservableGauge, error) {
	i, err := m.Meter.Float64ObservableGauge(name, opts...)
	if e := m.next(name); e != nil {
		return i, e
	}
	return i, err
}

// New returns the meter's error when an instrument cannot be created
// (errors.Is finds it), whichever instrument it is.
func TestReview7OtelNewReportsMeterError(t *testing.T) {
	failed := 0
	for failAt := 1; failAt <= 16; failAt++ {
		provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		fm := &r7FailingMeter{Meter: provider.Meter("review7"), failAt: failAt}
		_, err := otelmetric.New(fm)
		_ = provider.Shutdown(context.Background())
		if fm.calls < failAt {
			if err != nil {
				t.Errorf("failAt %d: no creation failed, New = %v", failAt, err)
			}
			t.Logf("New created %d instruments: %v", fm.calls, fm.names)
			break
		}
		failed++
		if !errors.Is(err, errR7Meter) {
			t.Errorf("failAt %d (%s): New = %v, want the meter's error", failAt, fm.names[failAt-1], err)
		}
	}
	if failed == 0 {
		t.Fatal("New created no instrument through the meter")
	}
}

// Two observers made on one meter (New twice) is no conflict in
// OpenTelemetry: identical instruments are one, and both observers record
// into the same series, which add up. (Inferred from OpenTelemetry's rules;
// the package documents no error for it.)
func TestReview7OtelNewTwiceOnOneMeter(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = provider.Shutdown(context.Background()) }()
	meter := provider.Meter("review7")
	o1, err := otelmetric.New(meter)
	if err != nil {
		t.Fatal(err)
	}
	o2, err := otelmetric.New(meter)
	if err != nil {
		t.Fatalf("second New on one meter: %v", err)
	}
	s := stage.Map(source.Slice(metricstest.Ints(5)), metricstest.Ident7, stage.Name("twice"))
	for _, o := range []*otelmetric.Observer{o1, o2} {
		if _, err := sink.Count(stage.Observe(context.Background(), o), s); err != nil {
			t.Fatal(err)
		}
	}
	pts := metricstest.Points7(metricstest.MustRead(t, read(reader)))
	metricstest.ExpectDone7(t, pts, "twice", "map", 10, 10, 0)
}

// The duration histogram is in seconds and its buckets tell typical call
// durations apart; the observations land where their seconds say.
// (The buckets are not documented: this attacks "a histogram of call
// durations, in seconds" as a usable one, as the Prometheus adapter's is.)
func TestReview7OtelDurationBuckets(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = provider.Shutdown(context.Background()) }()
	obs, err := otelmetric.New(provider.Meter("review7"))
	if err != nil {
		t.Fatal(err)
	}
	w := obs.Stage(stage.Info{Name: "buckets", Kind: "map", Workers: 1, Total: -1})
	for _, d := range []time.Duration{time.Millisecond, 100 * time.Millisecond, time.Second} {
		w.Received()
		w.Finished(d, nil)
	}
	w.Closed()
	rm, err := r7Collect(reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != mDuration {
				continue
			}
			d, ok := m.Data.(metricdata.Histogram[float64])
			if !ok || len(d.DataPoints) != 1 {
				t.Fatalf("duration data %T", m.Data)
			}
			dp := d.DataPoints[0]
			if dp.Count != 3 || dp.Sum < 1.101-1e-9 || dp.Sum > 1.101+1e-9 {
				t.Errorf("count %d sum %v, want 3 and 1.101 s", dp.Count, dp.Sum)
			}
			metricstest.CheckBuckets7(t, dp.Bounds)
			return
		}
	}
	t.Fatal("no duration instrument")
}

// The scenarios that every adapter shares run from internal/metricstest.
func TestReview7Shared(t *testing.T) { metricstest.Review7(t, r7NewEnv) }
