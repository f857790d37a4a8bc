package stage_test

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// r95MixedAckSrc is an AckSource of the items 0..n-1; item i carries an
// Ack when has(i), else none (AckSource: "nil: none for this item").
func r95MixedAckSrc(n int, has func(int) bool, rec *r67AckRec) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i >= n {
				return 0, nil, io.EOF
			}
			i++
			if !has(i - 1) {
				return i - 1, nil, nil
			}
			return i - 1, r67Ack{i - 1, rec}, nil
		}, nil
	})
}

var errR95Commit = errors.New("review95: commit failed")

// TestReview95UnbatchAckAfterItemsWithoutAck: Unbatch, "Straight after a
// Batch, each element takes back its own item's acknowledgement (see
// [Ack])", and Ack, "an Unbatch straight after a Batch gives each element
// its item's acknowledgement back". A batch whose first item has no Ack
// and whose later items have one: each element must still take its own
// item's acknowledgement, not the one of the next item that has one.
//   - The sink stops (ErrStop) at element 0, which has no Ack: items 1 and
//     2 were never delivered, so neither is told anything ("Done is not
//     called when the run ended before the item's fate was known: ... a
//     sink that stopped early").
//   - The sink's callback fails at element 1: item 1 is told that error
//     (its commit failed), and item 2 nothing.
func TestReview95UnbatchAckAfterItemsWithoutAck(t *testing.T) {
	has := func(i int) bool { return i != 0 }
	for round := range 3 {
		for _, failAt := range []int{0, 1} {
			rec := &r67AckRec{calls: map[int][]error{}}
			s := stage.Unbatch(stage.Batch(r95MixedAckSrc(3, has, rec), 3, 0))
			var err error
			var seen []int
			hangGuard(t, func() {
				err = stage.Run(context.Background(), s, func(_ context.Context, v int, e error) error {
					seen = append(seen, v)
					if v != failAt {
						return e
					}
					if failAt == 0 {
						return stage.ErrStop
					}
					return errR95Commit
				})
			})
			calls := rec.snapshot()
			switch failAt {
			case 0:
				if err != nil || len(seen) != 1 || seen[0] != 0 {
					t.Fatalf("round %d: Run = %v after %v; want nil after [0]", round, err, seen)
				}
				for id := 1; id < 3; id++ {
					if len(calls[id]) != 0 {
						t.Errorf("round %d, stop at element 0: item %d, never delivered, told %v; want no Done", round, id, calls[id])
					}
				}
			case 1:
				if !errors.Is(err, errR95Commit) || len(seen) != 2 {
					t.Fatalf("round %d: Run = %v after %v; want %v after [0 1]", round, err, seen, errR95Commit)
				}
				if len(calls[1]) != 1 || !errors.Is(calls[1][0], errR95Commit) {
					t.Errorf("round %d, commit of element 1 failed: item 1 told %v; want [%v]", round, calls[1], errR95Commit)
				}
				if len(calls[2]) != 0 {
					t.Errorf("round %d, commit of element 1 failed: item 2, never delivered, told %v; want no Done", round, calls[2])
				}
			}
		}
	}
}
