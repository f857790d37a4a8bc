package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Promise (Watcher, Stats, Counts, Info): each stage reports every item it
// received, every call that finished (err nil, or the unwrapped *Error the
// policy is about to handle), and its close, once; Stats counts Received,
// Finished, Failed, InFlight = Received - Finished, Running; Info carries
// kind, workers and Total.
func TestReview13ObserveCountsPerStage(t *testing.T) {
	const n = 300
	for _, m := range []mode{{1, false}, {1, true}, {4, false}, {4, true}, {-1, false}, {-1, true}, {64, false}} {
		t.Run(m.String(), func(t *testing.T) {
			rec := &r13oRec{}
			var st stage.Stats
			ctx := stage.Observe(stage.Observe(context.Background(), rec), &st)
			var handled int
			mapped := stage.Map(source.Slice(ints(n)), func(_ context.Context, x int) (int, error) {
				if x%7 == 0 {
					return 0, errR13o
				}
				return x, nil
			}, m.opts(stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
				handled++
				return nil
			})))...)
			kept := stage.Filter(mapped, func(_ context.Context, x int) (bool, error) { return x%2 == 0, nil }, m.opts()...)
			var got []int
			r13oWatchdog(t, func() {
				var err error
				got, err = sink.Slice(ctx, kept)
				if err != nil {
					t.Errorf("sink: %v", err)
				}
			})
			wantFailed, wantOut := 0, 0
			for x := range n {
				if x%7 == 0 {
					wantFailed++
				} else if x%2 == 0 {
					wantOut++
				}
			}
			if len(got) != wantOut || handled != wantFailed {
				t.Fatalf("got %d outputs, %d handled; want %d, %d", len(got), handled, wantOut, wantFailed)
			}
			if names := rec.names(); !slices.Equal(names, []string{"map#1", "filter#2"}) {
				t.Fatalf("stages seen %v, want [map#1 filter#2]", names)
			}
			mw, fw := rec.byName(t, "map#1"), rec.byName(t, "filter#2")
			mw.check(t)
			fw.check(t)
			if mw.received.Load() != n || mw.finished.Load() != n || mw.failed.Load() != int64(wantFailed) ||
				mw.ok.Load() != int64(n-wantFailed) || mw.canceled.Load() != 0 {
				t.Errorf("map#1: received %d finished %d ok %d failed %d canceled %d; want %d %d %d %d 0",
					mw.received.Load(), mw.finished.Load(), mw.ok.Load(), mw.failed.Load(), mw.canceled.Load(),
					n, n, n-wantFailed, wantFailed)
			}
			mw.mu.Lock()
			for _, e := range mw.failErrs {
				if !errors.Is(e, errR13o) || e.Stage != "map#1" || e.Attempts != 1 {
					t.Errorf("map#1 failure %+v: want Stage map#1, Attempts 1, wrapping errR13o", e)
				}
			}
			mw.mu.Unlock()
			if fw.received.Load() != int64(n-wantFailed) || fw.ok.Load() != int64(n-wantFailed) {
				t.Errorf("filter#2: received %d ok %d, want %d", fw.received.Load(), fw.ok.Load(), n-wantFailed)
			}
			wantWorkers := m.workers
			for _, w := range []*r13oW{mw, fw} {
				if w.info.Workers != wantWorkers {
					t.Errorf("%s: Info.Workers %d, want %d", w.info.Name, w.info.Workers, wantWorkers)
				}
			}
			if mw.info.Kind != "map" || fw.info.Kind != "filter" {
				t.Errorf("kinds %q %q", mw.info.Kind, fw.info.Kind)
			}
			// Total: the Map takes the slice's n; the Filter is after a Map,
			// which keeps one output per input, so it expects n too.
			if mw.info.Total != n || fw.info.Total != n {
				t.Errorf("Totals %d %d, want %d %d", mw.info.Total, fw.info.Total, n, n)
			}
			// Stats agrees.
			c, ok := st.Get("map#1")
			if !ok || c.Received != n || c.Finished != n || c.Failed != int64(wantFailed) || c.InFlight != 0 || c.Running != 0 {
				t.Errorf("Stats map#1 = %+v (found %v)", c, ok)
			}
			if c.Finished > 0 && c.MeanLatency() != c.Latency/time.Duration(c.Finished) {
				t.Errorf("MeanLatency %v != Latency/Finished %v", c.MeanLatency(), c.Latency/time.Duration(c.Finished))
			}
			c, ok = st.Get("filter#2")
			if !ok || c.Received != int64(n-wantFailed) || c.Finished != int64(n-wantFailed) || c.Failed != 0 || c.InFlight != 0 || c.Running != 0 {
				t.Errorf("Stats filter#2 = %+v (found %v)", c, ok)
			}
			snap := st.Snapshot()
			if len(snap) != 2 || snap[0].Name != "map#1" || snap[1].Name != "filter#2" {
				t.Errorf("Snapshot order: %v", snapNames(snap))
			}
			if c.Kind != "filter" || c.Total != n {
				t.Errorf("Stats Counts Info %+v", c.Info)
			}
		})
	}
}

