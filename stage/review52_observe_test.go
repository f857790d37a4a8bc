package stage_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r52InfoObserver struct {
	mu    sync.Mutex
	infos []stage.Info
}

func (o *r52InfoObserver) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.infos = append(o.infos, info)
	return nil
}

// Doc (Observer.Stage): "called ... for every stage of the pipeline that
// calls a function (Map, Filter, FlatMap, Concurrent, Apply, Unbatch; not
// Batch, Tee, Merge or Until), upstream first"; (Name) "numbered from 1,
// named or not, in the order a run opens them, upstream first, so unnamed
// stages never share a name within a pipeline, and the same pipeline gets
// the same names in every run"; (Observe) "Observers attached by several
// calls all see every stage"; (Info.Total) "-1 when unknown (after a
// Filter, FlatMap, Apply, Batch, Merge or Tee)". A pipeline shaped as a DAG
// through a Tee and a Merge: every stage is met once, each after the stages
// upstream of it.
func TestReview52ObserverMeetsADagUpstreamFirst(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		id := func(_ context.Context, x int) (int, error) { return x, nil }
		keep := func(_ context.Context, x int) (bool, error) { return true, nil }
		a := stage.Map(source.Slice(ints52(20)), id, stage.Name("A"))
		b := stage.Tee(stage.Until(a, context.Background()), 3)
		br0 := stage.Map(b[0], id, stage.Name("B"))
		c := stage.Filter(b[1], keep, stage.Name("C"))
		d := stage.Unbatch(stage.Batch(c, 3, time.Hour))
		tasks := stage.Map(b[2], func(_ context.Context, x int) (func(context.Context) (int, error), error) {
			return func(context.Context) (int, error) { return x, nil }, nil
		}, stage.Name("T"))
		e := stage.Concurrent(tasks)
		f := stage.Map(stage.Merge(br0, d, e), id)
		g := stage.Apply(f, func(_ context.Context, x int, emit func(int) bool) error { emit(x); return nil })
		var prev []string
		for run := range 2 {
			o1, o2 := &r52InfoObserver{}, &r52InfoObserver{}
			ctx := stage.Observe(stage.Observe(context.Background(), o1), o2)
			n, err := sink.Count(ctx, g)
			if err != nil || n != 60 {
				t.Fatalf("run %d: Count = %d, %v; want 60", run, n, err)
			}
			names := func(o *r52InfoObserver) []string {
				var out []string
				for _, i := range o.infos {
					out = append(out, i.Name)
				}
				return out
			}
			n1, n2 := names(o1), names(o2)
			t.Logf("run %d: %v", run, n1)
			if !slices.Equal(n1, n2) {
				t.Errorf("two observers met different stages: %v and %v", n1, n2)
			}
			pos := map[string]int{}
			for i, nm := range n1 {
				if _, dup := pos[nm]; dup {
					t.Errorf("stage %q met twice", nm)
				}
				pos[nm] = i
			}
			if len(n1) != 8 {
				t.Fatalf("met %d stages %v, want 8 (A, B, C, unbatch, T, concurrent, map, apply)", len(n1), n1)
			}
			// Unnamed stages: numbered by the order of opening, from 1.
			var kinds = map[string]string{}
			for i, info := range o1.infos {
				kinds[info.Name] = info.Kind
				if info.Name == "A" || info.Name == "B" || info.Name == "C" || info.Name == "T" {
					continue
				}
				want := info.Kind + "#" + itoa52(i+1)
				if info.Name != want {
					t.Errorf("stage %d (kind %s) named %q, want %q", i+1, info.Kind, info.Name, want)
				}
			}
			find := func(kind string) string {
				for nm, k := range kinds {
					if k == kind && nm != "A" && nm != "B" && nm != "T" {
						return nm
					}
				}
				return ""
			}
			unb, conc, app := find("unbatch"), find("concurrent"), find("apply")
			var mapF string
			for nm, k := range kinds {
				if k == "map" && nm != "A" && nm != "B" && nm != "T" {
					mapF = nm
				}
			}
			for _, edge := range [][2]string{{"A", "B"}, {"A", "C"}, {"A", "T"}, {"C", unb}, {"T", conc}, {"B", mapF}, {unb, mapF}, {conc, mapF}, {mapF, app}} {
				p0, ok0 := pos[edge[0]]
				p1, ok1 := pos[edge[1]]
				if !ok0 || !ok1 || p0 >= p1 {
					t.Errorf("stage %q must be met before %q (upstream first): order %v", edge[0], edge[1], n1)
				}
			}
			for _, info := range o1.infos {
				want := -1
				if info.Name == "A" {
					want = 20
				}
				if info.Total != want {
					t.Errorf("stage %q: Total %d, want %d", info.Name, info.Total, want)
				}
			}
			if prev != nil && !slices.Equal(prev, n1) {
				t.Errorf("names differ between runs: %v then %v", prev, n1)
			}
			prev = n1
		}
	})
}

