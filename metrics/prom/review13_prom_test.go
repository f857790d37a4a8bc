package prom_test

// Review13: adversarial tests of the documented promises of package prom,
// written from its documentation (and stage's) only.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const (
	r13pRecv = "sluice_stage_received_total"
	r13pFin  = "sluice_stage_finished_total"
	r13pIn   = "sluice_stage_in_flight"
	r13pDur  = "sluice_stage_duration_seconds"
)

type r13pSeries struct {
	metric string
	labels map[string]string
	value  float64 // counter/gauge value, or histogram sample count
	bounds []float64
}

func r13pGather(t testing.TB, g prometheus.Gatherer) []r13pSeries {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	var out []r13pSeries
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "sluice_") {
			continue
		}
		for _, m := range mf.GetMetric() {
			s := r13pSeries{metric: mf.GetName(), labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				s.value = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				s.value = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				s.value = float64(m.GetHistogram().GetSampleCount())
				for _, b := range m.GetHistogram().GetBucket() {
					s.bounds = append(s.bounds, b.GetUpperBound())
				}
			default:
				t.Fatalf("%s: unexpected metric type", mf.GetName())
			}
			out = append(out, s)
		}
	}
	return out
}

// r13pVal sums the series of metric matching the given labels (outcome ""
// matches any); found reports whether any matched.
func r13pVal(all []r13pSeries, metric, stageName, kind, outcome string) (v float64, found bool) {
	for _, s := range all {
		if s.metric != metric || s.labels["stage"] != stageName || (kind != "" && s.labels["kind"] != kind) {
			continue
		}
		if outcome != "" && s.labels["outcome"] != outcome {
			continue
		}
		v += s.value
		found = true
	}
	return v, found
}

func r13pNew(t *testing.T) (*prometheus.Registry, *prom.Observer) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	o, err := prom.New(reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return reg, o
}

