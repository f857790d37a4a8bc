package otelmetric_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r72Point is one collected data point.
type r72Point struct {
	metric    string
	unit      string
	attrs     map[string]string
	value     float64 // a histogram's count
	sum       float64
	kind      string // "sum", "updown", "histogram", other
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
	attrs := func(s attribute.Set) map[string]string {
		m := map[string]string{}
		for _, kv := range s.ToSlice() {
			m[string(kv.Key)] = kv.Value.String()
		}
		return m
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					out = append(out, r72Point{metric: m.Name, unit: m.Unit, attrs: attrs(p.Attributes), value: float64(p.Value), kind: "sum", monotonic: d.IsMonotonic})
				}
			case metricdata.Sum[float64]:
				for _, p := range d.DataPoints {
					out = append(out, r72Point{metric: m.Name, unit: m.Unit, attrs: attrs(p.Attributes), value: p.Value, kind: "sum", monotonic: d.IsMonotonic})
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					out = append(out, r72Point{metric: m.Name, unit: m.Unit, attrs: attrs(p.Attributes), value: float64(p.Count), sum: p.Sum, kind: "histogram", bounds: p.Bounds})
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					out = append(out, r72Point{metric: m.Name, unit: m.Unit, attrs: attrs(p.Attributes), value: float64(p.Count), kind: "histogram-int", bounds: p.Bounds})
				}
			default:
				out = append(out, r72Point{metric: m.Name, unit: m.Unit, kind: fmt.Sprintf("%T", m.Data)})
			}
		}
	}
	return out
}

func r72Value(all []r72Point, metric string, attrs map[string]string) float64 {
	var v float64
	for _, p := range all {
		if p.metric != metric || len(p.attrs) != len(attrs) {
			continue
		}
		match := true
		for k, want := range attrs {
			if got, ok := p.attrs[k]; !ok || got != want {
				match = false
			}
		}
		if match {
			v += p.value
		}
	}
	return v
}

type r72Stage struct{ received, ok, failed, inFlight, hist float64 }

func r72StageOf(all []r72Point, name, kind string) r72Stage {
	a := map[string]string{"sluice.stage": name, "sluice.kind": kind}
	return r72Stage{
		received: r72Value(all, "sluice.stage.received", a),
		inFlight: r72Value(all, "sluice.stage.in_flight", a),
		hist:     r72Value(all, "sluice.stage.duration", a),
		ok:       r72Value(all, "sluice.stage.finished", map[string]string{"sluice.stage": name, "sluice.kind": kind, "sluice.outcome": "ok"}),
		failed:   r72Value(all, "sluice.stage.finished", map[string]string{"sluice.stage": name, "sluice.kind": kind, "sluice.outcome": "error"}),
	}
}

func r72Balanced(t *testing.T, what string, c r72Stage) {
	t.Helper()
	if c.inFlight != 0 {
		t.Errorf("%s: in flight %v after the run, want 0 (%+v)", what, c.inFlight, c)
	}
	if c.received != c.ok+c.failed {
		t.Errorf("%s: received %v != finished ok %v + error %v", what, c.received, c.ok, c.failed)
	}
	if c.hist != c.ok+c.failed {
		t.Errorf("%s: duration count %v != finished %v", what, c.hist, c.ok+c.failed)
	}
}

func r72New(t *testing.T, opts ...sdkmetric.Option) (*sdkmetric.ManualReader, *sdkmetric.MeterProvider, *otelmetric.Observer) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(append([]sdkmetric.Option{sdkmetric.WithReader(reader)}, opts...)...)
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	obs, err := otelmetric.New(provider.Meter("review72"))
	if err != nil {
		t.Fatal(err)
	}
	return reader, provider, obs
}

func r72Ints(n int) []int {
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	return in
}

