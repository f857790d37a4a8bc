package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r55Run is the state of one run, reached through its ctx: what it should
// produce and what it saw. Every item, error, count and ack is tagged with
// its run, so that one leaking into another run is caught.
type r55Run struct {
	id, n, failAt, handleAt int
	acks                    []atomic.Int32
	ackErr                  []atomic.Pointer[error]
	ended                   atomic.Bool
	stops, opens            atomic.Int32
	handles, inHandle       atomic.Int32
	bad                     r55Once
	obs                     *r55RunObserver
}

type r55RunKey struct{}

func r55RunOf(ctx context.Context) *r55Run {
	r, _ := ctx.Value(r55RunKey{}).(*r55Run)
	return r
}

type r55Ack struct {
	run *r55Run
	v   int
}

func (a *r55Ack) Done(err error) {
	if a.run.ended.Load() {
		a.run.bad.failf("run %d: Done of item %d called after the sink returned", a.run.id, a.v)
	}
	if c := a.run.acks[a.v].Add(1); c > 1 {
		a.run.bad.failf("run %d: Done of item %d called %d times", a.run.id, a.v, c)
	}
	if err != nil {
		a.run.ackErr[a.v].Store(&err)
	}
}

// r55RunObserver counts, per stage of one run, what its watcher is told.
type r55RunObserver struct {
	mu     sync.Mutex
	stages []*r55StageWatch
}

type r55StageWatch struct {
	info                               stage.Info
	received, finished, failed, closed atomic.Int64
}

func (o *r55RunObserver) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	defer o.mu.Unlock()
	w := &r55StageWatch{info: info}
	o.stages = append(o.stages, w)
	return w
}
func (w *r55StageWatch) Received() { w.received.Add(1) }
func (w *r55StageWatch) Finished(_ time.Duration, err error) {
	w.finished.Add(1)
	var se *stage.Error
	if errors.As(err, &se) {
		w.failed.Add(1)
	}
}
func (w *r55StageWatch) Closed() { w.closed.Add(1) }

type r55Cfg struct {
	w1, w2, w3 int
	ordered    bool
	buf        int
}

func (c r55Cfg) keepsOrder() bool {
	return c.ordered || (c.w1 == 1 && c.w2 == 1 && c.w3 == 1)
}

// r55BuildRecycled builds the pipeline run many times: an acked source that
// tags items with the run of its ctx, a Forward Map, a Handle Filter and a
// FlatMap, each checking that what it gets belongs to the run of its ctx.
func r55BuildRecycled(c r55Cfg) stage.Stream[r55Tagged] {
	src := stage.NeverWaits(stage.AckSource(func(ctx context.Context) (func(context.Context) (r55Tagged, stage.Ack, error), func()) {
		run := r55RunOf(ctx)
		run.opens.Add(1)
		i := 0
		return func(ctx context.Context) (r55Tagged, stage.Ack, error) {
				if r55RunOf(ctx) != run {
					run.bad.failf("run %d: next called with another run's ctx", run.id)
				}
				if i >= run.n {
					return r55Tagged{}, nil, io.EOF
				}
				i++
				return r55Tagged{run.id, i - 1}, &r55Ack{run, i - 1}, nil
			}, func() {
				run.stops.Add(1)
			}
	}))
	check := func(ctx context.Context, where string, x r55Tagged) *r55Run {
		run := r55RunOf(ctx)
		if x.Run != run.id {
			run.bad.failf("run %d: %s got %v, an item of another run", run.id, where, x)
		}
		return run
	}
	opts := func(w int, more ...stage.Option) []stage.Option {
		return r55Opts(w, c.ordered, c.buf, more...)
	}
	m1 := stage.Map(src, func(ctx context.Context, x r55Tagged) (r55Tagged, error) {
		run := check(ctx, "map", x)
		if x.V == run.failAt {
			return r55Tagged{}, fmt.Errorf("run %d item %d: %w", run.id, x.V, errR55Planned)
		}
		return r55Tagged{x.Run, x.V * 10}, nil
	}, opts(c.w1, stage.OnError(stage.Forward))...)
	m2 := stage.Filter(m1, func(ctx context.Context, x r55Tagged) (bool, error) {
		run := check(ctx, "filter", x)
		if x.V/10 == run.handleAt {
			return false, errR55Planned
		}
		return (x.V/10)%4 != 3, nil
	}, opts(c.w2, stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
		run := r55RunOf(ctx)
		if run.inHandle.Add(1) != 1 {
			run.bad.failf("run %d: Handle calls overlap", run.id)
		}
		defer run.inHandle.Add(-1)
		run.handles.Add(1)
		in, _ := e.Input.(r55Tagged)
		if in.Run != run.id || in.V/10 != run.handleAt || !errors.Is(e, errR55Planned) || e.Stage != "filter#2" || e.Attempts != 1 {
			run.bad.failf("run %d: handler got %v (input %v, stage %q)", run.id, e, e.Input, e.Stage)
		}
		if e.Index < 0 || e.Index >= run.n || (c.w1 == 1 || c.ordered) && e.Index != run.handleAt {
			run.bad.failf("run %d: handler got index %d for item %d", run.id, e.Index, run.handleAt)
		}
		return nil
	})))...)
	return stage.FlatMap(m2, func(ctx context.Context, x r55Tagged) ([]r55Tagged, error) {
		check(ctx, "flatmap", x)
		return []r55Tagged{x, {x.Run, x.V + 1}}, nil
	}, opts(c.w3)...)
}