func snapNames(cs []stage.Counts) []string {
	var ns []string
	for _, c := range cs {
		ns = append(ns, c.Name)
	}
	return ns
}

// Promise (Workers, Info): 0 means DefaultWorkers; Info.Workers is "the Workers
// bound". And hostile sizes: zero items still open and close every stage,
// with nothing received; Total is 0.
func TestReview13ObserveZeroItemsAndDefaultWorkers(t *testing.T) {
	for _, tc := range []struct {
		opts []stage.Option
		want int
	}{
		{nil, stage.DefaultWorkers()},
		{[]stage.Option{stage.Workers(0)}, stage.DefaultWorkers()},
		{[]stage.Option{stage.Workers(-1)}, -1},
		{[]stage.Option{stage.Workers(1)}, 1},
		{[]stage.Option{stage.Workers(-1), stage.Ordered()}, -1},
	} {
		opts := tc.opts
		t.Run(fmt.Sprint(len(opts), "/", tc.want), func(t *testing.T) {
			rec := &r13oRec{}
			var st stage.Stats
			ctx := stage.Observe(stage.Observe(context.Background(), rec), &st)
			s := stage.Map(source.Slice([]int{}), double, opts...)
			var n int
			r13oWatchdog(t, func() {
				var err error
				n, err = sink.Count(ctx, s)
				if err != nil {
					t.Errorf("sink: %v", err)
				}
			})
			if n != 0 {
				t.Fatalf("count %d", n)
			}
			w := rec.byName(t, "map#1")
			w.check(t)
			if w.received.Load() != 0 || w.finished.Load() != 0 {
				t.Errorf("events on an empty run: %d %d", w.received.Load(), w.finished.Load())
			}
			want := tc.want
			if w.info.Workers != want {
				t.Errorf("Info.Workers %d, want %d", w.info.Workers, want)
			}
			if w.info.Total != 0 {
				t.Errorf("Info.Total %d, want 0", w.info.Total)
			}
			c, ok := st.Get("map#1")
			if !ok || c.Received != 0 || c.Finished != 0 || c.InFlight != 0 || c.Running != 0 || c.MeanLatency() != 0 {
				t.Errorf("Stats %+v (found %v)", c, ok)
			}
		})
	}
}

// Promise (Watcher.Finished, Retry): Received and Finished are per item, the
// call being all its attempts; the *Error's Attempts counts them. Forwarded
// errors are not reported by the stages they pass through.
func TestReview13ObserveRetryAndForward(t *testing.T) {
	rec := &r13oRec{}
	ctx := stage.Observe(context.Background(), rec)
	const n = 40
	calls := make([]int, n) // Workers(1): no race
	first := stage.Map(source.Slice(ints(n)), func(_ context.Context, x int) (int, error) {
		calls[x]++
		switch {
		case x%4 == 0: // always fails: 3 attempts then forwarded
			return 0, errR13o
		case x%4 == 1 && calls[x] < 3: // succeeds at the 3rd attempt
			return 0, errR13o
		}
		return x, nil
	}, stage.Workers(1), stage.Retry(3, 0), stage.OnError(stage.Forward))
	second := stage.Map(first, double, stage.Workers(2))
	var vals, fwd int
	r13oWatchdog(t, func() {
		for _, err := range sink.All(ctx, second) {
			if err != nil {
				if !errors.Is(err, errR13o) {
					t.Errorf("forwarded %v", err)
				}
				fwd++
				continue
			}
			vals++
		}
	})
	if fwd != n/4 || vals != n-n/4 {
		t.Fatalf("vals %d fwd %d", vals, fwd)
	}
	w1, w2 := rec.byName(t, "map#1"), rec.byName(t, "map#2")
	w1.check(t)
	w2.check(t)
	if w1.received.Load() != n || w1.finished.Load() != n || w1.failed.Load() != n/4 || w1.ok.Load() != n-n/4 {
		t.Errorf("map#1 received %d finished %d failed %d ok %d", w1.received.Load(), w1.finished.Load(), w1.failed.Load(), w1.ok.Load())
	}
	w1.mu.Lock()
	for _, e := range w1.failErrs {
		if e.Attempts != 3 {
			t.Errorf("Attempts %d, want 3", e.Attempts)
		}
	}
	w1.mu.Unlock()
	if w2.received.Load() != n-n/4 || w2.ok.Load() != n-n/4 {
		t.Errorf("map#2 (forwarded errors must not be reported): received %d ok %d, want %d", w2.received.Load(), w2.ok.Load(), n-n/4)
	}
}

