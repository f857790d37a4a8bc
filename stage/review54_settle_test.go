package stage_test

// Review 54: settle's loop over Until's hooks now reads them from the
// run's opening part. A Goexit while a hook is stopped at finish (a stop
// context's Value calling t.FailNow) runs settle again from its deferred
// call, for the hooks left: with several Untils, each stop's Goexit must
// leave the others' hooks still stopped, the run's goroutines waited for
// and its cleanups run (the sources stopped), and no goroutine behind.

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r54StopGoexits is a stop context whose Value ends the calling goroutine
// (once) when its hook is stopped at finish, on the sink's goroutine.
type r54StopGoexits struct {
	context.Context
	armed   *atomic.Bool
	sink    *atomic.Int64
	goexits atomic.Int32
}

func (c *r54StopGoexits) Value(key any) any {
	if c.armed.Load() && r47Goid() == c.sink.Load() && calledFrom("github.com/sluicedev/sluice/stage.(*run).unhook") && c.goexits.CompareAndSwap(0, 1) {
		runtime.Goexit()
	}
	return c.Context.Value(key)
}

func TestReview54SettleGoexitInEveryUntilHook(t *testing.T) {
	for _, untils := range []int{2, 3} {
		runcheckInChild(t, func(t *testing.T) {
			var armed atomic.Bool
			var sink atomic.Int64
			inner, cancel := context.WithCancel(context.Background())
			defer cancel()
			stops := make([]*r54StopGoexits, untils)
			stopped := make([]atomic.Bool, untils)
			// Nested: source i is under the Untils of stops i, i+1, ...
			var in stage.Stream[int]
			for i := range stops {
				stops[i] = &r54StopGoexits{Context: inner, armed: &armed, sink: &sink}
				src := countingSource(func() {}, &stopped[i])
				if i > 0 {
					src = stage.Merge(in, src)
				}
				in = stage.Until(src, stops[i])
			}
			_, before := runcheck.Goroutines()
			returned := false
			runcheck.NoHang(t, "the sink's goroutine", func() {
				done := make(chan struct{})
				go func() {
					defer close(done)
					sink.Store(r47Goid())
					_ = stage.Run(context.Background(), stage.Map(in, double, stage.Workers(2)), func(context.Context, int, error) error {
						armed.Store(true)
						return stage.ErrStop
					})
					returned = true
				}()
				<-done
			})
			if returned {
				t.Fatal("stage.Run returned after a Goexit on its goroutine")
			}
			for i, s := range stops {
				if s.goexits.Load() == 0 {
					t.Fatalf("the hook of stop %d was not stopped on the sink's goroutine after an earlier Goexit (or the scenario did not happen)", i)
				}
			}
			for i := range stopped {
				if !stopped[i].Load() {
					t.Fatalf("source %d was never stopped", i)
				}
			}
			if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
				t.Fatalf("%d goroutine(s) of the run alive after the sink's goroutine ended:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			}
		})
	}
}
