package prom_test

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

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r72Series is one gathered series: its metric name, its labels, and its
// value (a histogram's sample count; r72Sum its sum).
type r72Series struct {
	metric string
	labels map[string]string
	value  float64
	mtype  dto.MetricType
	hist   *dto.Histogram
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
				s.hist = m.GetHistogram()
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

// r72Stage is the sum of a stage's series.
type r72Stage struct {
	received, ok, failed, inFlight, hist float64
}

func r72StageOf(all []r72Series, name, kind string) r72Stage {
	var c r72Stage
	l := map[string]string{"stage": name, "kind": kind}
	c.received, _ = r72Get(all, "sluice_stage_received_total", l)
	c.inFlight, _ = r72Get(all, "sluice_stage_in_flight", l)
	c.hist, _ = r72Get(all, "sluice_stage_duration_seconds", l)
	c.ok, _ = r72Get(all, "sluice_stage_finished_total", map[string]string{"stage": name, "kind": kind, "outcome": "ok"})
	c.failed, _ = r72Get(all, "sluice_stage_finished_total", map[string]string{"stage": name, "kind": kind, "outcome": "error"})
	return c
}

// r72Balanced checks what must add up once every run is over.
func r72Balanced(t *testing.T, what string, c r72Stage) {
	t.Helper()
	if c.inFlight != 0 {
		t.Errorf("%s: in flight %v after the run, want 0 (%+v)", what, c.inFlight, c)
	}
	if c.received != c.ok+c.failed {
		t.Errorf("%s: received %v != finished ok %v + error %v", what, c.received, c.ok, c.failed)
	}
	if c.hist != c.ok+c.failed {
		t.Errorf("%s: histogram count %v != finished %v", what, c.hist, c.ok+c.failed)
	}
}

func r72New(t *testing.T) (*prometheus.Registry, *prom.Observer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	obs, err := prom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return reg, obs
}

func r72Ints(n int) []int {
	in := make([]int, n)
	for i := range in {
		in[i] = i
	}
	return in
}

// "sluice_stage_received_total{stage,kind} items taken for a call
// sluice_stage_finished_total{stage,kind,outcome} calls ended; outcome "ok" or "error"
// sluice_stage_in_flight{stage,kind} items taken and not finished
// sluice_stage_duration_seconds{stage,kind} call durations (all attempts)"
// and "The duration histogram's buckets are in seconds, from 1 µs to about
// 4 s, each bound 4 times the one before."
func TestReview72NamesLabelsTypesBuckets(t *testing.T) {
	reg, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	in := r72Ints(20)
	s := stage.Map(source.Slice(in), func(_ context.Context, v int) (int, error) {
		if v%5 == 0 {
			return 0, errors.New("five")
		}
		return v, nil
	}, stage.Name("m"), stage.OnError(stage.Forward))
	if _, err := sink.Count(ctx, s); err == nil {
		t.Fatal("want the forwarded errors")
	}
	all := r72Gather(t, reg)
	wantLabels := map[string][]string{
		"sluice_stage_received_total":   {"kind", "stage"},
		"sluice_stage_finished_total":   {"kind", "outcome", "stage"},
		"sluice_stage_in_flight":        {"kind", "stage"},
		"sluice_stage_duration_seconds": {"kind", "stage"},
	}
	wantType := map[string]dto.MetricType{
		"sluice_stage_received_total":   dto.MetricType_COUNTER,
		"sluice_stage_finished_total":   dto.MetricType_COUNTER,
		"sluice_stage_in_flight":        dto.MetricType_GAUGE,
		"sluice_stage_duration_seconds": dto.MetricType_HISTOGRAM,
	}
	seen := map[string]bool{}
	for _, s := range all {
		want, ok := wantLabels[s.metric]
		if !ok {
			t.Errorf("undocumented metric %s%v", s.metric, s.labels)
			continue
		}
		seen[s.metric] = true
		var got []string
		for k := range s.labels {
			got = append(got, k)
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s labels %v, want %v", s.metric, got, want)
		}
		if s.mtype != wantType[s.metric] {
			t.Errorf("%s type %v, want %v", s.metric, s.mtype, wantType[s.metric])
		}
		if o, ok := s.labels["outcome"]; ok && o != "ok" && o != "error" {
			t.Errorf("outcome %q", o)
		}
		if s.hist != nil {
			b := s.hist.GetBucket()
			if len(b) == 0 {
				t.Fatal("no buckets")
			}
			if first := b[0].GetUpperBound(); math.Abs(first-1e-6) > 1e-12 {
				t.Errorf("first bucket %v, want 1e-6 (1 µs)", first)
			}
			for i := 1; i < len(b); i++ {
				r := b[i].GetUpperBound() / b[i-1].GetUpperBound()
				if math.Abs(r-4) > 1e-9 {
					t.Errorf("bucket %d: %v is %v times the one before, want 4", i, b[i].GetUpperBound(), r)
				}
			}
			if last := b[len(b)-1].GetUpperBound(); last < 2.5 || last > 6 {
				t.Errorf("last bucket %v, want about 4 s", last)
			}
		}
	}
	for m := range wantLabels {
		if !seen[m] {
			t.Errorf("metric %s missing", m)
		}
	}
	c := r72StageOf(all, "m", "map")
	if c.received != 20 || c.ok != 16 || c.failed != 4 || c.hist != 20 {
		t.Errorf("counts %+v, want received 20, ok 16, error 4, histogram 20", c)
	}
	r72Balanced(t, "m", c)
}

// "A call's outcome is "error" when its item failed (the stage's error
// policy handles it) and "ok" otherwise: a call cut short by the end of the
// run (another stage's failure, a cancellation) did not fail."
// Here the failing item waits until three peers are inside their calls; the
// peers then see the run end and return an error of their own that is not the
// context's: per stage.Watcher, "whatever error the function returned", they
// neither succeeded nor failed.
func TestReview72FailFastCountsOnlyTheFailure(t *testing.T) {
	for _, lateErr := range []string{"ctx", "own"} {
		t.Run(lateErr, func(t *testing.T) {
			reg, obs := r72New(t)
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
				t.Fatalf("err = %v, want boom", err)
			}
			c := r72StageOf(r72Gather(t, reg), "ff", "map")
			if c.failed != 1 {
				t.Errorf("finished{outcome=error} = %v, want exactly 1 (the calls cut short did not fail): %+v", c.failed, c)
			}
			if c.received < 4 {
				t.Errorf("received %v, want at least the 4 calls that ran", c.received)
			}
			r72Balanced(t, "ff", c)
		})
	}
}

