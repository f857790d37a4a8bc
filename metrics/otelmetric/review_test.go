package otelmetric_test

// Adversarial tests of the OpenTelemetry observer, written from its
// documentation (and stage's Observer/Watcher/Info). A real SDK meter
// provider with a manual reader, real runs; gates and channels order
// things, durations are watchdogs only.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/sluicedev/sluice/metrics/otelmetric"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const rvWatchdog = 30 * time.Second

const (
	mReceived = "sluice.stage.received"
	mFinished = "sluice.stage.finished"
	mInFlight = "sluice.stage.in_flight"
	mDuration = "sluice.stage.duration"
)

// rvPoint is one collected data point.
type rvPoint struct {
	metric, unit         string
	shape                string // "counter" (monotonic sum), "updown" (non-monotonic sum), "histogram"
	cumulative           bool
	stage, kind, outcome string
	keys                 []string // attribute keys, sorted
	value                float64  // sum value, or histogram count
	sum                  float64  // histogram sum
}

func rvAttrs(p *rvPoint, set attribute.Set) {
	for _, kv := range set.ToSlice() {
		p.keys = append(p.keys, string(kv.Key))
		switch kv.Key {
		case "sluice.stage":
			p.stage = kv.Value.AsString()
		case "sluice.kind":
			p.kind = kv.Value.AsString()
		case "sluice.outcome":
			p.outcome = kv.Value.AsString()
		}
	}
	sort.Strings(p.keys)
}

func rvSum[N int64 | float64](m metricdata.Metrics, d metricdata.Sum[N]) []rvPoint {
	var out []rvPoint
	for _, dp := range d.DataPoints {
		p := rvPoint{metric: m.Name, unit: m.Unit, shape: "updown", cumulative: d.Temporality == metricdata.CumulativeTemporality, value: float64(dp.Value)}
		if d.IsMonotonic {
			p.shape = "counter"
		}
		rvAttrs(&p, dp.Attributes)
		out = append(out, p)
	}
	return out
}

func rvHist[N int64 | float64](m metricdata.Metrics, d metricdata.Histogram[N]) []rvPoint {
	var out []rvPoint
	for _, dp := range d.DataPoints {
		p := rvPoint{metric: m.Name, unit: m.Unit, shape: "histogram", cumulative: d.Temporality == metricdata.CumulativeTemporality,
			value: float64(dp.Count), sum: float64(dp.Sum)}
		rvAttrs(&p, dp.Attributes)
		out = append(out, p)
	}
	return out
}

// rvTryCollect collects every data point (usable from any goroutine).
func rvTryCollect(r *sdkmetric.ManualReader) ([]rvPoint, error) {
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		return nil, err
	}
	var out []rvPoint
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				out = append(out, rvSum(m, d)...)
			case metricdata.Sum[float64]:
				out = append(out, rvSum(m, d)...)
			case metricdata.Histogram[float64]:
				out = append(out, rvHist(m, d)...)
			case metricdata.Histogram[int64]:
				out = append(out, rvHist(m, d)...)
			default:
				return nil, fmt.Errorf("%s: unexpected aggregation %T", m.Name, m.Data)
			}
		}
	}
	return out, nil
}

func rvCollect(t testing.TB, r *sdkmetric.ManualReader) []rvPoint {
	t.Helper()
	all, err := rvTryCollect(r)
	if err != nil {
		t.Fatal(err)
	}
	return all
}

func rvGet(all []rvPoint, metric, stageName, outcome string) (rvPoint, bool) {
	for _, p := range all {
		if p.metric == metric && p.stage == stageName && p.outcome == outcome {
			return p, true
		}
	}
	return rvPoint{}, false
}

func rvVal(all []rvPoint, metric, stageName, outcome string) float64 {
	p, _ := rvGet(all, metric, stageName, outcome)
	return p.value
}

func rvNew(t *testing.T) (*sdkmetric.ManualReader, *otelmetric.Observer) {
	t.Helper()
	reader := sdkmetric.NewManualReader()
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = provider.Shutdown(context.Background()) })
	obs, err := otelmetric.New(provider.Meter("review"))
	if err != nil {
		t.Fatal(err)
	}
	return reader, obs
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

