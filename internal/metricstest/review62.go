package metricstest

// Review62: adversarial counting scenarios for a metrics adapter, written
// from the adapters' documentation (and stage's Watcher, policies and
// sources) alone. Each reads the adapter's backend after the runs and checks
// the exact counts, by stage, kind and outcome.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Review62 runs the review62 scenarios, each on an Env of its own.
func Review62(t *testing.T, newEnv func(testing.TB) Env) {
	for _, s := range []struct {
		name string
		run  func(*testing.T, func(testing.TB) Env)
	}{
		{"KeyPanicCountsAsAFailedItem", review62KeyPanicCountsAsAFailedItem},
		{"BudgetFailuresAreErrors", review62BudgetFailuresAreErrors},
		{"ForwardedErrorsAreNotReceivedDownstream", review62ForwardedErrorsAreNotReceivedDownstream},
		{"SourcePanicCountsTheItemsBefore", review62SourcePanicCountsTheItemsBefore},
		{"RetriedTimeoutsCountOncePerItem", review62RetriedTimeoutsCountOncePerItem},
		{"DrainedCallsAreOK", review62DrainedCallsAreOK},
		{"CutShortWhateverItReturns", review62CutShortWhateverItReturns},
		{"OnlyFunctionStagesHaveSeries", review62OnlyFunctionStagesHaveSeries},
	} {
		t.Run(s.name, func(t *testing.T) { s.run(t, newEnv) })
	}
}

var errR62 = errors.New("review62: item failed")

// r62New makes env's observer on a fresh backend and a reader of its series.
func r62New(t *testing.T, newEnv func(testing.TB) Env) (stage.Observer, func() r62Snap) {
	t.Helper()
	env := newEnv(t)
	return env.Obs, func() r62Snap {
		t.Helper()
		out := r62Snap{}
		for _, p := range MustRead(t, env.Read) {
			metric, ok := names7[p.Metric]
			if !ok {
				t.Errorf("unexpected metric in %+v", p)
				continue
			}
			out[r62Key{metric, p.Stage, p.Kind, p.Outcome}] += p.Value
		}
		return out
	}
}

// r62Key names one series: the metric ("received", "finished", "in_flight",
// "duration" for the histogram's count), its stage, kind and outcome.
type r62Key struct{ metric, stage, kind, outcome string }

type r62Snap map[r62Key]float64

func (s r62Snap) get(metric, stg, kind, outcome string) float64 {
	return s[r62Key{metric, stg, kind, outcome}]
}

// r62CheckBalanced checks the invariants every finished run leaves: for each
// (stage, kind), nothing in flight, and received = finished ok + error =
// the duration histogram's count.
func r62CheckBalanced(t *testing.T, label string, s r62Snap) {
	t.Helper()
	type sk struct{ stage, kind string }
	seen := map[sk]bool{}
	for k := range s {
		seen[sk{k.stage, k.kind}] = true
	}
	for st := range seen {
		rec := s.get("received", st.stage, st.kind, "")
		fin := s.get("finished", st.stage, st.kind, "ok") + s.get("finished", st.stage, st.kind, "error")
		dur := s.get("duration", st.stage, st.kind, "")
		inf := s.get("in_flight", st.stage, st.kind, "")
		if rec != fin || rec != dur || inf != 0 {
			t.Errorf("%s: stage %q (%s): received %v, finished %v, durations %v, in flight %v; want received = finished = durations, none in flight", label, st.stage, st.kind, rec, fin, dur, inf)
		}
	}
}

func r62Pass[T any](_ context.Context, v T) (T, error) { return v, nil }

