package otelmetric_test

// Review34: adversarial tests of package prom, written from the
// documentation of prom and stage only. This file holds the reader of the
// registry, a tap observer that records exactly what the engine told the
// adapter's watchers, and the shared checks.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/stage"
)

// r34Key names one series: metric is "received", "finished", "in_flight"
// or "duration".
type r34Key struct{ metric, stage, kind, outcome string }

type r34Point struct {
	value  float64   // counter or gauge value; a histogram's count
	sum    float64   // a histogram's sum
	bounds []float64 // a histogram's upper bounds (without +Inf)
	cum    []uint64  // cumulative counts per bound
}

type r34Snap map[r34Key]r34Point

var r34Names = map[string]string{
	"sluice.stage.received":  "received",
	"sluice.stage.finished":  "finished",
	"sluice.stage.in_flight": "in_flight",
	"sluice.stage.duration":  "duration",
}

func r34Read(t testing.TB, r sdkmetric.Reader) r34Snap {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	out := r34Snap{}
	add := func(name string, set attribute.Set, p r34Point) {
		get := func(k string) string { v, _ := set.Value(attribute.Key(k)); return v.AsString() }
		k := r34Key{name, get("sluice.stage"), get("sluice.kind"), get("sluice.outcome")}
		if _, dup := out[k]; dup {
			t.Fatalf("two data points for %+v", k)
		}
		out[k] = p
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			name, ok := r34Names[m.Name]
			if !ok {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					add(name, dp.Attributes, r34Point{value: float64(dp.Value)})
				}
			case metricdata.Sum[float64]:
				for _, dp := range d.DataPoints {
					add(name, dp.Attributes, r34Point{value: dp.Value})
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					p := r34Point{value: float64(dp.Count), sum: dp.Sum, bounds: dp.Bounds}
					var c uint64
					for i := range dp.Bounds {
						c += dp.BucketCounts[i]
						p.cum = append(p.cum, c)
					}
					add(name, dp.Attributes, p)
				}
			default:
				t.Fatalf("%s: unexpected data %T", m.Name, m.Data)
			}
		}
	}
	return out
}

func r34New(t testing.TB, opts ...sdkmetric.Option) (*sdkmetric.ManualReader, *otelmetric.Observer) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(append([]sdkmetric.Option{sdkmetric.WithReader(reader)}, opts...)...)
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	obs, err := otelmetric.New(mp.Meter("review34"))
	if err != nil {
		t.Fatal(err)
	}
	return reader, obs
}

// r34Bounds: "from 1 µs to about 4 s, each bound 4 times the one before".
func r34Bounds() []float64 {
	var b []float64
	for v := 1e-6; v < 5; v *= 4 {
		b = append(b, v)
	}
	return b
}

// r34Tap wraps an observer and records, per stage name and kind, every call
// the engine made to the wrapped watchers.
type r34Tap struct {
	inner stage.Observer
	mu    sync.Mutex
	st    map[[2]string]*r34Rec
	bad   []string // Watcher contract breaches by the engine (context only)
}

type r34Rec struct {
	received, ok, failed, closed int
	lat                          []time.Duration
}

func r34NewTap(inner stage.Observer) *r34Tap {
	return &r34Tap{inner: inner, st: map[[2]string]*r34Rec{}}
}

func (tp *r34Tap) Stage(info stage.Info) stage.Watcher {
	w := tp.inner.Stage(info)
	tp.mu.Lock()
	k := [2]string{info.Name, info.Kind}
	if tp.st[k] == nil {
		tp.st[k] = &r34Rec{}
	}
	tp.mu.Unlock()
	return &r34TapW{tp: tp, k: k, w: w}
}

type r34TapW struct {
	tp *r34Tap
	k  [2]string
	w  stage.Watcher
}

func (w *r34TapW) Received() {
	w.tp.mu.Lock()
	w.tp.st[w.k].received++
	w.tp.mu.Unlock()
	w.w.Received()
}

func (w *r34TapW) Finished(lat time.Duration, err error) {
	w.tp.mu.Lock()
	r := w.tp.st[w.k]
	r.lat = append(r.lat, lat)
	if _, failed := err.(*stage.Error); failed {
		r.failed++
	} else {
		r.ok++
		var se *stage.Error
		if err != nil && (!errors.Is(err, context.Canceled) || errors.As(err, &se)) {
			w.tp.bad = append(w.tp.bad, fmt.Sprintf("%v: Finished err %T %v", w.k, err, err))
		}
	}
	w.tp.mu.Unlock()
	w.w.Finished(lat, err)
}

func (w *r34TapW) Closed() {
	w.tp.mu.Lock()
	w.tp.st[w.k].closed++
	w.tp.mu.Unlock()
	w.w.Closed()
}