func rvInts(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// rvMatchStats checks every stage the library's own Stats saw against the
// data points: received, finished by outcome, in flight, durations counted,
// the kind attribute; and that no other stage has points.
func rvMatchStats(t *testing.T, r *sdkmetric.ManualReader, stats *stage.Stats) {
	t.Helper()
	all := rvCollect(t, r)
	names := map[string]bool{}
	for _, c := range stats.Snapshot() {
		names[c.Name] = true
		rec, ok := rvGet(all, mReceived, c.Name, "")
		if !ok {
			t.Errorf("stage %q: no %s point", c.Name, mReceived)
			continue
		}
		if rec.kind != c.Kind {
			t.Errorf("stage %q: sluice.kind %q, want %q", c.Name, rec.kind, c.Kind)
		}
		okN, errN := rvVal(all, mFinished, c.Name, "ok"), rvVal(all, mFinished, c.Name, "error")
		dur, hasDur := rvGet(all, mDuration, c.Name, "")
		if rec.value != float64(c.Received) || okN != float64(c.Finished-c.Failed) || errN != float64(c.Failed) ||
			rvVal(all, mInFlight, c.Name, "") != float64(c.InFlight) || !hasDur || dur.value != float64(c.Finished) {
			t.Errorf("stage %q (%s): received %v ok %v error %v in flight %v durations %v; Stats says received %d finished %d failed %d in flight %d",
				c.Name, c.Kind, rec.value, okN, errN, rvVal(all, mInFlight, c.Name, ""), dur.value, c.Received, c.Finished, c.Failed, c.InFlight)
		}
	}
	for _, p := range all {
		if !names[p.stage] {
			t.Errorf("a point for a stage the run does not have: %+v", p)
		}
	}
}

// 1. The four instruments, their kinds (counter, up-down counter,
// histogram), attribute keys and unit, as documented.
func TestReviewOtelInstrumentShapes(t *testing.T) {
	reader, obs := rvNew(t)
	s := stage.Map(source.Slice(rvInts(10)), func(_ context.Context, i int) (int, error) {
		if i == 3 {
			return 0, errors.New("three")
		}
		return i, nil
	}, stage.Name("m"), stage.OnError(stage.Forward))
	if _, err := sink.Count(stage.Observe(context.Background(), obs), s); err == nil {
		t.Fatal("want the forwarded error")
	}
	want := map[string]struct {
		shape string
		keys  []string
	}{
		mReceived: {"counter", []string{"sluice.kind", "sluice.stage"}},
		mFinished: {"counter", []string{"sluice.kind", "sluice.outcome", "sluice.stage"}},
		mInFlight: {"updown", []string{"sluice.kind", "sluice.stage"}},
		mDuration: {"histogram", []string{"sluice.kind", "sluice.stage"}},
	}
	seen := map[string]int{}
	for _, p := range rvCollect(t, reader) {
		w, ok := want[p.metric]
		if !ok {
			t.Errorf("undocumented instrument %s", p.metric)
			continue
		}
		seen[p.metric]++
		if p.shape != w.shape || fmt.Sprint(p.keys) != fmt.Sprint(w.keys) || !p.cumulative {
			t.Errorf("%s: %s (cumulative %v) with %v, want %s with %v", p.metric, p.shape, p.cumulative, p.keys, w.shape, w.keys)
		}
		if p.stage != "m" || p.kind != "map" {
			t.Errorf("%s: stage %q kind %q, want m, map", p.metric, p.stage, p.kind)
		}
		if p.metric == mFinished && p.outcome != "ok" && p.outcome != "error" {
			t.Errorf("%s: outcome %q", p.metric, p.outcome)
		}
		if p.metric == mDuration && p.unit != "s" {
			t.Errorf("%s: unit %q, want \"s\" (durations in seconds)", p.metric, p.unit)
		}
	}
	for m := range want {
		if seen[m] == 0 {
			t.Errorf("no %s point after a run", m)
		}
	}
	all := rvCollect(t, reader)
	if rvVal(all, mReceived, "m", "") != 10 || rvVal(all, mFinished, "m", "ok") != 9 || rvVal(all, mFinished, "m", "error") != 1 {
		t.Errorf("values: %+v", all)
	}
}

// 2. While a run goes on: three calls held at a gate are received and in
// flight, none finished. Released: the totals, in flight back to 0, and
// durations in seconds (between the time spent in the calls and the run's
// wall time per call).
func TestReviewOtelInFlightAndSecondsDuringARun(t *testing.T) {
	const workers, n = 3, 6
	reader, obs := rvNew(t)
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
		_, err := sink.Count(stage.Observe(context.Background(), obs), s)
		errc <- err
	}()
	for k := range workers {
		rvRecv(t, fmt.Sprintf("call %d", k), entered)
	}
	all := rvCollect(t, reader)
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
	all = rvCollect(t, reader)
	if rvVal(all, mReceived, "held", "") != n || rvVal(all, mFinished, "held", "ok") != n ||
		rvVal(all, mInFlight, "held", "") != 0 || rvVal(all, mDuration, "held", "") != n {
		t.Errorf("after the run: %+v", all)
	}
	d, _ := rvGet(all, mDuration, "held", "")
	if d.sum < inFn.Seconds() || d.sum > wall.Seconds()*n {
		t.Errorf("duration sum %v: want between %v (time inside the calls) and %v (wall × calls): not seconds?", d.sum, inFn.Seconds(), wall.Seconds()*n)
	}
}

