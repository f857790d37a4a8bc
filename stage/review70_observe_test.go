package stage_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "Observe panics if ctx or o is nil."
func TestReview70ObserveNilPanics(t *testing.T) {
	for name, f := range map[string]func(){
		"ctx": func() {
			var nilCtx context.Context // a nil ctx on purpose
			stage.Observe(nilCtx, &stage.Stats{})
		},
		"o": func() { stage.Observe(context.Background(), nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("Observe with a nil %s did not panic", name)
				}
			}()
			f()
		})
	}
}

// "Observe returns a copy of ctx that attaches o to every run started with it
// (or with a context derived from it) ... Observers attached by several calls
// all see every stage, each on its own".
func TestReview70ObserveNestedAndDerived(t *testing.T) {
	o1, o2, o3 := &r70obs{}, &r70obs{}, &r70obs{}
	base := stage.Observe(context.Background(), o1)
	mid, cancel := context.WithCancel(stage.Observe(context.WithValue(base, r70key{}, 1), o2))
	defer cancel()
	ctx, cancel2 := context.WithTimeout(stage.Observe(mid, o3), time.Hour)
	defer cancel2()
	s := stage.Filter(stage.Map(source.Slice(ints(25)), double), func(context.Context, int) (bool, error) { return true, nil })
	runcheck.Run(t, "slice", func() {
		for _, o := range []*r70obs{o1, o2, o3} {
			o.arm()
		}
		if _, err := sink.Slice(ctx, s); err != nil {
			t.Error(err)
		}
	})
	for i, o := range []*r70obs{o1, o2, o3} {
		for _, v := range o.check() {
			t.Errorf("observer %d: %s", i+1, v)
		}
		if len(o.infos) != 2 || o.byName("map#1").recv.Load() != 25 || o.byName("filter#2").recv.Load() != 25 {
			t.Errorf("observer %d saw %v", i+1, o.infos)
		}
	}
	// The parent context's runs see only the observers attached above it.
	o1b := &r70obs{}
	if _, err := sink.Slice(stage.Observe(context.Background(), o1b), s); err != nil || len(o1b.infos) != 2 {
		t.Errorf("a fresh observer saw %v, err %v", o1b.infos, err)
	}
	if len(o2.infos) != 2 {
		t.Errorf("observer 2 was told of a run not started with its context")
	}
}

type r70key struct{}

// "attaches o to every run started with it (or with a context derived from
// it)": a run started inside a stage's function with the function's ctx
// (derived from the run's, itself derived from the caller's) is observed too;
// its Stage and Closed come from its own sink's goroutine.
func TestReview70ObserveInnerRun(t *testing.T) {
	var st stage.Stats
	o := &r70obs{}
	var innerRuns atomic.Int64
	outer := stage.Map(source.Slice(ints(6)), func(ctx context.Context, v int) (int, error) {
		innerRuns.Add(1)
		in := stage.Map(source.Slice(ints(v)), double, stage.Name("inner"), stage.Workers(2))
		return sink.Count(ctx, in)
	}, stage.Name("outer"), stage.Workers(3), stage.Buffer(1))
	got, err := sink.Slice(stage.Observe(stage.Observe(context.Background(), &st), o), outer)
	if err != nil || len(got) != 6 {
		t.Fatal(got, err)
	}
	for _, v := range o.check() {
		t.Error(v)
	}
	c, ok := st.Get("inner")
	if !ok || c.Received != 0+1+2+3+4+5 || c.Finished != 15 || c.Running != 0 {
		t.Errorf("inner stage counts %+v, %v; want 15 received and finished over %d inner runs", c, ok, innerRuns.Load())
	}
	n := 0
	for _, in := range o.infos {
		if in.Name == "inner" {
			n++
		}
	}
	if n != 6 {
		t.Errorf("Stage called for the inner stage %d times, want 6 (once per inner run)", n)
	}
}

// Observe "attaches o to every run started with it": the stop context of an
// Until is not what the run was started with, so an observer attached to it
// alone is not told of the run.
func TestReview70ObserveStopCtxNotTheRuns(t *testing.T) {
	o := &r70obs{}
	stop := stage.Observe(context.Background(), o)
	n, err := sink.Count(context.Background(), stage.Map(stage.Until(source.Slice(ints(5)), stop), double))
	if err != nil || n != 5 {
		t.Fatal(n, err)
	}
	if len(o.infos) != 0 {
		t.Errorf("an observer attached to the stop context only saw %v", o.infos)
	}
}

// Two runs at once share one observer value (the same *r70obs, attached to
// both contexts): each run asks it for its own watchers, and each watcher is
// told only of its run.
func TestReview70ObserveSharedByConcurrentRuns(t *testing.T) {
	o := &r70obs{}
	ctx := stage.Observe(context.Background(), o)
	both := newR70gate(2)
	mk := func(n int) stage.Stream[int] {
		return stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) {
			if v == 0 {
				both.Arrive()
				<-both.Wait()
			}
			return v, nil
		}, stage.Name("shared"), stage.Workers(2))
	}
	errs := make(chan error, 2)
	for _, n := range []int{9, 21} {
		go func() { _, err := sink.Count(ctx, mk(n)); errs <- err }()
	}
	runcheck.NoHang(t, "runs", func() {
		for range 2 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})
	for _, v := range o.check() {
		t.Error(v)
	}
	ws, _ := o.snapshot()
	if len(ws) != 2 {
		t.Fatalf("%d watchers, want 2", len(ws))
	}
	a, b := ws[0].recv.Load(), ws[1].recv.Load()
	if !(a == 9 && b == 21) && !(a == 21 && b == 9) {
		t.Errorf("watchers received %d and %d; want 9 and 21, one per run", a, b)
	}
}
