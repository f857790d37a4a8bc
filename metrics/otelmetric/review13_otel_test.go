package otelmetric_test

// Review13: adversarial tests of the documented promises of package
// otelmetric, written from its documentation (and stage's) only.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const (
	r13Recv = "sluice.stage.received"
	r13Fin  = "sluice.stage.finished"
	r13In   = "sluice.stage.in_flight"
	r13Dur  = "sluice.stage.duration"
)

type r13Point struct {
	metric    string
	attrs     map[string]string
	value     float64 // sum value, or histogram count
	bounds    []float64
	monotonic bool
}

func r13Attrs(set attribute.Set) map[string]string {
	m := map[string]string{}
	for _, kv := range set.ToSlice() {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func r13Collect(t testing.TB, r sdkmetric.Reader) []r13Point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	var out []r13Point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out = append(out, r13Point{m.Name, r13Attrs(p.Attributes), float64(p.Value), nil, d.IsMonotonic})
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					out = append(out, r13Point{m.Name, r13Attrs(p.Attributes), p.Value, nil, d.IsMonotonic})
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, r13Point{m.Name, r13Attrs(p.Attributes), float64(p.Count), p.Bounds, false})
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out = append(out, r13Point{m.Name, r13Attrs(p.Attributes), float64(p.Count), p.Bounds, false})
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

func r13Val(all []r13Point, metric, stageName, kind, outcome string) (v float64, n int) {
	for _, p := range all {
		if p.metric != metric || p.attrs["sluice.stage"] != stageName || (kind != "" && p.attrs["sluice.kind"] != kind) {
			continue
		}
		if outcome != "" && p.attrs["sluice.outcome"] != outcome {
			continue
		}
		v += p.value
		n++
	}
	return v, n
}

func r13Balanced(t *testing.T, all []r13Point, stageName string) (recv, ok, failed float64) {
	t.Helper()
	recv, _ = r13Val(all, r13Recv, stageName, "", "")
	ok, _ = r13Val(all, r13Fin, stageName, "", "ok")
	failed, _ = r13Val(all, r13Fin, stageName, "", "error")
	dur, _ := r13Val(all, r13Dur, stageName, "", "")
	in, _ := r13Val(all, r13In, stageName, "", "")
	if recv != ok+failed || dur != ok+failed || in != 0 {
		t.Errorf("%s: received %v, finished ok %v + error %v, duration count %v, in_flight %v: want received = finished = duration count, in_flight 0",
			stageName, recv, ok, failed, dur, in)
	}
	return recv, ok, failed
}

func r13New(t *testing.T) (*sdkmetric.ManualReader, metric.Meter, *otelmetric.Observer) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	meter := mp.Meter("review13")
	o, err := otelmetric.New(meter)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return reader, meter, o
}

func r13Watchdog(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("hung")
	}
}

func r13Ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

var errR13 = errors.New("review13 otel: boom")

func r13ID(_ context.Context, x int) (int, error) { return x, nil }

// Promise (New): received counts items taken for a call, finished calls ended
// with sluice.outcome ok|error, in_flight items taken and not finished (an
// up-down counter), duration one observation per call; attributes per stage
// only: sluice.stage, sluice.kind (+ sluice.outcome).
func TestReview13OtelCountsPerStage(t *testing.T) {
	const n = 300
	for _, w := range []int{1, 4, -1} {
		for _, ordered := range []bool{false, true} {
			t.Run(fmt.Sprint(w, ordered), func(t *testing.T) {
				reader, _, o := r13New(t)
				opts := []stage.Option{stage.Workers(w)}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				mapped := stage.Map(source.Slice(r13Ints(n)), func(_ context.Context, x int) (int, error) {
					if x%5 == 0 {
						return 0, errR13
					}
					return x, nil
				}, append(opts, stage.Name("m"), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))...)
				kept := stage.Filter(mapped, func(_ context.Context, x int) (bool, error) { return x%2 == 0, nil }, opts...)
				r13Watchdog(t, func() {
					if _, err := sink.Slice(stage.Observe(context.Background(), o), kept); err != nil {
						t.Errorf("sink: %v", err)
					}
				})
				all := r13Collect(t, reader)
				recv, ok, failed := r13Balanced(t, all, "m")
				if recv != n || failed != n/5 || ok != n-n/5 {
					t.Errorf("m: received %v ok %v error %v", recv, ok, failed)
				}
				recv, ok, failed = r13Balanced(t, all, "filter#2")
				if recv != n-n/5 || ok != n-n/5 || failed != 0 {
					t.Errorf("filter#2: received %v ok %v error %v", recv, ok, failed)
				}
				for _, p := range all {
					var keys []string
					for k := range p.attrs {
						keys = append(keys, k)
					}
					slices.Sort(keys)
					want := []string{"sluice.kind", "sluice.stage"}
					if p.metric == r13Fin {
						want = []string{"sluice.kind", "sluice.outcome", "sluice.stage"}
					}
					if !slices.Equal(keys, want) {
						t.Errorf("%s attributes %v, want %v", p.metric, keys, want)
					}
					if k := map[string]string{"m": "map", "filter#2": "filter"}[p.attrs["sluice.stage"]]; p.attrs["sluice.kind"] != k {
						t.Errorf("%s %v: kind, want %q", p.metric, p.attrs, k)
					}
					if p.metric == r13In && p.monotonic {
						t.Errorf("in_flight is monotonic: want an up-down counter")
					}
					if (p.metric == r13Recv || p.metric == r13Fin) && !p.monotonic {
						t.Errorf("%s is not monotonic: want a counter", p.metric)
					}
				}
			})
		}
	}
}