func ints52(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func itoa52(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa52(i/10) + string(rune('0'+i%10))
}

// Doc (Stats): "counts, per stage, with atomic counters that can be read
// while runs go on (a progress bar, a status page, a test)"; "a Stats
// attached to several runs adds the counts of stages of the same name up";
// (Snapshot) "every stage's counters, in the order the stages were first
// seen". Readers poll Get and Snapshot while many runs of two pipelines
// (sharing stage names) start, fail and end: no data race (-race), and the
// final counts add up.
func TestReview52StatsReadWhileRunsGoOn(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		var stats stage.Stats
		ctx := stage.Observe(context.Background(), &stats)
		mk := func(fail bool) stage.Stream[int] {
			a := stage.Map(source.Slice(ints52(50)), func(_ context.Context, v int) (int, error) {
				if fail && v == 25 {
					return 0, errR52
				}
				return v, nil
			}, stage.Name("first"), stage.Workers(3), stage.OnError(stage.Forward))
			return stage.Filter(a, func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil }, stage.Name("second"), stage.Workers(2))
		}
		ok, bad := mk(false), mk(true)
		done := make(chan struct{})
		var readers sync.WaitGroup
		for range 2 {
			readers.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					for _, c := range stats.Snapshot() {
						if c.InFlight < 0 || c.Finished > c.Received || c.Running < 0 {
							t.Errorf("inconsistent snapshot %+v", c)
							return
						}
					}
					stats.Get("first")
				}
			})
		}
		var runs sync.WaitGroup
		for r := range 16 {
			runs.Go(func() {
				s := ok
				if r%2 == 1 {
					s = bad
				}
				_, _ = sink.Count(ctx, s)
			})
		}
		runs.Wait()
		close(done)
		readers.Wait()
		snap := stats.Snapshot()
		if len(snap) != 2 || snap[0].Name != "first" || snap[1].Name != "second" {
			t.Fatalf("Snapshot %+v; want first, then second", snap)
		}
		f, s := snap[0], snap[1]
		if f.Received != 16*50 || f.Finished != 16*50 || f.Failed != 8 || f.InFlight != 0 || f.Running != 0 {
			t.Errorf("first: %+v; want Received/Finished 800, Failed 8, InFlight 0, Running 0", f)
		}
		// The forwarded errors pass "second" without a call.
		if s.Received != 16*50-8 || s.Finished != s.Received || s.Failed != 0 || s.Running != 0 {
			t.Errorf("second: %+v; want Received/Finished 792, Failed 0, Running 0", s)
		}
	})
}

// r52CountObs counts, per stage name, what its watchers are told, and
// notes any call after Closed or a second Closed.
type r52CountObs struct {
	mu       sync.Mutex
	stages   map[string]*r52CountW
	problems []string
}

type r52CountW struct {
	o                  *r52CountObs
	name               string
	received, finished atomic.Int64
	failed, cut, bad   atomic.Int64
	closed             atomic.Int64
}

func (o *r52CountObs) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stages == nil {
		o.stages = map[string]*r52CountW{}
	}
	if _, dup := o.stages[info.Name]; dup {
		o.problems = append(o.problems, "stage "+info.Name+" met twice in one run")
	}
	w := &r52CountW{o: o, name: info.Name}
	o.stages[info.Name] = w
	return w
}

