package stage_test

// Review 13: Apply's emit, and Batch's read-ahead.

import (
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Doc (Apply): "The first output of an item never waits: it takes the
// read-ahead place the item took from upstream. Each further output waits
// while the stage's queue holds as many outputs as its read-ahead bound".
// Item 0 emits until its emits wait (the consumer is held); item 1's first
// emit must still return, which is what lets the consumer go on. Child
// process: a broken promise deadlocks.
func TestReview13ApplyFirstEmitNeverWaits(t *testing.T) {
	for _, buffer := range []int{0, 2} {
		t.Run(map[int]string{0: "buffer0", 2: "buffer2"}[buffer], func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second) // watchdog only
				defer cancel()
				firstOfItem1 := make(chan struct{})
				i := 0
				src := source.Func(func(context.Context) (int, error) { // a waiting source: no fusing
					if i == 2 {
						return 0, io.EOF
					}
					i++
					return i - 1, nil
				})
				s := stage.Apply(src, func(ctx context.Context, v int, emit func(int) bool) error {
					if v == 1 {
						emit(1000)
						close(firstOfItem1)
						return nil
					}
					for j := range 50 {
						if !emit(j) {
							return ctx.Err()
						}
					}
					return nil
				}, stage.Workers(2), stage.Buffer(buffer))
				n := 0
				err := sink.ForEach(ctx, s, func(ctx context.Context, _ int) error {
					if n == 0 {
						select {
						case <-firstOfItem1:
						case <-ctx.Done():
							return ctx.Err()
						}
					}
					n++
					return nil
				})
				if err != nil || n != 51 {
					t.Fatalf("err %v, %d outputs: item 1's first emit waited", err, n)
				}
			})
		})
	}
}

// Doc (Apply): "emit returns false, and drops the output, once the run is
// cancelled; f should then return."
func TestReview13ApplyEmitFalseAfterCancel(t *testing.T) {
	for _, m := range []string{"w1", "w4", "w4ordered", "unlimited", "keyby"} {
		t.Run(m, func(t *testing.T) {
			var late atomic.Int32
			var got []int
			runcheck.Run(t, "emit", func() {
				for v := range sink.All(context.Background(), stage.Apply(source.Slice(ints(1)), func(ctx context.Context, v int, emit func(int) bool) error {
					emit(1)
					<-ctx.Done() // the consumer breaks after the first output
					if emit(2) {
						late.Add(1)
					}
					return ctx.Err()
				}, r13With(m)...)) {
					got = append(got, v)
					break
				}
			})
			if late.Load() != 0 || len(got) != 1 {
				t.Fatalf("emit returned true after the run was cancelled (%d), got %v", late.Load(), got)
			}
		})
	}
}

// Doc (Batch): "It holds at most size+1 items of in, plus one finished batch
// that waits for its consumer." With Run's batch the sink is in and the one
// handed to it while it waited, the source is never pulled more than
// (size+1) + 2×size items beyond what the sink has seen.
func TestReview13BatchReadAhead(t *testing.T) {
	for _, size := range []int{1, 3, 8} {
		t.Run(map[int]string{1: "1", 3: "3", 8: "8"}[size], func(t *testing.T) {
			const n = 300
			var pulled, seen, worst atomic.Int64
			bound := int64(3*size + 1)
			src := source.Func(func(context.Context) (int, error) {
				p := pulled.Add(1)
				if p > n {
					return 0, io.EOF
				}
				if over := p - seen.Load() - bound; over > worst.Load() {
					worst.Store(over)
				}
				return int(p), nil
			})
			var err error
			runcheck.Run(t, "batch", func() {
				err = sink.ForEach(context.Background(), stage.Batch(src, size, 0), func(_ context.Context, b []int) error {
					seen.Add(int64(len(b)))
					if b[0]%7 == 0 {
						time.Sleep(time.Millisecond) // a slow commit: let the pipeline run ahead
					}
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if w := worst.Load(); w > 0 {
				t.Fatalf("Batch(%d) pulled %d items beyond size+1 + a finished batch + the sink's", size, w)
			}
		})
	}
}
