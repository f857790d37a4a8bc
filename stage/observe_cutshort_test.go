package stage_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// errsWatcher records every error its stages' Finished got, by stage name.
type errsWatcher struct {
	mu   sync.Mutex
	errs map[string][]error
}

func (o *errsWatcher) Stage(info stage.Info) stage.Watcher { return &errsStage{o, info.Name} }

type errsStage struct {
	o    *errsWatcher
	name string
}

func (s *errsStage) Received() {}
func (s *errsStage) Closed()   {}
func (s *errsStage) Finished(_ time.Duration, err error) {
	s.o.mu.Lock()
	defer s.o.mu.Unlock()
	s.o.errs[s.name] = append(s.o.errs[s.name], err)
}

// TestCutShortCallIsNeitherSuccessNorFailure pins Watcher.Finished's doc:
// a call that ended because the run did gets an error that errors.Is
// context.Canceled and that neither is nor wraps an *Error, whatever the
// function returned (here context.Cause(ctx), which is the other stage's
// *Error), and Stats does not count it as failed. The downstream stage's
// calls wait, holding, until the upstream stage fails its third item with
// FailFast.
func TestCutShortCallIsNeitherSuccessNorFailure(t *testing.T) {
	for _, returns := range []string{"cause", "ctx.Err"} {
		t.Run(returns, func(t *testing.T) {
			held := make(chan struct{}, 8)
			up := stage.Map(source.Slice(ints(8)), func(_ context.Context, x int) (int, error) {
				if x == 6 {
					for range 2 { // both downstream calls are waiting
						<-held
					}
					return 0, errors.New("upstream fails")
				}
				return x, nil
			}, stage.Workers(1), stage.Buffer(8), stage.Name("up"))
			down := stage.Map(up, func(ctx context.Context, x int) (int, error) {
				held <- struct{}{}
				<-ctx.Done()
				if returns == "cause" {
					return 0, context.Cause(ctx)
				}
				return 0, ctx.Err()
			}, stage.Workers(2), stage.Buffer(1), stage.Name("down"))
			var stats stage.Stats
			w := &errsWatcher{errs: map[string][]error{}}
			ctx := stage.Observe(stage.Observe(context.Background(), &stats), w)
			_, err := sink.Count(ctx, down)
			var se *stage.Error
			if !errors.As(err, &se) || se.Stage != "up" {
				t.Fatalf("run error %v, want up's *stage.Error", err)
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.errs["down"]) < 2 {
				t.Fatalf("down finished %d calls, want at least 2", len(w.errs["down"]))
			}
			for _, e := range w.errs["down"] {
				var inner *stage.Error
				if !errors.Is(e, context.Canceled) || errors.As(e, &inner) {
					t.Errorf("down's cut-short call finished with %v (%T): want errors.Is context.Canceled and no *stage.Error inside", e, e)
				}
			}
			if c, _ := stats.Get("down"); c.Failed != 0 || c.Finished != c.Received {
				t.Errorf("down's counts %+v: want no failure, every received call finished", c)
			}
			if c, _ := stats.Get("up"); c.Failed != 1 {
				t.Errorf("up's counts %+v: want 1 failure", c)
			}
		})
	}
}
