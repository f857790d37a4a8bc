package stage_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview28GoexitNoNewStart: runtime.Goexit in user code of a stage of
// one worker (its function, its key, its Handle handler, its watcher) ends
// the run: no further item starts, the sink ends (returning ErrGoexit, or,
// when the user code ran on the sink's own goroutine, ending with it), and
// every goroutine of the run exits (goleak in the child).
func TestReview28GoexitNoNewStart(t *testing.T) {
	for _, where := range []string{"fn", "key", "handler", "finished", "received"} {
		for _, sk := range r28SourceKinds {
			t.Run(where+"/"+sk, func(t *testing.T) {
				runcheck.InChildTest(t, func(t *testing.T) {
					var exited atomic.Bool
					var late r28Calls
					var once sync.Once
					goexit := func() { once.Do(func() { exited.Store(true); runtime.Goexit() }) }
					ctx := context.Background()
					obs := &r28Obs{stage: func(i stage.Info) bool { return i.Name == "g" }}
					switch where {
					case "finished":
						obs.finished = func(stage.Info, error) { goexit() }
					case "received":
						obs.received = func(stage.Info) { goexit() }
					}
					ctx = stage.Observe(ctx, obs)
					opts := []stage.Option{stage.Workers(1), stage.Name("g"),
						stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
							if where == "handler" {
								goexit()
							}
							return nil
						}))}
					if where == "key" {
						opts = append(opts, stage.KeyBy(func(v int) int {
							if v == 0 {
								goexit()
							}
							return v
						}))
					}
					s := stage.Map(r28Src(sk, 20), func(_ context.Context, v int) (int, error) {
						if exited.Load() {
							late.add(v)
						}
						if v == 0 {
							switch where {
							case "fn":
								goexit()
							case "handler":
								return 0, errR28
							}
						}
						return v, nil
					}, opts...)
					var err error
					returned := false
					done := r28Go(func() {
						err = sink.ForEach(ctx, s, func(ctx context.Context, _ int) error {
							// An output queued before the Goexit may reach the
							// sink while the Goexit unwinds (a race the
							// engine cannot close); one delivered once the run
							// is cancelled may not.
							if ctx.Err() != nil {
								late.add(-1)
							}
							return nil
						})
						returned = true
					})
					r28Wait(t, done, "the sink's goroutine")
					if got := late.list(); len(got) > 0 {
						t.Errorf("started after the Goexit: %v (-1: the sink's callback)", got)
					}
					if returned && !errors.Is(err, stage.ErrGoexit) {
						t.Errorf("the sink returned %v, want ErrGoexit", err)
					}
					t.Logf("returned=%v err=%v", returned, err)
				})
			})
		}
	}
}