// "A call's outcome is "error" when its item failed (the stage's error
// policy handles it)": a KeyBy key function that panics fails its item
// without a call (stage.Watcher: Received, then Finished with its *Error):
// it is received, finished with outcome error and timed; the others ok.
func review62KeyPanicCountsAsAFailedItem(t *testing.T, newEnv func(testing.TB) Env) {
	obs, snap := r62New(t, newEnv)
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), obs), &stats)
	items := make([]int, 20)
	for i := range items {
		items[i] = i
	}
	var handled atomic.Int32
	s := stage.Map(source.Slice(items), r62Pass[int], stage.Name("keyed"), stage.Workers(3),
		stage.KeyBy(func(v int) int {
			if v == 7 {
				panic("review62 key")
			}
			return v % 2
		}),
		stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
			var pe *stage.PanicError
			if errors.As(e, &pe) {
				handled.Add(1)
			}
			return nil
		})))
	n, err := sink.Count(ctx, s)
	if err != nil || n != 19 || handled.Load() != 1 {
		t.Fatalf("Count = %d, %v (handled %d); want 19, nil, 1 handled panic", n, err, handled.Load())
	}
	got := snap()
	if r, e, ok := got.get("received", "keyed", "map", ""), got.get("finished", "keyed", "map", "error"), got.get("finished", "keyed", "map", "ok"); r != 20 || e != 1 || ok != 19 {
		t.Errorf("received %v, finished error %v, ok %v; want 20, 1, 19 (the key's panic fails its item)", r, e, ok)
	}
	r62CheckBalanced(t, "key panic", got)
	if c, _ := stats.Get("keyed"); c.Failed != 1 || c.Received != 20 {
		t.Errorf("stage.Stats: %+v", c)
	}
}

// Budget(n): "the first n failed items of a run are dropped ..., and the
// (n+1)th ... fails the run": every one of them is a failed item (outcome
// error), exactly n+1 with one worker, in each of two runs that share the
// observer one after the other.
func review62BudgetFailuresAreErrors(t *testing.T, newEnv func(testing.TB) Env) {
	obs, snap := r62New(t, newEnv)
	ctx := stage.Observe(context.Background(), obs)
	items := make([]int, 30)
	for i := range items {
		items[i] = i
	}
	s := stage.Map(source.Slice(items), func(_ context.Context, v int) (int, error) {
		if v%3 == 1 {
			return 0, errR62
		}
		return v, nil
	}, stage.Name("budget"), stage.Workers(1), stage.OnError(stage.Budget(2, nil)))
	for run := 1; run <= 2; run++ {
		_, err := sink.Slice(ctx, s)
		if !errors.Is(err, stage.ErrBudget) || !errors.Is(err, errR62) {
			t.Fatalf("run %d: err = %v; want ErrBudget and the item's error", run, err)
		}
		got := snap()
		if e := got.get("finished", "budget", "map", "error"); e != float64(3*run) {
			t.Errorf("after run %d: finished error %v; want %d (n+1 = 3 failed items per run)", run, e, 3*run)
		}
		if ok := got.get("finished", "budget", "map", "ok"); ok < float64(5*run) {
			t.Errorf("after run %d: finished ok %v; want at least %d (the items before the third failure)", run, ok, 5*run)
		}
		r62CheckBalanced(t, fmt.Sprintf("budget run %d", run), got)
	}
}

