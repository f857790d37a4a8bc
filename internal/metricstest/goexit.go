package metricstest

import (
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// GoexitLeavesNoItemInFlight (review17): in flight is "items taken and not
// finished"; stage.Watcher's Finished is "the call (all its attempts under
// Retry) ended". A stage function that calls runtime.Goexit (t.Fatal in a
// test) on a worker goroutine fails the run with stage.ErrGoexit, and its
// call has ended by the time the sink returns: the watcher must have been
// told, so nothing is in flight after the run and every received call is
// finished.
func GoexitLeavesNoItemInFlight(t *testing.T, env Env) {
	ctx := stage.Observe(context.Background(), env.Obs)
	// Buffer(1): the stage runs its calls on goroutines of its own, never
	// on the sink's goroutine.
	m := stage.Map(source.Slice([]int{0, 1, 2, 3, 4, 5, 6, 7}), func(_ context.Context, v int) (int, error) {
		if v == 3 {
			runtime.Goexit()
		}
		return v, nil
	}, stage.Name("g"), stage.Workers(2), stage.Buffer(1))
	var err error
	runcheck.Run(t, "goexit", func() { _, err = sink.Slice(ctx, m) })
	if !errors.Is(err, stage.ErrGoexit) {
		t.Fatalf("sink.Slice = %v, want stage.ErrGoexit", err)
	}
	all := MustRead(t, env.Read)
	recv, hasRecv := Get(all, Received, "g", "")
	inFlight, hasIn := Get(all, InFlight, "g", "")
	if !hasRecv || !hasIn || recv.Kind != "map" || inFlight.Kind != "map" {
		t.Fatalf("no received or in flight series of stage g, kind map: %+v", all)
	}
	ok, failed := Val(all, Finished, "g", "ok"), Val(all, Finished, "g", "error")
	if inFlight.Value != 0 || ok+failed != recv.Value {
		t.Fatalf("after the run: in flight %v, received %v, finished ok %v + error %v; want in flight 0 and every received call finished (the Goexit ended its call)", inFlight.Value, recv.Value, ok, failed)
	}
}
