package sink_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r61ClosedPanics struct{ closed atomic.Int32 }

type r61CPW struct{ o *r61ClosedPanics }

func (w r61CPW) Received()                     {}
func (w r61CPW) Finished(time.Duration, error) {}
func (w r61CPW) Closed() {
	w.o.closed.Add(1)
	panic("r61 Closed")
}
func (o *r61ClosedPanics) Stage(stage.Info) stage.Watcher { return r61CPW{o} }

// stage.Watcher: "a panic in Closed, which comes once the run is over, is
// returned unless the run failed or the sink's callback stopped it with
// ErrStop". First and a break out of All stop a run as a callback's ErrStop
// does (First: "always the first pair of `for v, err := range All(ctx, s) {
// ...; break }`"; All: "Whatever the run would have reported after the break
// ... is dropped"). A run that succeeds must report the panic.
func TestReview61BBClosedPanic(t *testing.T) {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	mk := func() stage.Stream[int] { return stage.Map(source.Slice([]int{1, 2, 3}), id, stage.Workers(2)) }
	t.Run("count-reports", func(t *testing.T) {
		o := &r61ClosedPanics{}
		var err error
		runcheck.Run(t, "count", func() { _, err = sink.Count(stage.Observe(context.Background(), o), mk()) })
		var pe *stage.PanicError
		if !errors.As(err, &pe) || o.closed.Load() != 1 {
			t.Fatalf("Count err = %v (closed %d); want a *PanicError", err, o.closed.Load())
		}
	})
	t.Run("foreach-errstop", func(t *testing.T) {
		o := &r61ClosedPanics{}
		var err error
		runcheck.Run(t, "foreach", func() {
			err = sink.ForEach(stage.Observe(context.Background(), o), mk(), func(context.Context, int) error { return stage.ErrStop })
		})
		if err != nil {
			t.Fatalf("ForEach(ErrStop) = %v; want nil", err)
		}
	})
	t.Run("first", func(t *testing.T) {
		o := &r61ClosedPanics{}
		var ok bool
		var err error
		runcheck.Run(t, "first", func() { _, ok, err = sink.First(stage.Observe(context.Background(), o), mk()) })
		if !ok || err != nil {
			t.Fatalf("First = %v %v; want true nil (as the first pair of All with a break)", ok, err)
		}
	})
	t.Run("all-break", func(t *testing.T) {
		o := &r61ClosedPanics{}
		var pairs []string
		runcheck.Run(t, "all", func() {
			for v, err := range sink.All(stage.Observe(context.Background(), o), mk()) {
				pairs = append(pairs, fmt.Sprint(v, err))
				break
			}
		})
		if len(pairs) != 1 {
			t.Fatalf("pairs %v", pairs)
		}
	})
	t.Run("two-observers", func(t *testing.T) {
		// Observe: "Observers attached by several calls all see every stage,
		// each on its own: one that panics (see Watcher) is told nothing
		// more, the others are told everything."
		o := &r61ClosedPanics{}
		var st stage.Stats
		ctx := stage.Observe(stage.Observe(context.Background(), o), &st)
		var err error
		runcheck.Run(t, "count", func() { _, err = sink.Count(ctx, stage.Map(source.Slice([]int{1, 2, 3}), id, stage.Name("m"))) })
		c, ok := st.Get("m")
		if err == nil || !ok || c.Received != 3 || c.Finished != 3 || c.Running != 0 {
			t.Fatalf("err %v, stats %+v", err, c)
		}
	})
}

// stage.Observe: "attaches o to every run started with it (or with a context
// derived from it)"; Stats: "a Stats attached to several runs adds the counts
// of stages of the same name up"; Counts.Running: "runs in which the stage has
// not closed yet". Inner runs started from an outer stage's ctx are observed
// too, and once the outer sink returned nothing is running.
func TestReview61BBStatsNestedRuns(t *testing.T) {
	var st stage.Stats
	inner := stage.Map(source.Slice([]int{1, 2}), func(_ context.Context, v int) (int, error) {
		if v == 2 {
			return 0, errR61
		}
		return v, nil
	}, stage.Name("inner"), stage.OnError(stage.Forward))
	outer := stage.Map(source.Slice([]int{0, 1, 2, 3, 4}), func(ctx context.Context, k int) (int, error) {
		return sink.Count(ctx, inner)
	}, stage.Name("outer"), stage.Workers(3), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	var n int
	var err error
	runcheck.Run(t, "run", func() { n, err = sink.Count(stage.Observe(context.Background(), &st), outer) })
	if n != 0 || err != nil {
		t.Fatalf("Count = %d %v; want 0 nil (every outer item dropped by Handle)", n, err)
	}
	o, _ := st.Get("outer")
	i, _ := st.Get("inner")
	if o.Received != 5 || o.Finished != 5 || o.Failed != 5 || o.Running != 0 || o.InFlight != 0 {
		t.Fatalf("outer %+v", o)
	}
	if i.Received != 10 || i.Finished != 10 || i.Failed != 5 || i.Running != 0 || i.Total != 2 {
		t.Fatalf("inner %+v", i)
	}
}
