package source_test

// Review 62: how far ahead of a stuck sink each source is asked for items.

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review62LineReader gives one line per Read, counting the Reads.
type review62LineReader struct{ reads atomic.Int32 }

func (r *review62LineReader) Read(p []byte) (int, error) {
	n := r.reads.Add(1)
	if n > 1000 {
		return 0, io.EOF
	}
	return copy(p, fmt.Sprintf("%d\n", n-1)), nil
}

// "Sources take an item from the caller's world (a channel receive, a
// generator call, an iterator step, a line read) only when a stage is ready
// for it", with the bounds of "Backpressure: ... no stage pulls more than its
// workers plus its buffer ahead of its consumer" and, for Ordered, "the stage
// takes at most 2×workers+buffer items its consumer has not yet taken": while
// the sink's callback holds the first item, each source gives at most
// 1 + workers + buffer items (1 + 2×workers + buffer when Ordered), plus one
// of slack for the item a sink may be handed while it waits.
func TestReview62SourcesStayWithinTheReadAhead(t *testing.T) {
	type cfg struct {
		workers, buffer int
		ordered         bool
	}
	cfgs := []cfg{{1, 0, false}, {3, 0, false}, {2, 3, false}, {3, 0, true}, {2, 2, true}}
	for _, c := range cfgs {
		for _, kind := range []string{"Func", "Seq", "Seq2", "Chan", "Lines"} {
			t.Run(fmt.Sprintf("%s/w%d-b%d-ordered%v", kind, c.workers, c.buffer, c.ordered), func(t *testing.T) {
				var taken func() int
				var s stage.Stream[int]
				switch kind {
				case "Func":
					var n atomic.Int32
					taken = func() int { return int(n.Load()) }
					s = source.Func(func(context.Context) (int, error) { return int(n.Add(1)) - 1, nil })
				case "Seq":
					var n atomic.Int32
					taken = func() int { return int(n.Load()) }
					s = source.Seq(func(yield func(int) bool) {
						for {
							if !yield(int(n.Add(1)) - 1) {
								return
							}
						}
					})
				case "Seq2":
					var n atomic.Int32
					taken = func() int { return int(n.Load()) }
					s = source.Seq2(func(yield func(int, error) bool) {
						for {
							if !yield(int(n.Add(1))-1, nil) {
								return
							}
						}
					})
				case "Chan":
					ch := make(chan int, 1000)
					for i := range 1000 {
						ch <- i
					}
					taken = func() int { return 1000 - len(ch) }
					s = source.Chan(ch)
				case "Lines":
					r := &review62LineReader{}
					taken = func() int { return int(r.reads.Load()) }
					s = stage.Map(source.Lines(r), func(_ context.Context, l string) (int, error) {
						var v int
						_, err := fmt.Sscan(l, &v)
						return v, err
					}, stage.Workers(1))
				}
				opts := []stage.Option{stage.Workers(c.workers), stage.Buffer(c.buffer)}
				bound := 1 + c.workers + c.buffer + 1
				if c.ordered {
					opts = append(opts, stage.Ordered())
					bound += c.workers
				}
				if kind == "Lines" {
					// the Workers(1) stage that parses the lines holds one more
					// item ahead of the stage under test, and the line reader one
					// Read ahead of a line it has not finished (none here).
					bound += 2
				}
				m := stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, opts...)
				holding := make(chan struct{})
				gate := make(chan struct{})
				var worst atomic.Int32
				runcheck.Run(t, kind, func() {
					done := make(chan error, 1)
					go func() {
						first := true
						done <- sink.ForEach(context.Background(), m, func(_ context.Context, v int) error {
							if first {
								first = false
								close(holding)
								<-gate
								return stage.ErrStop
							}
							return nil
						})
					}()
					select {
					case <-holding:
					case <-time.After(runcheck.Watchdog):
						t.Error("hang: no item reached the sink")
					}
					// poll while the sink holds the first item: no duration decides.
					for range 20000 {
						if n := taken(); int32(n) > worst.Load() {
							worst.Store(int32(n))
						}
						runtime.Gosched()
					}
					close(gate)
					if err := <-done; err != nil {
						t.Errorf("ForEach = %v", err)
					}
				})
				if w := int(worst.Load()); w > bound {
					t.Errorf("while the sink held its first item, the source gave %d items; want at most %d", w, bound)
				}
			})
		}
	}
}
