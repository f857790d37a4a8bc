package prom_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r72Series is one gathered series: its metric name and type, its labels,
// and its value (a histogram's sample count).
type r72Series struct {
	metric string
	labels map[string]string
	value  float64
	mtype  dto.MetricType
}

func r72Gather(t *testing.T, g prometheus.Gatherer) []r72Series {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var out []r72Series
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := r72Series{metric: mf.GetName(), labels: map[string]string{}, mtype: mf.GetType()}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Histogram != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
			}
			out = append(out, s)
		}
	}
	return out
}

// r72Get returns the value of the series of metric whose labels are exactly
// labels (0 and false if there is none).
func r72Get(all []r72Series, metric string, labels map[string]string) (float64, bool) {
	for _, s := range all {
		if s.metric != metric || len(s.labels) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			if got, ok := s.labels[k]; !ok || got != v {
				match = false
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

// "sluice_stage_received_total{stage,kind} items taken for a call
// sluice_stage_finished_total{stage,kind,outcome} calls ended; outcome "ok" or "error"
// sluice_stage_in_flight{stage,kind} items taken and not finished
// sluice_stage_duration_seconds{stage,kind} call durations (all attempts)"
// and "The duration histogram's buckets are in seconds, from 1 µs to about
// 4 s, each bound 4 times the one before."
func TestReview72NamesLabelsTypesBuckets(t *testing.T) {
	reg, env := newRegEnv(t)
	metricstest.R72NamesCounts(t, env)
	metricstest.R72SeriesForm(t, metricstest.MustRead(t, env.Read), promLabels)
	wantType := map[string]dto.MetricType{
		"sluice_stage_received_total":   dto.MetricType_COUNTER,
		"sluice_stage_finished_total":   dto.MetricType_COUNTER,
		"sluice_stage_in_flight":        dto.MetricType_GAUGE,
		"sluice_stage_duration_seconds": dto.MetricType_HISTOGRAM,
	}
	seen := map[string]bool{}
	for _, s := range r72Gather(t, reg) {
		want, ok := wantType[s.metric]
		if !ok {
			t.Errorf("undocumented metric %s%v", s.metric, s.labels)
			continue
		}
		seen[s.metric] = true
		if s.mtype != want {
			t.Errorf("%s type %v, want %v", s.metric, s.mtype, want)
		}
	}
	for m := range wantType {
		if !seen[m] {
			t.Errorf("metric %s missing", m)
		}
	}
}

// "A call's outcome is "error" when its item failed (the stage's error
// policy handles it) and "ok" otherwise: a call cut short by the end of the
// run (another stage's failure, a cancellation) did not fail."
// Here the failing item waits until three peers are inside their calls; the
// peers then see the run end and return an error of their own that is not the
// context's: per stage.Watcher, "whatever error the function returned", they
// neither succeeded nor failed.
func TestReview72FailFastCountsOnlyTheFailure(t *testing.T) {
	metricstest.R72FailFastCountsOnlyTheFailure(t, newEnv)
}

// Same promise, across stages: "another stage's failure". A downstream stage
// fails; the upstream calls blocked at that moment were cut short.
func TestReview72OtherStageFailureIsNotAFailureHere(t *testing.T) {
	metricstest.R72OtherStageFailureIsNotAFailureHere(t, newEnv(t))
}

// "a call cut short by the end of the run (... a cancellation) did not fail";
// and sink.First: "runs s until its first item arrives, then stops the run".
func TestReview72EarlyExitsAreNotFailures(t *testing.T) {
	metricstest.R72EarlyExitsAreNotFailures(t, newEnv, true)
}

// "sluice_stage_duration_seconds{stage,kind} call durations (all attempts)":
// one call (all its attempts) is one finished call and one observation.
// Also: a KeyBy panic "fails the item ... (the item's function is not
// called)", reported by Received then Finished with its *Error: outcome error.
func TestReview72RetriesAndKeyPanicsCountOnce(t *testing.T) {
	metricstest.R72RetriesAndKeyPanicsCountOnce(t, newEnv(t))
}

// "A stage name (or kind) that is not valid UTF-8, which a label cannot
// hold, is recorded with each run of invalid bytes replaced by one U+FFFD
// (so names that differ only there share a series)."
func TestReview72InvalidUTF8Names(t *testing.T) {
	metricstest.R72InvalidUTF8Names(t, newEnv(t))
	metricstest.R72InvalidUTF8Kind(t, newEnv(t))
}

// Hostile but valid names: very long, control characters, quotes and label
// syntax, a name that looks like a generated one. Labels are per stage.
func TestReview72HostileValidNames(t *testing.T) {
	metricstest.R72HostileValidNames(t, newEnv(t))
}

// Same name twice in one run, and in two runs: one series per (name, kind),
// counts adding up; a different kind under the same name is another series
// ("Labels are per stage only (stage name and kind, and the outcome of a call)").
func TestReview72SameNameShares(t *testing.T) {
	metricstest.R72SameNameShares(t, newEnv(t))
}

// Info.Kind: "map", "filter", "flatmap", "concurrent", "apply", "unbatch"; the
// kind label carries it; unnamed stages are "map#1", "filter#2", ...
func TestReview72KindsAndGeneratedNames(t *testing.T) {
	metricstest.R72KindsAndGeneratedNames(t, newEnv(t))
}

// "sluice_stage_in_flight{stage,kind} items taken and not finished", read
// while the run goes on: four calls blocked at once.
func TestReview72InFlightDuringRun(t *testing.T) {
	metricstest.R72InFlightDuringRun(t, newEnv(t))
}

// Many concurrent runs share one adapter (Watcher methods are "called from
// the stage's workers, several at once"); observers attached twice see every
// stage twice (stage.Observe: "one attached twice sees it twice").
func TestReview72ConcurrentRunsShareOneObserver(t *testing.T) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	twice := stage.Observe(ctx, env.Obs)
	metricstest.R72ConcurrentRuns(t, env.Read, 200, func(i int) (context.Context, int) {
		if i%2 == 1 {
			return twice, 2
		}
		return ctx, 1
	})
}

// r72Failing registers on reg until its nth Register, which fails with err.
type r72Failing struct {
	reg   *prometheus.Registry
	n     int
	calls int
	err   error
}

func (f *r72Failing) Register(c prometheus.Collector) error {
	f.calls++
	if f.calls == f.n {
		return f.err
	}
	return f.reg.Register(c)
}

func (f *r72Failing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := f.Register(c); err != nil {
			panic(err)
		}
	}
}

func (f *r72Failing) Unregister(c prometheus.Collector) bool { return f.reg.Unregister(c) }

// "It returns reg's error if a metric is already registered (...), and then
// leaves none of its metrics registered." A registry that refuses the nth
// registration, whatever n: New returns that error and leaves nothing behind.
func TestReview72RefusingRegistry(t *testing.T) {
	for n := 1; n <= 4; n++ {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			myErr := fmt.Errorf("refused registration %d", n)
			f := &r72Failing{reg: reg, n: n, err: myErr}
			obs, err := prom.New(f)
			if !errors.Is(err, myErr) {
				t.Fatalf("New = %v, %v; want the registry's error", obs, err)
			}
			mfs, gerr := reg.Gather()
			if gerr != nil || len(mfs) != 0 {
				t.Errorf("after a failed New: %d families (%v), want none registered", len(mfs), gerr)
			}
			// Nothing left: a New on the plain registry now succeeds.
			if _, err := prom.New(reg); err != nil {
				t.Errorf("New after the failure: %v", err)
			}
		})
	}
}

