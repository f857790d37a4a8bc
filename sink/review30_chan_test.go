package sink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview30ChanDeliversWhatASourceProducedBeforeItFailed attacks the
// sink package's "once everything a failed source produced was delivered,
// the *stage.SourceError" and SourceError's "the items produced before the
// failure still complete and are delivered, and then the sink returns the
// SourceError", for sink.Chan, whose doc says "If the run fails while Chan
// waits on out, Chan stops waiting": a source failure while Chan waits on
// out (nobody receives yet) must not make Chan drop the items produced
// before it. The source has failed (its next returned the error) before the
// receiver takes anything; then every item arrives, in order, and Chan
// returns the *stage.SourceError.
func TestReview30ChanDeliversWhatASourceProducedBeforeItFailed(t *testing.T) {
	boom := errors.New("source failure")
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	shapes := map[string]func(stage.Stream[int]) stage.Stream[int]{
		"map1-buf8": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(1), stage.Buffer(8))
		},
		"map3-ord-b8": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(3), stage.Ordered(), stage.Buffer(8))
		},
	}
	for shname, shape := range shapes {
		for _, cap := range []int{0, 1} {
			for range 10 {
				label := fmt.Sprintf("%s/out cap %d", shname, cap)
				failed := make(chan struct{})
				i := 0
				src := source.Func(func(context.Context) (int, error) {
					if i == 4 {
						close(failed)
						return 0, boom
					}
					i++
					return i - 1, nil
				})
				out := make(chan int, cap)
				var err error
				var got []int
				runcheck.Run(t, label, func() {
					done := make(chan error, 1)
					go func() { done <- sink.Chan(context.Background(), shape(src), out) }()
					select {
					case <-failed:
					case <-time.After(30 * time.Second):
						t.Errorf("%s: the source never reached its failure", label)
						return
					}
					for {
						select {
						case v := <-out:
							got = append(got, v)
							continue
						case err = <-done:
						}
						break
					}
					for len(out) > 0 {
						got = append(got, <-out)
					}
				})
				var se *stage.SourceError
				if !errors.As(err, &se) || !errors.Is(err, boom) {
					t.Fatalf("%s: err = %v, want the *stage.SourceError", label, err)
				}
				if !slices.Equal(got, []int{0, 1, 2, 3}) {
					t.Fatalf("%s: received %v, want [0 1 2 3] (produced before the failure)", label, got)
				}
			}
		}
	}
}