func r13pWatchdog(t *testing.T, f func()) {
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

func r13pInts(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

var errR13p = errors.New("review13 prom: boom")

// r13pBalanced asserts, for one stage: received == ok + error finished ==
// duration count, and in_flight == 0.
func r13pBalanced(t *testing.T, all []r13pSeries, stageName string) (recv, ok, failed float64) {
	t.Helper()
	recv, _ = r13pVal(all, r13pRecv, stageName, "", "")
	ok, _ = r13pVal(all, r13pFin, stageName, "", "ok")
	failed, _ = r13pVal(all, r13pFin, stageName, "", "error")
	dur, _ := r13pVal(all, r13pDur, stageName, "", "")
	in, _ := r13pVal(all, r13pIn, stageName, "", "")
	if recv != ok+failed || dur != ok+failed || in != 0 {
		t.Errorf("%s: received %v, finished ok %v + error %v, duration count %v, in_flight %v: want received = finished = duration count, in_flight 0",
			stageName, recv, ok, failed, dur, in)
	}
	return recv, ok, failed
}

// Promise (New, README): received_total counts items taken for a call,
// finished_total{outcome} calls ended ("error" when the item failed),
// in_flight items taken and not finished, duration_seconds one observation
// per call; labels {stage,kind} (+outcome), per stage only.
func TestReview13PromCountsPerStage(t *testing.T) {
	const n = 300
	for _, w := range []int{1, 4, -1} {
		for _, ordered := range []bool{false, true} {
			t.Run(fmt.Sprint(w, ordered), func(t *testing.T) {
				reg, o := r13pNew(t)
				opts := []stage.Option{stage.Workers(w)}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				mapped := stage.Map(source.Slice(r13pInts(n)), func(_ context.Context, x int) (int, error) {
					if x%5 == 0 {
						return 0, errR13p
					}
					return x, nil
				}, append(opts, stage.Name("m"), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))...)
				kept := stage.Filter(mapped, func(_ context.Context, x int) (bool, error) { return x%2 == 0, nil }, opts...)
				r13pWatchdog(t, func() {
					if _, err := sink.Slice(stage.Observe(context.Background(), o), kept); err != nil {
						t.Errorf("sink: %v", err)
					}
				})
				all := r13pGather(t, reg)
				recv, ok, failed := r13pBalanced(t, all, "m")
				if recv != n || failed != n/5 || ok != n-n/5 {
					t.Errorf("m: received %v ok %v error %v; want %d %d %d", recv, ok, failed, n, n-n/5, n/5)
				}
				recv, ok, failed = r13pBalanced(t, all, "filter#2")
				if recv != n-n/5 || ok != n-n/5 || failed != 0 {
					t.Errorf("filter#2: received %v ok %v error %v", recv, ok, failed)
				}
				// Labels per stage only, exact sets.
				for _, s := range all {
					var keys []string
					for k := range s.labels {
						keys = append(keys, k)
					}
					slices.Sort(keys)
					want := []string{"kind", "stage"}
					if s.metric == r13pFin {
						want = []string{"kind", "outcome", "stage"}
					}
					if !slices.Equal(keys, want) {
						t.Errorf("%s labels %v, want %v", s.metric, keys, want)
					}
					wantKind := map[string]string{"m": "map", "filter#2": "filter"}[s.labels["stage"]]
					if s.labels["kind"] != wantKind {
						t.Errorf("%s %v: kind, want %q", s.metric, s.labels, wantKind)
					}
					if o := s.labels["outcome"]; s.metric == r13pFin && o != "ok" && o != "error" {
						t.Errorf("outcome %q", o)
					}
				}
			})
		}
	}
}

// Promise: "a call cut short by the end of the run (another stage's failure,
// a cancellation) did not fail": its outcome is ok. One call fails (FailFast)
// while two others wait for the run's end.
func TestReview13PromCutShortIsOK(t *testing.T) {
	for _, how := range []string{"failfast", "cancel", "first"} {
		t.Run(how, func(t *testing.T) {
			reg, o := r13pNew(t)
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
					return 0, errR13p
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
			r13pWatchdog(t, func() {
				if how == "first" {
					_, _, err = sink.First(ctx, s)
				} else {
					_, err = sink.Slice(ctx, s)
				}
			})
			switch how {
			case "failfast":
				if !errors.Is(err, errR13p) {
					t.Fatalf("sink %v", err)
				}
			case "cancel":
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("sink %v", err)
				}
			case "first":
				if err != nil {
					t.Fatalf("sink %v", err)
				}
			}
			all := r13pGather(t, reg)
			recv, ok, failed := r13pBalanced(t, all, "m")
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

// Promise: in_flight is "items taken and not finished": back to 0 once the
// sink returned, whatever ended the run; many items, every worker mode.
func TestReview13PromInFlightZeroAfterEveryEnding(t *testing.T) {
	const n = 2000
	endings := map[string]func(ctx context.Context, cancel context.CancelFunc, s stage.Stream[int]) error{
		"first": func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			_, _, err := sink.First(ctx, s)
			return err
		},
		"break": func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			i := 0
			for _, err := range sink.All(ctx, s) {
				if err != nil {
					return err
				}
				if i++; i == 50 {
					break
				}
			}
			return nil
		},
		"cancel": func(ctx context.Context, cancel context.CancelFunc, s stage.Stream[int]) error {
			i := 0
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				if i++; i == 50 {
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				return fmt.Errorf("want Canceled: %w", err)
			}
			return nil
		},
		"errstop": func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			i := 0
			return stage.Run(ctx, s, func(context.Context, int, error) error {
				if i++; i == 50 {
					return stage.ErrStop
				}
				return nil
			})
		},
		"complete": func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int]) error {
			_, err := sink.Count(ctx, s)
			return err
		},
	}
	for name, run := range endings {
		for _, w := range []int{1, 4, -1} {
			t.Run(fmt.Sprint(name, w), func(t *testing.T) {
				reg, o := r13pNew(t)
				parent, cancel := context.WithCancel(context.Background())
				defer cancel()
				s := stage.Map(source.Slice(r13pInts(n)), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(w))
				s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(w))
				var err error
				r13pWatchdog(t, func() { err = run(stage.Observe(parent, o), cancel, s) })
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				all := r13pGather(t, reg)
				r13pBalanced(t, all, "map#1")
				r13pBalanced(t, all, "filter#2")
			})
		}
	}
}

