package metricstest

// Review72: the counting scenarios that the review72 tests of every adapter
// (metrics/prom, metrics/otelmetric) run, written from the adapters' docs
// (each adapter's test quotes its own words) and stage's Watcher, Observe,
// policies and sinks. Each runs a pipeline with the Env's observer, reads the
// backend and checks the exact counts of the stages' series.

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
	"unicode/utf8"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// R72Counts is the sum of one stage's series: received, finished ok and
// error, in flight, and the duration histogram's count.
type R72Counts struct {
	Received, OK, Failed, InFlight, Hist float64
}

// r72Sum is the sum of the points of metric whose labels are exactly stage
// name, kind and (for Finished) outcome: a series with any other label is
// not one of them.
func r72Sum(all []Point, metric Metric, name, kind, outcome string) float64 {
	keys := 2
	if metric == Finished {
		keys = 3
	}
	var v float64
	for _, p := range all {
		if p.Metric == metric && p.Stage == name && p.Kind == kind && p.Outcome == outcome && len(p.Keys) == keys {
			v += p.Value
		}
	}
	return v
}

// R72StageOf returns the counts of the stage name of kind in all.
func R72StageOf(all []Point, name, kind string) R72Counts {
	return R72Counts{
		Received: r72Sum(all, Received, name, kind, ""),
		OK:       r72Sum(all, Finished, name, kind, "ok"),
		Failed:   r72Sum(all, Finished, name, kind, "error"),
		InFlight: r72Sum(all, InFlight, name, kind, ""),
		Hist:     r72Sum(all, Duration, name, kind, ""),
	}
}

// R72Read reads env's backend now and returns the counts of the stage name
// of kind.
func R72Read(t testing.TB, env Env, name, kind string) R72Counts {
	t.Helper()
	return R72StageOf(MustRead(t, env.Read), name, kind)
}

// R72Balanced checks what must add up once every run is over.
func R72Balanced(t testing.TB, what string, c R72Counts) {
	t.Helper()
	if c.InFlight != 0 {
		t.Errorf("%s: in flight %v after the run, want 0 (%+v)", what, c.InFlight, c)
	}
	if c.Received != c.OK+c.Failed {
		t.Errorf("%s: received %v != finished ok %v + error %v", what, c.Received, c.OK, c.Failed)
	}
	if c.Hist != c.OK+c.Failed {
		t.Errorf("%s: duration count %v != finished %v", what, c.Hist, c.OK+c.Failed)
	}
}

// R72ValidUTF8 checks that every label value of all is valid UTF-8.
func R72ValidUTF8(t testing.TB, all []Point) {
	t.Helper()
	for _, p := range all {
		for k, v := range map[string]string{"stage": p.Stage, "kind": p.Kind, "outcome": p.Outcome} {
			if !utf8.ValidString(v) {
				t.Errorf("%v %s label %q is not UTF-8 (%+v)", p.Metric, k, v, p)
			}
		}
		for _, k := range p.Keys {
			if !utf8.ValidString(k) {
				t.Errorf("%v label key %q is not UTF-8", p.Metric, k)
			}
		}
	}
}

func r72Pass(_ context.Context, v int) (int, error) { return v, nil }

// R72NamesCounts runs 20 items through a Map "m" whose every fifth item
// fails (Forward) and checks the counts: received 20, ok 16, error 4,
// duration count 20. The adapters' tests then check the form of the series
// it left (names, labels, types, buckets) with their backend's own reader.
func R72NamesCounts(t *testing.T, env Env) {
	t.Helper()
	ctx := stage.Observe(context.Background(), env.Obs)
	s := stage.Map(source.Slice(Ints(20)), func(_ context.Context, v int) (int, error) {
		if v%5 == 0 {
			return 0, errors.New("five")
		}
		return v, nil
	}, stage.Name("m"), stage.OnError(stage.Forward))
	if _, err := sink.Count(ctx, s); err == nil {
		t.Fatal("want the forwarded errors")
	}
	c := R72Read(t, env, "m", "map")
	if c.Received != 20 || c.OK != 16 || c.Failed != 4 || c.Hist != 20 {
		t.Errorf("counts %+v, want received 20, ok 16, error 4, duration count 20", c)
	}
	R72Balanced(t, "m", c)
}

