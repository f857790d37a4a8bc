package stage_test

import (
	"context"
	"runtime"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// Unbatch: "It is a stage of one worker that holds one slice at a time; as
// its calls are cheap, it soon runs in its consumer's goroutine (see
// Workers), and at once over an input known to hold one item (its
// Stream.Len is 1)." (The review found the
// old doc's "no goroutine of its own" broken: over an input of unknown
// length its first calls run on a goroutine of the stage. The doc now says
// when it runs in its consumer's.) Over an input of one slice, while the
// sink's callback holds the first element, no goroutine of the run may be
// running the engine's worker loop (applier.work).
func TestReview23UnbatchOfOneSliceRunsInItsConsumer(t *testing.T) {
	for _, n := range []int{8, 64} {
		s := stage.Unbatch(stage.Indexed(1, func(int) []int { return make([]int, n) }))
		var stacks string
		seen := 0
		err := stage.Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
			if seen == 0 {
				buf := make([]byte, 1<<20)
				stacks = string(buf[:runtime.Stack(buf, true)])
			}
			seen++
			return nil
		})
		if err != nil || seen != n {
			t.Fatalf("Run = %v after %d items", err, seen)
		}
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "stage.(*applier[...]).work") {
				if len(g) > 1200 {
					g = g[:1200] + "\n[...]"
				}
				t.Errorf("n=%d: while the sink held the first element, a goroutine of Unbatch's own was running (started by fuseRun.spawn):\n%s", n, g)
				break
			}
		}
	}
}
