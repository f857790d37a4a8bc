package prom_test

// Adversarial tests of the Prometheus observer, written from its
// documentation (and stage's Observer/Watcher/Info). Real registry, real
// runs; gates and channels order things, durations are watchdogs only.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const rvWatchdog = 30 * time.Second

const (
	mReceived = "sluice_stage_received_total"
	mFinished = "sluice_stage_finished_total"
	mInFlight = "sluice_stage_in_flight"
	mDuration = "sluice_stage_duration_seconds"
)

// rvSeries is one gathered series.
type rvSeries struct {
	metric, stage, kind, outcome string
	labels                       []string // label names, sorted as gathered
	typ                          string   // COUNTER, GAUGE, HISTOGRAM
	value                        float64  // counter, gauge, histogram sample count
	sum                          float64  // histogram sample sum
}

func rvGather(t testing.TB, g prometheus.Gatherer) []rvSeries {
	t.Helper()
	all, err := rvTryGather(g)
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return all
}

// rvTryGather is rvGather for goroutines other than the test's.
func rvTryGather(g prometheus.Gatherer) ([]rvSeries, error) {
	mfs, err := g.Gather()
	if err != nil {
		return nil, err
	}
	var out []rvSeries
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			s := rvSeries{metric: mf.GetName(), typ: mf.GetType().String()}
			for _, l := range m.GetLabel() {
				s.labels = append(s.labels, l.GetName())
				switch l.GetName() {
				case "stage":
					s.stage = l.GetValue()
				case "kind":
					s.kind = l.GetValue()
				case "outcome":
					s.outcome = l.GetValue()
				}
			}
			switch {
			case m.Counter != nil:
				s.value = m.GetCounter().GetValue()
			case m.Gauge != nil:
				s.value = m.GetGauge().GetValue()
			case m.Histogram != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
				s.sum = m.GetHistogram().GetSampleSum()
			}
			out = append(out, s)
		}
	}
	return out, nil
}

// rvGet returns the series of metric for stage (and outcome, for finished),
// and whether it exists.
func rvGet(all []rvSeries, metric, stageName, outcome string) (rvSeries, bool) {
	for _, s := range all {
		if s.metric == metric && s.stage == stageName && s.outcome == outcome {
			return s, true
		}
	}
	return rvSeries{}, false
}

func rvVal(all []rvSeries, metric, stageName, outcome string) float64 {
	s, _ := rvGet(all, metric, stageName, outcome)
	return s.value
}

// rvMatchStats checks every stage the library's own Stats saw against the
// Prometheus series: received, finished by outcome, in flight, durations
// counted, the kind label; and that no other stage has series.
func rvMatchStats(t *testing.T, reg prometheus.Gatherer, stats *stage.Stats) {
	t.Helper()
	all := rvGather(t, reg)
	names := map[string]bool{}
	for _, c := range stats.Snapshot() {
		names[c.Name] = true
		rec, ok := rvGet(all, mReceived, c.Name, "")
		if !ok {
			t.Errorf("stage %q: no %s series", c.Name, mReceived)
			continue
		}
		if rec.kind != c.Kind {
			t.Errorf("stage %q: kind label %q, want %q", c.Name, rec.kind, c.Kind)
		}
		okN, errN := rvVal(all, mFinished, c.Name, "ok"), rvVal(all, mFinished, c.Name, "error")
		dur, hasDur := rvGet(all, mDuration, c.Name, "")
		if rec.value != float64(c.Received) || okN != float64(c.Finished-c.Failed) || errN != float64(c.Failed) ||
			rvVal(all, mInFlight, c.Name, "") != float64(c.InFlight) || !hasDur || dur.value != float64(c.Finished) {
			t.Errorf("stage %q (%s): received %v ok %v error %v in flight %v durations %v; Stats says received %d finished %d failed %d in flight %d",
				c.Name, c.Kind, rec.value, okN, errN, rvVal(all, mInFlight, c.Name, ""), dur.value, c.Received, c.Finished, c.Failed, c.InFlight)
		}
	}
	for _, s := range all {
		if !names[s.stage] {
			t.Errorf("a series for a stage the run does not have: %+v", s)
		}
	}
}