// 3. A retried call is one finished call whose duration covers every
// attempt (the Watcher's latency is the call's, all attempts).
func TestReviewOtelDurationCoversAllAttempts(t *testing.T) {
	reader, obs := rvNew(t)
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
	all := rvCollect(t, reader)
	d, _ := rvGet(all, mDuration, "retried", "")
	if rvVal(all, mReceived, "retried", "") != 1 || rvVal(all, mFinished, "retried", "ok") != 1 ||
		rvVal(all, mFinished, "retried", "error") != 0 || d.value != 1 {
		t.Fatalf("one item retried twice: %+v", all)
	}
	if d.sum < inFn.Seconds() {
		t.Fatalf("duration sum %v s < %v s spent in the 3 attempts", d.sum, inFn.Seconds())
	}
}

var errReview = errors.New("review")

// 4. Outcomes and kinds across every kind of stage that calls a function,
// over two runs, checked against the library's own Stats.
func TestReviewOtelOutcomesAndKinds(t *testing.T) {
	reader, obs := rvNew(t)
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
	}
	for _, k := range []string{"map", "filter", "flatmap", "concurrent", "apply", "unbatch"} {
		if !kinds[k] {
			t.Errorf("no %s stage in the pipeline: the test is broken (%v)", k, kinds)
		}
	}
	rvMatchStats(t, reader, &stats)
}

// 5. Runs that end early (cancelled while calls wait; a FailFast error
// while others are in flight): every received call is finished, nothing
// stays in flight, every duration is counted; a call cut short by the run's
// end (the sink failed, the caller cancelled, another stage failed) is not
// an "error" of its stage, as Stats sees it.
func TestReviewOtelEarlyEndLeavesNothingInFlight(t *testing.T) {
	for _, how := range []string{"cancel", "failfast", "sink error", "failfast upstream", "failfast upstream, returns the cause"} {
		t.Run(how, func(t *testing.T) {
			reader, obs := rvNew(t)
			var stats stage.Stats
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx = stage.Observe(stage.Observe(ctx, obs), &stats)
			const workers = 4
			entered := make(chan int, 100)
			// waitCalls takes k entries (from a stage's or the sink's
			// goroutine: no t.Fatal there; false after the watchdog).
			waitCalls := func(k int) bool {
				deadline := time.After(rvWatchdog)
				for range k {
					select {
					case <-entered:
					case <-deadline:
						return false
					}
				}
				return true
			}
			errWatchdog := errors.New("watchdog: the calls did not come")
			in := stage.Map(source.Slice(rvInts(100)), func(_ context.Context, i int) (int, error) {
				if strings.HasPrefix(how, "failfast upstream") && i == workers {
					if !waitCalls(workers) {
						return 0, errWatchdog
					}
					return 0, errReview // FailFast: the run's cause is this *stage.Error
				}
				return i, nil
			}, stage.Name("upstream"), stage.Workers(1), stage.Buffer(1))
			s := stage.Map(in, func(ctx context.Context, i int) (int, error) {
				entered <- i
				if i == 0 && how == "failfast" {
					if !waitCalls(workers) { // its own entry and the 3 others': all in their calls
						return 0, errWatchdog
					}
					return 0, errReview
				}
				if i == 0 && how == "sink error" {
					return i, nil
				}
				<-ctx.Done() // cut short by the run's end
				if strings.HasSuffix(how, "returns the cause") {
					return 0, context.Cause(ctx) // the idiom: the reason the run ended
				}
				return 0, ctx.Err()
			}, stage.Name("w"), stage.Workers(workers), stage.Buffer(1))
			errc := make(chan error, 1)
			go func() {
				errc <- sink.ForEach(ctx, s, func(context.Context, int) error {
					if !waitCalls(workers) { // item 0's entry and 3 calls held
						return errWatchdog
					}
					return errReview
				})
			}()
			if how == "cancel" {
				if !waitCalls(workers) {
					t.Fatal(errWatchdog)
				}
				cancel()
			}
			err := rvRecv(t, "the run", errc)
			if err == nil || errors.Is(err, errWatchdog) {
				t.Fatalf("the run: %v", err)
			}
			all := rvCollect(t, reader)
			rec := rvVal(all, mReceived, "w", "")
			okN, errN := rvVal(all, mFinished, "w", "ok"), rvVal(all, mFinished, "w", "error")
			if rec < workers || okN+errN != rec || rvVal(all, mInFlight, "w", "") != 0 || rvVal(all, mDuration, "w", "") != rec {
				t.Fatalf("after the run (%v): received %v, finished ok %v error %v, in flight %v, durations %v",
					err, rec, okN, errN, rvVal(all, mInFlight, "w", ""), rvVal(all, mDuration, "w", ""))
			}
			c, _ := stats.Get("w")
			if how != "failfast" && errN != 0 {
				t.Fatalf("w: %v calls with outcome error (Stats: %d failed of %d); its function failed none", errN, c.Failed, c.Finished)
			}
			if errN != float64(c.Failed) {
				t.Fatalf("w: %v calls with outcome error, Stats counts %d failed (of %d)", errN, c.Failed, c.Finished)
			}
			if how == "failfast" && errN != 1 {
				t.Fatalf("w: %v errors, want the 1 call that failed", errN)
			}
		})
	}
}

