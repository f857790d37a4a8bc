package source_test

import (
	"context"
	"fmt"
	"iter"
	"runtime"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Seq: "when the run ends, early or not, the iterator is stopped (its
// deferred calls run) before the sink returns"; stage.ErrGoexit: "A
// function that calls Goexit on the sink's own goroutine ends that
// goroutine: the sink does not return, as with any function, and the run's
// goroutines exit"; stage.Watcher.Closed: "Called once".
//
// A run that stops early stops its Seq sources from the sink's goroutine,
// once its goroutines have exited (run.finish's cleanups). If one
// iterator's deferred call ends that goroutine with runtime.Goexit (a
// t.FailNow in the iterator's cleanup), the cleanups after it never run: a
// panic there is recovered and the next cleanup runs, a Goexit skips them
// all. The other Seq is never stopped (its deferred calls never run, and
// iter.Pull's goroutine waits for ever: a leak), and the watchers whose
// Closed comes later are never closed (stage.Stats counts the stage
// Running for ever). Both orders are tried: the Goexit in the source
// stopped first, and in the one stopped last.
func TestReview17GoexitInOneSeqStopStopsTheOthers(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string {
		var res []string
		for _, exiter := range []string{"a", "b"} {
			deferred := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
			endless := func(name string) iter.Seq[string] {
				return func(yield func(string) bool) {
					defer func() {
						close(deferred[name])
						if name == exiter {
							runtime.Goexit()
						}
					}()
					for yield(name) {
					}
				}
			}
			var stats stage.Stats
			ctx := stage.Observe(context.Background(), &stats)
			// a's Map opens (and registers its Closed) before b's source.
			a := stage.Map(source.Seq(endless("a")), func(_ context.Context, s string) (string, error) { return s, nil },
				stage.Name("a-map"), stage.Workers(1), stage.Buffer(1))
			b := source.Seq(endless("b"))
			exited := make(chan struct{})
			returned := false
			go func() {
				defer close(exited)
				seen := map[string]bool{}
				_ = sink.ForEach(ctx, stage.Merge(a, b), func(_ context.Context, s string) error {
					seen[s] = true
					if seen["a"] && seen["b"] {
						return stage.ErrStop // both iterators are under way
					}
					return nil
				})
				returned = true
			}()
			<-exited
			ran := func(name string) bool {
				select {
				case <-deferred[name]:
					return true
				default:
					return false
				}
			}
			c, _ := stats.Get("a-map")
			res = append(res, fmt.Sprintf("goexit in %s: returned %v, a stopped %v, b stopped %v, a-map running %d",
				exiter, returned, ran("a"), ran("b"), c.Running))
		}
		return fmt.Sprint(res)
	})
	if !ok {
		return
	}
	want := "[goexit in a: returned false, a stopped true, b stopped true, a-map running 0 goexit in b: returned false, a stopped true, b stopped true, a-map running 0]"
	if out != want {
		t.Fatalf("a Goexit in one Seq's deferred call, as the run stops it:\n got %s\nwant %s", out, want)
	}
}