// R72SeriesForm checks the form of every series in all: one of the four
// metrics, with exactly the labels (attribute keys) labels names for it and
// an outcome of "ok" or "error"; a counter (received, finished), an up-down
// value (in flight) or a histogram (duration) whose buckets are "in seconds,
// from 1 µs to about 4 s, each bound 4 times the one before"; and each of the
// four has a series. The adapters' tests check their backend's own names,
// types and units.
func R72SeriesForm(t *testing.T, all []Point, labels Labels) {
	t.Helper()
	seen := map[Metric]bool{}
	for _, p := range all {
		want, ok := shapes[p.Metric]
		if !ok {
			t.Errorf("undocumented metric: %+v", p)
			continue
		}
		seen[p.Metric] = true
		if keys := labels.Keys(p.Metric); !slices.Equal(p.Keys, keys) {
			t.Errorf("%v labels %v, want %v", p.Metric, p.Keys, keys)
		}
		if p.Metric == Finished && p.Outcome != "ok" && p.Outcome != "error" {
			t.Errorf("outcome %q", p.Outcome)
		}
		if p.Shape != want {
			t.Errorf("%v is a %v, want a %v", p.Metric, p.Shape, want)
		}
		if p.Metric != Duration {
			continue
		}
		b := p.Bounds
		if len(b) == 0 {
			t.Fatal("no buckets")
		}
		if math.Abs(b[0]-1e-6) > 1e-12 {
			t.Errorf("first bucket %v, want 1e-6 (1 µs)", b[0])
		}
		for i := 1; i < len(b); i++ {
			if r := b[i] / b[i-1]; math.Abs(r-4) > 1e-9 {
				t.Errorf("bucket %d: %v is %v times the one before, want 4", i, b[i], r)
			}
		}
		if last := b[len(b)-1]; last < 2.5 || last > 6 {
			t.Errorf("last bucket %v, want about 4 s", last)
		}
	}
	for m := range shapes {
		if !seen[m] {
			t.Errorf("metric %v missing", m)
		}
	}
}