// Promise: concurrent runs sharing one observer (one registry) add into the
// same series for the same stage name and kind; a stage of the same name but
// another kind is another series; in_flight is the sum over the runs while
// they hold items; Gather never fails (no duplicate series).
func TestReview13PromConcurrentRunsShareSeries(t *testing.T) {
	reg, o := r13pNew(t)
	ctx := stage.Observe(context.Background(), o)
	const runs, n = 4, 50
	started := make(chan struct{}, 2*runs)
	release := make(chan struct{})
	gate := func(x int) {
		if x == 0 {
			started <- struct{}{}
			<-release
		}
	}
	// Workers(1): while item 0 is held, the run takes no other item, so
	// in_flight is exactly one per run (an order of events, not a timing).
	asMap := stage.Map(source.Slice(r13pInts(n)), func(_ context.Context, x int) (int, error) { gate(x); return x, nil }, stage.Name("x"), stage.Workers(1))
	asFilter := stage.Filter(source.Slice(r13pInts(n)), func(_ context.Context, x int) (bool, error) { gate(x); return true, nil }, stage.Name("x"), stage.Workers(1))
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := range 2 * runs {
		s := asMap
		if i%2 == 1 {
			s = asFilter
		}
		wg.Go(func() {
			if c, err := sink.Count(ctx, s); err != nil || c != n {
				failures.Add(1)
			}
		})
	}
	for range 2 * runs {
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("hung")
		}
	}
	// Every run holds its item 0 in a call.
	all := r13pGather(t, reg)
	if v, _ := r13pVal(all, r13pIn, "x", "map", ""); v != runs {
		t.Errorf("in_flight{x,map} = %v while %d runs hold an item", v, runs)
	}
	if v, _ := r13pVal(all, r13pIn, "x", "filter", ""); v != runs {
		t.Errorf("in_flight{x,filter} = %v while %d runs hold an item", v, runs)
	}
	close(release)
	r13pWatchdog(t, wg.Wait)
	if failures.Load() != 0 {
		t.Fatalf("%d runs failed", failures.Load())
	}
	all = r13pGather(t, reg)
	for _, kind := range []string{"map", "filter"} {
		recv, _ := r13pVal(all, r13pRecv, "x", kind, "")
		ok, _ := r13pVal(all, r13pFin, "x", kind, "ok")
		in, _ := r13pVal(all, r13pIn, "x", kind, "")
		if recv != runs*n || ok != runs*n || in != 0 {
			t.Errorf("x/%s: received %v ok %v in_flight %v; want %d %d 0", kind, recv, ok, in, runs*n, runs*n)
		}
	}
	count := 0
	for _, s := range all {
		if s.metric == r13pRecv {
			count++
		}
	}
	if count != 2 {
		t.Errorf("%d received series, want 2 (x/map, x/filter)", count)
	}
}

// Promise (New): "It returns reg's error if a metric is already registered
// (New was called twice on one registry: share the observer instead), and
// then leaves none of its metrics registered." The first observer keeps
// working.
func TestReview13PromNewTwiceAndConflicts(t *testing.T) {
	reg, o := r13pNew(t)
	rec := &r13pRecordingReg{inner: reg}
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
	r13pWatchdog(t, func() {
		if _, err := sink.Count(stage.Observe(context.Background(), o), stage.Map(source.Slice(r13pInts(10)), func(_ context.Context, x int) (int, error) { return x, nil })); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	if v, _ := r13pVal(r13pGather(t, reg), r13pRecv, "map#1", "map", ""); v != 10 {
		t.Errorf("first observer after a failed second New: received %v", v)
	}

	// A conflict on one metric only, of another type: New fails with reg's
	// error and registers none of the other three.
	for _, name := range []string{r13pRecv, r13pFin, r13pIn, r13pDur} {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewPedanticRegistry()
			squatter := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "squatter"})
			if name == r13pRecv || name == r13pFin {
				squatter = prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: "squatter", ConstLabels: prometheus.Labels{"stage": "s"}})
			}
			reg.MustRegister(squatter)
			rec := &r13pRecordingReg{inner: reg}
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
			if left := r13pGather(t, reg); len(left) != 1 {
				t.Errorf("after the failed New, series: %v (want only the squatter)", left)
			}
		})
	}
}

type r13pRecordingReg struct {
	inner prometheus.Registerer
	mu    sync.Mutex
	errs  []error
	ok    []prometheus.Collector
}