func rvNew(t *testing.T) (*prometheus.Registry, *prom.Observer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	obs, err := prom.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	return reg, obs
}

func rvRecv[T any](t *testing.T, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(rvWatchdog):
		t.Fatalf("gave up after %v waiting for %s", rvWatchdog, what)
		panic("unreachable")
	}
}

// rvTake takes k values from c, or reports false after the watchdog (for
// goroutines other than the test's).
func rvTake[T any](c <-chan T, k int) bool {
	deadline := time.After(rvWatchdog)
	for range k {
		select {
		case <-c:
		case <-deadline:
			return false
		}
	}
	return true
}

func rvInts(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// 1. The four metrics, their types and label names, as documented.
func TestReviewPromMetricShapes(t *testing.T) {
	reg, obs := rvNew(t)
	ctx := stage.Observe(context.Background(), obs)
	s := stage.Map(source.Slice(rvInts(10)), func(_ context.Context, i int) (int, error) {
		if i == 3 {
			return 0, errors.New("three")
		}
		return i, nil
	}, stage.Name("m"), stage.OnError(stage.Forward))
	if _, err := sink.Count(ctx, s); err == nil {
		t.Fatal("want the forwarded error")
	}
	want := map[string]struct {
		typ    string
		labels []string
	}{
		mReceived: {"COUNTER", []string{"kind", "stage"}},
		mFinished: {"COUNTER", []string{"kind", "outcome", "stage"}},
		mInFlight: {"GAUGE", []string{"kind", "stage"}},
		mDuration: {"HISTOGRAM", []string{"kind", "stage"}},
	}
	seen := map[string]int{}
	for _, s := range rvGather(t, reg) {
		w, ok := want[s.metric]
		if !ok {
			t.Errorf("undocumented metric %s", s.metric)
			continue
		}
		seen[s.metric]++
		if s.typ != w.typ || fmt.Sprint(s.labels) != fmt.Sprint(w.labels) {
			t.Errorf("%s: type %v labels %v, want %v %v", s.metric, s.typ, s.labels, w.typ, w.labels)
		}
		if s.stage != "m" || s.kind != "map" {
			t.Errorf("%s: stage %q kind %q, want m, map", s.metric, s.stage, s.kind)
		}
		if s.metric == mFinished && s.outcome != "ok" && s.outcome != "error" {
			t.Errorf("%s: outcome %q", s.metric, s.outcome)
		}
	}
	for m := range want {
		if seen[m] == 0 {
			t.Errorf("no %s series after a run", m)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Logf("promlint (not a documented promise): %v %v", problems, err)
	}
}

// 2. While a run goes on: three calls are held at a gate; the registry
// shows them received and in flight, none finished. Then, released: the
// totals, in flight back to 0, and durations in seconds (the sum is at
// least the time the calls spent in the function, and at most the run's
// wall time per call).
func TestReviewPromInFlightAndSecondsDuringARun(t *testing.T) {
	const workers, n = 3, 6
	reg, obs := rvNew(t)
	ctx := stage.Observe(context.Background(), obs)
	entered := make(chan struct{}, n)
	gate := make(chan struct{})
	var mu sync.Mutex
	var inFn time.Duration
	s := stage.Map(source.Slice(rvInts(n)), func(_ context.Context, i int) (int, error) {
		start := time.Now()
		entered <- struct{}{}
		<-gate
		mu.Lock()
		inFn += time.Since(start)
		mu.Unlock()
		return i, nil
	}, stage.Name("held"), stage.Workers(workers), stage.Buffer(1))
	errc := make(chan error, 1)
	began := time.Now()
	go func() {
		_, err := sink.Count(ctx, s)
		errc <- err
	}()
	for k := range workers {
		rvRecv(t, fmt.Sprintf("call %d", k), entered)
	}
	all := rvGather(t, reg)
	if got := rvVal(all, mReceived, "held", ""); got != workers {
		t.Errorf("mid-run received = %v, want %d", got, workers)
	}
	if got := rvVal(all, mInFlight, "held", ""); got != workers {
		t.Errorf("mid-run in flight = %v, want %d", got, workers)
	}
	if got := rvVal(all, mFinished, "held", "ok") + rvVal(all, mFinished, "held", "error"); got != 0 {
		t.Errorf("mid-run finished = %v, want 0", got)
	}
	if got := rvVal(all, mDuration, "held", ""); got != 0 {
		t.Errorf("mid-run durations counted = %v, want 0", got)
	}
	time.Sleep(20 * time.Millisecond) // makes the seconds bound below meaningful
	close(gate)
	if err := rvRecv(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(began)
	all = rvGather(t, reg)
	if rvVal(all, mReceived, "held", "") != n || rvVal(all, mFinished, "held", "ok") != n ||
		rvVal(all, mInFlight, "held", "") != 0 || rvVal(all, mDuration, "held", "") != n {
		t.Errorf("after the run: %+v", all)
	}
	d, _ := rvGet(all, mDuration, "held", "")
	if d.sum < inFn.Seconds() || d.sum > wall.Seconds()*n {
		t.Errorf("duration sum %v s: want between %v (time inside the calls) and %v (wall × calls): not seconds?", d.sum, inFn.Seconds(), wall.Seconds()*n)
	}
}

// 3. Durations count all attempts under Retry: one finished call, whose
// duration covers every attempt.
func TestReviewPromDurationCoversAllAttempts(t *testing.T) {
	reg, obs := rvNew(t)
	var inFn time.Duration
	attempts := 0
	s := stage.Map(source.Slice([]int{1}), func(_ context.Context, i int) (int, error) {
		start := time.Now()
		time.Sleep(5 * time.Millisecond)
		inFn += time.Since(start)
		if attempts++; attempts < 3 {
			return 0, errors.New("again")
		}
		return i, nil
	}, stage.Name("retried"), stage.Workers(1), stage.Retry(3, 0))
	if _, err := sink.Count(stage.Observe(context.Background(), obs), s); err != nil {
		t.Fatal(err)
	}
	all := rvGather(t, reg)
	d, _ := rvGet(all, mDuration, "retried", "")
	if rvVal(all, mReceived, "retried", "") != 1 || rvVal(all, mFinished, "retried", "ok") != 1 ||
		rvVal(all, mFinished, "retried", "error") != 0 || d.value != 1 {
		t.Fatalf("one item retried twice: %+v", all)
	}
	if d.sum < inFn.Seconds() {
		t.Fatalf("duration sum %v s < %v s spent in the 3 attempts: not all attempts", d.sum, inFn.Seconds())
	}
}

var errReview = errors.New("review")

// 4. Outcomes and kinds across every kind of stage that calls a function,
// checked against the library's own Stats: errors (returned, panicked,
// accepted by Handle, forwarded, budgeted) are "error"; a Filter that drops
// is "ok"; forwarded errors passing a later stage are not received there.
func TestReviewPromOutcomesAndKinds(t *testing.T) {
	reg, obs := rvNew(t)
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), obs), &stats)
	const n = 200
	m := stage.Map(source.Slice(rvInts(n)), func(_ context.Context, i int) (int, error) {
		if i%10 == 1 {
			return 0, errReview
		}
		if i%10 == 2 {
			panic("review panic")
		}
		return i, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
	f := stage.Filter(m, func(_ context.Context, i int) (bool, error) { return i%2 == 0, nil }, stage.Workers(3))
	fm := stage.FlatMap(f, func(_ context.Context, i int) ([]int, error) {
		if i%10 == 4 {
			return nil, errReview
		}
		return []int{i, i + 1}, nil
	}, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	tasks := stage.Map(fm, func(_ context.Context, i int) (func(context.Context) (int, error), error) {
		return func(context.Context) (int, error) {
			if i%10 == 6 {
				return 0, errReview
			}
			return i, nil
		}, nil
	}, stage.Name(`tasks "quoted"`))
	c := stage.Concurrent(tasks, stage.Workers(5), stage.OnError(stage.Budget(1000, nil)))
	ap := stage.Apply(c, func(_ context.Context, i int, emit func(int) bool) error {
		emit(i)
		return nil
	})
	ub := stage.Unbatch(stage.Batch(ap, 7, 0))
	last := stage.Map(ub, func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name("last"))
	for run := range 2 {
		if _, err := sink.Count(ctx, last); err == nil {
			t.Fatalf("run %d: want the forwarded errors", run)
		}
	}
	if len(stats.Snapshot()) != 8 {
		t.Fatalf("Stats saw %d stages, want 8", len(stats.Snapshot()))
	}
	kinds := map[string]bool{}
	for _, c := range stats.Snapshot() {
		kinds[c.Kind] = true
		if c.Failed == 0 && (c.Kind == "map" && c.Name == "map#1" || c.Kind == "flatmap" || c.Kind == "concurrent") {
			t.Errorf("stage %s counted no failure: the test is broken", c.Name)
		}
	}
	for _, k := range []string{"map", "filter", "flatmap", "concurrent", "apply", "unbatch"} {
		if !kinds[k] {
			t.Errorf("no %s stage in the pipeline: the test is broken (%v)", k, kinds)
		}
	}
	rvMatchStats(t, reg, &stats)
}

// 5. Runs that end early (cancelled while calls wait; a FailFast error while
// others are in flight): every received call is finished in some outcome,
// nothing stays in flight, every call's duration is counted.
func TestReviewPromEarlyEndLeavesNothingInFlight(t *testing.T) {
	for _, how := range []string{"cancel", "failfast"} {
		t.Run(how, func(t *testing.T) {
			reg, obs := rvNew(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			const workers = 4
			entered := make(chan int, 100)
			s := stage.Map(source.Slice(rvInts(100)), func(ctx context.Context, i int) (int, error) {
				entered <- i
				if how == "failfast" && i == 0 {
					if !rvTake(entered, workers) { // its own entry and the 3 others': all in their calls
						return 0, errors.New("watchdog: the calls did not come")
					}
					return 0, errReview
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Name("w"), stage.Workers(workers), stage.Buffer(1))
			s2 := stage.Map(s, func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name("after"))
			errc := make(chan error, 1)
			go func() {
				_, err := sink.Count(stage.Observe(ctx, obs), s2)
				errc <- err
			}()
			if how == "cancel" {
				for k := range workers {
					rvRecv(t, fmt.Sprintf("call %d", k), entered)
				}
				cancel()
			}
			err := rvRecv(t, "the run", errc)
			if err == nil {
				t.Fatal("the run ended without an error")
			}
			all := rvGather(t, reg)
			rec := rvVal(all, mReceived, "w", "")
			fin := rvVal(all, mFinished, "w", "ok") + rvVal(all, mFinished, "w", "error")
			if rec < workers || fin != rec || rvVal(all, mInFlight, "w", "") != 0 || rvVal(all, mDuration, "w", "") != rec {
				t.Fatalf("after the run (%v): received %v, finished %v (ok %v, error %v), in flight %v, durations %v",
					err, rec, fin, rvVal(all, mFinished, "w", "ok"), rvVal(all, mFinished, "w", "error"),
					rvVal(all, mInFlight, "w", ""), rvVal(all, mDuration, "w", ""))
			}
			if how == "failfast" && rvVal(all, mFinished, "w", "error") < 1 {
				t.Fatal("the failing call is not counted as an error")
			}
			if rvVal(all, mInFlight, "after", "") != 0 {
				t.Fatal("a later stage left calls in flight")
			}
		})
	}
}

// 5b. A call that a run's end cut short did not fail: a stage whose
// function never fails, whose calls are in flight when the sink's callback
// fails (or when the caller cancels), counts no "error" outcome, as the
// library's own Stats (Failed: "calls that ended in an item error") and
// Logger ("a call ended by the run's cancellation is not a failure") see
// it; and the outcome of such a call does not depend on what ended the run.
func TestReviewPromCutShortCallsAreNotErrors(t *testing.T) {
	for _, how := range []string{"sink error", "cancel", "failfast upstream", "failfast upstream, returns the cause"} {
		t.Run(how, func(t *testing.T) {
			reg, obs := rvNew(t)
			var stats stage.Stats
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx = stage.Observe(stage.Observe(ctx, obs), &stats)
			entered := make(chan int, 100)
			in := stage.Map(source.Slice(rvInts(100)), func(_ context.Context, i int) (int, error) {
				if strings.HasPrefix(how, "failfast upstream") && i == 2 {
					if !rvTake(entered, 2) { // no t.Fatal in a stage's goroutine
						return 0, errors.New("watchdog: the calls did not come")
					}
					return 0, errReview // FailFast: the run's cause is this *stage.Error
				}
				return i, nil
			}, stage.Name("upstream"), stage.Workers(1), stage.Buffer(1))
			s := stage.Map(in, func(ctx context.Context, i int) (int, error) {
				if i == 0 && !strings.HasPrefix(how, "failfast upstream") {
					return 0, nil
				}
				entered <- i
				<-ctx.Done() // cut short by the run's end
				if strings.HasSuffix(how, "returns the cause") {
					return 0, context.Cause(ctx) // the idiom: the reason the run ended
				}
				return 0, ctx.Err()
			}, stage.Name("innocent"), stage.Workers(2), stage.Buffer(1))
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				rvRecv(t, "a call in flight", entered)
				rvRecv(t, "a second call in flight", entered)
				if how == "cancel" {
					cancel()
					return nil
				}
				return errReview
			})
			if err == nil {
				t.Fatal("the run ended without an error")
			}
			c, _ := stats.Get("innocent")
			all := rvGather(t, reg)
			if rec := rvVal(all, mReceived, "innocent", ""); rec < 2 || rvVal(all, mFinished, "innocent", "ok")+rvVal(all, mFinished, "innocent", "error") != rec {
				t.Fatalf("innocent stage: received %v, finished %v + %v: want every call (at least the 2 held) finished", rec,
					rvVal(all, mFinished, "innocent", "ok"), rvVal(all, mFinished, "innocent", "error"))
			}
			if got := rvVal(all, mFinished, "innocent", "error"); got != float64(c.Failed) || got != 0 {
				t.Fatalf("innocent stage: %v calls with outcome error (ok %v, received %v); Stats counts %d failed of %d finished; the stage's function never failed (run: %v)",
					got, rvVal(all, mFinished, "innocent", "ok"), rvVal(all, mReceived, "innocent", ""), c.Failed, c.Finished, err)
			}
		})
	}
}

// 6. One observer shared by concurrent runs of two pipelines (and several
// stages with many workers), gathered all along: the watchers are called
// from many goroutines at once (-race), counters never go down, in flight
// stays within the workers, and the totals are exact at the end. Stages of
// the same name in several runs add up.
func TestReviewPromConcurrentRunsShareTheObserver(t *testing.T) {
	const runs, n, workers = 4, 2000, 8
	reg, obs := rvNew(t)
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), obs), &stats)
	pipeA := stage.Filter(stage.Map(source.Slice(rvInts(n)), func(_ context.Context, i int) (int, error) {
		if i%100 == 0 {
			return 0, errReview
		}
		return i, nil
	}, stage.Name("a.parse"), stage.Workers(workers), stage.OnError(stage.Forward)),
		func(_ context.Context, i int) (bool, error) { return i%3 != 0, nil }, stage.Name("a.keep"), stage.Workers(workers))
	ch := make(chan int)
	pipeB := stage.Map(source.Chan(ch), func(_ context.Context, i int) (string, error) {
		runtime.Gosched()
		return strconv.Itoa(i), nil
	}, stage.Name("b.fmt"), stage.Workers(workers))
	stop := make(chan struct{})
	scraped := make(chan string, 1)
	go func() {
		defer close(scraped)
		last := map[string]float64{}
		for {
			all, err := rvTryGather(reg)
			if err != nil {
				scraped <- err.Error()
				return
			}
			for _, s := range all {
				key := s.metric + "/" + s.stage + "/" + s.outcome
				if s.metric == mInFlight {
					if s.value < 0 || s.value > runs*workers {
						scraped <- fmt.Sprintf("in flight %v for %s", s.value, s.stage)
						return
					}
					continue
				}
				if s.value < last[key] {
					scraped <- fmt.Sprintf("%s went down from %v to %v", key, last[key], s.value)
					return
				}
				last[key] = s.value
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 2*runs+1)
	for range runs {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := sink.Count(ctx, pipeA); err == nil {
				errs <- errors.New("pipeline A: want the forwarded errors")
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := sink.Count(ctx, pipeB); err != nil {
				errs <- err
			}
		}()
	}
	deadline := time.After(rvWatchdog)
	for i := range runs * n {
		select {
		case ch <- i:
		case <-deadline:
			t.Fatal("the runs of pipeline B stopped taking items")
		}
	}
	close(ch)
	wg.Wait()
	close(stop)
	if msg, ok := <-scraped; ok {
		t.Fatal(msg)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := rvGather(t, reg)
	if got := rvVal(all, mReceived, "a.parse", ""); got != runs*n {
		t.Errorf("a.parse received %v, want %d", got, runs*n)
	}
	if got := rvVal(all, mFinished, "a.parse", "error"); got != runs*n/100 {
		t.Errorf("a.parse errors %v, want %d", got, runs*n/100)
	}
	if got := rvVal(all, mReceived, "b.fmt", ""); got != runs*n {
		t.Errorf("b.fmt received %v, want %d", got, runs*n)
	}
	rvMatchStats(t, reg, &stats)
}

// 7. Stage names that need escaping in the exposition format keep their
// exact value as a label; a name that is not valid UTF-8 (which a
// Prometheus label value cannot hold) does not take the run down.
func TestReviewPromAwkwardStageNames(t *testing.T) {
	reg, obs := rvNew(t)
	ctx := stage.Observe(context.Background(), obs)
	names := []string{"a\"b\\c\nd", `x{stage="y"}`, "é ünïcödé 段", " ", "sluice_stage_in_flight"}
	for _, name := range names {
		s := stage.Map(source.Slice(rvInts(3)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name(name))
		if _, err := sink.Count(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	all := rvGather(t, reg)
	for _, name := range names {
		if got := rvVal(all, mReceived, name, ""); got != 3 {
			t.Errorf("stage %q: received %v, want 3", name, got)
		}
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 5*len(names) {
		t.Errorf("%d series (%v), want %d", n, err, 5*len(names))
	}

	t.Run("invalid UTF-8", func(t *testing.T) {
		s := stage.Map(source.Slice(rvInts(3)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name("bad\xff"))
		var got int
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("the run panicked: %v", p)
				}
			}()
			got, err = sink.Count(ctx, s)
		}()
		if err != nil || got != 3 {
			t.Fatalf("the run: %d items, %v", got, err)
		}
		if _, err := reg.Gather(); err != nil {
			t.Fatalf("the registry no longer gathers: %v", err)
		}
	})
}

// 8. New on a registry that already holds one of the names (another
// observer) returns the registry's error, and the observer that holds the
// metrics goes on recording into them.
func TestReviewPromSecondNewLeavesTheFirstWorking(t *testing.T) {
	reg, obs := rvNew(t)
	_, err := prom.New(reg)
	var are prometheus.AlreadyRegisteredError
	if !errors.As(err, &are) {
		t.Fatalf("second New: %v, want AlreadyRegisteredError", err)
	}
	s := stage.Map(source.Slice(rvInts(5)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name("s"))
	if _, err := sink.Count(stage.Observe(context.Background(), obs), s); err != nil {
		t.Fatal(err)
	}
	if got := rvVal(rvGather(t, reg), mReceived, "s", ""); got != 5 {
		t.Fatalf("received %v, want 5", got)
	}
}