// Promise: a call cut short by the end of the run did not fail: outcome ok.
func TestReview13OtelCutShortIsOK(t *testing.T) {
	for _, how := range []string{"failfast", "cancel", "first"} {
		t.Run(how, func(t *testing.T) {
			reader, _, o := r13New(t)
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			peers := make(chan struct{}, 3)
			s := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, x int) (int, error) {
				if x == 0 && how != "cancel" {
					<-peers
					<-peers
					if how == "first" {
						return 7, nil
					}
					return 0, errR13
				}
				peers <- struct{}{}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(3), stage.Buffer(1), stage.Name("m"))
			if how == "cancel" {
				go func() {
					for range 3 {
						<-peers
					}
					cancel()
				}()
			}
			ctx := stage.Observe(parent, o)
			var err error
			r13Watchdog(t, func() {
				if how == "first" {
					_, _, err = sink.First(ctx, s)
				} else {
					_, err = sink.Slice(ctx, s)
				}
			})
			if (how == "failfast" && !errors.Is(err, errR13)) || (how == "cancel" && !errors.Is(err, context.Canceled)) || (how == "first" && err != nil) {
				t.Fatalf("sink %v", err)
			}
			recv, ok, failed := r13Balanced(t, r13Collect(t, reader), "m")
			wantFailed := 0.0
			if how == "failfast" {
				wantFailed = 1
			}
			if recv != 3 || failed != wantFailed || ok != 3-wantFailed {
				t.Errorf("received %v ok %v error %v; want 3 %v %v", recv, ok, failed, 3-wantFailed, wantFailed)
			}
		})
	}
}

// Promise: in_flight returns to 0 once the sink returned, whatever ended
// the run.
func TestReview13OtelInFlightZeroAfterEarlyExit(t *testing.T) {
	const n = 2000
	for _, how := range []string{"first", "break", "cancel", "errstop"} {
		for _, w := range []int{1, 4, -1} {
			t.Run(fmt.Sprint(how, w), func(t *testing.T) {
				reader, _, o := r13New(t)
				parent, cancel := context.WithCancel(context.Background())
				defer cancel()
				ctx := stage.Observe(parent, o)
				s := stage.Filter(stage.Map(source.Slice(r13Ints(n)), r13ID, stage.Workers(w)),
					func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(w))
				r13Watchdog(t, func() {
					i := 0
					switch how {
					case "first":
						_, _, _ = sink.First(ctx, s)
					case "break":
						for range sink.All(ctx, s) {
							if i++; i == 50 {
								break
							}
						}
					case "cancel":
						_ = sink.ForEach(ctx, s, func(context.Context, int) error {
							if i++; i == 50 {
								cancel()
							}
							return nil
						})
					case "errstop":
						_ = stage.Run(ctx, s, func(context.Context, int, error) error {
							if i++; i == 50 {
								return stage.ErrStop
							}
							return nil
						})
					}
				})
				all := r13Collect(t, reader)
				r13Balanced(t, all, "map#1")
				r13Balanced(t, all, "filter#2")
			})
		}
	}
}