func (w *r52CountW) Received() {
	if w.closed.Load() != 0 {
		w.bad.Add(1)
	}
	w.received.Add(1)
}

func (w *r52CountW) Finished(_ time.Duration, err error) {
	if w.closed.Load() != 0 {
		w.bad.Add(1)
	}
	w.finished.Add(1)
	if err != nil {
		var e *stage.Error
		if errors.As(err, &e) {
			if _, ok := err.(*stage.Error); !ok {
				w.bad.Add(1)
			}
			w.failed.Add(1)
		} else {
			w.cut.Add(1)
		}
	}
}

func (w *r52CountW) Closed() { w.closed.Add(1) }

// Doc (Watcher): "Received: the stage took an item and is about to call its
// function on it ... Forwarded errors, which pass through without a call,
// are not reported"; "Finished: the call (all its attempts under Retry)
// ended ...; err is nil on success; the *Error that the stage's ErrorPolicy
// is about to handle (of that type, not wrapped)"; "Closed: the run is over
// and every goroutine of it has exited; the stage reports nothing more.
// Called once". Over the random pipelines of the model test (run to their
// end), each named stage must be told one Received and one Finished per
// value the model says reaches it, a *Error for each item the model says
// fails in it, nothing cut short, and one Closed, after everything else.
func TestReview52WatcherCountsAgainstModel(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		checked, failures := 0, 0
		defer func() {
			if !t.Failed() && (checked < 300 || failures == 0) {
				t.Errorf("the scenarios checked %d stages against the model, %d failures: too few to mean anything", checked, failures)
			}
		}()
		for seed := range 600 {
			rng := rand.New(rand.NewPCG(uint64(seed), 5259))
			n := rng.IntN(40)
			in := make([]int, n)
			model := make([]r52Entry, n)
			for i := range in {
				in[i] = rng.IntN(r52M)
				model[i] = r52Entry{v: in[i]}
			}
			src, sdesc := r52OrderSource(rng, in)
			r52Expect = map[string][2]int{}
			s, _, _, desc := r52OrderBuild(rng, src, model, 1+rng.IntN(5))
			expect := r52Expect
			r52Expect = nil
			desc = sdesc + " -> " + desc
			o := &r52CountObs{}
			for _, err := range sink.All(stage.Observe(context.Background(), o), s) {
				if err != nil && !errors.Is(err, errR52) {
					t.Fatalf("seed %d (%s): %v", seed, desc, err)
				}
			}
			o.mu.Lock()
			for _, p := range o.problems {
				t.Errorf("seed %d (%s): %s", seed, desc, p)
			}
			for name, w := range o.stages {
				r, f := w.received.Load(), w.finished.Load()
				if r != f || w.closed.Load() != 1 || w.bad.Load() != 0 || w.cut.Load() != 0 {
					t.Errorf("seed %d (%s): stage %s: Received %d, Finished %d, Closed %d, after-Closed or wrapped %d, cut short %d",
						seed, desc, name, r, f, w.closed.Load(), w.bad.Load(), w.cut.Load())
				}
				if e, ok := expect[name]; ok {
					checked++
					failures += e[1]
				}
				if e, ok := expect[name]; ok && (int(r) != e[0] || int(w.failed.Load()) != e[1]) {
					t.Errorf("seed %d (%s): stage %s: Received %d, failed %d; the model says %d and %d",
						seed, desc, name, r, w.failed.Load(), e[0], e[1])
				}
			}
			for name := range expect {
				if _, ok := o.stages[name]; !ok {
					t.Errorf("seed %d (%s): stage %s was never met", seed, desc, name)
				}
			}
			o.mu.Unlock()
			if t.Failed() {
				return
			}
		}
	})
}

// r52CutW checks, as its calls come, that an error that is not an *Error
// satisfies errors.Is(err, context.Canceled).
type r52CutObs struct {
	r52CountObs
	notCanceled atomic.Int64
}

type r52CutW struct {
	*r52CountW
	o *r52CutObs
}

