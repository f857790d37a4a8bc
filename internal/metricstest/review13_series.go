package metricstest

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// ConcurrentRunsShareSeries (review13): concurrent runs sharing the
// observers of one backend (env's, and more made on the same backend, as
// a meter may serve several) add into one series for the same stage name
// and kind; a stage of the same name but another kind is another series;
// in flight is the sum over the runs while they hold items.
func ConcurrentRunsShareSeries(t *testing.T, env Env, more ...stage.Observer) {
	observers := append([]stage.Observer{env.Obs}, more...)
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
	// in flight is exactly one per run (an order of events, not a timing).
	asMap := stage.Map(source.Slice(Ints(n)), func(_ context.Context, x int) (int, error) { gate(x); return x, nil }, stage.Name("x"), stage.Workers(1))
	asFilter := stage.Filter(source.Slice(Ints(n)), func(_ context.Context, x int) (bool, error) { gate(x); return true, nil }, stage.Name("x"), stage.Workers(1))
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := range 2 * runs {
		s := asMap
		if i%2 == 1 {
			s = asFilter
		}
		ctx := stage.Observe(context.Background(), observers[(i/2)%len(observers)])
		wg.Go(func() {
			if c, err := sink.Count(ctx, s); err != nil || c != n {
				failures.Add(1)
			}
		})
	}
	for range 2 * runs {
		Recv(t, "a run holding its item 0", started)
	}
	all := MustRead(t, env.Read)
	for _, kind := range []string{"map", "filter"} {
		if v, k := r13Val(all, InFlight, "x", kind, ""); v != runs || k != 1 {
			t.Errorf("in flight{x,%s} = %v over %d series while %d runs hold an item; want %d in 1 series", kind, v, k, runs, runs)
		}
	}
	close(release)
	Within(t, wg.Wait)
	if failures.Load() != 0 {
		t.Fatalf("%d runs failed", failures.Load())
	}
	all = MustRead(t, env.Read)
	for _, kind := range []string{"map", "filter"} {
		for _, m := range []Metric{Received, InFlight, Duration} {
			want := float64(runs * n)
			if m == InFlight {
				want = 0
			}
			if v, k := r13Val(all, m, "x", kind, ""); v != want || k != 1 {
				t.Errorf("%v{x,%s}: %v over %d series; want %v in one series", m, kind, v, k, want)
			}
		}
		if v, k := r13Val(all, Finished, "x", kind, "ok"); v != runs*n || k != 1 {
			t.Errorf("finished{x,%s,ok}: %v over %d series; want %d in one series", kind, v, k, runs*n)
		}
	}
	count := 0
	for _, p := range all {
		if p.Metric == Received {
			count++
		}
	}
	if count != 2 {
		t.Errorf("%d received series, want 2 (x/map, x/filter)", count)
	}
}

// Promise: stage names are labels: invalid UTF-8 is recorded with U+FFFD;
// other awkward names go through as they are.
func review13AwkwardNames(t *testing.T, newEnv func(testing.TB) Env) {
	env := newEnv(t)
	names := map[string]string{
		"a\xffb":            "a\uFFFDb",
		"\xc3":              "\uFFFD",
		"quote\"brace{}=\n": "quote\"brace{}=\n",
		"ünïcødé":           "ünïcødé",
	}
	ctx := stage.Observe(context.Background(), env.Obs)
	for name := range names {
		Within(t, func() {
			if _, err := sink.Count(ctx, stage.Map(source.Slice(Ints(3)), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Name(name))); err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	all := MustRead(t, env.Read)
	for name, label := range names {
		if v, k := r13Val(all, Received, label, "map", ""); k == 0 || v != 3 {
			t.Errorf("name %q: received{stage=%q} = %v (%d series)", name, label, v, k)
		}
	}
}

// Promise: the duration histogram's buckets are in seconds, from 1 µs to
// about 4 s, each bound 4 times the one before; one observation per call,
// all attempts in one (Retry).
func review13BucketsAndRetries(t *testing.T, newEnv func(testing.TB) Env) {
	env := newEnv(t)
	var calls atomic.Int64
	s := stage.Map(source.Slice(Ints(10)), func(_ context.Context, x int) (int, error) {
		if calls.Add(1)%3 != 0 {
			return 0, errR13
		}
		return x, nil
	}, stage.Workers(1), stage.Retry(3, 0), stage.Name("r"))
	Within(t, func() {
		if _, err := sink.Count(stage.Observe(context.Background(), env.Obs), s); err != nil {
			t.Errorf("run: %v", err)
		}
	})
	all := MustRead(t, env.Read)
	recv, ok, failed := r13Balanced(t, all, "r")
	if recv != 10 || ok != 10 || failed != 0 {
		t.Errorf("received %v ok %v error %v: want 10 10 0 (one call = all attempts)", recv, ok, failed)
	}
	seen := false
	for _, p := range all {
		if p.Metric != Duration {
			continue
		}
		seen = true
		b := p.Bounds
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
	if !seen {
		t.Error("no duration series")
	}
}

// Promise (stage.Name): the same pipeline gets the same names in every
// run, so repeated runs add into the same series; zero items and
// Workers(-1) leave nothing in flight.
func review13NameStabilityAndEmptyRuns(t *testing.T, newEnv func(testing.TB) Env) {
	env := newEnv(t)
	ctx := stage.Observe(context.Background(), env.Obs)
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	s := stage.Map(stage.Map(source.Slice(Ints(25)), id), id, stage.Workers(-1))
	empty := stage.Map(stage.Map(source.Slice([]int{}), id, stage.Workers(-1)), id, stage.Workers(-1), stage.Ordered())
	for range 3 {
		Within(t, func() {
			if _, err := sink.Count(ctx, s); err != nil {
				t.Errorf("run: %v", err)
			}
			if _, err := sink.Count(ctx, empty); err != nil {
				t.Errorf("empty run: %v", err)
			}
		})
	}
	all := MustRead(t, env.Read)
	var stages []string
	for _, p := range all {
		if p.Metric == Received {
			stages = append(stages, p.Stage)
		}
	}
	slices.Sort(stages)
	if !slices.Equal(slices.Compact(stages), []string{"map#1", "map#2"}) {
		t.Errorf("stages %v, want [map#1 map#2]", stages)
	}
	for _, name := range []string{"map#1", "map#2"} {
		if recv, _, _ := r13Balanced(t, all, name); recv != 75 {
			t.Errorf("%s received %v, want 75", name, recv)
		}
	}
}
