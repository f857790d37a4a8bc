package stage_test

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Stats is documented as counters "that can be read while runs go on (a
// progress bar, a status page, a test)", Finished as "calls ended
// (successes and failures)" and Failed as "calls that ended in an item
// error": Failed is a part of Finished. Read during a run whose calls
// fail, a snapshot shows more failed calls than finished ones (so
// Finished-Failed, the successes, is negative): stageCounters.Finished adds
// failed before finished, and snapshot loads finished before failed.
func TestReview26StatsFailedNeverAboveFinished(t *testing.T) {
	var st stage.Stats
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx := stage.Observe(parent, &st)
	bad := errors.New("bad")
	const n = 100000
	s := stage.Map(source.Slice(ints(n)), func(context.Context, int) (int, error) { return 0, bad },
		stage.Workers(8), stage.OnError(stage.Forward), stage.Name("m"))
	var stop atomic.Bool
	defer stop.Store(true) // a failed wait must not leave the reader spinning
	var seen atomic.Pointer[stage.Counts]
	reader := make(chan struct{})
	go func() {
		defer close(reader)
		for !stop.Load() {
			if c, ok := st.Get("m"); ok && (c.Failed > c.Finished || c.InFlight < 0) {
				seen.Store(&c)
				cancel() // shown: the run need not go on
				return
			}
			// A reader that never yields holds a processor for its whole
			// time slice whenever the run's goroutines wait for each other:
			// with GOMAXPROCS=1 the run then takes 50 times as long.
			runtime.Gosched()
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = sink.Count(ctx, s)
	}()
	r26Wait(t, done, "the run")
	stop.Store(true)
	r26Wait(t, reader, "the reader")
	if c := seen.Load(); c != nil {
		t.Fatalf("a snapshot read during the run: Received %d, Finished %d, Failed %d, InFlight %d: more failed calls than finished ones",
			c.Received, c.Finished, c.Failed, c.InFlight)
	}
}