// R72FailFastCountsOnlyTheFailure: "A call's outcome is "error" when its item
// failed (the stage's error policy handles it) and "ok" otherwise: a call cut
// short by the end of the run (another stage's failure, a cancellation) did
// not fail." Here the failing item waits until three peers are inside their
// calls; the peers then see the run end and return either the context's
// error ("ctx") or an error that is not the context's ("own"): per
// stage.Watcher, "whatever error the function returned", they neither
// succeeded nor failed.
func R72FailFastCountsOnlyTheFailure(t *testing.T, newEnv func(testing.TB) Env) {
	for _, lateErr := range []string{"ctx", "own"} {
		t.Run(lateErr, func(t *testing.T) {
			env := newEnv(t)
			ctx := stage.Observe(context.Background(), env.Obs)
			var entered sync.WaitGroup
			entered.Add(3)
			boom := errors.New("boom")
			s := stage.Map(source.Slice(Ints(40)), func(ctx context.Context, v int) (int, error) {
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
			c := R72Read(t, env, "ff", "map")
			if c.Failed != 1 {
				t.Errorf("finished{outcome=error} = %v, want exactly 1 (the calls cut short did not fail): %+v", c.Failed, c)
			}
			if c.Received < 4 {
				t.Errorf("received %v, want at least the 4 calls that ran", c.Received)
			}
			R72Balanced(t, "ff", c)
		})
	}
}

// R72OtherStageFailureIsNotAFailureHere: the same promise, across stages:
// "another stage's failure". A downstream stage fails; the upstream calls
// blocked at that moment were cut short.
func R72OtherStageFailureIsNotAFailureHere(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	var up sync.WaitGroup
	up.Add(3)
	started := make(chan struct{})
	var once sync.Once
	a := stage.Map(source.Slice(Ints(50)), func(ctx context.Context, v int) (int, error) {
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
	all := MustRead(t, env.Read)
	u := R72StageOf(all, "up", "map")
	d := R72StageOf(all, "down", "map")
	if u.Failed != 0 {
		t.Errorf("upstream finished{error} = %v, want 0: its calls were cut short by another stage's failure (%+v)", u.Failed, u)
	}
	if d.Failed != 1 || d.Received != 1 {
		t.Errorf("downstream %+v, want received 1 and error 1", d)
	}
	R72Balanced(t, "up", u)
	R72Balanced(t, "down", d)
}

// R72EarlyExitsAreNotFailures: "a call cut short by the end of the run (...
// a cancellation) did not fail"; and sink.First: "runs s until its first
// item arrives, then stops the run". Subtests "first" and "cancel", and with
// forEachStop "foreach-stop" (sink.ForEach's function returns stage.ErrStop).
func R72EarlyExitsAreNotFailures(t *testing.T, newEnv func(testing.TB) Env, forEachStop bool) {
	t.Run("first", func(t *testing.T) {
		env := newEnv(t)
		ctx := stage.Observe(context.Background(), env.Obs)
		var entered sync.WaitGroup
		entered.Add(3)
		s := stage.Map(source.Slice(Ints(30)), func(ctx context.Context, v int) (int, error) {
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
		c := R72Read(t, env, "first", "map")
		if c.Failed != 0 {
			t.Errorf("finished{error} = %v after sink.First, want 0 (%+v)", c.Failed, c)
		}
		if c.OK < 4 {
			t.Errorf("finished{ok} = %v, want at least 4 (%+v)", c.OK, c)
		}
		R72Balanced(t, "first", c)
	})
	t.Run("cancel", func(t *testing.T) {
		env := newEnv(t)
		base, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctx := stage.Observe(base, env.Obs)
		var entered sync.WaitGroup
		entered.Add(4)
		s := stage.Map(source.Slice(Ints(30)), func(ctx context.Context, v int) (int, error) {
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
		c := R72Read(t, env, "cancel", "map")
		if c.Failed != 0 {
			t.Errorf("finished{error} = %v after cancellation, want 0 (%+v)", c.Failed, c)
		}
		R72Balanced(t, "cancel", c)
	})
	if !forEachStop {
		return
	}
	t.Run("foreach-stop", func(t *testing.T) {
		env := newEnv(t)
		ctx := stage.Observe(context.Background(), env.Obs)
		s := stage.Map(source.Slice(Ints(100)), func(ctx context.Context, v int) (int, error) {
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
		c := R72Read(t, env, "stop", "map")
		if c.Failed != 0 {
			t.Errorf("finished{error} = %v after ErrStop, want 0 (%+v)", c.Failed, c)
		}
		R72Balanced(t, "stop", c)
	})
}

// R72RetriesAndKeyPanicsCountOnce: the duration histogram holds "call
// durations (all attempts)": one call (all its attempts) is one finished call
// and one observation. Also: a KeyBy panic "fails the item ... (the item's
// function is not called)", reported by Received then Finished with its
// *Error: outcome error.
func R72RetriesAndKeyPanicsCountOnce(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	const n = 60
	var tries [n]atomic.Int32
	s := stage.Map(source.Slice(Ints(n)), func(_ context.Context, v int) (int, error) {
		if tries[v].Add(1) < 3 {
			return 0, errors.New("flaky")
		}
		return v, nil
	}, stage.Name("retry"), stage.Workers(3), stage.Retry(3, 0))
	k := stage.Map(s, r72Pass,
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
	all := MustRead(t, env.Read)
	r := R72StageOf(all, "retry", "map")
	if r.Received != n || r.OK != n || r.Failed != 0 || r.Hist != n {
		t.Errorf("retry stage %+v, want received %d, ok %d, error 0, duration count %d (one per call, all attempts)", r, n, n, n)
	}
	kc := R72StageOf(all, "keyed", "map")
	if kc.Received != n || kc.Failed != n/3 || kc.OK != n-n/3 {
		t.Errorf("keyed stage %+v, want received %d, error %d, ok %d", kc, n, n/3, n-n/3)
	}
	R72Balanced(t, "retry", r)
	R72Balanced(t, "keyed", kc)
}

// R72InvalidUTF8Names: a stage name that is not valid UTF-8 "is recorded
// with each run of invalid bytes replaced by one U+FFFD (so names that
// differ only there share a series)". Three names with one run of invalid
// bytes each share a\uFFFDb; "\xff\xfe" is "\uFFFD"; "x\xffy\xfez" is
// "x\uFFFDy\uFFFDz"; every label is valid UTF-8 and there is no other
// series.
func R72InvalidUTF8Names(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	names := []string{"a\xffb", "a\xfe\xfd\xfcb", "a\xc3b"} // one run of invalid bytes each
	var s stage.Stream[int] = source.Slice(Ints(10))
	for _, nm := range names {
		s = stage.Map(s, r72Pass, stage.Name(nm))
	}
	s = stage.Map(s, r72Pass, stage.Name("\xff\xfe"))
	s = stage.Map(s, r72Pass, stage.Name("x\xffy\xfez"))
	if _, err := sink.Count(ctx, s); err != nil {
		t.Fatal(err)
	}
	all := MustRead(t, env.Read)
	R72ValidUTF8(t, all)
	if c := R72StageOf(all, "a\uFFFDb", "map"); c.Received != 30 || c.OK != 30 || c.Hist != 30 {
		t.Errorf("series a\\uFFFDb: %+v, want the 3 stages' 30 items in one series", c)
	}
	if c := R72StageOf(all, "\uFFFD", "map"); c.Received != 10 {
		t.Errorf(`series "\uFFFD": %+v, want 10`, c)
	}
	if c := R72StageOf(all, "x\uFFFDy\uFFFDz", "map"); c.Received != 10 {
		t.Errorf(`series "x\uFFFDy\uFFFDz": %+v, want 10`, c)
	}
	for _, p := range all {
		if p.Metric == Received && p.Stage != "a\uFFFDb" && p.Stage != "\uFFFD" && p.Stage != "x\uFFFDy\uFFFDz" {
			t.Errorf("unexpected series %+v", p)
		}
	}
}

// R72InvalidUTF8Kind: the docs say "a stage name (or kind)". A kind is the
// library's, but Observer.Stage is public: drive it directly with an
// invalid kind, which is recorded with each run of invalid bytes replaced.
func R72InvalidUTF8Kind(t *testing.T, env Env) {
	w := env.Obs.Stage(stage.Info{Name: "k\xff", Kind: "ma\xff\xfep", Workers: 1, Total: -1})
	w.Received()
	w.Finished(0, nil)
	w.Closed()
	all := MustRead(t, env.Read)
	R72ValidUTF8(t, all)
	if c := R72StageOf(all, "k\uFFFD", "ma\uFFFDp"); c.Received != 1 || c.OK != 1 || c.Hist != 1 {
		t.Errorf("invalid kind: %+v, want recorded under ma\\uFFFDp", c)
	}
}

// R72HostileValidNames: hostile but valid names (very long, control
// characters, quotes and label syntax, a name that looks like a generated
// one, a space), in two runs: labels are per stage, and each name's series
// adds up both runs. An unnamed map after them is map#7, not map#1.
func R72HostileValidNames(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	long := strings.Repeat("é", 1<<17) // 256 KiB
	names := []string{long, "a\"b\\c\nd", `x",kind="filter`, "\x00", "map#1", " "}
	var s stage.Stream[int] = source.Slice(Ints(5))
	for _, nm := range names {
		s = stage.Map(s, r72Pass, stage.Name(nm))
	}
	// An unnamed map after them: its generated name is map#7, not map#1.
	s = stage.Map(s, r72Pass)
	for range 2 {
		if _, err := sink.Count(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	all := MustRead(t, env.Read)
	for _, nm := range append(names, "map#7") {
		q := nm
		if len(q) > 20 {
			q = q[:20] + "..."
		}
		c := R72StageOf(all, nm, "map")
		if c.Received != 10 || c.OK != 10 || c.Hist != 10 {
			t.Errorf("stage %q: %+v, want 10 received/ok/duration count (5 in each of 2 runs)", q, c)
		}
		R72Balanced(t, q, c)
	}
}

// R72SameNameShares: the same name twice in one run, and in three runs: one
// series per (name, kind), counts adding up; a different kind under the same
// name is another series (labels are per stage only: its name and kind, and
// the outcome of a call).
func R72SameNameShares(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	a := stage.Map(source.Slice(Ints(10)), r72Pass, stage.Name("dup"))
	b := stage.Map(a, r72Pass, stage.Name("dup"))
	c := stage.Filter(b, func(_ context.Context, v int) (bool, error) { return true, nil }, stage.Name("dup"))
	for range 3 {
		if _, err := sink.Count(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	all := MustRead(t, env.Read)
	m := R72StageOf(all, "dup", "map")
	f := R72StageOf(all, "dup", "filter")
	if m.Received != 60 || m.Hist != 60 {
		t.Errorf("dup/map %+v, want 60", m)
	}
	if f.Received != 30 || f.Hist != 30 {
		t.Errorf("dup/filter %+v, want 30", f)
	}
	R72Balanced(t, "dup/map", m)
	R72Balanced(t, "dup/filter", f)
}

// R72KindsAndGeneratedNames: Info.Kind: "map", "filter", "flatmap",
// "concurrent", "apply", "unbatch"; the kind label carries it; unnamed
// stages are "map#1", "filter#2", ...
func R72KindsAndGeneratedNames(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	m := stage.Map(source.Slice(Ints(8)), r72Pass)
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
	all := MustRead(t, env.Read)
	for _, w := range []struct {
		name, kind string
		recv       float64
	}{
		{"map#1", "map", 8}, {"filter#2", "filter", 8}, {"flatmap#3", "flatmap", 8},
		{"apply#4", "apply", 16}, {"unbatch#5", "unbatch", 4}, {"map#6", "map", 16}, {"concurrent#7", "concurrent", 16},
	} {
		c := R72StageOf(all, w.name, w.kind)
		if c.Received != w.recv {
			t.Errorf("%s{kind=%s}: %+v, want received %v", w.name, w.kind, c, w.recv)
		}
		R72Balanced(t, w.name, c)
	}
}

// R72InFlightDuringRun: the in-flight series counts "items taken and not
// finished", read while the run goes on: four calls blocked at once.
func R72InFlightDuringRun(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	var entered sync.WaitGroup
	entered.Add(4)
	release := make(chan struct{})
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		defer close(release)
		entered.Wait()
		all, err := env.Read()
		if err != nil {
			t.Errorf("reading while 4 calls run: %v", err)
			return
		}
		c := R72StageOf(all, "blocked", "map")
		if c.InFlight != 4 || c.Received != 4 || c.OK+c.Failed != 0 {
			t.Errorf("while 4 calls run: %+v, want in flight 4, received 4, finished 0", c)
		}
	}()
	s := stage.Map(source.Slice(Ints(4)), func(_ context.Context, v int) (int, error) {
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
	c := R72Read(t, env, "blocked", "map")
	if c.Received != 4 || c.OK != 4 {
		t.Errorf("after: %+v, want received 4, ok 4", c)
	}
	R72Balanced(t, "blocked", c)
}

// R72ConcurrentRuns runs 24 runs at once of one Map "shared" over items
// items, every 50th failing (Forward): run i runs under the context
// runCtx(i), which has observers attached of read's backend that record
// each stage of the run observers times in all ("one attached twice sees it
// twice"). Watcher methods are "called from the stage's workers, several at
// once"; the counts add up every run, weighted.
func R72ConcurrentRuns(t *testing.T, read Read, items int, runCtx func(i int) (ctx context.Context, observers int)) {
	const runs = 24
	s := stage.Map(source.Slice(Ints(items)), func(_ context.Context, v int) (int, error) {
		if v%50 == 0 {
			return 0, errors.New("fifty")
		}
		return v, nil
	}, stage.Name("shared"), stage.Workers(4), stage.OnError(stage.Forward))
	weight := 0
	ctxs := make([]context.Context, runs)
	for i := range runs {
		var n int
		ctxs[i], n = runCtx(i)
		weight += n
	}
	var wg sync.WaitGroup
	runcheck.Run(t, "concurrent", func() {
		for i := range runs {
			wg.Go(func() {
				n, err := sink.Count(ctxs[i], s)
				if n != items-items/50 || err == nil {
					t.Errorf("run %d: %d, %v", i, n, err)
				}
			})
		}
		wg.Wait()
	})
	c := R72StageOf(MustRead(t, read), "shared", "map")
	w := float64(weight)
	fi := float64(items)
	if c.Received != w*fi || c.Failed != w*float64(items/50) || c.OK != w*float64(items-items/50) {
		t.Errorf("%+v, want received %v, error %v, ok %v", c, w*fi, w*float64(items/50), w*float64(items-items/50))
	}
	R72Balanced(t, "shared", c)
}

// R72WatcherDirect: the observer's Watcher straight from Stage ("returns
// what watches that stage in that run"), and what Finished's err means
// (stage.Watcher): nil success; an *Error failed; an error for which
// errors.Is(err, context.Canceled) holds and that is no *Error: cut short,
// "neither succeeded nor failed" — and the adapters' docs: "ok otherwise".
func R72WatcherDirect(t *testing.T, env Env) {
	w := env.Obs.Stage(stage.Info{Name: "direct", Kind: "map", Workers: 2, Total: -1})
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
	c := R72Read(t, env, "direct", "map")
	if c.Received != 6 || c.OK != 3 || c.Failed != 2 || c.InFlight != 1 || c.Hist != 5 {
		t.Errorf("%+v, want received 6, ok 3, error 2, in flight 1, duration count 5", c)
	}
	w.Finished(0, nil)
	w.Closed()
	R72Balanced(t, "direct", R72Read(t, env, "direct", "map"))
}

// R72ContextErrorsOfItemsAreFailures: "A call's outcome is "error" when its
// item failed (the stage's error policy handles it)". An item whose function
// returns a context error of its own while the run goes on (context.Canceled,
// or its per-call Timeout's DeadlineExceeded) failed: the policy gets it
// (here Forward), so it is no call "cut short by the end of the run".
func R72ContextErrorsOfItemsAreFailures(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	const n = 12
	a := stage.Map(source.Slice(Ints(n)), func(_ context.Context, v int) (int, error) {
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
	all := MustRead(t, env.Read)
	c := R72StageOf(all, "canceled", "map")
	if c.Failed != n/2 || c.OK != n/2 {
		t.Errorf("canceled stage: %+v, want error %d (items that returned context.Canceled failed), ok %d", c, n/2, n/2)
	}
	d := R72StageOf(all, "timeout", "map")
	if d.Received != n/2 || d.Failed != n/4 || d.OK != n/4 {
		t.Errorf("timeout stage: %+v, want received %d, error %d (timed out), ok %d", d, n/2, n/4, n/4)
	}
	R72Balanced(t, "canceled", c)
	R72Balanced(t, "timeout", d)
}

// R72BudgetAndHandleFailures: Budget(n, h): "the (n+1)th, which h does not
// see, fails the run": every one of the n+1 items failed (outcome error);
// Handle whose h returns an error: that item failed too.
func R72BudgetAndHandleFailures(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	s := stage.Map(source.Slice(Ints(20)), func(_ context.Context, v int) (int, error) {
		if v%2 == 0 {
			return 0, errors.New("even")
		}
		return v, nil
	}, stage.Name("budget"), stage.Workers(1), stage.OnError(stage.Budget(3, nil)))
	if _, err := sink.Count(ctx, s); !errors.Is(err, stage.ErrBudget) {
		t.Fatalf("err = %v", err)
	}
	hErr := errors.New("dead letter queue down")
	h := stage.Map(source.Slice(Ints(20)), func(_ context.Context, v int) (int, error) {
		if v == 5 {
			return 0, errors.New("five")
		}
		return v, nil
	}, stage.Name("handle"), stage.Workers(1), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return hErr })))
	if _, err := sink.Count(ctx, h); !errors.Is(err, hErr) {
		t.Fatalf("err = %v", err)
	}
	all := MustRead(t, env.Read)
	b := R72StageOf(all, "budget", "map")
	if b.Failed != 4 {
		t.Errorf("budget: %+v, want error 4 (3 within the budget + the one that failed the run)", b)
	}
	hc := R72StageOf(all, "handle", "map")
	if hc.Failed != 1 {
		t.Errorf("handle: %+v, want error 1", hc)
	}
	R72Balanced(t, "budget", b)
	R72Balanced(t, "handle", hc)
}
