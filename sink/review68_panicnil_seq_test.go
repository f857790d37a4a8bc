package sink_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// README Guarantees: "A panic in your code never crashes the process. In
// ... a source ...: it becomes an error (... a *stage.SourceError). So does
// ... panic(nil), even under GODEBUG=panicnil=1." An iterator given to
// source.Seq / source.Seq2 that panics with nil, with and without the
// GODEBUG setting.
func TestReview68PanicNilInSeqSource(t *testing.T) {
	seq := func(yield func(int) bool) {
		for i := range 3 {
			if !yield(i) {
				return
			}
		}
		panic(nil)
	}
	seq2 := func(yield func(int, error) bool) {
		for i := range 3 {
			if !yield(i, nil) {
				return
			}
		}
		panic(nil)
	}
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	for _, godebug := range []string{"", "panicnil=1"} {
		t.Run("godebug="+godebug, func(t *testing.T) {
			if os.Getenv("SLUICE_RUNCHECK_CHILD") == "" {
				t.Setenv("GODEBUG", godebug)
			}
			runcheck.InChildTest(t, func(t *testing.T) {
				for name, s := range map[string]stage.Stream[int]{
					"seq bare":       source.Seq(seq),
					"seq map w1":     stage.Map(source.Seq(seq), id, stage.Workers(1)),
					"seq map w3":     stage.Map(source.Seq(seq), id, stage.Workers(3)),
					"seq2 bare":      source.Seq2(seq2),
					"seq2 map w3":    stage.Map(source.Seq2(seq2), id, stage.Workers(3)),
					"seq neverwaits": stage.Map(stage.NeverWaits(source.Seq(seq)), id, stage.Workers(3)),
				} {
					t.Run(name, func(t *testing.T) {
						var n int
						var err error
						returned := false
						runcheck.Run(t, name, func() { n, err = sink.Count(context.Background(), s); returned = true })
						if !returned {
							// The black-box round's finding, fixed: under
							// GODEBUG=panicnil=1 iter.Pull passed a panic(nil) in the
							// iterator on as a Goexit of the sink's goroutine: the
							// sink never returned.
							t.Fatalf("%s, GODEBUG=%q: the sink did not return: its goroutine was ended (as by runtime.Goexit)", name, godebug)
						}
						var se *stage.SourceError
						var pe *stage.PanicError
						if !errors.As(err, &se) || !errors.As(err, &pe) {
							// Fixed with it: under a stage the run failed with
							// stage.ErrGoexit, not a *stage.SourceError wrapping a
							// *stage.PanicError, and items before it could be lost.
							t.Errorf("%s, GODEBUG=%q: %d items, err %v; want a *stage.PanicError inside a *stage.SourceError", name, godebug, n, err)
						}
						if n != 3 {
							t.Errorf("%s, GODEBUG=%q: %d items delivered, want the 3 before the panic", name, godebug, n)
						}
					})
				}
			})
		})
	}
}