func (r *r13pRecordingReg) Register(c prometheus.Collector) error {
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

func (r *r13pRecordingReg) accepted() []prometheus.Collector {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]prometheus.Collector(nil), r.ok...)
}

func (r *r13pRecordingReg) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *r13pRecordingReg) Unregister(c prometheus.Collector) bool { return r.inner.Unregister(c) }

func (r *r13pRecordingReg) returned(err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.errs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// Promise: stage names are labels: invalid UTF-8 is recorded with U+FFFD;
// other awkward names go through as they are.
func TestReview13PromAwkwardNames(t *testing.T) {
	reg, o := r13pNew(t)
	names := map[string]string{
		"a\xffb":            "a\uFFFDb",
		"\xc3":              "\uFFFD",
		"quote\"brace{}=\n": "quote\"brace{}=\n",
		"ünïcødé":           "ünïcødé",
	}
	ctx := stage.Observe(context.Background(), o)
	for name := range names {
		r13pWatchdog(t, func() {
			if _, err := sink.Count(ctx, stage.Map(source.Slice(r13pInts(3)), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Name(name))); err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	all := r13pGather(t, reg)
	for name, label := range names {
		if v, ok := r13pVal(all, r13pRecv, label, "map", ""); !ok || v != 3 {
			t.Errorf("name %q: received{stage=%q} = %v (found %v)", name, label, v, ok)
		}
	}
}

// Promise: the duration histogram's buckets are in seconds, from 1 µs to
// about 4 s, each bound 4 times the one before; one observation per call,
// all attempts in one (Retry).
func TestReview13PromBucketsAndRetries(t *testing.T) {
	reg, o := r13pNew(t)
	var calls atomic.Int64
	s := stage.Map(source.Slice(r13pInts(10)), func(_ context.Context, x int) (int, error) {
		if calls.Add(1)%3 != 0 {
			return 0, errR13p
		}
		return x, nil
	}, stage.Workers(1), stage.Retry(3, 0), stage.Name("r"))
	r13pWatchdog(t, func() {
		if _, err := sink.Count(stage.Observe(context.Background(), o), s); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	all := r13pGather(t, reg)
	recv, ok, failed := r13pBalanced(t, all, "r")
	if recv != 10 || ok != 10 || failed != 0 {
		t.Errorf("received %v ok %v error %v: want 10 10 0 (one call = all attempts)", recv, ok, failed)
	}
	for _, s := range all {
		if s.metric != r13pDur {
			continue
		}
		b := s.bounds
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

// Promise (stage.Name): the same pipeline gets the same names in every run,
// so repeated runs add into the same series; zero items and Workers(-1) leave
// nothing in flight.
func TestReview13PromNameStabilityAndEmptyRuns(t *testing.T) {
	reg, o := r13pNew(t)
	ctx := stage.Observe(context.Background(), o)
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	s := stage.Map(stage.Map(source.Slice(r13pInts(25)), id), id, stage.Workers(-1))
	empty := stage.Map(stage.Map(source.Slice([]int{}), id, stage.Workers(-1)), id, stage.Workers(-1), stage.Ordered())
	for range 3 {
		r13pWatchdog(t, func() {
			if _, err := sink.Count(ctx, s); err != nil {
				t.Errorf("run: %v", err)
			}
			if _, err := sink.Count(ctx, empty); err != nil {
				t.Errorf("empty run: %v", err)
			}
		})
	}
	all := r13pGather(t, reg)
	var stages []string
	for _, x := range all {
		if x.metric == r13pRecv {
			stages = append(stages, x.labels["stage"])
		}
	}
	slices.Sort(stages)
	if !slices.Equal(slices.Compact(stages), []string{"map#1", "map#2"}) {
		t.Errorf("stages %v, want [map#1 map#2]", stages)
	}
	for _, name := range []string{"map#1", "map#2"} {
		if recv, _, _ := r13pBalanced(t, all, name); recv != 75 {
			t.Errorf("%s received %v, want 75", name, recv)
		}
	}
}

// Promise (stage.Watcher + prom in_flight): a panic in another observer
// attached to the same run must not leave prom's in_flight up: it is "items
// taken and not finished", and the sink returned.
func TestReview13PromInFlightWithPanickingNeighbour(t *testing.T) {
	reg, obs := rvNew(t)
	metricstest.BesideAPanickingObserver(t, obs, rvRead(reg))
}
