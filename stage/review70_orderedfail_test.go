package stage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Ordered: "Under FailFast a failure ends the run when its call fails,
// not at its turn: the outputs of earlier items still waiting for their
// turn, or still being made, are not delivered." Item 0's call waits
// until item 1's has failed (the run's context ends it), so the order of
// events decides.
func TestReview70OrderedFailFastEndsAtTheFailure(t *testing.T) {
	boom := errors.New("boom")
	failed := make(chan struct{})
	s := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, v int) (int, error) {
		switch v {
		case 0:
			<-failed
			<-ctx.Done() // the failure ended the run before item 0's turn
			return 0, nil
		case 1:
			close(failed)
			return 0, boom
		}
		return v, nil
	}, stage.Workers(2), stage.Ordered())
	var got []int
	err := sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
		got = append(got, v)
		return nil
	})
	var e *stage.Error
	if !errors.As(err, &e) || e.Index != 1 || !errors.Is(err, boom) || len(got) != 0 {
		t.Fatalf("got %v, err %v; want nothing delivered and item 1's *Error", got, err)
	}
}
