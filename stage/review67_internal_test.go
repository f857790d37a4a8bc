package stage

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/internal/ctxtest"
)

// r67Outlet is an outlet that records what reached it.
type r67Outlet struct{ puts, ends int }

func (o *r67Outlet) begin(int)          {}
func (o *r67Outlet) put(item[int]) bool { o.puts++; return true }
func (o *r67Outlet) end() bool          { o.ends++; return true }

var errR67 = errors.New("r67: the run's failure")

// r67Step opens a Map-shaped stage with opts in a run that has already
// ended (as a FailFast failure ends it, or the caller's own context type
// whose end a watcher passes on a moment later) and hands it one item, taken
// before that end: the item's call is not started, and the goroutine is
// told to stop. The decision is the step's own, not the timing's: the run
// is cancelled before the step begins.
func r67Step(t *testing.T, ownCtx bool, opts ...Option) {
	t.Helper()
	parent := context.Context(context.Background())
	var own *ctxtest.DoneCtx
	if ownCtx {
		own = ctxtest.NewDoneCtx()
		parent = own
	}
	r := newRun(parent)
	defer r.finish()
	var cfg config
	cfg.set("stage.Map", "map", opts)
	calls := 0
	p := newProcessor(r, cfg.forRun(r, &node{}), func(context.Context, int, emitter[int]) error {
		calls++
		return nil
	})
	var out r67Outlet
	var s stepper[int, int]
	p.initStepper(&s, &out)
	r.start()
	if ownCtx {
		own.Cancel() // the run learns of it from a watcher: ending, maybe not cancelled yet
	} else {
		r.fail(errR67)
	}
	if s.process(item[int]{v: 1}, 0) {
		t.Error("process reported that the goroutine goes on after the run ended")
	}
	if calls != 0 || out.puts != 0 || out.ends != 0 {
		t.Errorf("after the run ended: %d calls, %d outputs, %d ends; want none", calls, out.puts, out.ends)
	}
}

// TestReview67NoCallStartsAfterEnd: FailFast's "no new item starts", for an
// item a goroutine took before the end and steps after it (a Workers(-1)
// goroutine that starts late did so in 297 of 300 black-box runs), on the
// plain path and under Retry, Timeout and RateLimit.
func TestReview67NoCallStartsAfterEnd(t *testing.T) {
	for _, own := range []bool{false, true} {
		t.Run(fmt.Sprintf("ownctx=%v", own), func(t *testing.T) {
			t.Run("plain", func(t *testing.T) { r67Step(t, own) })
			t.Run("retry", func(t *testing.T) { r67Step(t, own, Retry(3, 0)) })
			t.Run("timeout", func(t *testing.T) { r67Step(t, own, Timeout(1<<62)) })
			t.Run("ratelimit", func(t *testing.T) { r67Step(t, own, RateLimit(1, 1)) })
		})
	}
}

// TestReview67NoTokenTakenAfterEnd: waitToken takes no token of a limiter
// once its context is done, so that a run that ended leaves a shared
// limiter's tokens to the runs still going.
func TestReview67NoTokenTakenAfterEnd(t *testing.T) {
	l := rate.NewLimiter(1e-9, 2)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 3 {
		if err := waitToken(ctx, l); !errors.Is(err, context.Canceled) {
			t.Fatalf("waitToken over a done context: %v; want context.Canceled", err)
		}
	}
	if n := l.Tokens(); n < 1.999 {
		t.Errorf("the limiter holds %.3f tokens after waits over a done context; want its burst, 2", n)
	}
}
