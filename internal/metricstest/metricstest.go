// Package metricstest holds the scenarios that the tests of every metrics
// adapter (metrics/prom, metrics/otelmetric) run against a real backend.
// An adapter's test turns what its backend holds into Points; a scenario
// runs pipelines with the adapter's observer and checks the Points against
// what the runs did, and against the library's own stage.Stats. Gates and
// channels order things; durations are watchdogs only.
package metricstest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Metric names one of the four metrics every adapter exports.
type Metric int

const (
	Received Metric = iota + 1 // items a stage received
	Finished                   // calls finished, by outcome ("ok", "error")
	InFlight                   // calls in flight
	Duration                   // call durations, in seconds (a histogram)
)

func (m Metric) String() string {
	switch m {
	case Received:
		return "received"
	case Finished:
		return "finished"
	case InFlight:
		return "in flight"
	case Duration:
		return "duration"
	}
	return fmt.Sprintf("Metric(%d)", int(m))
}

// Point is one series (one data point) of an adapter's backend: a metric
// (0 if it is none of the four), its stage, kind and outcome labels, its
// value (a counter's or gauge's value, a histogram's count) and a
// histogram's sum. Keys, Shape, Bounds and Cum are for the scenarios that
// check the series' form: an adapter's reader fills them all.
type Point struct {
	Metric               Metric
	Stage, Kind, Outcome string
	Value, Sum           float64
	Keys                 []string  // label (attribute) keys as the backend names them, sorted
	Shape                Shape     // what the backend made of the metric
	Bounds               []float64 // a histogram's upper bounds, without +Inf
	Cum                  []uint64  // a histogram's cumulative count at each bound
}

// Shape is the kind of series a backend holds.
type Shape int

const (
	ShapeCounter   Shape = iota + 1 // a monotonic counter
	ShapeUpDown                     // a value that goes up and down (a gauge, an up-down counter)
	ShapeHistogram                  // a histogram
)

func (s Shape) String() string {
	switch s {
	case ShapeCounter:
		return "counter"
	case ShapeUpDown:
		return "up-down"
	case ShapeHistogram:
		return "histogram"
	}
	return fmt.Sprintf("Shape(%d)", int(s))
}

// Read returns what the backend holds now. It may be called from any
// goroutine.
type Read func() ([]Point, error)

// Watchdog bounds every wait of a scenario: it turns a hang into a
// failure, and no verdict depends on it.
const Watchdog = 30 * time.Second

// Get returns the point of metric for stage (and outcome, for Finished),
// and whether there is one.
func Get(all []Point, metric Metric, stageName, outcome string) (Point, bool) {
	for _, p := range all {
		if p.Metric == metric && p.Stage == stageName && p.Outcome == outcome {
			return p, true
		}
	}
	return Point{}, false
}

// Val is Get's value, 0 without a point.
func Val(all []Point, metric Metric, stageName, outcome string) float64 {
	p, _ := Get(all, metric, stageName, outcome)
	return p.Value
}

// MustRead is read for the test's goroutine.
func MustRead(t testing.TB, read Read) []Point {
	t.Helper()
	all, err := read()
	if err != nil {
		t.Fatalf("reading the metrics: %v", err)
	}
	return all
}

// Recv receives from c, or fails the test after the Watchdog.
func Recv[T any](t testing.TB, what string, c <-chan T) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(Watchdog):
		t.Fatalf("gave up after %v waiting for %s", Watchdog, what)
		panic("unreachable")
	}
}