// Two adapters on one registry: the second New fails with the registry's
// error and leaves the first's metrics intact (it unregisters none of them).
// Two adapters under distinct constant labels (WrapRegistererWith) are
// distinct metrics; a constant label that collides with one of the adapter's
// own labels is the registry's error, not a panic.
func TestReview72TwoAdaptersOneRegistry(t *testing.T) {
	reg, env := newRegEnv(t)
	if _, err := prom.New(reg); err == nil {
		t.Fatal("second New on one registry succeeded")
	}
	ctx := stage.Observe(context.Background(), env.Obs)
	s := stage.Map(source.Slice(metricstest.Ints(3)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("one"))
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	if c := metricstest.R72Read(t, env, "one", "map"); c.Received != 3 || c.Hist != 3 {
		t.Errorf("first adapter after a failed second New: %+v (its metrics were unregistered?)", c)
	}

	reg2 := prometheus.NewRegistry()
	a, err := prom.New(prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": "a"}, reg2))
	if err != nil {
		t.Fatal(err)
	}
	b, err := prom.New(prometheus.WrapRegistererWith(prometheus.Labels{"pipeline": "b"}, reg2))
	if err != nil {
		t.Fatalf("second adapter under another constant label: %v", err)
	}
	ctx2 := stage.Observe(stage.Observe(context.Background(), a), b)
	if _, err := sink.Count(ctx2, s); err != nil {
		t.Fatal(err)
	}
	all := r72Gather(t, reg2)
	for _, p := range []string{"a", "b"} {
		v, ok := r72Get(all, "sluice_stage_received_total", map[string]string{"stage": "one", "kind": "map", "pipeline": p})
		if !ok || v != 3 {
			t.Errorf("pipeline %s: %v %v, want 3", p, v, ok)
		}
	}

	reg3 := prometheus.NewRegistry()
	var perr any
	func() {
		defer func() { perr = recover() }()
		_, err = prom.New(prometheus.WrapRegistererWith(prometheus.Labels{"stage": "clash"}, reg3))
	}()
	if perr != nil {
		t.Fatalf("New panicked on a registry that refuses the metrics: %v", perr)
	}
	if err == nil {
		t.Fatal("New over a constant label \"stage\": want the registry's error")
	}
	if mfs, _ := reg3.Gather(); len(mfs) != 0 {
		t.Errorf("%d families left registered after the failed New", len(mfs))
	}
}

// The observer's Watcher straight from Stage: what Finished's err means
// (stage.Watcher): nil success; an *Error failed; an error for which
// errors.Is(err, context.Canceled) holds and that is no *Error: cut short,
// "neither succeeded nor failed" — and the adapter's doc: "ok otherwise".
func TestReview72WatcherDirect(t *testing.T) {
	metricstest.R72WatcherDirect(t, newEnv(t))
}

// "A call's outcome is "error" when its item failed (the stage's error policy
// handles it)". An item whose function returns a context error of its own
// while the run goes on (context.Canceled, or its per-call Timeout's
// DeadlineExceeded) failed: the policy gets it (here Forward), so it is no
// call "cut short by the end of the run".
func TestReview72ContextErrorsOfItemsAreFailures(t *testing.T) {
	metricstest.R72ContextErrorsOfItemsAreFailures(t, newEnv(t))
}

// Budget(n, h): "the (n+1)th, which h does not see, fails the run": every one
// of the n+1 items failed (outcome error); Handle whose h returns an error:
// that item failed too.
func TestReview72BudgetAndHandleFailures(t *testing.T) {
	metricstest.R72BudgetAndHandleFailures(t, newEnv(t))
}
