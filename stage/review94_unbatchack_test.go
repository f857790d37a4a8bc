package stage_test

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// TestReview94UnbatchUnsentElementsStayUnacknowledged: Ack, "an [Unbatch]
// straight after a Batch gives each element its item's acknowledgement
// back, so that each is settled on its own", and "Done is not called when
// the run ended before the item's fate was known: ... a sink that stopped
// early". The sink stops at the first element of a batch of 8 while
// Unbatch still flattens it: element 1 waits in the queue, element 2 for
// room, and elements 3 to 7 were never emitted. Only item 0 (committed:
// its callback returned ErrStop) may be told, and it is told nil; the
// elements Unbatch never emitted must stay unacknowledged, like the
// others, not be told nil.
func TestReview94UnbatchUnsentElementsStayUnacknowledged(t *testing.T) {
	const n = 8
	for round := range 3 {
		rec := &r67AckRec{calls: map[int][]error{}}
		s := stage.Unbatch(stage.Batch(r67AckSrc(n, rec), n, 0))
		var first int
		var err error
		hangGuard(t, func() {
			err = stage.Run(context.Background(), s, func(_ context.Context, v int, e error) error {
				first = v
				return stage.ErrStop
			})
		})
		if err != nil || first != 0 {
			t.Fatalf("round %d: Run = %v, first element %d; want nil and 0", round, err, first)
		}
		calls := rec.snapshot()
		if len(calls[0]) != 1 || calls[0][0] != nil {
			t.Errorf("round %d: item 0 (committed) told %v; want nil once", round, calls[0])
		}
		for id := 1; id < n; id++ {
			if len(calls[id]) != 0 {
				t.Errorf("round %d: item %d, never delivered, told %v; want no Done", round, id, calls[id])
			}
		}
	}
}
