package stage_test

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// A stage over a source that waits (a channel) must deliver each finished
// item without waiting for the next input: a consumer that called the
// stage's function itself would sit in the channel receive while the
// stage's other workers' outputs wait behind it.
func TestNoOutputWaitsForTheNextInput(t *testing.T) {
	for _, workers := range []int{1, 2, 4} {
		ch := make(chan int)
		got := make(chan int)
		ctx, cancel := context.WithCancel(context.Background())
		s := stage.Map(stage.Map(source.Chan(ch), double, stage.Workers(workers)), double, stage.Workers(workers))
		done := make(chan error)
		go func() {
			done <- stage.Run(ctx, s, func(_ context.Context, v int, _ error) error {
				got <- v
				return nil
			})
		}()
		hangGuard(t, func() {
			// A burst first, so that cheap calls move into consumers, then
			// one item at a time: each must come out before the next goes in.
			go func() {
				for i := range 200 {
					ch <- i
				}
			}()
			for range 200 {
				<-got
			}
			for i := range 300 {
				ch <- i
				if v := <-got; v != 4*i {
					t.Errorf("got %d, want %d", v, 4*i)
				}
			}
		})
		cancel()
		<-done
	}
}