// r34CheckTap checks every series against what the tap saw: counts, in
// flight 0, the histogram's count, sum (in seconds) and buckets exactly.
func r34CheckTap(t testing.TB, snap r34Snap, tp *r34Tap) {
	t.Helper()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(tp.bad) > 0 {
		t.Logf("engine breached the Watcher contract (not the adapter's fault): %v", tp.bad)
	}
	bounds := r34Bounds()
	for k, r := range tp.st {
		name, kind := k[0], k[1]
		get := func(m, o string) r34Point {
			p, ok := snap[r34Key{m, name, kind, o}]
			if !ok && !(m == "finished") {
				t.Errorf("%s{%q,%q}: no series", m, name, kind)
			}
			return p
		}
		if v := get("received", "").value; v != float64(r.received) {
			t.Errorf("received{%q,%q} = %v, engine called Received %d times", name, kind, v, r.received)
		}
		if v := get("finished", "ok").value; v != float64(r.ok) {
			t.Errorf("finished{%q,%q,ok} = %v, engine reported %d calls that did not fail", name, kind, v, r.ok)
		}
		if v := get("finished", "error").value; v != float64(r.failed) {
			t.Errorf("finished{%q,%q,error} = %v, engine reported %d failed calls (*stage.Error)", name, kind, v, r.failed)
		}
		if v := get("in_flight", "").value; v != float64(r.received-r.ok-r.failed) {
			t.Errorf("in_flight{%q,%q} = %v, want received-finished = %d", name, kind, v, r.received-r.ok-r.failed)
		}
		h := get("duration", "")
		if h.value != float64(len(r.lat)) {
			t.Errorf("duration{%q,%q} count = %v, engine reported %d latencies", name, kind, h.value, len(r.lat))
		}
		var sum float64
		want := make([]uint64, len(bounds))
		for _, l := range r.lat {
			s := l.Seconds()
			sum += s
			for i, b := range bounds {
				if s <= b {
					want[i]++
				}
			}
		}
		if math.Abs(h.sum-sum) > 1e-9*math.Max(1, sum) {
			t.Errorf("duration{%q,%q} sum = %v s, the latencies reported add up to %v s", name, kind, h.sum, sum)
		}
		if fmt.Sprint(h.bounds) != fmt.Sprint(bounds) {
			t.Errorf("duration{%q,%q} bounds = %v, want %v", name, kind, h.bounds, bounds)
		} else if fmt.Sprint(h.cum) != fmt.Sprint(want) {
			t.Errorf("duration{%q,%q} cumulative buckets = %v, from the latencies reported want %v", name, kind, h.cum, want)
		}
	}
}

// r34CheckStats compares every stage of stats (names, counts summed over
// kinds) with the series: received, finished, failed, in flight, the
// histogram's count; and checks that no stage has series stats lacks.
func r34CheckStats(t testing.TB, snap r34Snap, stats *stage.Stats) {
	t.Helper()
	type agg struct{ recv, ok, failed, in, n float64 }
	by := map[string]*agg{}
	for k, p := range snap {
		a := by[k.stage]
		if a == nil {
			a = &agg{}
			by[k.stage] = a
		}
		switch {
		case k.metric == "received":
			a.recv += p.value
		case k.metric == "finished" && k.outcome == "ok":
			a.ok += p.value
		case k.metric == "finished" && k.outcome == "error":
			a.failed += p.value
		case k.metric == "finished":
			t.Errorf("finished series with outcome %q", k.outcome)
		case k.metric == "in_flight":
			a.in += p.value
		case k.metric == "duration":
			a.n += p.value
		}
	}
	seen := map[string]bool{}
	for _, c := range stats.Snapshot() {
		seen[c.Name] = true
		a := by[c.Name]
		if a == nil {
			t.Errorf("stage %q: in Stats (%+v), no series", c.Name, c)
			continue
		}
		if a.recv != float64(c.Received) || a.ok+a.failed != float64(c.Finished) || a.failed != float64(c.Failed) ||
			a.in != float64(c.InFlight) || a.n != float64(c.Finished) {
			t.Errorf("stage %q: series received %v, ok %v, error %v, in flight %v, durations %v; Stats received %d, finished %d, failed %d, in flight %d",
				c.Name, a.recv, a.ok, a.failed, a.in, a.n, c.Received, c.Finished, c.Failed, c.InFlight)
		}
		if c.InFlight != 0 {
			t.Errorf("stage %q: Stats in flight %d after the runs", c.Name, c.InFlight)
		}
	}
	var extra []string
	for n := range by {
		if !seen[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("series for stages Stats never saw: %s", strings.Join(extra, ", "))
	}
}