// Forward: "later stages pass it through without calling their function"
// (stage.Watcher: "Forwarded errors, which pass through without a call, are
// not reported"); an Apply that emits before failing: "Outputs emitted before
// an error still go downstream", and its item failed (outcome error).
func review62ForwardedErrorsAreNotReceivedDownstream(t *testing.T, newEnv func(testing.TB) Env) {
	obs, snap := r62New(t, newEnv)
	ctx := stage.Observe(context.Background(), obs)
	const n = 40
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	a := stage.Apply(source.Slice(items), func(_ context.Context, v int, emit func(int) bool) error {
		emit(v)
		emit(v + 1000)
		if v%4 == 0 {
			return errR62
		}
		return nil
	}, stage.Name("a"), stage.Workers(4), stage.OnError(stage.Forward))
	b := stage.Filter(a, func(_ context.Context, v int) (bool, error) { return v < 1000, nil }, stage.Name("b"), stage.Workers(2))
	c := stage.Map(b, r62Pass[int], stage.Name("c"), stage.Workers(3), stage.Buffer(2))
	var vals, fwd int
	for _, err := range sink.All(ctx, c) {
		if err != nil {
			var se *stage.Error
			if !errors.As(err, &se) || se.Stage != "a" {
				t.Fatalf("unexpected error %v", err)
			}
			fwd++
			continue
		}
		vals++
	}
	if vals != n || fwd != n/4 {
		t.Fatalf("%d values, %d forwarded; want %d, %d", vals, fwd, n, n/4)
	}
	got := snap()
	want := map[r62Key]float64{
		{"received", "a", "apply", ""}:       n,
		{"finished", "a", "apply", "error"}:  n / 4,
		{"finished", "a", "apply", "ok"}:     n - n/4,
		{"received", "b", "filter", ""}:      2 * n,
		{"finished", "b", "filter", "ok"}:    2 * n,
		{"finished", "b", "filter", "error"}: 0,
		{"received", "c", "map", ""}:         n,
		{"finished", "c", "map", "ok"}:       n,
	}
	for k, w := range want {
		if g := got[k]; g != w {
			t.Errorf("%v = %v; want %v", k, g, w)
		}
	}
	r62CheckBalanced(t, "forward", got)
}

// A source's failure is not an item's: "the items it produced before it
// still go through" (each received and finished ok, none cut short into an
// error), in concurrent runs that share one observer, each over its own
// iterator that panics at its 25th step.
func review62SourcePanicCountsTheItemsBefore(t *testing.T, newEnv func(testing.TB) Env) {
	obs, snap := r62New(t, newEnv)
	ctx := stage.Observe(context.Background(), obs)
	const k, runs = 25, 4
	s := source.Seq(func(yield func(int) bool) {
		for i := 0; ; i++ {
			if i == k {
				panic("review62 source")
			}
			if !yield(i) {
				return
			}
		}
	})
	m1 := stage.Map(s, r62Pass[int], stage.Name("m1"), stage.Workers(4))
	m2 := stage.Map(m1, func(ctx context.Context, v int) (int, error) {
		return v, ctx.Err()
	}, stage.Name("m2"), stage.Workers(2), stage.Buffer(3))
	var wg sync.WaitGroup
	for range runs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := sink.Slice(ctx, m2)
			var se *stage.SourceError
			if !errors.As(err, &se) || len(got) != k {
				t.Errorf("run: %d items, %v; want %d and a *SourceError", len(got), err, k)
			}
		}()
	}
	wg.Wait()
	got := snap()
	for _, name := range []string{"m1", "m2"} {
		if r, ok, e := got.get("received", name, "map", ""), got.get("finished", name, "map", "ok"), got.get("finished", name, "map", "error"); r != k*runs || ok != k*runs || e != 0 {
			t.Errorf("%s: received %v, ok %v, error %v; want %d, %d, 0", name, r, ok, e, k*runs, k*runs)
		}
	}
	r62CheckBalanced(t, "source panic", got)
}