// Promise (New): "the same meter may serve several observers, which then add
// into the same series"; concurrent runs sharing one observer add up too,
// and in_flight sums the items the runs hold.
func TestReview13OtelSharedMeterAndConcurrentRuns(t *testing.T) {
	reader, meter, o1 := r13New(t)
	o2, err := otelmetric.New(meter)
	if err != nil {
		t.Fatalf("second New on one meter: %v", err)
	}
	const runs, n = 4, 30
	started := make(chan struct{}, runs)
	release := make(chan struct{})
	// Workers(1): while item 0 is held, the run takes no other item, so
	// in_flight is exactly one per run (an order of events, not a timing).
	s := stage.Map(source.Slice(r13Ints(n)), func(_ context.Context, x int) (int, error) {
		if x == 0 {
			started <- struct{}{}
			<-release
		}
		return x, nil
	}, stage.Name("x"), stage.Workers(1))
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := range runs {
		o := o1
		if i%2 == 1 {
			o = o2
		}
		wg.Go(func() {
			if c, err := sink.Count(stage.Observe(context.Background(), o), s); err != nil || c != n {
				failures.Add(1)
			}
		})
	}
	for range runs {
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("hung")
		}
	}
	if v, k := r13Val(r13Collect(t, reader), r13In, "x", "map", ""); v != runs || k != 1 {
		t.Errorf("in_flight{x} = %v over %d series while %d runs hold an item; want %d in 1 series", v, k, runs, runs)
	}
	close(release)
	r13Watchdog(t, wg.Wait)
	if failures.Load() != 0 {
		t.Fatalf("%d runs failed", failures.Load())
	}
	all := r13Collect(t, reader)
	for _, m := range []string{r13Recv, r13In, r13Dur} {
		v, k := r13Val(all, m, "x", "map", "")
		want := float64(runs * n)
		if m == r13In {
			want = 0
		}
		if v != want || k != 1 {
			t.Errorf("%s{x}: %v over %d series; want %v in one series", m, v, k, want)
		}
	}
	if v, k := r13Val(all, r13Fin, "x", "map", "ok"); v != runs*n || k != 1 {
		t.Errorf("finished{x,ok}: %v over %d series", v, k)
	}
}

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

type r13FailingMeter struct {
	noop.Meter
	mu   sync.Mutex
	errs map[string]error
}

func (m *r13FailingMeter) fail(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := fmt.Errorf("review13 meter: cannot create %s: %w", name, errR13)
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

// Promise: buckets in seconds from 1 µs to about 4 s, ×4 each; one
// observation per call (all attempts under Retry).
func TestReview13OtelBucketsAndRetries(t *testing.T) {
	reader, _, o := r13New(t)
	var calls atomic.Int64
	s := stage.Map(source.Slice(r13Ints(10)), func(_ context.Context, x int) (int, error) {
		if calls.Add(1)%3 != 0 {
			return 0, errR13
		}
		return x, nil
	}, stage.Workers(1), stage.Retry(3, 0), stage.Name("r"))
	r13Watchdog(t, func() {
		if _, err := sink.Count(stage.Observe(context.Background(), o), s); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	all := r13Collect(t, reader)
	if recv, ok, failed := r13Balanced(t, all, "r"); recv != 10 || ok != 10 || failed != 0 {
		t.Errorf("received %v ok %v error %v", recv, ok, failed)
	}
	for _, p := range all {
		if p.metric != r13Dur {
			continue
		}
		b := p.bounds
		if len(b) == 0 || math.Abs(b[0]-1e-6) > 1e-12 {
			t.Fatalf("first bound %v, want 1e-6", b)
		}
		for i := 1; i < len(b); i++ {
			if math.Abs(b[i]/b[i-1]-4) > 1e-9 {
				t.Errorf("bound %d: %v / %v != 4", i, b[i], b[i-1])
			}
		}
		if last := b[len(b)-1]; last < 2 || last > 8 {
			t.Errorf("last bound %v, want about 4 s", last)
		}
	}
}

// Promise (stage.Name): the same pipeline gets the same names every run, so
// runs add into the same series; empty runs and Workers(-1) leave nothing in
// flight.
func TestReview13OtelNameStabilityAndEmptyRuns(t *testing.T) {
	reader, _, o := r13New(t)
	ctx := stage.Observe(context.Background(), o)
	s := stage.Map(stage.Map(source.Slice(r13Ints(25)), r13ID), r13ID, stage.Workers(-1))
	empty := stage.Map(stage.Map(source.Slice([]int{}), r13ID, stage.Workers(-1)), r13ID, stage.Workers(-1), stage.Ordered())
	for range 3 {
		r13Watchdog(t, func() {
			if _, err := sink.Count(ctx, s); err != nil {
				t.Errorf("run: %v", err)
			}
			if _, err := sink.Count(ctx, empty); err != nil {
				t.Errorf("empty run: %v", err)
			}
		})
	}
	all := r13Collect(t, reader)
	var stages []string
	for _, p := range all {
		if p.metric == r13Recv {
			stages = append(stages, p.attrs["sluice.stage"])
		}
	}
	slices.Sort(stages)
	if !slices.Equal(slices.Compact(stages), []string{"map#1", "map#2"}) {
		t.Errorf("stages %v", stages)
	}
	for _, name := range []string{"map#1", "map#2"} {
		if recv, _, _ := r13Balanced(t, all, name); recv != 75 {
			t.Errorf("%s received %v, want 75", name, recv)
		}
	}
}

// Promise (stage.Watcher + in_flight "items taken and not finished"): a
// panic in another observer of the same run must not leave in_flight up
// after the sink returned.
func TestReview13OtelInFlightWithPanickingNeighbour(t *testing.T) {
	reader, obs := rvNew(t)
	metricstest.BesideAPanickingObserver(t, obs, rvRead(reader))
}