// "sluice.stage.received items taken for a call {sluice.stage, sluice.kind}
// sluice.stage.finished calls ended {..., sluice.outcome = ok | error}
// sluice.stage.in_flight items taken and not finished {sluice.stage, sluice.kind}
// sluice.stage.duration call durations, in seconds {sluice.stage, sluice.kind}"
// and "an up-down counter of items in flight"; "The duration histogram's
// buckets are in seconds, from 1 µs to about 4 s, each bound 4 times the one
// before (as the prom package's ...)".
func TestReview72InstrumentsAttributesBuckets(t *testing.T) {
	reader, _, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	s := stage.Map(source.Slice(r72Ints(20)), func(_ context.Context, v int) (int, error) {
		if v%5 == 0 {
			return 0, errors.New("five")
		}
		return v, nil
	}, stage.Name("m"), stage.OnError(stage.Forward))
	if _, err := sink.Count(ctx, s); err == nil {
		t.Fatal("want the forwarded errors")
	}
	all := r72Collect(t, reader)
	want := map[string][]string{
		"sluice.stage.received":  {"sluice.kind", "sluice.stage"},
		"sluice.stage.finished":  {"sluice.kind", "sluice.outcome", "sluice.stage"},
		"sluice.stage.in_flight": {"sluice.kind", "sluice.stage"},
		"sluice.stage.duration":  {"sluice.kind", "sluice.stage"},
	}
	seen := map[string]bool{}
	for _, p := range all {
		keys, ok := want[p.metric]
		if !ok {
			t.Errorf("undocumented instrument %s (%s)", p.metric, p.kind)
			continue
		}
		seen[p.metric] = true
		var got []string
		for k := range p.attrs {
			got = append(got, k)
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(keys) {
			t.Errorf("%s attributes %v, want %v", p.metric, got, keys)
		}
		if o, ok := p.attrs["sluice.outcome"]; ok && o != "ok" && o != "error" {
			t.Errorf("outcome %q", o)
		}
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
			b := p.bounds
			if len(b) == 0 {
				t.Fatal("no bucket bounds")
			}
			if math.Abs(b[0]-1e-6) > 1e-12 {
				t.Errorf("first bound %v, want 1e-6", b[0])
			}
			for i := 1; i < len(b); i++ {
				if r := b[i] / b[i-1]; math.Abs(r-4) > 1e-9 {
					t.Errorf("bound %d = %v is %v times the one before", i, b[i], r)
				}
			}
			if last := b[len(b)-1]; last < 2.5 || last > 6 {
				t.Errorf("last bound %v, want about 4 s", last)
			}
		}
	}
	for m := range want {
		if !seen[m] {
			t.Errorf("instrument %s missing", m)
		}
	}
	c := r72StageOf(all, "m", "map")
	if c.received != 20 || c.ok != 16 || c.failed != 4 || c.hist != 20 {
		t.Errorf("%+v, want received 20, ok 16, error 4, duration count 20", c)
	}
	r72Balanced(t, "m", c)
}