var errR55Planned = errors.New("r55: planned failure")

// r55Expected returns the values a full run yields, in input order, and
// how many errors it forwards.
func r55Expected(run *r55Run) ([]int, int) {
	var vs []int
	fwd := 0
	for v := range run.n {
		switch {
		case v == run.failAt:
			fwd++
		case v == run.handleAt, v%4 == 3:
		default:
			vs = append(vs, v*10, v*10+1)
		}
	}
	return vs, fwd
}

// r55DoRun runs s once as run, with the sink chosen by mode, and checks
// every result exactly.
func r55DoRun(c r55Cfg, s stage.Stream[r55Tagged], run *r55Run, mode int) string {
	run.acks = make([]atomic.Int32, run.n)
	run.ackErr = make([]atomic.Pointer[error], run.n)
	run.obs = &r55RunObserver{}
	ctx := stage.Observe(context.WithValue(context.Background(), r55RunKey{}, run), run.obs)
	want, wantFwd := r55Expected(run)
	var got []int
	var fwdErrs []error
	var err error
	full := false
	label := fmt.Sprintf("cfg %+v run %d (n=%d failAt=%d handleAt=%d mode=%d)", c, run.id, run.n, run.failAt, run.handleAt, mode)
	take := func(x r55Tagged) {
		if x.Run != run.id {
			run.bad.failf("%s: the sink got %v", label, x)
		}
		got = append(got, x.V)
	}
	checkFwd := func(e error) {
		var se *stage.Error
		if !errors.As(e, &se) || !errors.Is(e, errR55Planned) || se.Stage != "map#1" || se.Index != run.failAt || se.Input != (r55Tagged{run.id, run.failAt}) {
			run.bad.failf("%s: forwarded %v (%#v)", label, e, se)
		}
	}
	k := run.id % 3 // where early exits happen
	switch mode {
	case 0: // All, to the end
		full = true
		for v, e := range sink.All(ctx, s) {
			if e != nil {
				checkFwd(e)
				fwdErrs = append(fwdErrs, e)
				continue
			}
			take(v)
		}
	case 1: // Slice
		full = true
		var vs []r55Tagged
		vs, err = sink.Slice(ctx, s)
		for _, v := range vs {
			take(v)
		}
	case 2: // Count
		full = true
		var cnt int
		cnt, err = sink.Count(ctx, s)
		got = want[:cnt:cnt] // counted only
		if cnt > len(want) {
			run.bad.failf("%s: Count %d > %d", label, cnt, len(want))
		}
	case 3: // First
		v, ok, e := sink.First(ctx, s)
		switch {
		case ok:
			take(v)
		case e != nil:
			checkFwd(e)
		case run.n > 0 && (len(want) > 0 || wantFwd > 0):
			run.bad.failf("%s: First found nothing", label)
		}
		if c.keepsOrder() && run.n > 0 {
			switch {
			case run.failAt == 0 || len(want) == 0:
				if ok {
					run.bad.failf("%s: First gave %v, want the forwarded error", label, v)
				}
			case run.failAt < want[0]/10:
				if ok {
					run.bad.failf("%s: First gave %v, want the forwarded error", label, v)
				}
			default:
				if !ok || v.V != want[0] {
					run.bad.failf("%s: First gave %v %v %v, want %d", label, v, ok, e, want[0])
				}
			}
		}
	case 4: // ForEach with ErrStop at the k-th value
		i := 0
		err = sink.ForEach(ctx, s, func(_ context.Context, v r55Tagged) error {
			take(v)
			i++
			if i > k {
				return stage.ErrStop
			}
			return nil
		})
	case 5: // break out of All at the k-th pair
		i := 0
		for v, e := range sink.All(ctx, s) {
			if e != nil {
				checkFwd(e)
			} else {
				take(v)
			}
			if i >= k {
				break
			}
			i++
		}
	}
	run.ended.Store(true)
	// The sink's error: nil or the *ForwardedError of the forwarded item.
	if err != nil {
		var fe *sink.ForwardedError
		if !errors.As(err, &fe) {
			return fmt.Sprintf("%s: err %v", label, err)
		}
		if fe.Count != 1 || len(fe.Sample) != 1 {
			return fmt.Sprintf("%s: forwarded %d (%v), want 1", label, fe.Count, fe.Sample)
		}
		checkFwd(fe.Sample[0])
		if fe.Count > wantFwd {
			return fmt.Sprintf("%s: more forwarded than failed", label)
		}
	} else if full && (mode == 1 || mode == 2) && wantFwd != 0 {
		return fmt.Sprintf("%s: nil error, want a *ForwardedError", label)
	}
	if full {
		if mode == 0 && len(fwdErrs) != wantFwd {
			return fmt.Sprintf("%s: %d forwarded, want %d", label, len(fwdErrs), wantFwd)
		}
		if c.keepsOrder() && mode != 2 {
			if !slices.Equal(got, want) {
				return fmt.Sprintf("%s: got %v, want %v", label, got, want)
			}
		} else if !r55SameMultiset(got, want) {
			return fmt.Sprintf("%s: got %v, want %v", label, got, want)
		}
		wantHandles := int32(0)
		if run.handleAt < run.n && run.handleAt != run.failAt {
			wantHandles = 1
		}
		if run.handles.Load() != wantHandles {
			return fmt.Sprintf("%s: handler called %d times, want %d", label, run.handles.Load(), wantHandles)
		}
		for v := range run.n {
			if run.acks[v].Load() != 1 {
				return fmt.Sprintf("%s: item %d acknowledged %d times before the sink returned, want 1", label, v, run.acks[v].Load())
			}
			p := run.ackErr[v].Load()
			if v == run.failAt {
				var se *stage.Error
				if p == nil || !errors.As(*p, &se) || se.Index != v || !errors.Is(*p, errR55Planned) {
					return fmt.Sprintf("%s: item %d (failed, forwarded) told %v", label, v, p)
				}
			} else if p != nil {
				return fmt.Sprintf("%s: item %d told %v, want nil", label, v, *p)
			}
		}
	} else {
		// What the consumer saw in full was committed.
		seen := map[int]int{}
		for _, x := range got {
			seen[x/10]++
		}
		for v, cnt := range seen {
			if cnt == 2 && run.acks[v].Load() != 1 {
				return fmt.Sprintf("%s: item %d, both outputs committed, acknowledged %d times", label, v, run.acks[v].Load())
			}
			if p := run.ackErr[v].Load(); p != nil {
				return fmt.Sprintf("%s: committed item %d told %v", label, v, *p)
			}
		}
		for v := range run.n {
			if p := run.ackErr[v].Load(); p != nil && v != run.failAt {
				return fmt.Sprintf("%s: item %d told %v", label, v, *p)
			}
		}
	}
	if run.opens.Load() != 1 || run.stops.Load() != 1 {
		return fmt.Sprintf("%s: source opened %d times, stopped %d times before the sink returned", label, run.opens.Load(), run.stops.Load())
	}
	// Observers: three stages, each closed once; every call received ended.
	if len(run.obs.stages) != 3 {
		return fmt.Sprintf("%s: observer saw %d stages", label, len(run.obs.stages))
	}
	for i, w := range run.obs.stages {
		if w.closed.Load() != 1 || w.received.Load() != w.finished.Load() {
			return fmt.Sprintf("%s: stage %d (%s): closed %d, received %d, finished %d", label, i, w.info.Name, w.closed.Load(), w.received.Load(), w.finished.Load())
		}
		if name := []string{"map#1", "filter#2", "flatmap#3"}[i]; w.info.Name != name {
			return fmt.Sprintf("%s: stage %d named %q, want %q", label, i, w.info.Name, name)
		}
	}
	if full {
		m, f := run.obs.stages[0], run.obs.stages[1]
		if m.received.Load() != int64(run.n) {
			return fmt.Sprintf("%s: map received %d, want %d", label, m.received.Load(), run.n)
		}
		wantFailed := int64(0)
		if run.failAt < run.n {
			wantFailed = 1
		}
		if m.failed.Load() != wantFailed {
			return fmt.Sprintf("%s: map failed %d, want %d", label, m.failed.Load(), wantFailed)
		}
		wantFilter := int64(run.n) - wantFailed // the forwarded error passes without a call
		if f.received.Load() != wantFilter {
			return fmt.Sprintf("%s: filter received %d, want %d", label, f.received.Load(), wantFilter)
		}
	}
	run.bad.mu.Lock()
	defer run.bad.mu.Unlock()
	return run.bad.msg
}