// Same promise, across stages: "another stage's failure". A downstream stage
// fails; the upstream calls blocked at that moment were cut short.
func TestReview72OtherStageFailureIsNotAFailureHere(t *testing.T) {
	reg, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	var up sync.WaitGroup
	up.Add(3)
	started := make(chan struct{})
	var once sync.Once
	a := stage.Map(source.Slice(r72Ints(50)), func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			return v, nil // goes downstream and fails there
		}
		once.Do(func() { close(started) })
		if v <= 3 {
			up.Done()
		}
		<-ctx.Done()
		return 0, fmt.Errorf("upstream %d cut: %w", v, errors.New("not ctx"))
	}, stage.Name("up"), stage.Workers(4), stage.Buffer(1))
	down := errors.New("down failed")
	b := stage.Map(a, func(ctx context.Context, v int) (int, error) {
		up.Wait()
		return 0, down
	}, stage.Name("down"), stage.Workers(1), stage.Buffer(1))
	var err error
	runcheck.Run(t, "other", func() { _, err = sink.Count(ctx, b) })
	if !errors.Is(err, down) {
		t.Fatalf("err = %v, want the downstream failure", err)
	}
	all := r72Gather(t, reg)
	u := r72StageOf(all, "up", "map")
	d := r72StageOf(all, "down", "map")
	if u.failed != 0 {
		t.Errorf("upstream finished{error} = %v, want 0: its calls were cut short by another stage's failure (%+v)", u.failed, u)
	}
	if d.failed != 1 || d.received != 1 {
		t.Errorf("downstream %+v, want received 1 and error 1", d)
	}
	r72Balanced(t, "up", u)
	r72Balanced(t, "down", d)
}