// "(as the prom package's; a View can change them)".
func TestReview72ViewChangesBuckets(t *testing.T) {
	bounds := []float64{0.5, 1, 2}
	view := sdkmetric.NewView(sdkmetric.Instrument{Name: "sluice.stage.duration"},
		sdkmetric.Stream{Aggregation: sdkmetric.AggregationExplicitBucketHistogram{Boundaries: bounds}})
	reader, _, obs := r72New(t, sdkmetric.WithView(view))
	ctx := stage.Observe(context.Background(), obs)
	s := stage.Map(source.Slice(r72Ints(5)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("v"))
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
	for _, lateErr := range []string{"ctx", "own"} {
		t.Run(lateErr, func(t *testing.T) {
			reader, _, obs := r72New(t)
			ctx := stage.Observe(context.Background(), obs)
			var entered sync.WaitGroup
			entered.Add(3)
			boom := errors.New("boom")
			s := stage.Map(source.Slice(r72Ints(40)), func(ctx context.Context, v int) (int, error) {
				switch {
				case v == 0:
					entered.Wait()
					return 0, boom
				case v <= 3:
					entered.Done()
					<-ctx.Done()
					if lateErr == "own" {
						return 0, errors.New("late, not the context's")
					}
					return 0, ctx.Err()
				default:
					<-ctx.Done()
					return 0, ctx.Err()
				}
			}, stage.Name("ff"), stage.Workers(4), stage.Buffer(1))
			var err error
			runcheck.Run(t, "failfast", func() { _, err = sink.Count(ctx, s) })
			if !errors.Is(err, boom) {
				t.Fatalf("err = %v", err)
			}
			c := r72StageOf(r72Collect(t, reader), "ff", "map")
			if c.failed != 1 {
				t.Errorf("finished{error} = %v, want exactly 1: %+v", c.failed, c)
			}
			if c.received < 4 {
				t.Errorf("received %v, want at least 4", c.received)
			}
			r72Balanced(t, "ff", c)
		})
	}
}

// Same promise for sink.First and the caller's cancellation.
func TestReview72EarlyExitsAreNotFailures(t *testing.T) {
	t.Run("first", func(t *testing.T) {
		reader, _, obs := r72New(t)
		ctx := stage.Observe(context.Background(), obs)
		var entered sync.WaitGroup
		entered.Add(3)
		s := stage.Map(source.Slice(r72Ints(30)), func(ctx context.Context, v int) (int, error) {
			if v == 0 {
				entered.Wait()
				return 7, nil
			}
			if v <= 3 {
				entered.Done()
			}
			<-ctx.Done()
			return 0, errors.New("cut short, my own error")
		}, stage.Name("first"), stage.Workers(4), stage.Buffer(1))
		var v int
		var ok bool
		var err error
		runcheck.Run(t, "first", func() { v, ok, err = sink.First(ctx, s) })
		if err != nil || !ok || v != 7 {
			t.Fatalf("First = %v %v %v", v, ok, err)
		}
		c := r72StageOf(r72Collect(t, reader), "first", "map")
		if c.failed != 0 || c.ok < 4 {
			t.Errorf("after First: %+v, want error 0 and ok >= 4", c)
		}
		r72Balanced(t, "first", c)
	})
	t.Run("cancel", func(t *testing.T) {
		reader, _, obs := r72New(t)
		base, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctx := stage.Observe(base, obs)
		var entered sync.WaitGroup
		entered.Add(4)
		s := stage.Map(source.Slice(r72Ints(30)), func(ctx context.Context, v int) (int, error) {
			if v < 4 {
				entered.Done()
			}
			if v == 0 {
				entered.Wait()
				cancel()
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Name("cancel"), stage.Workers(4), stage.Buffer(1))
		var err error
		runcheck.Run(t, "cancel", func() { _, err = sink.Count(ctx, s) })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
		c := r72StageOf(r72Collect(t, reader), "cancel", "map")
		if c.failed != 0 {
			t.Errorf("after cancel: %+v, want error 0", c)
		}
		r72Balanced(t, "cancel", c)
	})
}

// "sluice.stage.duration call durations" — one per call, all attempts: a
// retried item is one finished call; a KeyBy panic is a failed item.
func TestReview72RetriesAndKeyPanicsCountOnce(t *testing.T) {
	reader, _, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	const n = 60
	var tries [n]atomic.Int32
	s := stage.Map(source.Slice(r72Ints(n)), func(_ context.Context, v int) (int, error) {
		if tries[v].Add(1) < 3 {
			return 0, errors.New("flaky")
		}
		return v, nil
	}, stage.Name("retry"), stage.Workers(3), stage.Retry(3, 0))
	k := stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil },
		stage.Name("keyed"), stage.Workers(3),
		stage.KeyBy(func(v int) int {
			if v%3 == 0 {
				panic("bad key")
			}
			return v % 2
		}),
		stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	got, err := sink.Count(ctx, k)
	if err != nil || got != n-n/3 {
		t.Fatalf("Count = %d, %v", got, err)
	}
	all := r72Collect(t, reader)
	r := r72StageOf(all, "retry", "map")
	if r.received != n || r.ok != n || r.failed != 0 || r.hist != n {
		t.Errorf("retry: %+v, want %d received/ok/duration, 0 error", r, n)
	}
	kc := r72StageOf(all, "keyed", "map")
	if kc.received != n || kc.failed != n/3 || kc.ok != n-n/3 {
		t.Errorf("keyed: %+v, want received %d, error %d", kc, n, n/3)
	}
	r72Balanced(t, "retry", r)
	r72Balanced(t, "keyed", kc)
}

// "A stage name (or kind) that is not valid UTF-8, which OTLP's string
// attributes cannot carry, is recorded with each run of invalid bytes
// replaced by one U+FFFD, as in package prom (so names that differ only there
// share a series)."
func TestReview72InvalidUTF8NameAndKind(t *testing.T) {
	reader, _, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	var s stage.Stream[int] = source.Slice(r72Ints(10))
	for _, nm := range []string{"a\xffb", "a\xfe\xfd\xfcb", "a\xc3b"} {
		s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name(nm))
	}
	s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("x\xffy\xfez"))
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	// A kind is the library's, but Stage is public: drive it directly.
	w := obs.Stage(stage.Info{Name: "k\xff", Kind: "ma\xff\xfep", Workers: 1, Total: -1})
	w.Received()
	w.Finished(0, nil)
	w.Closed()
	all := r72Collect(t, reader)
	for _, p := range all {
		for k, v := range p.attrs {
			if !utf8.ValidString(v) {
				t.Errorf("%s attribute %s=%q is not UTF-8", p.metric, k, v)
			}
		}
	}
	if c := r72StageOf(all, "a\uFFFDb", "map"); c.received != 30 || c.ok != 30 || c.hist != 30 {
		t.Errorf("a\\uFFFDb: %+v, want the three stages' 30 in one series", c)
	}
	if c := r72StageOf(all, "x\uFFFDy\uFFFDz", "map"); c.received != 10 {
		t.Errorf("x\\uFFFDy\\uFFFDz: %+v", c)
	}
	if c := r72StageOf(all, "k\uFFFD", "ma\uFFFDp"); c.received != 1 || c.ok != 1 || c.hist != 1 {
		t.Errorf("invalid kind: %+v, want recorded under ma\\uFFFDp", c)
	}
}

