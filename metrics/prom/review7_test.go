package prom_test

// Adversarial tests of metrics/prom, written from its documentation (go doc,
// example_test.go, README.md) and the core's (stage, sink) only.
//
// The scenarios every adapter shares are in internal/metricstest
// (review7.go); this file runs them and holds the registry's own promises.

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r7NewEnv is newEnv for the review7 scenarios.
func r7NewEnv(t *testing.T) metricstest.Env7 { return newEnv(t).Env7() }

// ---------------------------------------------------------------------------
// Prometheus-only promises.

// New registers the four documented families, of the documented types, with
// exactly the documented label names; the example reads the stage label.
func TestReview7PromFamiliesTypesLabels(t *testing.T) {
	reg := prometheus.NewRegistry()
	obs, err := prom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	metricstest.RunSquare7(t, obs)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		typ    string
		labels string
	}{
		mReceived: {"COUNTER", "kind,stage"},
		mFinished: {"COUNTER", "kind,outcome,stage"},
		mInFlight: {"GAUGE", "kind,stage"},
		mDuration: {"HISTOGRAM", "kind,stage"},
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		w, ok := want[mf.GetName()]
		if !ok {
			t.Errorf("unexpected family %q registered by New", mf.GetName())
			continue
		}
		seen[mf.GetName()] = true
		if got := mf.GetType().String(); got != w.typ {
			t.Errorf("%s: type %s, want %s", mf.GetName(), got, w.typ)
		}
		for _, m := range mf.GetMetric() {
			var names []string
			for _, l := range m.GetLabel() {
				names = append(names, l.GetName())
				switch l.GetName() {
				case "stage":
					if l.GetValue() != "square" {
						t.Errorf("%s: stage=%q, want square", mf.GetName(), l.GetValue())
					}
				case "kind":
					if l.GetValue() != "map" {
						t.Errorf("%s: kind=%q, want map", mf.GetName(), l.GetValue())
					}
				case "outcome":
					if v := l.GetValue(); v != "ok" && v != "error" {
						t.Errorf("%s: outcome=%q, want ok or error", mf.GetName(), v)
					}
				}
			}
			if got := strings.Join(names, ","); got != w.labels {
				t.Errorf("%s: labels %s, want %s", mf.GetName(), got, w.labels)
			}
		}
	}
	for name := range want {
		if !seen[name] {
			t.Errorf("family %s missing after a run", name)
		}
	}
	pts := metricstest.Points7(metricstest.MustRead(t, read(reg)))
	metricstest.CheckSquare7(t, pts)
}

// New twice on one registry returns reg's error (an AlreadyRegisteredError),
// and the failed call leaves the first observer's metrics registered and
// working.
func TestReview7PromNewTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := prom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &r7Recording{inner: reg}
	_, err = prom.New(rec)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("second New on one registry: err = %v (%T), want a prometheus.AlreadyRegisteredError", err, err)
	}
	for i, c := range rec.accepted {
		if reg.Unregister(c) {
			t.Errorf("collector %d of the failed second New is still registered", i)
		}
	}
	s := stage.Map(source.Slice(metricstest.Ints(4)), metricstest.Ident7, stage.Name("still"))
	if _, err := sink.Count(stage.Observe(context.Background(), first), s); err != nil {
		t.Fatal(err)
	}
	pts := metricstest.Points7(metricstest.MustRead(t, read(reg)))
	for _, m := range []string{"received", "in_flight", "duration"} {
		if _, ok := metricstest.Find7(pts, m, "still", "map", ""); !ok {
			t.Errorf("%s of the first observer is gone after a failed second New", m)
		}
	}
	metricstest.Expect7(t, pts, "received", "still", "map", "", 4)
	metricstest.Expect7(t, pts, "finished", "still", "map", "ok", 4)
	metricstest.Expect7(t, pts, "duration", "still", "map", "", 4)
	// Still exactly one set: a third New fails the same way.
	if _, err := prom.New(reg); !errors.As(err, &are) {
		t.Errorf("third New: err = %v, want AlreadyRegisteredError", err)
	}
}

// r7Recording passes registrations to a real registry and keeps the
// collectors it accepted.
type r7Recording struct {
	inner    *prometheus.Registry
	accepted []prometheus.Collector
}

func (r *r7Recording) Register(c prometheus.Collector) error {
	err := r.inner.Register(c)
	if err == nil {
		r.accepted = append(r.accepted, c)
	}
	return err
}

func (r *r7Recording) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *r7Recording) Unregister(c prometheus.Collector) bool { return r.inner.Unregister(c) }

