package prom_test

// Review13: adversarial tests of the documented promises of package prom,
// written from its documentation (and stage's) only. The scenarios every
// adapter shares are in internal/metricstest (review13*.go); this file runs
// them and holds the registry's own promises.

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The scenarios that every adapter shares run from internal/metricstest.
func TestReview13Prom(t *testing.T) { metricstest.Review13(t, newEnv) }

// One observer shared by concurrent runs (a registry takes one New).
func TestReview13PromConcurrentRunsShareSeries(t *testing.T) {
	metricstest.ConcurrentRunsShareSeries(t, newEnv(t))
}

// Promise (New): "It returns reg's error if a metric is already registered
// (New was called twice on one registry: share the observer instead), and
// then leaves none of its metrics registered." The first observer keeps
// working.
func TestReview13PromNewTwiceAndConflicts(t *testing.T) {
	reg, env := newRegEnv(t)
	o := env.Obs
	rec := &r13RecordingReg{inner: reg}
	o2, err := prom.New(rec)
	var are prometheus.AlreadyRegisteredError
	if err == nil || o2 != nil && err == nil {
		t.Fatalf("second New on one registry: %v, %v", o2, err)
	}
	if !errors.As(err, &are) {
		t.Errorf("second New: %v, want an AlreadyRegisteredError", err)
	}
	if !rec.returned(err) {
		t.Errorf("second New returned %v, not an error reg returned (%v)", err, rec.errs)
	}
	metricstest.Within(t, func() {
		if _, err := sink.Count(stage.Observe(context.Background(), o), stage.Map(source.Slice(metricstest.Ints(10)), func(_ context.Context, x int) (int, error) { return x, nil })); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	if p, _ := metricstest.Get(metricstest.MustRead(t, env.Read), metricstest.Received, "map#1", ""); p.Value != 10 || p.Kind != "map" {
		t.Errorf("first observer after a failed second New: received %+v", p)
	}

	// A conflict on one metric only, of another type: New fails with reg's
	// error and registers none of the other three.
	for _, name := range []string{mReceived, mFinished, mInFlight, mDuration} {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			squatter := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "squatter"})
			if name == mReceived || name == mFinished {
				squatter = prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "squatter", ConstLabels: prometheus.Labels{"stage": "s"}})
			}
			reg.MustRegister(squatter)
			rec := &r13RecordingReg{inner: reg}
			o, err := prom.New(rec)
			t.Logf("New with %s squatted: %v", name, err)
			if err == nil {
				// The registry may accept a differently shaped metric of the
				// same name at registration; then Gather must not break.
				if _, gerr := reg.Gather(); gerr != nil {
					t.Fatalf("New accepted (%v) but Gather fails: %v", o, gerr)
				}
				return
			}
			if !rec.returned(err) {
				t.Errorf("New returned %v, not reg's error (%v)", err, rec.errs)
			}
			// Every collector the registry accepted during the failed New
			// must have been taken out again: Unregister of it now finds
			// nothing. (The registry is not reused for another New: a
			// Prometheus registry remembers the label dimensions of a name
			// for its lifetime, the squatter's included.)
			for _, c := range rec.accepted() {
				if reg.Unregister(c) {
					t.Errorf("after the failed New, a collector of it was still registered")
				}
			}
			if left := metricstest.MustRead(t, read(reg)); len(left) != 1 {
				t.Errorf("after the failed New, series: %v (want only the squatter)", left)
			}
		})
	}
}

// r13RecordingReg passes registrations to inner and keeps the errors it
// returned and the collectors it accepted.
type r13RecordingReg struct {
	inner prometheus.Registerer
	mu    sync.Mutex
	errs  []error
	ok    []prometheus.Collector
}

func (r *r13RecordingReg) Register(c prometheus.Collector) error {
	err := r.inner.Register(c)
	r.mu.Lock()
	if err != nil {
		r.errs = append(r.errs, err)
	} else {
		r.ok = append(r.ok, c)
	}
	r.mu.Unlock()
	return err
}

func (r *r13RecordingReg) accepted() []prometheus.Collector {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]prometheus.Collector(nil), r.ok...)
}

func (r *r13RecordingReg) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *r13RecordingReg) Unregister(c prometheus.Collector) bool { return r.inner.Unregister(c) }

func (r *r13RecordingReg) returned(err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
