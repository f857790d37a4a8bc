package otelmetric_test

// Review13: adversarial tests of the documented promises of package
// otelmetric, written from its documentation (and stage's) only. The
// scenarios every adapter shares are in internal/metricstest
// (review13*.go); this file runs them and holds the meter's own promises.

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/otelmetric"
)

// The scenarios that every adapter shares run from internal/metricstest.
func TestReview13Otel(t *testing.T) { metricstest.Review13(t, newEnv) }

// Promise (New): "the same meter may serve several observers, which then
// add into the same series": concurrent runs on two observers of one meter
// share the series as the runs of one observer do.
func TestReview13OtelSharedMeterAndConcurrentRuns(t *testing.T) {
	_, meter, env := newMeterEnv(t)
	o2, err := otelmetric.New(meter)
	if err != nil {
		t.Fatalf("second New on one meter: %v", err)
	}
	metricstest.ConcurrentRunsShareSeries(t, env, o2)
}

var errR13Meter = errors.New("review13 otel: boom")

// Promise (New): "New returns the meter's errors, joined, if it could not
// create an instrument."
func TestReview13OtelNewJoinsMeterErrors(t *testing.T) {
	m := &r13FailingMeter{errs: map[string]error{}}
	o, err := otelmetric.New(m)
	if err == nil {
		t.Fatalf("New with a failing meter: %v, nil error", o)
	}
	if len(m.errs) != 4 {
		t.Errorf("instruments asked for: %v, want the four", m.names())
	}
	for name, e := range m.errs {
		if !errors.Is(err, e) {
			t.Errorf("New's error %v does not wrap the meter's error for %s", err, name)
		}
	}
}

// r13FailingMeter is a meter that fails every instrument's creation, each
// with an error of its own.
type r13FailingMeter struct {
	noop.Meter
	mu   sync.Mutex
	errs map[string]error
}

func (m *r13FailingMeter) fail(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := fmt.Errorf("review13 meter: cannot create %s: %w", name, errR13Meter)
	e = errors.New(e.Error()) // a distinct error per instrument
	m.errs[name] = e
	return e
}

func (m *r13FailingMeter) names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var ns []string
	for n := range m.errs {
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

func (m *r13FailingMeter) Int64Counter(name string, _ ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return noop.Int64Counter{}, m.fail(name)
}

func (m *r13FailingMeter) Int64UpDownCounter(name string, _ ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	return noop.Int64UpDownCounter{}, m.fail(name)
}

func (m *r13FailingMeter) Int64Histogram(name string, _ ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	return noop.Int64Histogram{}, m.fail(name)
}

func (m *r13FailingMeter) Int64Gauge(name string, _ ...metric.Int64GaugeOption) (metric.Int64Gauge, error) {
	return noop.Int64Gauge{}, m.fail(name)
}

func (m *r13FailingMeter) Float64Counter(name string, _ ...metric.Float64CounterOption) (metric.Float64Counter, error) {
	return noop.Float64Counter{}, m.fail(name)
}

func (m *r13FailingMeter) Float64UpDownCounter(name string, _ ...metric.Float64UpDownCounterOption) (metric.Float64UpDownCounter, error) {
	return noop.Float64UpDownCounter{}, m.fail(name)
}

func (m *r13FailingMeter) Float64Histogram(name string, _ ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return noop.Float64Histogram{}, m.fail(name)
}

func (m *r13FailingMeter) Float64Gauge(name string, _ ...metric.Float64GaugeOption) (metric.Float64Gauge, error) {
	return noop.Float64Gauge{}, m.fail(name)
}