// Ints returns 0, 1, ..., n-1.
func Ints(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// MatchStats checks every stage stats saw against the points: received,
// finished by outcome, in flight, durations counted, the kind label; and
// that no other stage has points.
func MatchStats(t testing.TB, read Read, stats *stage.Stats) {
	t.Helper()
	all := MustRead(t, read)
	names := map[string]bool{}
	for _, c := range stats.Snapshot() {
		names[c.Name] = true
		rec, ok := Get(all, Received, c.Name, "")
		if !ok {
			t.Errorf("stage %q: no %v point", c.Name, Received)
			continue
		}
		if rec.Kind != c.Kind {
			t.Errorf("stage %q: kind %q, want %q", c.Name, rec.Kind, c.Kind)
		}
		okN, errN := Val(all, Finished, c.Name, "ok"), Val(all, Finished, c.Name, "error")
		dur, hasDur := Get(all, Duration, c.Name, "")
		inFlight := Val(all, InFlight, c.Name, "")
		if rec.Value != float64(c.Received) || okN != float64(c.Finished-c.Failed) || errN != float64(c.Failed) ||
			inFlight != float64(c.InFlight) || !hasDur || dur.Value != float64(c.Finished) {
			t.Errorf("stage %q (%s): received %v ok %v error %v in flight %v durations %v; Stats says received %d finished %d failed %d in flight %d",
				c.Name, c.Kind, rec.Value, okN, errN, inFlight, dur.Value, c.Received, c.Finished, c.Failed, c.InFlight)
		}
	}
	for _, p := range all {
		if !names[p.Stage] {
			t.Errorf("a point for a stage the run does not have: %+v", p)
		}
	}
}

// InFlightAndSeconds: while a run goes on, three calls held at a gate are
// received and in flight, none finished. Released: the totals, in flight
// back to 0, and durations in seconds (the sum is at least the time the
// calls spent in the function, and at most the run's wall time per call).
func InFlightAndSeconds(t *testing.T, obs stage.Observer, read Read) {
	const workers, n = 3, 6
	entered := make(chan struct{}, n)
	gate := make(chan struct{})
	var mu sync.Mutex
	var inFn time.Duration
	s := stage.Map(source.Slice(Ints(n)), func(_ context.Context, i int) (int, error) {
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
		Recv(t, fmt.Sprintf("call %d", k), entered)
	}
	all := MustRead(t, read)
	if got := Val(all, Received, "held", ""); got != workers {
		t.Errorf("mid-run received = %v, want %d", got, workers)
	}
	if got := Val(all, InFlight, "held", ""); got != workers {
		t.Errorf("mid-run in flight = %v, want %d", got, workers)
	}
	if got := Val(all, Finished, "held", "ok") + Val(all, Finished, "held", "error"); got != 0 {
		t.Errorf("mid-run finished = %v, want 0", got)
	}
	if got := Val(all, Duration, "held", ""); got != 0 {
		t.Errorf("mid-run durations counted = %v, want 0", got)
	}
	time.Sleep(20 * time.Millisecond) // the calls last at least this: it makes the seconds bound below meaningful
	close(gate)
	if err := Recv(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	wall := time.Since(began)
	all = MustRead(t, read)
	if Val(all, Received, "held", "") != n || Val(all, Finished, "held", "ok") != n ||
		Val(all, InFlight, "held", "") != 0 || Val(all, Duration, "held", "") != n {
		t.Errorf("after the run: %+v", all)
	}
	d, _ := Get(all, Duration, "held", "")
	if d.Sum < inFn.Seconds() || d.Sum > wall.Seconds()*n {
		t.Errorf("duration sum %v s: want between %v (time inside the calls) and %v (wall × calls): not seconds?", d.Sum, inFn.Seconds(), wall.Seconds()*n)
	}
}

// DurationCoversAllAttempts: a call retried twice is one finished call,
// whose duration covers every attempt.
func DurationCoversAllAttempts(t *testing.T, obs stage.Observer, read Read) {
	var inFn time.Duration
	attempts := 0
	s := stage.Map(source.Slice([]int{1}), func(_ context.Context, i int) (int, error) {
		start := time.Now()
		time.Sleep(5 * time.Millisecond) // makes the sum's bound below meaningful
		inFn += time.Since(start)
		if attempts++; attempts < 3 {
			return 0, errors.New("again")
		}
		return i, nil
	}, stage.Name("retried"), stage.Workers(1), stage.Retry(3, 0))
	if _, err := sink.Count(stage.Observe(context.Background(), obs), s); err != nil {
		t.Fatal(err)
	}
	all := MustRead(t, read)
	d, _ := Get(all, Duration, "retried", "")
	if Val(all, Received, "retried", "") != 1 || Val(all, Finished, "retried", "ok") != 1 ||
		Val(all, Finished, "retried", "error") != 0 || d.Value != 1 {
		t.Fatalf("one item retried twice: %+v", all)
	}
	if d.Sum < inFn.Seconds() {
		t.Fatalf("duration sum %v s < %v s spent in the 3 attempts: not all attempts", d.Sum, inFn.Seconds())
	}
}

var errScenario = errors.New("metricstest")

// OutcomesAndKinds runs, twice, a pipeline with every kind of stage that
// calls a function, and checks the points against the library's own
// Stats: errors (returned, panicked, accepted by Handle, forwarded,
// budgeted) are "error"; a Filter that drops is "ok"; forwarded errors
// passing a later stage are not received there.
func OutcomesAndKinds(t *testing.T, obs stage.Observer, read Read) {
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), obs), &stats)
	const n = 200
	m := stage.Map(source.Slice(Ints(n)), func(_ context.Context, i int) (int, error) {
		if i%10 == 1 {
			return 0, errScenario
		}
		if i%10 == 2 {
			panic("metricstest panic")
		}
		return i, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
	f := stage.Filter(m, func(_ context.Context, i int) (bool, error) { return i%2 == 0, nil }, stage.Workers(3))
	fm := stage.FlatMap(f, func(_ context.Context, i int) ([]int, error) {
		if i%10 == 4 {
			return nil, errScenario
		}
		return []int{i, i + 1}, nil
	}, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	tasks := stage.Map(fm, func(_ context.Context, i int) (func(context.Context) (int, error), error) {
		return func(context.Context) (int, error) {
			if i%10 == 6 {
				return 0, errScenario
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
	MatchStats(t, read, &stats)
}

// ConcurrentRunsShareTheObserver: one observer shared by concurrent runs of
// two pipelines (with several stages of many workers), read all along: the
// watchers are called from many goroutines at once (-race), counters never
// go down, in flight stays within the workers, and the totals are exact at
// the end. Stages of the same name in several runs add up.
func ConcurrentRunsShareTheObserver(t *testing.T, obs stage.Observer, read Read) {
	const runs, n, workers = 4, 2000, 8
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), obs), &stats)
	pipeA := stage.Filter(stage.Map(source.Slice(Ints(n)), func(_ context.Context, i int) (int, error) {
		if i%100 == 0 {
			return 0, errScenario
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
			all, err := read()
			if err != nil {
				scraped <- err.Error()
				return
			}
			for _, p := range all {
				key := fmt.Sprint(p.Metric, "/", p.Stage, "/", p.Outcome)
				if p.Metric == InFlight {
					if p.Value < 0 || p.Value > runs*workers {
						scraped <- fmt.Sprintf("in flight %v for %s", p.Value, p.Stage)
						return
					}
					continue
				}
				if p.Value < last[key] {
					scraped <- fmt.Sprintf("%s went down from %v to %v", key, last[key], p.Value)
					return
				}
				last[key] = p.Value
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
	deadline := time.After(Watchdog)
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
	all := MustRead(t, read)
	if got := Val(all, Received, "a.parse", ""); got != runs*n {
		t.Errorf("a.parse received %v, want %d", got, runs*n)
	}
	if got := Val(all, Finished, "a.parse", "error"); got != runs*n/100 {
		t.Errorf("a.parse errors %v, want %d", got, runs*n/100)
	}
	if got := Val(all, Received, "b.fmt", ""); got != runs*n {
		t.Errorf("b.fmt received %v, want %d", got, runs*n)
	}
	MatchStats(t, read, &stats)
}
