package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// ErrGoexit's doc: a goroutine of the run ended by runtime.Goexit in user
// code (t.Fatal in a stage's function) fails the run with ErrGoexit, rather
// than the run returning what it has as if complete. Before, the dying
// worker's queue ended as if its input had: a Workers(1) Buffer(1) stage
// returned 5 of 100 items and nil. On the sink's own goroutine a Goexit
// ends that goroutine (the sink does not return); the run's goroutines
// still all exit (goleak checks the child).
func TestGoexitFailsTheRun(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string {
		var res []string
		for _, c := range []struct {
			name string
			opts []stage.Option
		}{
			{"workers-1-buffer-1", []stage.Option{stage.Workers(1), stage.Buffer(1)}},
			{"workers-4-buffer-1", []stage.Option{stage.Workers(4), stage.Buffer(1)}},
			{"workers-4-buffer-1-ordered", []stage.Option{stage.Workers(4), stage.Buffer(1), stage.Ordered()}},
			{"unlimited", []stage.Option{stage.Workers(-1)}},
			{"keyby", []stage.Option{stage.Workers(4), stage.Buffer(1), stage.KeyBy(func(v int) int { return v % 3 })}},
		} {
			for _, src := range []string{"slice", "chan"} {
				in := source.Slice(ints(100))
				if src == "chan" {
					ch := make(chan int, 100)
					for _, v := range ints(100) {
						ch <- v
					}
					close(ch)
					in = source.Chan(ch)
				}
				m := stage.Map(in, func(_ context.Context, v int) (int, error) {
					if v == 5 {
						runtime.Goexit()
					}
					return v, nil
				}, c.opts...)
				_, err := sink.Slice(context.Background(), m)
				res = append(res, fmt.Sprintf("%s/%s: %v", c.name, src, errors.Is(err, stage.ErrGoexit)))
			}
		}
		// On the sink's own goroutine (a fused stage runs its calls
		// there): the goroutine ends, and so does every goroutine of the
		// run (goleak checks the child as it exits).
		var wg sync.WaitGroup
		wg.Add(1)
		returned := false
		go func() {
			defer wg.Done()
			// One item: the chain runs on the caller's goroutine.
			_, _ = sink.Slice(context.Background(), stage.Map(source.Slice([]int{5}), func(_ context.Context, v int) (int, error) {
				runtime.Goexit()
				return v, nil
			}))
			returned = true
		}()
		wg.Wait()
		res = append(res, fmt.Sprintf("sink goroutine returned: %v", returned))
		return fmt.Sprint(res)
	})
	if !ok {
		return
	}
	want := "[workers-1-buffer-1/slice: true workers-1-buffer-1/chan: true workers-4-buffer-1/slice: true workers-4-buffer-1/chan: true workers-4-buffer-1-ordered/slice: true workers-4-buffer-1-ordered/chan: true unlimited/slice: true unlimited/chan: true keyby/slice: true keyby/chan: true sink goroutine returned: false]"
	if out != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
}