// Promise (Observe): observers attached by several calls all see every
// stage; Observe panics if o is nil; a Stage that returns nil means "not
// watched" and the run is unaffected.
func TestReview13ObserveSeveralObserversAndNil(t *testing.T) {
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Observe(ctx, nil) did not panic")
			}
		}()
		stage.Observe(context.Background(), nil)
	}()
	a, b := &r13oRec{}, &r13oRec{}
	none := &r13oRec{mk: func(stage.Info, *r13oW) stage.Watcher { return nil }}
	ctx := stage.Observe(stage.Observe(stage.Observe(context.Background(), a), none), b)
	s := stage.Filter(stage.Map(source.Slice(ints(50)), double, stage.Workers(3)), func(_ context.Context, x int) (bool, error) { return true, nil })
	var n int
	r13oWatchdog(t, func() {
		var err error
		n, err = sink.Count(ctx, s)
		if err != nil {
			t.Errorf("sink: %v", err)
		}
	})
	if n != 50 {
		t.Fatalf("count %d", n)
	}
	for _, r := range []*r13oRec{a, b} {
		if !slices.Equal(r.names(), []string{"map#1", "filter#2"}) {
			t.Errorf("stages seen %v", r.names())
		}
		for _, w := range r.watchers() {
			w.check(t)
			if w.received.Load() != 50 {
				t.Errorf("%s received %d", w.info.Name, w.received.Load())
			}
		}
	}
	if len(none.watchers()) != 2 {
		t.Errorf("nil-returning observer was asked for %d stages", len(none.watchers()))
	}
}

// Promise (Stats): counters can be read while runs go on; a Stats attached to
// several runs adds the counts of stages of the same name up; Running counts
// the runs in which the stage has not closed yet; InFlight = Received -
// Finished.
func TestReview13ObserveStatsConcurrentRuns(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	const runs, n = 3, 20
	started := make(chan struct{}, runs)
	release := make(chan struct{})
	s := stage.Map(source.Slice(ints(n)), func(_ context.Context, x int) (int, error) {
		if x == 0 {
			started <- struct{}{}
			<-release
		}
		return x, nil
	}, stage.Workers(1), stage.Name("gated"))
	errs := make(chan error, runs)
	for range runs {
		go func() {
			_, err := sink.Count(ctx, s)
			errs <- err
		}()
	}
	for range runs {
		r13oWait(t, "a run's first call", started)
	}
	// Every run has taken item 0 and is inside its call.
	c, ok := st.Get("gated")
	if !ok || c.Running != runs || c.InFlight != runs || c.Received != runs || c.Finished != 0 {
		t.Errorf("while %d runs hold one item each: %+v (found %v)", runs, c, ok)
	}
	// Concurrent reads during the runs (the race detector watches).
	stopReading := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case <-stopReading:
				return
			default:
				for _, c := range st.Snapshot() {
					if c.InFlight != c.Received-c.Finished {
						t.Errorf("snapshot: InFlight %d != Received %d - Finished %d", c.InFlight, c.Received, c.Finished)
						return
					}
				}
			}
		}
	}()
	close(release)
	for range runs {
		select {
		case err := <-errs:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("hung")
		}
	}
	close(stopReading)
	<-readerDone
	c, _ = st.Get("gated")
	if c.Running != 0 || c.InFlight != 0 || c.Received != runs*n || c.Finished != runs*n || c.Failed != 0 {
		t.Errorf("after the runs: %+v", c)
	}
	if len(st.Snapshot()) != 1 {
		t.Errorf("snapshot %v", snapNames(st.Snapshot()))
	}
}