// "a call cut short by the end of the run (... a cancellation) did not fail";
// and sink.First: "runs s until its first item arrives, then stops the run".
func TestReview72EarlyExitsAreNotFailures(t *testing.T) {
	t.Run("first", func(t *testing.T) {
		reg, obs := r72New(t)
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
			return 0, errors.New("cut short, returned as an error of my own")
		}, stage.Name("first"), stage.Workers(4), stage.Buffer(1))
		var v int
		var ok bool
		var err error
		runcheck.Run(t, "first", func() { v, ok, err = sink.First(ctx, s) })
		if err != nil || !ok || v != 7 {
			t.Fatalf("First = %v %v %v", v, ok, err)
		}
		c := r72StageOf(r72Gather(t, reg), "first", "map")
		if c.failed != 0 {
			t.Errorf("finished{error} = %v after sink.First, want 0 (%+v)", c.failed, c)
		}
		if c.ok < 4 {
			t.Errorf("finished{ok} = %v, want at least 4 (%+v)", c.ok, c)
		}
		r72Balanced(t, "first", c)
	})
	t.Run("cancel", func(t *testing.T) {
		reg, obs := r72New(t)
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
			t.Fatalf("err = %v, want Canceled", err)
		}
		c := r72StageOf(r72Gather(t, reg), "cancel", "map")
		if c.failed != 0 {
			t.Errorf("finished{error} = %v after cancellation, want 0 (%+v)", c.failed, c)
		}
		r72Balanced(t, "cancel", c)
	})
	t.Run("foreach-stop", func(t *testing.T) {
		reg, obs := r72New(t)
		ctx := stage.Observe(context.Background(), obs)
		s := stage.Map(source.Slice(r72Ints(100)), func(ctx context.Context, v int) (int, error) {
			if v >= 2 {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			return v, nil
		}, stage.Name("stop"), stage.Workers(4), stage.Buffer(1))
		var err error
		runcheck.Run(t, "stop", func() {
			err = sink.ForEach(ctx, s, func(context.Context, int) error { return stage.ErrStop })
		})
		if err != nil {
			t.Fatalf("err = %v", err)
		}
		c := r72StageOf(r72Gather(t, reg), "stop", "map")
		if c.failed != 0 {
			t.Errorf("finished{error} = %v after ErrStop, want 0 (%+v)", c.failed, c)
		}
		r72Balanced(t, "stop", c)
	})
}

// "sluice_stage_duration_seconds{stage,kind} call durations (all attempts)":
// one call (all its attempts) is one finished call and one observation.
// Also: a KeyBy panic "fails the item ... (the item's function is not
// called)", reported by Received then Finished with its *Error: outcome error.
func TestReview72RetriesAndKeyPanicsCountOnce(t *testing.T) {
	reg, obs := r72New(t)
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
	all := r72Gather(t, reg)
	r := r72StageOf(all, "retry", "map")
	if r.received != n || r.ok != n || r.failed != 0 || r.hist != n {
		t.Errorf("retry stage %+v, want received %d, ok %d, error 0, histogram %d (one per call, all attempts)", r, n, n, n)
	}
	kc := r72StageOf(all, "keyed", "map")
	if kc.received != n || kc.failed != n/3 || kc.ok != n-n/3 {
		t.Errorf("keyed stage %+v, want received %d, error %d, ok %d", kc, n, n/3, n-n/3)
	}
	r72Balanced(t, "retry", r)
	r72Balanced(t, "keyed", kc)
}

