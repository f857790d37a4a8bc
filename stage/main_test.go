package stage_test

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// mode is one cell of the matrix most behaviours are tested across.
type mode struct {
	workers int
	ordered bool
}

func (m mode) String() string { return fmt.Sprintf("workers=%d/ordered=%v", m.workers, m.ordered) }

func (m mode) opts(more ...stage.Option) []stage.Option {
	opts := []stage.Option{stage.Workers(m.workers)}
	if m.ordered {
		opts = append(opts, stage.Ordered())
	}
	return append(opts, more...)
}

var modes = []mode{{1, false}, {1, true}, {4, false}, {4, true}, {-1, false}, {-1, true}}

// ints returns 0, 1, ..., n-1.
func ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

// hangGuard fails the test if f does not return in a long time. It detects a
// deadlock; it asserts no duration.
func hangGuard(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the pipeline hung")
	}
}

// double is a stage function with no error.
func double(_ context.Context, x int) (int, error) { return 2 * x, nil }

var errEOF = io.EOF
