package sink_test

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// First: "what happens in the run after the first item never changes it".
// A stage's failure (here its function returning ErrStop) that comes once
// First has its value leaves First's answer a value, not the failure.
func TestFirstMayReturnAValueBeforeAStagesErrStop(t *testing.T) {
	s := stage.Map(source.Slice(rvInts(60)), func(ctx context.Context, x int) (int, error) {
		if x == 0 {
			<-ctx.Done() // the run stopped at another item
			return 0, stage.ErrStop
		}
		return x, nil
	}, stage.Workers(4))
	v, ok, err := sink.First(context.Background(), s)
	if !ok || err != nil || v == 0 {
		t.Fatalf("First = %v, %v, %v; want a value other than 0", v, ok, err)
	}
}