// "A stage name that is not valid UTF-8, which a label cannot hold, is
// recorded with each run of invalid bytes replaced by one U+FFFD (so names
// that differ only there share a series)."
func TestReview72InvalidUTF8Names(t *testing.T) {
	reg, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	names := []string{"a\xffb", "a\xfe\xfd\xfcb", "a\xc3b"} // one run of invalid bytes each
	in := r72Ints(10)
	var s stage.Stream[int] = source.Slice(in)
	for _, nm := range names {
		s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name(nm))
	}
	s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("\xff\xfe"))
	s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("x\xffy\xfez"))
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	all := r72Gather(t, reg)
	for _, se := range all {
		for k, v := range se.labels {
			if !utf8.ValidString(v) {
				t.Errorf("%s label %s=%q is not UTF-8", se.metric, k, v)
			}
		}
	}
	c := r72StageOf(all, "a\uFFFDb", "map")
	if c.received != 30 || c.ok != 30 {
		t.Errorf("series a\\uFFFDb: %+v, want the 3 stages' 30 items in one series", c)
	}
	if c := r72StageOf(all, "\uFFFD", "map"); c.received != 10 {
		t.Errorf(`series "\uFFFD": %+v, want 10`, c)
	}
	if c := r72StageOf(all, "x\uFFFDy\uFFFDz", "map"); c.received != 10 {
		t.Errorf(`series "x\uFFFDy\uFFFDz": %+v, want 10`, c)
	}
	for _, se := range all {
		if se.metric == "sluice_stage_received_total" && se.labels["stage"] != "a\uFFFDb" &&
			se.labels["stage"] != "\uFFFD" && se.labels["stage"] != "x\uFFFDy\uFFFDz" {
			t.Errorf("unexpected series %v", se.labels)
		}
	}
}

// Hostile but valid names: very long, control characters, quotes and label
// syntax, a name that looks like a generated one. Labels are per stage.
func TestReview72HostileValidNames(t *testing.T) {
	reg, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	long := strings.Repeat("é", 1<<17) // 256 KiB
	names := []string{long, "a\"b\\c\nd", `x",kind="filter`, "\x00", "map#1", " "}
	var s stage.Stream[int] = source.Slice(r72Ints(5))
	for _, nm := range names {
		s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name(nm))
	}
	// An unnamed map after them: its generated name is map#7, not map#1.
	s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil })
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	all := r72Gather(t, reg)
	for _, nm := range append(names, "map#7") {
		c := r72StageOf(all, nm, "map")
		if c.received != 5 || c.ok != 5 || c.hist != 5 {
			q := nm
			if len(q) > 20 {
				q = q[:20] + "..."
			}
			t.Errorf("stage %q: %+v, want 5 received/ok/histogram", q, c)
		}
	}
}