func (o *r52CutObs) Stage(info stage.Info) stage.Watcher {
	return r52CutW{o.r52CountObs.Stage(info).(*r52CountW), o}
}

func (w r52CutW) Finished(d time.Duration, err error) {
	var e *stage.Error
	if err != nil && !errors.As(err, &e) && !errors.Is(err, context.Canceled) {
		w.o.notCanceled.Add(1)
	}
	w.r52CountW.Finished(d, err)
}

// Doc (Watcher.Finished): "when the call returned an error once the run was
// ending (a failure elsewhere, the caller's cancellation, an early stop),
// an error for which errors.Is(err, context.Canceled) holds and that
// neither is nor wraps an *Error, whatever error the function returned";
// Closed "Called once" and "the stage reports nothing more"; every call
// told Received is told Finished. The random pipelines of the model test,
// cut short at a random output by the caller's cancellation, a failing
// sink callback, or ErrStop.
func TestReview52WatcherWhenCutShort(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		for seed := range 600 {
			rng := rand.New(rand.NewPCG(uint64(seed), 5260))
			n := 1 + rng.IntN(40)
			in := make([]int, n)
			model := make([]r52Entry, n)
			for i := range in {
				in[i] = rng.IntN(r52M)
				model[i] = r52Entry{v: in[i]}
			}
			src, sdesc := r52OrderSource(rng, in)
			s, want, _, desc := r52OrderBuild(rng, src, model, 1+rng.IntN(5))
			desc = sdesc + " -> " + desc
			if len(want) == 0 {
				continue
			}
			at := 1 + rng.IntN(len(want))
			how := rng.IntN(3)
			o := &r52CutObs{}
			ctx, cancel := context.WithCancel(stage.Observe(context.Background(), o))
			seen := 0
			err := stage.Run(ctx, s, func(_ context.Context, _ int, err error) error {
				seen++
				if seen == at {
					switch how {
					case 0:
						cancel()
					case 1:
						return errR52Cut
					default:
						return stage.ErrStop
					}
				}
				return nil
			})
			cancel()
			switch {
			case how == 1 && !errors.Is(err, errR52Cut):
				t.Fatalf("seed %d (%s): Run = %v, want the callback's error", seed, desc, err)
			case how == 2 && err != nil:
				t.Fatalf("seed %d (%s): Run = %v after ErrStop, want nil", seed, desc, err)
			}
			o.mu.Lock()
			for _, p := range o.problems {
				t.Errorf("seed %d (%s): %s", seed, desc, p)
			}
			for name, w := range o.stages {
				r, f := w.received.Load(), w.finished.Load()
				if r != f || w.closed.Load() != 1 || w.bad.Load() != 0 {
					t.Errorf("seed %d (%s, ending %d at %d): stage %s: Received %d, Finished %d, Closed %d, after-Closed or wrapped %d",
						seed, desc, how, at, name, r, f, w.closed.Load(), w.bad.Load())
				}
			}
			if c := o.notCanceled.Load(); c != 0 {
				t.Errorf("seed %d (%s): %d calls cut short reported with an error that is not context.Canceled", seed, desc, c)
			}
			o.mu.Unlock()
			if t.Failed() {
				return
			}
		}
	})
}

var errR52Cut = errors.New("r52: the sink's callback failed")

