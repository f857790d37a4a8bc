package stage_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// NeverWaits and Interruptible return "s marked" (source.go), yet the
// marked stream gets a node of its own (markSource copies the node), so
// that Merge's check that "a stream feeds one consumer" no longer sees that
// the two inputs are one source: Merge(s, NeverWaits(s)) builds, and each
// run calls s's open twice, where Source promises "Each run calls open
// once" and Merge promises to panic "if two of its inputs share a stream
// (the same stream given twice ...)".
func TestReview26MarkedSourceIsTheSameStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		mark func(stage.Stream[int]) stage.Stream[int]
	}{
		{"NeverWaits", stage.NeverWaits[int]},
		{"Interruptible", stage.Interruptible[int]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opens atomic.Int32
			s := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				opens.Add(1)
				n := 0
				return func(context.Context) (int, error) {
					if n == 3 {
						return 0, io.EOF
					}
					n++
					return n, nil
				}, nil
			})
			var m stage.Stream[int]
			panicked := true
			func() {
				defer func() { _ = recover() }()
				m = stage.Merge(s, tc.mark(s))
				panicked = false
			}()
			if !panicked {
				// Built: run it once to show what it does.
				got, err := sink.Slice(context.Background(), m)
				t.Errorf("Merge(s, %s(s)) built (no panic); one run called open %d times (want once), got %d items (%v)",
					tc.name, opens.Load(), len(got), err)
			}
		})
	}
}