// Retry and Timeout: "calls ended" counts an item once, "all attempts"
// (stage.Watcher: "the call (all its attempts under Retry) ended"), and an
// item whose every attempt timed out failed (outcome error) with a
// duration that covers all of them.
func review62RetriedTimeoutsCountOncePerItem(t *testing.T, newEnv func(testing.TB) Env) {
	obs, snap := r62New(t, newEnv)
	ctx := stage.Observe(context.Background(), obs)
	const n = 6
	var attempts atomic.Int32
	items := make([]int, n)
	s := stage.Map(source.Slice(items), func(ctx context.Context, v int) (int, error) {
		attempts.Add(1)
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Name("slow"), stage.Workers(3), stage.Timeout(time.Millisecond), stage.Retry(3, time.Microsecond),
		stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	cnt, err := sink.Count(ctx, s)
	if err != nil || cnt != 0 || attempts.Load() != 3*n {
		t.Fatalf("Count = %d, %v, %d attempts; want 0, nil, %d", cnt, err, attempts.Load(), 3*n)
	}
	got := snap()
	if r, e, ok := got.get("received", "slow", "map", ""), got.get("finished", "slow", "map", "error"), got.get("finished", "slow", "map", "ok"); r != n || e != n || ok != 0 {
		t.Errorf("received %v, error %v, ok %v; want %d, %d, 0 (once per item, not per attempt)", r, e, ok, n, n)
	}
	r62CheckBalanced(t, "retry", got)
}

// Until: "calls in flight finish" once stop is done; they succeed (outcome
// ok), and the items the source never took are never received.
func review62DrainedCallsAreOK(t *testing.T, newEnv func(testing.TB) Env) {
	obs, snap := r62New(t, newEnv)
	ctx := stage.Observe(context.Background(), obs)
	ch := make(chan int, 100)
	for i := range 100 {
		ch <- i
	}
	stop, drain := context.WithCancel(context.Background())
	gate := make(chan struct{})
	var started atomic.Int32
	allIn := make(chan struct{})
	const w = 3
	s := stage.Map(stage.Until(source.Chan(ch), stop), func(_ context.Context, v int) (int, error) {
		if started.Add(1) == w {
			close(allIn)
		}
		<-gate
		return v, nil
	}, stage.Name("drained"), stage.Workers(w), stage.Buffer(1))
	done := make(chan struct{})
	var got []int
	var err error
	go func() {
		defer close(done)
		got, err = sink.Slice(ctx, s)
	}()
	select {
	case <-allIn:
	case <-time.After(30 * time.Second):
		t.Fatal("hang: the workers never all started")
	}
	drain()
	close(gate)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("hang: the drain never ended")
	}
	if err != nil {
		t.Fatalf("drained run: %v; want nil", err)
	}
	taken := 100 - len(ch)
	sn := snap()
	if r, ok, e := sn.get("received", "drained", "map", ""), sn.get("finished", "drained", "map", "ok"), sn.get("finished", "drained", "map", "error"); r != float64(len(got)) || ok != float64(len(got)) || e != 0 || len(got) != taken {
		t.Errorf("received %v, ok %v, error %v; delivered %d, taken from ch %d; want all equal, no error", r, ok, e, len(got), taken)
	}
	r62CheckBalanced(t, "drain", sn)
	close(ch)
}

// "a call cut short by the end of the run (another stage's failure, a
// cancellation) did not fail", whatever it returned then (stage.Watcher:
// "whatever error the function returned", even a *stage.Error of a nested
// run of its own), and "A call that returned nil is a success, even once
// the run was ending": one item failed, the two cut short are ok. A nil
// task of Concurrent (ErrNilTask) is a failed item of kind "concurrent".
func review62CutShortWhateverItReturns(t *testing.T, newEnv func(testing.TB) Env) {
	obs, snap := r62New(t, newEnv)
	ctx := stage.Observe(context.Background(), obs)
	started := make(chan struct{}, 2)
	s := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, v int) (int, error) {
		switch v {
		case 0:
			for range 2 {
				select {
				case <-started:
				case <-time.After(30 * time.Second):
					return 0, errors.New("hang: the other calls never started")
				}
			}
			return 0, errR62
		case 1:
			started <- struct{}{}
			<-ctx.Done()
			return 0, &stage.Error{Stage: "inner", Err: fmt.Errorf("nested run: %w", errR62)}
		default:
			started <- struct{}{}
			<-ctx.Done()
			return v, nil
		}
	}, stage.Name("cut"), stage.Workers(3), stage.Buffer(1))
	_, err := sink.Slice(ctx, s)
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "cut" || se.Index != 0 {
		t.Fatalf("err = %v; want item 0's *Error", err)
	}
	got := snap()
	if r, e, ok := got.get("received", "cut", "map", ""), got.get("finished", "cut", "map", "error"), got.get("finished", "cut", "map", "ok"); r != 3 || e != 1 || ok != 2 {
		t.Errorf("received %v, error %v, ok %v; want 3, 1, 2", r, e, ok)
	}

	tasks := []func(context.Context) (int, error){
		func(context.Context) (int, error) { return 1, nil },
		nil,
		func(context.Context) (int, error) { return 0, errR62 },
		func(context.Context) (int, error) { return 3, nil },
	}
	var nilTasks int
	for _, err := range sink.All(ctx, stage.Concurrent(source.Slice(tasks), stage.Name("tasks"), stage.Workers(2), stage.OnError(stage.Forward))) {
		if errors.Is(err, stage.ErrNilTask) {
			nilTasks++
		}
	}
	got = snap()
	if r, e, ok := got.get("received", "tasks", "concurrent", ""), got.get("finished", "tasks", "concurrent", "error"), got.get("finished", "tasks", "concurrent", "ok"); nilTasks != 1 || r != 4 || e != 2 || ok != 2 {
		t.Errorf("concurrent: %d nil tasks forwarded; received %v, error %v, ok %v; want 1; 4, 2, 2", nilTasks, r, e, ok)
	}
	r62CheckBalanced(t, "cut short", got)
}

