package stage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// panickyObserver panics in the one method named by where ("stage",
// "received", "finished", "closed"), at its third call for the per-item
// methods.
type panickyObserver struct{ where string }

func (o panickyObserver) Stage(stage.Info) stage.Watcher {
	if o.where == "stage" {
		panic("observer: Stage")
	}
	return &panickyWatcher{where: o.where}
}

type panickyWatcher struct {
	where string
	calls atomic.Int32
}

func (w *panickyWatcher) Received() {
	if w.where == "received" && w.calls.Add(1) == 3 {
		panic("observer: Received")
	}
}

func (w *panickyWatcher) Finished(time.Duration, error) {
	if w.where == "finished" && w.calls.Add(1) == 3 {
		panic("observer: Finished")
	}
}

func (w *panickyWatcher) Closed() {
	if w.where == "closed" {
		panic("observer: Closed")
	}
}

// TestObserverPanicBecomesAnError pins the Observer doc: a panic in any
// method of an observer or its watchers does not crash the process or hang
// the sink; the sink returns an error in which errors.As finds a
// *stage.PanicError. Each case runs in a child process (a crash there fails
// one case), over the three ways a stage runs: the sequential path, the
// fused path (a slice source, calls partly in the sink's goroutine), and
// goroutines of the stage's own (a source that may wait).
func TestObserverPanicBecomesAnError(t *testing.T) {
	for _, where := range []string{"stage", "received", "finished", "closed"} {
		for _, shape := range []string{"sequential", "fused", "waiting"} {
			t.Run(where+"/"+shape, func(t *testing.T) {
				out, parent := inChild(t, func() string {
					var in stage.Stream[int]
					workers := 4
					switch shape {
					case "sequential":
						in, workers = source.Slice(ints(50)), 1
					case "fused":
						in = source.Slice(ints(50))
					case "waiting":
						ch := make(chan int, 50)
						for i := range 50 {
							ch <- i
						}
						close(ch)
						in = source.Chan(ch)
					}
					ctx := stage.Observe(context.Background(), panickyObserver{where})
					_, err := sink.Count(ctx, stage.Map(in, double, stage.Workers(workers)))
					var pe *stage.PanicError
					return fmt.Sprintf("failed=%v panicError=%v (err: %v)", err != nil, errors.As(err, &pe), err)
				})
				if !parent {
					return
				}
				if !strings.HasPrefix(out, "failed=true panicError=true") {
					t.Fatalf("child outcome %q, want the run failed with a *stage.PanicError", out)
				}
			})
		}
	}
}

// TestRetryIfPredicatePanicBecomesAnError pins RetryIf's doc: a panic in
// the retryable predicate (user code) does not crash the process; the item
// fails, not retried, with a *stage.PanicError that the stage's policy
// (FailFast here) returns inside its *stage.Error. Over goroutines of the
// stage's own and the sequential path, in a child process.
func TestRetryIfPredicatePanicBecomesAnError(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprint(workers), func(t *testing.T) {
			out, parent := inChild(t, func() string {
				var calls atomic.Int32
				f := func(_ context.Context, x int) (int, error) {
					if x == 5 {
						calls.Add(1)
						return 0, errors.New("fails")
					}
					return x, nil
				}
				pred := func(error) bool { panic("predicate") }
				_, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(20)), f,
					stage.Workers(workers), stage.RetryIf(3, 0, pred)))
				var se *stage.Error
				var pe *stage.PanicError
				return fmt.Sprintf("stageError=%v panicError=%v calls=%d (err: %v)", errors.As(err, &se), errors.As(err, &pe), calls.Load(), err)
			})
			if !parent {
				return
			}
			if !strings.HasPrefix(out, "stageError=true panicError=true calls=1 ") {
				t.Fatalf("child outcome %q, want a *stage.Error wrapping a *stage.PanicError after one call", out)
			}
		})
	}
}

// countingPanicker panics in Received at its third call and counts every
// call it gets.
type countingPanicker struct {
	received, finished, closed atomic.Int32
}

func (o *countingPanicker) Stage(stage.Info) stage.Watcher { return o }
func (o *countingPanicker) Received() {
	if o.received.Add(1) == 3 {
		panic("observer: Received")
	}
}
func (o *countingPanicker) Finished(time.Duration, error) { o.finished.Add(1) }
func (o *countingPanicker) Closed()                       { o.closed.Add(1) }

// TestObserverSilencedAfterItsPanic pins the Watcher doc: after a panic,
// the watcher is told nothing more in that run but its Closed (once). Over
// one worker, whose calls are in order: the third Received panics, so the
// watcher saw exactly 3 Received and the 2 Finished before it.
func TestObserverSilencedAfterItsPanic(t *testing.T) {
	out, parent := inChild(t, func() string {
		o := &countingPanicker{}
		_, err := sink.Count(stage.Observe(context.Background(), o), stage.Map(source.Slice(ints(50)), double, stage.Workers(1)))
		var pe *stage.PanicError
		return fmt.Sprintf("panicError=%v received=%d finished=%d closed=%d", errors.As(err, &pe), o.received.Load(), o.finished.Load(), o.closed.Load())
	})
	if !parent {
		return
	}
	if out != "panicError=true received=3 finished=2 closed=1" {
		t.Fatalf("child outcome %q, want the run failed with a *stage.PanicError, 3 Received, 2 Finished and 1 Closed", out)
	}
}

// TestRetryIfNotAskedAfterTheLastAttempt pins RetryIf's doc: the predicate
// sees the error of each attempt that another could follow, not the last
// allowed one's: 3 attempts, 2 questions.
func TestRetryIfNotAskedAfterTheLastAttempt(t *testing.T) {
	var asked, calls atomic.Int32
	f := func(context.Context, int) (int, error) { calls.Add(1); return 0, errors.New("fails") }
	pred := func(error) bool { asked.Add(1); return true }
	_, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(1)), f, stage.RetryIf(3, 0, pred)))
	var se *stage.Error
	if !errors.As(err, &se) || se.Attempts != 3 || calls.Load() != 3 || asked.Load() != 2 {
		t.Fatalf("err %v, %d calls, predicate asked %d times; want a *stage.Error after 3 attempts and 2 questions", err, calls.Load(), asked.Load())
	}
}
