package stage_test

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r45UntilAllocsBefore is what an Until added to the allocations of a run
// of one item (Until on source.Slice, then Map with 4 workers, under
// context.Background) at 346d759's parent, 4445952: 33 against 12 without
// the Until, measured with this test's own function on that commit.
const r45UntilAllocsBefore = 21

// r45OpeningPart is the run's opening part (see opening in run.go), which
// a run with an Until makes and, since the run was made smaller, a plain
// run over a slice does not: one allocation that moved into the runs that
// use it (the run with the Until makes 33 in all, as at 4445952, and the
// plain run 11).
const r45OpeningPart = 1

// TestReview45UntilOneItemRunAllocs: the cost rule of the review (a run of
// one item allocates no more than before the commit) for a run with an
// Until. enterScope (until.go) now makes a *ctxHook (new(ctxHook)) and
// hands context.AfterFunc the method value h.fire, a closure of its own,
// on top of the hook's function; before, one closure was the hook. Two
// allocations more per Until and per run.
func TestReview45UntilOneItemRunAllocs(t *testing.T) {
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	xs := []int{1}
	sinkf := func(context.Context, int, error) error { return nil }
	plain := testing.AllocsPerRun(2000, func() {
		_ = stage.Run(context.Background(), stage.Map(source.Slice(xs), double, stage.Workers(4)), sinkf)
	})
	until := testing.AllocsPerRun(2000, func() {
		_ = stage.Run(context.Background(), stage.Map(stage.Until(source.Slice(xs), stop), double, stage.Workers(4)), sinkf)
	})
	if d := until - plain; d > r45UntilAllocsBefore+r45OpeningPart {
		t.Fatalf("an Until adds %.0f allocations to a run of one item (%.0f against %.0f), %d before 346d759", d, until, plain, r45UntilAllocsBefore)
	}
}