// Observer.Stage "is called ... for every stage of the pipeline that calls a
// function (Map, Filter, FlatMap, Concurrent, Apply, Unbatch; not Batch,
// Tee, Merge or Until)", and the labels are "per stage only (stage name and
// kind ...)": a pipeline through all of them has series for exactly its
// function stages, each kind under its own label, and two stages given the
// same name but of different kinds keep apart.
func review62OnlyFunctionStagesHaveSeries(t *testing.T, newEnv func(testing.TB) Env) {
	obs, snap := r62New(t, newEnv)
	ctx := stage.Observe(context.Background(), obs)
	const n = 24
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := stage.Map(stage.Until(source.Slice(items), stop), r62Pass[int], stage.Name("same"), stage.Workers(2))
	u := stage.Unbatch(stage.Batch(m, 5, 0))
	br := stage.Tee(u, 2)
	f := stage.Filter(br[0], func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil }, stage.Name("same"))
	fm := stage.FlatMap(br[1], func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil }, stage.Name("fm"))
	ap := stage.Apply(stage.Merge(f, fm), func(_ context.Context, v int, emit func(int) bool) error {
		emit(v)
		return nil
	}, stage.Name("ap"))
	cnt, err := sink.Count(ctx, ap)
	if err != nil || cnt != n/2+2*n {
		t.Fatalf("Count = %d, %v; want %d", cnt, err, n/2+2*n)
	}
	got := snap()
	type sk struct{ stage, kind string }
	kinds := map[sk]float64{}
	for k, v := range got {
		if k.metric == "received" {
			kinds[sk{k.stage, k.kind}] += v
		}
	}
	var unbatch float64
	for k, v := range kinds {
		if k.kind == "unbatch" {
			unbatch += v
			delete(kinds, k)
		}
	}
	want := map[sk]float64{
		{"same", "map"}:    n,
		{"same", "filter"}: n,
		{"fm", "flatmap"}:  n,
		{"ap", "apply"}:    n/2 + 2*n,
	}
	if len(kinds) != len(want) {
		t.Errorf("series of received: %v; want exactly %v and one unbatch", kinds, want)
	}
	for k, w := range want {
		if kinds[k] != w {
			t.Errorf("received %v = %v; want %v", k, kinds[k], w)
		}
	}
	if unbatch != 5 {
		t.Errorf("unbatch received %v batches; want 5 (24 items in batches of 5)", unbatch)
	}
	r62CheckBalanced(t, "shapes", got)
}