// 6. One observer shared by concurrent runs of two pipelines, collected all
// along: watchers called from many goroutines at once (-race), counters
// never go down, in flight within the workers, exact totals at the end.
func TestReviewOtelConcurrentRunsShareTheObserver(t *testing.T) {
	const runs, n, workers = 4, 2000, 8
	reader, obs := rvNew(t)
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
			all, err := rvTryCollect(reader)
			if err != nil {
				scraped <- err.Error()
				return
			}
			for _, p := range all {
				key := p.metric + "/" + p.stage + "/" + p.outcome
				if p.metric == mInFlight {
					if p.value < 0 || p.value > runs*workers {
						scraped <- fmt.Sprintf("in flight %v for %s", p.value, p.stage)
						return
					}
					continue
				}
				if p.value < last[key] {
					scraped <- fmt.Sprintf("%s went down from %v to %v", key, last[key], p.value)
					return
				}
				last[key] = p.value
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, 2*runs)
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
	all := rvCollect(t, reader)
	if got := rvVal(all, mReceived, "a.parse", ""); got != runs*n {
		t.Errorf("a.parse received %v, want %d", got, runs*n)
	}
	if got := rvVal(all, mFinished, "a.parse", "error"); got != runs*n/100 {
		t.Errorf("a.parse errors %v, want %d", got, runs*n/100)
	}
	if got := rvVal(all, mReceived, "b.fmt", ""); got != runs*n {
		t.Errorf("b.fmt received %v, want %d", got, runs*n)
	}
	rvMatchStats(t, reader, &stats)
}

// 7. Awkward stage names keep their exact value as the sluice.stage
// attribute, and each name is its own set of points; a name that is not
// valid UTF-8 does not take the run down.
func TestReviewOtelAwkwardStageNames(t *testing.T) {
	reader, obs := rvNew(t)
	ctx := stage.Observe(context.Background(), obs)
	names := []string{"a\"b\\c\nd", `x{stage="y"}`, "é ünïcödé 段", " ", "sluice.stage", "bad\xff"}
	for _, name := range names {
		s := stage.Map(source.Slice(rvInts(3)), func(_ context.Context, i int) (int, error) { return i, nil }, stage.Name(name))
		var got int
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("stage %q: the run panicked: %v", name, p)
				}
			}()
			got, err = sink.Count(ctx, s)
		}()
		if err != nil || got != 3 {
			t.Fatalf("stage %q: %d items, %v", name, got, err)
		}
	}
	all := rvCollect(t, reader)
	for _, name := range names {
		if got := rvVal(all, mReceived, name, ""); got != 3 {
			t.Errorf("stage %q: received %v, want 3", name, got)
		}
	}
}
