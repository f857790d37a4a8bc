package source_test

import (
	"context"
	"io"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
)

// Func: the value next returns with io.EOF is not delivered.
func TestFuncValueWithEOFIsNotDelivered(t *testing.T) {
	i := 0
	got, err := sink.Slice(context.Background(), source.Func(func(context.Context) (int, error) {
		i++
		if i == 3 {
			return 3, io.EOF
		}
		return i, nil
	}))
	if err != nil || len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Fatalf("got %v, %v; want [1 2]", got, err)
	}
}
