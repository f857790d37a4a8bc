package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r59KeyedStage builds the stage under test over in: a Map, or an Apply
// that emits each item twice (v, then v+1000), keyed by v%2, under opts;
// item 0's call waits for release.
func r59KeyedStage(in stage.Stream[int], apply bool, release <-chan struct{}, opts []stage.Option) stage.Stream[int] {
	opts = append(opts, stage.KeyBy(func(v int) int { return v % 2 }))
	if apply {
		return stage.Apply(in, func(ctx context.Context, v int, emit func(int) bool) error {
			if v == 0 {
				<-release
			}
			emit(v)
			emit(v + 1000)
			return nil
		}, opts...)
	}
	return stage.Map(in, func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			<-release
		}
		return v, nil
	}, opts...)
}

// TestReview59KeyByWaitingItemsSurviveTheEndOfInput: items taken from the
// source and waiting for their key (behind item 0, whose call is held) when
// the input ends by a drain (Until) or by a source failure still run, and
// every one of them reaches the sink.
//
// Until: "every item they already produced goes on through the stages:
// calls in flight finish, ... and the sink returns nil once the last of
// them has arrived, as at the end of the input."
// SourceError: "the items it produced before the failure still complete
// and are delivered, and then the sink returns the SourceError".
// KeyBy: "A worker that finishes an item takes the next waiting item of the
// same key itself."
func TestReview59KeyByWaitingItemsSurviveTheEndOfInput(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const n = 7
		boom := errors.New("boom")
		for _, end := range []string{"drain", "sourcefail"} {
			for _, w := range []int{2, 4, -1} { // Workers(1) would hold its one worker in item 0
				for _, ordered := range []bool{false, true} {
					for _, apply := range []bool{false, true} {
						name := fmt.Sprintf("%s/w=%d/ordered=%v/apply=%v", end, w, ordered, apply)
						t.Run(name, func(t *testing.T) {
							acks := newR59Acks()
							src := newR59Source(n, acks)
							src.err = boom
							stop, drain := context.WithCancel(context.Background())
							defer drain()
							release := make(chan struct{})
							in := src.stream()
							if end == "drain" {
								in = stage.Until(in, stop)
							}
							s := r59KeyedStage(in, apply, release, r59Opts(w, ordered, stage.Buffer(n)))
							var got []int
							var err error
							runcheck.Run(t, name, func() {
								done := make(chan struct{})
								go func() {
									defer close(done)
									err = stage.Run(context.Background(), s, func(_ context.Context, v int, ferr error) error {
										if ferr != nil {
											return ferr
										}
										got = append(got, v)
										return nil
									})
								}()
								// Every item was taken and admitted to the gate:
								// pulls and admissions are one step under the
								// stage's key lock, so next is called for the
								// (n+1)th time only after the nth was admitted.
								if !r59Wait(src.inEnd) {
									t.Error("the source was never asked past its last item")
								}
								if end == "drain" {
									drain()
								} else {
									close(src.fail)
								}
								close(release)
								<-done
							})
							inOrder := []int{} // the outputs in input order
							for i := range n {
								inOrder = append(inOrder, i)
								if apply {
									inOrder = append(inOrder, i+1000)
								}
							}
							want := r59Sorted(inOrder)
							if g := r59Sorted(got); !slices.Equal(g, want) {
								t.Errorf("delivered %v, want %v", g, want)
							}
							switch end {
							case "drain":
								if err != nil {
									t.Errorf("err = %v, want nil after a drain", err)
								}
							default:
								var se *stage.SourceError
								if !errors.As(err, &se) || !errors.Is(err, boom) {
									t.Errorf("err = %v, want a *SourceError wrapping boom", err)
								}
							}
							for i := range n {
								if f := acks.fate(i); f != "nil" {
									t.Errorf("item %d acknowledged %s, want nil once (%s)", i, f, acks.fates(n))
									break
								}
							}
							// KeyBy: "with Ordered, the outputs follow the input
							// order across keys too".
							if ordered && !slices.Equal(got, inOrder) {
								t.Errorf("Ordered delivered %v, want %v", got, inOrder)
							}
						})
					}
				}
			}
		}
	})
}
