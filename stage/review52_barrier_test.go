package stage_test

import (
	"context"
	"io"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Doc (Workers): "n >= 1: at most n, and with enough input and a consumer
// that keeps up exactly n"; "-1: no limit, one goroutine per item"; "Over an
// input of unknown length (and over one of more than 64 items), a stage
// starts at most 64 workers at once ... and each further one when a worker
// has just taken an item, so a large n starts about as many goroutines as
// the input has items, up to n"; "Add Buffer(1) to keep every worker a
// goroutine of the stage's own: the stage's function may then wait ... for
// its peers". A barrier of k calls (k > 64) over a waiting source of
// unknown length must fill: k calls at once, then all pass. (KeyBy with
// distinct keys, and Ordered with its window of 2×workers+buffer, allow it
// too.) A barrier that never fills hangs: the child's watchdog reports it.
func TestReview52BarrierOfManyCalls(t *testing.T) {
	for _, c := range []struct {
		name    string
		k, n    int
		opts    []stage.Option
		maxSeen int // the calls at once must not exceed this
	}{
		{"workers-k", 150, 400, []stage.Option{stage.Workers(150), stage.Buffer(1)}, 150},
		{"workers-unlimited", 300, 300, []stage.Option{stage.Workers(-1)}, 300},
		{"workers-big", 200, 500, []stage.Option{stage.Workers(5000), stage.Buffer(1)}, 5000},
		{"keyby-distinct", 130, 260, []stage.Option{stage.Workers(130), stage.Buffer(1), stage.KeyBy(func(v int) int { return v })}, 130},
		{"ordered", 100, 300, []stage.Option{stage.Workers(100), stage.Buffer(1), stage.Ordered()}, 100},
		{"ordered-keyby", 90, 180, []stage.Option{stage.Workers(90), stage.Buffer(1), stage.Ordered(), stage.KeyBy(func(v int) int { return v })}, 90},
	} {
		t.Run(c.name, func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				var in, max, arrived atomic.Int64
				release := make(chan struct{})
				i := 0
				src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					return func(context.Context) (int, error) {
						if i == c.n {
							return 0, io.EOF
						}
						i++
						return i - 1, nil
					}, nil
				})
				s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
					cur := in.Add(1)
					defer in.Add(-1)
					for {
						m := max.Load()
						if cur <= m || max.CompareAndSwap(m, cur) {
							break
						}
					}
					if v < c.k {
						if arrived.Add(1) == int64(c.k) {
							close(release)
						}
						select {
						case <-release:
						case <-ctx.Done():
							return 0, ctx.Err()
						}
					}
					return v, nil
				}, c.opts...)
				n, err := sink.Count(context.Background(), s)
				if err != nil || n != c.n {
					t.Fatalf("Count = %d, %v; want %d", n, err, c.n)
				}
				if m := max.Load(); m > int64(c.maxSeen) || m < int64(c.k) {
					t.Errorf("%d calls at once, want between %d and %d", m, c.k, c.maxSeen)
				}
				t.Logf("max calls at once: %d", max.Load())
			})
		})
	}
}