var r55Cfgs = []r55Cfg{
	{1, 1, 1, false, 0}, {2, 1, 1, false, 0}, {4, 3, 2, false, 0}, {1, 2, 1, true, 0},
	{3, 3, 3, true, 0}, {-1, 1, -1, false, 0}, {-1, -1, -1, true, 0}, {8, 8, 8, false, 1},
	{2, 2, 2, true, 1}, {5, 1, 5, false, 0},
}

// r55Plan makes run id's plan: sizes 0..5, failures at chosen items (or none).
func r55Plan(id int) *r55Run {
	n := id % 6
	return &r55Run{id: id, n: n, failAt: (id / 6) % 7, handleAt: (id/42 + 1) % 7}
}

// TestReview55_RecycledBackToBack attacks "Each sink call runs it anew" and
// (Stream) "each run has its own goroutines, queues and stage state" for one
// built pipeline run many times in a row with tiny, differently-sized inputs
// and every kind of sink and early exit: no item, forwarded error, index,
// handler call, observer count or acknowledgement of one run may appear in
// another, and each run's results are exact. It also attacks (Budget/Handle)
// "Calls of h never overlap within one stage of one run" and the per-run
// opening and stopping of sources.
//
// It runs in a child process: only there are a run's recycled states reused
// (see recycle_internal_test.go).
func TestReview55_RecycledBackToBack(t *testing.T) {
	runcheck.InChildTest(t, r55RecycledBackToBack)
}