// A conflict on any one of the four names fails New, leaves the foreign
// collector registered and intact, and leaves none of New's metrics
// registered: every collector the registry accepted from New is gone again.
// (Prometheus keeps a name's help and labels for the registry's lifetime,
// even after Unregister, so this is checked collector by collector.)
func TestReview7PromPartialConflictLeavesNothing(t *testing.T) {
	for _, name := range []string{mReceived, mFinished, mInFlight, mDuration} {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			foreign := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "someone else's"})
			foreign.Set(42)
			reg.MustRegister(foreign)
			rec := &r7Recording{inner: reg}
			if _, err := prom.New(rec); err == nil {
				t.Fatalf("New with %s already taken: nil error", name)
			}
			t.Logf("New had %d collector(s) accepted before the conflict", len(rec.accepted))
			for i, c := range rec.accepted {
				if reg.Unregister(c) {
					t.Errorf("collector %d that New registered before the conflict is still registered", i)
				}
			}
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatalf("Gather after failed New: %v", err)
			}
			found := false
			for _, mf := range mfs {
				if mf.GetName() == name && len(mf.GetMetric()) == 1 && mf.GetMetric()[0].GetGauge().GetValue() == 42 {
					found = true
				}
			}
			if !found {
				t.Errorf("the foreign %s was disturbed by the failed New", name)
			}
			if !reg.Unregister(foreign) {
				t.Errorf("the foreign collector was unregistered by the failed New")
			}
		})
	}
}

type r7FailingRegisterer struct {
	inner  *prometheus.Registry
	failAt int
	calls  int
	err    error
}

func (f *r7FailingRegisterer) Register(c prometheus.Collector) error {
	f.calls++
	if f.calls == f.failAt {
		return f.err
	}
	return f.inner.Register(c)
}

func (f *r7FailingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := f.Register(c); err != nil {
			panic(err)
		}
	}
}

func (f *r7FailingRegisterer) Unregister(c prometheus.Collector) bool { return f.inner.Unregister(c) }

var errR7Reg = errors.New("review7: registerer refuses")

// New returns reg's error (errors.Is finds it) whichever registration fails,
// and leaves none of its metrics registered.
func TestReview7PromRegistererErrorRollsBack(t *testing.T) {
	failed := 0
	for failAt := 1; failAt <= 16; failAt++ {
		inner := prometheus.NewRegistry()
		fr := &r7FailingRegisterer{inner: inner, failAt: failAt, err: errR7Reg}
		_, err := prom.New(fr)
		if fr.calls < failAt {
			if err != nil {
				t.Errorf("failAt %d: New made %d registrations, none failed, yet returned %v", failAt, fr.calls, err)
			}
			break
		}
		failed++
		t.Logf("failAt %d: %v", failAt, err)
		if !errors.Is(err, errR7Reg) {
			t.Errorf("failAt %d: New = %v, want reg's error", failAt, err)
		}
		if _, err := prom.New(inner); err != nil {
			t.Errorf("failAt %d: New on the same registry after the failed one: %v (metrics left registered)", failAt, err)
		}
	}
	if failed == 0 {
		t.Fatal("New never called Register on the Registerer")
	}
}

// A stage name that is not valid UTF-8 is recorded with each invalid byte
// sequence replaced by U+FFFD; Gather does not fail; a valid name with
// awkward characters is kept as it is.
func TestReview7PromInvalidUTF8Name(t *testing.T) {
	env := r7NewEnv(t)
	bad := "a\xffb\xfec"
	odd := "x \"y\"\n{z}=,\\"
	s := stage.Map(stage.Map(source.Slice(metricstest.Ints(5)), metricstest.Ident7, stage.Name(bad)), metricstest.Ident7, stage.Name(odd))
	if _, err := sink.Count(stage.Observe(context.Background(), env.Obs), s); err != nil {
		t.Fatal(err)
	}
	pts := metricstest.Read7(t, env)
	metricstest.Expect7(t, pts, "received", "a\uFFFDb\uFFFDc", "map", "", 5)
	metricstest.Expect7(t, pts, "finished", "a\uFFFDb\uFFFDc", "map", "ok", 5)
	metricstest.Expect7(t, pts, "received", odd, "map", "", 5)
	for _, p := range pts {
		if !utf8.ValidString(p.Stage) {
			t.Errorf("label stage=%q is not valid UTF-8", p.Stage)
		}
	}
}

// The duration histogram is in seconds (sluice_stage_duration_seconds) and
// its buckets tell typical call durations apart; the observations land where
// their seconds say.
func TestReview7PromDurationBuckets(t *testing.T) {
	reg := prometheus.NewRegistry()
	obs, err := prom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	w := obs.Stage(stage.Info{Name: "buckets", Kind: "map", Workers: 1, Total: -1})
	for _, d := range []time.Duration{time.Millisecond, 100 * time.Millisecond, time.Second} {
		w.Received()
		w.Finished(d, nil)
	}
	w.Closed()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != mDuration {
			continue
		}
		for _, m := range mf.GetMetric() {
			h := m.GetHistogram()
			var bounds []float64
			for _, b := range h.GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
				// cumulative count at this bound = observations <= bound
				want := uint64(0)
				for _, v := range []float64{0.001, 0.1, 1} {
					if v <= b.GetUpperBound() {
						want++
					}
				}
				if b.GetCumulativeCount() != want {
					t.Errorf("bucket le=%v holds %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
				}
			}
			metricstest.CheckBuckets7(t, bounds)
			return
		}
	}
	t.Fatal("no duration series")
}

// The scenarios that every adapter shares run from internal/metricstest.
func TestReview7Shared(t *testing.T) { metricstest.Review7(t, r7NewEnv) }