// Hostile valid names, the same name twice in a run and across runs:
// "Attributes are per stage only (sluice.stage, sluice.kind, and the outcome
// of a call)".
func TestReview72HostileAndSharedNames(t *testing.T) {
	reader, _, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	long := strings.Repeat("é", 1<<17)
	var s stage.Stream[int] = source.Slice(r72Ints(5))
	names := []string{long, "\x00", "dup", "dup", " "}
	for _, nm := range names {
		s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name(nm))
	}
	s = stage.Filter(s, func(_ context.Context, v int) (bool, error) { return true, nil }, stage.Name("dup"))
	for range 2 {
		if _, err := sink.Count(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	all := r72Collect(t, reader)
	for _, w := range []struct {
		name, kind string
		n          float64
	}{{long, "map", 10}, {"\x00", "map", 10}, {"dup", "map", 20}, {" ", "map", 10}, {"dup", "filter", 10}} {
		c := r72StageOf(all, w.name, w.kind)
		if c.received != w.n || c.hist != w.n {
			q := w.name
			if len(q) > 10 {
				q = q[:10] + "..."
			}
			t.Errorf("%q/%s: %+v, want %v", q, w.kind, c, w.n)
		}
		r72Balanced(t, w.kind, c)
	}
}

// "the same meter may serve several observers, which then add into the same
// series"; and many runs at once through them.
func TestReview72SharedMeterConcurrentRuns(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer func() { _ = provider.Shutdown(context.Background()) }()
	meter := provider.Meter("shared")
	var observers []*otelmetric.Observer
	for range 3 {
		o, err := otelmetric.New(meter)
		if err != nil {
			t.Fatalf("New on a meter that already serves an observer: %v", err)
		}
		observers = append(observers, o)
	}
	const runs, items = 24, 150
	s := stage.Map(source.Slice(r72Ints(items)), func(_ context.Context, v int) (int, error) {
		if v%50 == 0 {
			return 0, errors.New("fifty")
		}
		return v, nil
	}, stage.Name("shared"), stage.Workers(4), stage.OnError(stage.Forward))
	var wg sync.WaitGroup
	runcheck.Run(t, "concurrent", func() {
		for i := range runs {
			wg.Go(func() {
				ctx := stage.Observe(context.Background(), observers[i%3])
				if i%4 == 0 { // two observers on this run: it counts twice
					ctx = stage.Observe(ctx, observers[(i+1)%3])
				}
				n, err := sink.Count(ctx, s)
				if n != items-items/50 || err == nil {
					t.Errorf("run %d: %d %v", i, n, err)
				}
			})
		}
		wg.Wait()
	})
	all := r72Collect(t, reader)
	points := 0
	for _, p := range all {
		if p.attrs["sluice.stage"] == "shared" && p.metric == "sluice.stage.received" {
			points++
		}
	}
	if points != 1 {
		t.Errorf("%d received points for one stage, want 1: observers of one meter add into the same series", points)
	}
	weight := float64(runs + runs/4)
	c := r72StageOf(all, "shared", "map")
	if c.received != weight*items || c.failed != weight*items/50 {
		t.Errorf("%+v, want received %v and error %v", c, weight*items, weight*items/50)
	}
	r72Balanced(t, "shared", c)
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
		s := stage.Map(source.Slice(r72Ints(50)), func(_ context.Context, v int) (int, error) { return v, nil },
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
	reader, _, obs := r72New(t)
	w := obs.Stage(stage.Info{Name: "direct", Kind: "map", Workers: 2, Total: -1})
	if w == nil {
		t.Fatal("nil watcher")
	}
	cut := fmt.Errorf("run ended (%w): %w", errors.New("cause"), context.Canceled)
	for _, e := range []error{nil, &stage.Error{Stage: "direct", Err: errors.New("x"), Attempts: 1}, cut, nil, &stage.Error{Stage: "direct", Err: &stage.PanicError{}}} {
		w.Received()
		w.Finished(0, e)
	}
	w.Received()
	c := r72StageOf(r72Collect(t, reader), "direct", "map")
	if c.received != 6 || c.ok != 3 || c.failed != 2 || c.inFlight != 1 || c.hist != 5 {
		t.Errorf("%+v, want received 6, ok 3, error 2, in flight 1, duration count 5", c)
	}
	w.Finished(0, nil)
	w.Closed()
	r72Balanced(t, "direct", r72StageOf(r72Collect(t, reader), "direct", "map"))
}

// "sluice.stage.in_flight items taken and not finished", while the run goes on.
func TestReview72InFlightDuringRun(t *testing.T) {
	reader, _, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	var entered sync.WaitGroup
	entered.Add(4)
	release := make(chan struct{})
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		entered.Wait()
		c := r72StageOf(r72Collect(t, reader), "blocked", "map")
		if c.inFlight != 4 || c.received != 4 || c.ok+c.failed != 0 {
			t.Errorf("while 4 calls run: %+v", c)
		}
		close(release)
	}()
	s := stage.Map(source.Slice(r72Ints(4)), func(_ context.Context, v int) (int, error) {
		entered.Done()
		<-release
		return v, nil
	}, stage.Name("blocked"), stage.Workers(4), stage.Buffer(1))
	runcheck.NoHang(t, "inflight", func() {
		if _, err := sink.Count(ctx, s); err != nil {
			t.Error(err)
		}
	})
	<-checked
	r72Balanced(t, "blocked", r72StageOf(r72Collect(t, reader), "blocked", "map"))
}

// "A call's outcome is error when its item failed (the stage's error policy
// handles it)": an item whose function returns a context error of its own
// while the run goes on (context.Canceled, its per-call Timeout) failed.
func TestReview72ContextErrorsOfItemsAreFailures(t *testing.T) {
	reader, _, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	const n = 12
	a := stage.Map(source.Slice(r72Ints(n)), func(_ context.Context, v int) (int, error) {
		if v%2 == 1 {
			return 0, context.Canceled
		}
		return v, nil
	}, stage.Name("canceled"), stage.Workers(3), stage.OnError(stage.Forward))
	b := stage.Map(a, func(ctx context.Context, v int) (int, error) {
		if v%4 == 0 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return v, nil
	}, stage.Name("timeout"), stage.Workers(3), stage.Timeout(time.Millisecond), stage.OnError(stage.Forward))
	var got int
	var err error
	runcheck.Run(t, "ctxerrs", func() { got, err = sink.Count(ctx, b) })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != n/2+n/4 || got != n/4 {
		t.Fatalf("Count = %d, %v", got, err)
	}
	all := r72Collect(t, reader)
	if c := r72StageOf(all, "canceled", "map"); c.failed != n/2 || c.ok != n/2 {
		t.Errorf("canceled stage: %+v, want error %d, ok %d", c, n/2, n/2)
	}
	if d := r72StageOf(all, "timeout", "map"); d.received != n/2 || d.failed != n/4 || d.ok != n/4 {
		t.Errorf("timeout stage: %+v, want received %d, error %d, ok %d", d, n/2, n/4, n/4)
	}
}

// Budget(n, h): the n+1 failed items all failed; Handle with an error: failed.
func TestReview72BudgetAndHandleFailures(t *testing.T) {
	reader, _, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	s := stage.Map(source.Slice(r72Ints(20)), func(_ context.Context, v int) (int, error) {
		if v%2 == 0 {
			return 0, errors.New("even")
		}
		return v, nil
	}, stage.Name("budget"), stage.Workers(1), stage.OnError(stage.Budget(3, nil)))
	if _, err := sink.Count(ctx, s); !errors.Is(err, stage.ErrBudget) {
		t.Fatalf("err = %v", err)
	}
	hErr := errors.New("dlq down")
	h := stage.Map(source.Slice(r72Ints(20)), func(_ context.Context, v int) (int, error) {
		if v == 5 {
			return 0, errors.New("five")
		}
		return v, nil
	}, stage.Name("handle"), stage.Workers(1), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return hErr })))
	if _, err := sink.Count(ctx, h); !errors.Is(err, hErr) {
		t.Fatalf("err = %v", err)
	}
	all := r72Collect(t, reader)
	b := r72StageOf(all, "budget", "map")
	if b.failed != 4 {
		t.Errorf("budget: %+v, want error 4", b)
	}
	hc := r72StageOf(all, "handle", "map")
	if hc.failed != 1 {
		t.Errorf("handle: %+v, want error 1", hc)
	}
	r72Balanced(t, "budget", b)
	r72Balanced(t, "handle", hc)
}