func r55RecycledBackToBack(t *testing.T) {
	for _, c := range r55Cfgs {
		s := r55BuildRecycled(c)
		for id := 1; id <= 6*7*7*6; id++ {
			var msg string
			runcheck.NoHang(t, "run", func() { msg = r55DoRun(c, s, r55Plan(id), (id/294)%6) })
			if msg != "" {
				t.Fatal(msg)
			}
		}
	}
}

// TestReview55_RecycledConcurrent attacks "Several sinks may run one Stream at
// the same time: each run has its own goroutines, queues and stage state":
// the same checks with one pipeline value run from 8 goroutines at once, in
// a child process as above.
func TestReview55_RecycledConcurrent(t *testing.T) {
	runcheck.InChildTest(t, r55RecycledConcurrent)
}

func r55RecycledConcurrent(t *testing.T) {
	for _, c := range r55Cfgs {
		s := r55BuildRecycled(c)
		var next atomic.Int64
		var wg sync.WaitGroup
		var mu sync.Mutex
		var firstErr string
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					id := int(next.Add(1))
					if id > 400 {
						return
					}
					if msg := r55DoRun(c, s, r55Plan(id), (id/7)%6); msg != "" {
						mu.Lock()
						if firstErr == "" {
							firstErr = msg
						}
						mu.Unlock()
					}
				}
			}()
		}
		runcheck.NoHang(t, "concurrent runs", wg.Wait)
		if firstErr != "" {
			t.Fatalf("cfg %+v: %s", c, firstErr)
		}
	}
}