// Same name twice in one run, and in two runs: one series per (name, kind),
// counts adding up; a different kind under the same name is another series
// ("Labels are per stage only (stage name and kind, and the outcome of a call)").
func TestReview72SameNameShares(t *testing.T) {
	reg, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	a := stage.Map(source.Slice(r72Ints(10)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("dup"))
	b := stage.Map(a, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("dup"))
	c := stage.Filter(b, func(_ context.Context, v int) (bool, error) { return true, nil }, stage.Name("dup"))
	for range 3 {
		if _, err := sink.Count(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	all := r72Gather(t, reg)
	m := r72StageOf(all, "dup", "map")
	f := r72StageOf(all, "dup", "filter")
	if m.received != 60 || m.hist != 60 {
		t.Errorf("dup/map %+v, want 60", m)
	}
	if f.received != 30 || f.hist != 30 {
		t.Errorf("dup/filter %+v, want 30", f)
	}
	r72Balanced(t, "dup/map", m)
	r72Balanced(t, "dup/filter", f)
}

// Info.Kind: "map", "filter", "flatmap", "concurrent", "apply", "unbatch"; the
// kind label carries it; unnamed stages are "map#1", "filter#2", ...
func TestReview72KindsAndGeneratedNames(t *testing.T) {
	reg, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	m := stage.Map(source.Slice(r72Ints(8)), func(_ context.Context, v int) (int, error) { return v, nil })
	f := stage.Filter(m, func(_ context.Context, v int) (bool, error) { return true, nil })
	fm := stage.FlatMap(f, func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil })
	ap := stage.Apply(fm, func(_ context.Context, v int, emit func(int) bool) error { emit(v); return nil })
	b := stage.Batch(ap, 4, 0)
	u := stage.Unbatch(b)
	tasks := stage.Map(u, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
		return func(context.Context) (int, error) { return v, nil }, nil
	})
	cc := stage.Concurrent(tasks)
	n, err := sink.Count(ctx, cc)
	if err != nil || n != 16 {
		t.Fatalf("Count = %d, %v", n, err)
	}
	all := r72Gather(t, reg)
	for _, w := range []struct {
		name, kind string
		recv       float64
	}{
		{"map#1", "map", 8}, {"filter#2", "filter", 8}, {"flatmap#3", "flatmap", 8},
		{"apply#4", "apply", 16}, {"unbatch#5", "unbatch", 4}, {"map#6", "map", 16}, {"concurrent#7", "concurrent", 16},
	} {
		c := r72StageOf(all, w.name, w.kind)
		if c.received != w.recv {
			t.Errorf("%s{kind=%s}: %+v, want received %v", w.name, w.kind, c, w.recv)
		}
		r72Balanced(t, w.name, c)
	}
}

// "sluice_stage_in_flight{stage,kind} items taken and not finished", read
// while the run goes on: four calls blocked at once.
func TestReview72InFlightDuringRun(t *testing.T) {
	reg, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	var entered sync.WaitGroup
	entered.Add(4)
	release := make(chan struct{})
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		entered.Wait()
		all := r72Gather(t, reg)
		c := r72StageOf(all, "blocked", "map")
		if c.inFlight != 4 || c.received != 4 || c.ok+c.failed != 0 {
			t.Errorf("while 4 calls run: %+v, want in flight 4, received 4, finished 0", c)
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
	c := r72StageOf(r72Gather(t, reg), "blocked", "map")
	if c.received != 4 || c.ok != 4 {
		t.Errorf("after: %+v", c)
	}
	r72Balanced(t, "blocked", c)
}

// Many concurrent runs share one adapter (Watcher methods are "called from
// the stage's workers, several at once"); observers attached twice see every
// stage twice (stage.Observe: "one attached twice sees it twice").
func TestReview72ConcurrentRunsShareOneObserver(t *testing.T) {
	reg, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	twice := stage.Observe(ctx, obs)
	const runs, items = 24, 200
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
				c := ctx
				if i%2 == 1 {
					c = twice
				}
				n, err := sink.Count(c, s)
				if n != items-items/50 || err == nil {
					t.Errorf("run %d: %d, %v", i, n, err)
				}
			})
		}
		wg.Wait()
	})
	c := r72StageOf(r72Gather(t, reg), "shared", "map")
	weight := float64(runs/2 + 2*(runs/2))
	if c.received != weight*items || c.failed != weight*items/50 || c.ok != weight*(items-items/50) {
		t.Errorf("%+v, want received %v, error %v", c, weight*items, weight*items/50)
	}
	r72Balanced(t, "shared", c)
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
	reg, obs := r72New(t)
	if _, err := prom.New(reg); err == nil {
		t.Fatal("second New on one registry succeeded")
	}
	ctx := stage.Observe(context.Background(), obs)
	s := stage.Map(source.Slice(r72Ints(3)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("one"))
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	if c := r72StageOf(r72Gather(t, reg), "one", "map"); c.received != 3 || c.hist != 3 {
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
	reg, obs := r72New(t)
	w := obs.Stage(stage.Info{Name: "direct", Kind: "map", Workers: 2, Total: -1})
	if w == nil {
		t.Fatal("Stage returned nil")
	}
	cut := fmt.Errorf("sluice: run ended (%w): %w", errors.New("cause"), context.Canceled)
	errs := []error{nil, &stage.Error{Stage: "direct", Err: errors.New("x"), Attempts: 1}, cut, nil, &stage.Error{Stage: "direct", Attempts: 0, Err: &stage.PanicError{}}}
	for _, e := range errs {
		w.Received()
		w.Finished(0, e)
	}
	w.Received() // one still in flight
	all := r72Gather(t, reg)
	c := r72StageOf(all, "direct", "map")
	if c.received != 6 || c.ok != 3 || c.failed != 2 || c.inFlight != 1 || c.hist != 5 {
		t.Errorf("%+v, want received 6, ok 3, error 2, in flight 1, histogram 5", c)
	}
	w.Finished(0, nil)
	w.Closed()
	c = r72StageOf(r72Gather(t, reg), "direct", "map")
	r72Balanced(t, "direct", c)
}

// "A call's outcome is "error" when its item failed (the stage's error policy
// handles it)". An item whose function returns a context error of its own
// while the run goes on (context.Canceled, or its per-call Timeout's
// DeadlineExceeded) failed: the policy gets it (here Forward), so it is no
// call "cut short by the end of the run".
func TestReview72ContextErrorsOfItemsAreFailures(t *testing.T) {
	reg, obs := r72New(t)
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
			<-ctx.Done() // its own Timeout: the run goes on
			return 0, ctx.Err()
		}
		return v, nil
	}, stage.Name("timeout"), stage.Workers(3), stage.Timeout(time.Millisecond), stage.OnError(stage.Forward))
	var got int
	var err error
	runcheck.Run(t, "ctxerrs", func() { got, err = sink.Count(ctx, b) })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != n/2+n/4 || got != n/4 {
		t.Fatalf("Count = %d, %v; want %d forwarded, %d values", got, err, n/2+n/4, n/4)
	}
	all := r72Gather(t, reg)
	c := r72StageOf(all, "canceled", "map")
	if c.failed != n/2 || c.ok != n/2 {
		t.Errorf("canceled stage: %+v, want error %d (items that returned context.Canceled failed), ok %d", c, n/2, n/2)
	}
	d := r72StageOf(all, "timeout", "map")
	if d.received != n/2 || d.failed != n/4 || d.ok != n/4 {
		t.Errorf("timeout stage: %+v, want received %d, error %d (timed out), ok %d", d, n/2, n/4, n/4)
	}
	r72Balanced(t, "canceled", c)
	r72Balanced(t, "timeout", d)
}