// The same with calls that block until the run ends: a stage at the end of
// the random pipeline blocks on some items until ctx is done, then returns
// its own error (not the context's: "whatever error the function
// returned"); the first such call ends the run one of three ways (the
// caller's cancellation, a FailFast failure of another stage's item, an
// ErrStop of the sink that has seen nothing more... here: cancellation or
// a failure elsewhere). The blocked calls must be reported cut short,
// every Received must be Finished, Closed once.
func TestReview52WatcherBlockedCallsCutShort(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		for seed := range 400 {
			rng := rand.New(rand.NewPCG(uint64(seed), 5261))
			n := 1 + rng.IntN(40)
			in := make([]int, n)
			model := make([]r52Entry, n)
			for i := range in {
				in[i] = rng.IntN(r52M)
				model[i] = r52Entry{v: in[i]}
			}
			src, sdesc := r52OrderSource(rng, in)
			s, want, _, desc := r52OrderBuild(rng, src, model, rng.IntN(4))
			desc = sdesc + " -> " + desc
			o := &r52CutObs{}
			ctx, cancel := context.WithCancel(stage.Observe(context.Background(), o))
			how := rng.IntN(2)
			entered := make(chan struct{})
			var once sync.Once
			p := 1 + rng.IntN(4)
			willBlock := false
			for _, e := range want {
				if e.err == "" && r52H(e.v, 77)%p == 0 {
					willBlock = true
				}
			}
			w := 1 + rng.IntN(4)
			opts := []stage.Option{stage.Workers(w), stage.Name("blocker"), stage.OnError(stage.Forward)}
			if rng.IntN(2) == 0 {
				opts = append(opts, stage.Ordered())
			}
			if rng.IntN(2) == 0 {
				opts = append(opts, stage.Buffer(1))
			}
			blocked := stage.Map(s, func(ctx context.Context, x int) (int, error) {
				if r52H(x, 77)%p == 0 {
					once.Do(func() { close(entered) })
					<-ctx.Done()
					return 0, errR52Cut // its own error, not ctx's
				}
				return x, nil
			}, opts...)
			failer := make(chan struct{})
			end := stage.Merge(blocked, stage.Map(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				done := false
				return func(ctx context.Context) (int, error) {
					if done || !willBlock {
						return 0, io.EOF
					}
					select {
					case <-failer:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
					done = true
					return -1, nil
				}, nil
			}), func(context.Context, int) (int, error) { return 0, errR52 }, stage.Name("failer")))
			go func() {
				select {
				case <-entered:
					if how == 0 {
						cancel()
					} else {
						close(failer)
					}
				case <-ctx.Done():
				}
			}()
			var err error
			finished := make(chan struct{})
			go func() {
				defer close(finished)
				err = stage.Run(ctx, end, func(context.Context, int, error) error { return nil })
			}()
			select {
			case <-finished:
			case <-entered:
				<-finished
			}
			cancel()
			select {
			case <-entered:
				want := any(context.Canceled)
				if how == 1 {
					want = errR52
				}
				if !errors.Is(err, want.(error)) {
					t.Fatalf("seed %d (%s, ending %d): Run = %v, want %v", seed, desc, how, err, want)
				}
			default:
				// The model says no value reaching the blocker blocks: the
				// failer gave nothing, and the run ended by itself.
				if willBlock || err != nil {
					t.Fatalf("seed %d (%s): no call blocked (the model says %v); Run = %v", seed, desc, willBlock, err)
				}
			}
			o.mu.Lock()
			for _, pr := range o.problems {
				t.Errorf("seed %d (%s): %s", seed, desc, pr)
			}
			for name, wt := range o.stages {
				r, f := wt.received.Load(), wt.finished.Load()
				if r != f || wt.closed.Load() != 1 || wt.bad.Load() != 0 {
					t.Errorf("seed %d (%s, ending %d): stage %s: Received %d, Finished %d, Closed %d, after-Closed or wrapped %d",
						seed, desc, how, name, r, f, wt.closed.Load(), wt.bad.Load())
				}
			}
			if bw := o.stages["blocker"]; willBlock && bw != nil && bw.cut.Load() == 0 {
				t.Errorf("seed %d (%s, ending %d): no call of the blocker stage reported cut short", seed, desc, how)
			}
			if bw := o.stages["blocker"]; bw != nil && bw.failed.Load() != 0 {
				t.Errorf("seed %d (%s, ending %d): %d blocked calls reported as failures (an *Error), though the run was ending", seed, desc, how, bw.failed.Load())
			}
			if c := o.notCanceled.Load(); c != 0 {
				t.Errorf("seed %d (%s, ending %d): %d calls cut short reported with an error that is not context.Canceled", seed, desc, how, c)
			}
			o.mu.Unlock()
			if t.Failed() {
				return
			}
		}
	})
}