// Budget(n, h): "the (n+1)th, which h does not see, fails the run": every one
// of the n+1 items failed (outcome error); Handle whose h returns an error:
// that item failed too.
func TestReview72BudgetAndHandleFailures(t *testing.T) {
	reg, obs := r72New(t)
	ctx := stage.Observe(context.Background(), obs)
	s := stage.Map(source.Slice(r72Ints(20)), func(_ context.Context, v int) (int, error) {
		if v%2 == 0 {
			return 0, errors.New("even")
		}
		return v, nil
	}, stage.Name("budget"), stage.Workers(1), stage.OnError(stage.Budget(3, nil)))
	_, err := sink.Count(ctx, s)
	if !errors.Is(err, stage.ErrBudget) {
		t.Fatalf("err = %v", err)
	}
	hErr := errors.New("dead letter queue down")
	h := stage.Map(source.Slice(r72Ints(20)), func(_ context.Context, v int) (int, error) {
		if v == 5 {
			return 0, errors.New("five")
		}
		return v, nil
	}, stage.Name("handle"), stage.Workers(1), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return hErr })))
	if _, err := sink.Count(ctx, h); !errors.Is(err, hErr) {
		t.Fatalf("err = %v", err)
	}
	all := r72Gather(t, reg)
	b := r72StageOf(all, "budget", "map")
	if b.failed != 4 {
		t.Errorf("budget: %+v, want error 4 (3 within the budget + the one that failed the run)", b)
	}
	hc := r72StageOf(all, "handle", "map")
	if hc.failed != 1 {
		t.Errorf("handle: %+v, want error 1", hc)
	}
	r72Balanced(t, "budget", b)
	r72Balanced(t, "handle", hc)
}
