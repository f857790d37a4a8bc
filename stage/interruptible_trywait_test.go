package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The Interruptible doc: "a consumer goroutine asks next for an item that is
// ready, and leaves the waiting to the stage's own workers". A consumer's
// try that meets the source's lock held may wait for the lock only while
// its holder does not wait in the source (TestReview59fTryLockMiss* check
// that it does wait for a holder taking a ready item). Here the holder
// waits: the channel is empty and open, a goroutine of the stage waits in
// its receive, and another is inside a long call whose output the sink
// must get while the channel stays empty. A sink's handle that waited for
// the lock would sit behind the receive for ever. The verdict is a state:
// the sink's goroutine parked on the stage's queue (right), or waiting for
// the source's lock in tryPull while a goroutine of the stage is parked in
// the channel's select inside the source (the fault, which nothing ends).
// A trial counts only if the sink's goroutine held a place (it made calls
// itself) and the long call ran on a goroutine of the stage.
func TestInterruptibleTryDoesNotWaitBehindAWaitingPull(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		const cheap, marker = 2000, -1
		decided := 0
		// Up to 400 trials: a trial whose marker the sink's goroutine took
		// decides nothing, and on a loaded machine (without -race, where the
		// sink's goroutine runs all 2,000 cheap calls while the stage's
		// goroutine waits for a processor) 40 in a row did.
		for trial := 0; trial < 400 && decided < 3; trial++ {
			ch := make(chan int, cheap+1)
			for i := range cheap {
				ch <- i
			}
			ch <- marker
			var sinkID, onSink atomic.Int64
			sinkID.Store(-1)
			inLong := make(chan struct{})
			gate := make(chan struct{})
			var markerOnSink atomic.Bool
			f := func(ctx context.Context, x int) (int, error) {
				if x != marker && x%256 != 0 {
					return x, nil // cheap, so that the sink's goroutine takes a place
				}
				if auditGoid() == sinkID.Load() { // a sample: only now and then, since it is slow
					onSink.Add(1)
					if x == marker {
						markerOnSink.Store(true)
					}
					return x, nil
				}
				if x == marker {
					close(inLong)
					select {
					case <-gate:
					case <-ctx.Done():
					}
				}
				return x, nil
			}
			gotMarker := make(chan struct{})
			done := make(chan error, 1)
			ready := make(chan struct{})
			go func() {
				sinkID.Store(auditGoid())
				close(ready)
				done <- sink.ForEach(context.Background(), stage.Map(source.Chan(ch), f, stage.Workers(3)), func(_ context.Context, x int) error {
					if x == marker {
						close(gotMarker)
					}
					return nil
				})
			}()
			<-ready
			select {
			case <-inLong:
			case <-gotMarker: // the marker ran on the sink's goroutine: this trial decides nothing
				close(ch)
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				continue
			}
			id := sinkID.Load()
			verdict := tryHandleVerdict(id)
			close(gate)
			if verdict == "fault" {
				t.Errorf("the sink's goroutine waits for the source's lock while a goroutine of the stage waits in the empty channel: the output of the stage's long call can never reach it")
				close(ch)
				<-done
				return
			}
			<-gotMarker // the long call's output reaches the sink while the channel is still empty
			close(ch)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if onSink.Load() > 0 && !markerOnSink.Load() {
				decided++
			}
		}
		if decided == 0 {
			t.Errorf("no trial decided anything: the sink's goroutine never held a place with the long call on a goroutine of the stage")
		}
	})
}

// The Interruptible doc: "one that answers a done context with an error
// other than the context's fails the run (io.EOF ends it) the first time it
// is asked while nothing is ready". A source of 10 ready items that then
// never has another: with a done context it answers errOther (or io.EOF),
// with the run's context it waits for that context's end. The stage's own
// goroutines ask with a done context before they wait, so the run ends
// there: failed with a *SourceError wrapping errOther, or complete (nil)
// with io.EOF; either way after every item, and never left waiting.
func TestInterruptibleOtherErrorOnADoneContext(t *testing.T) {
	errOther := errors.New("interruptible test: not the context's error")
	for _, answer := range []error{errOther, io.EOF} {
		t.Run(fmt.Sprint(answer), func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				const items = 10
				i := 0
				src := stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					return func(ctx context.Context) (int, error) {
						if i < items {
							i++
							return i, nil
						}
						if ctx.Err() != nil {
							return 0, answer
						}
						<-ctx.Done() // a live wait: nothing will ever come
						return 0, context.Cause(ctx)
					}, nil
				}))
				var got []int
				var err error
				runcheck.Run(t, fmt.Sprint(answer), func() {
					got, err = sink.Slice(context.Background(), stage.Map(src, double, stage.Workers(2)))
				})
				if len(got) != items {
					t.Errorf("got %d items, want %d", len(got), items)
				}
				var se *stage.SourceError
				switch {
				case answer == io.EOF && err != nil:
					t.Errorf("err = %v, want nil: io.EOF ends the stream", err)
				case answer == errOther && (!errors.As(err, &se) || !errors.Is(err, errOther)):
					t.Errorf("err = %v, want a *stage.SourceError wrapping the source's error", err)
				}
			})
		})
	}
}

// tryHandleVerdict waits until the consumer goroutine id, whose try met the
// source's lock held, is either parked on its stage's queue ("ok") or
// waits for the lock in tryPull while another goroutine waits in next in
// pullAfterTry ("fault": the try waits behind a wait): an order of events,
// read off the goroutines' stacks.
func tryHandleVerdict(id int64) string {
	for {
		all := review59fStacks()
		st := all[id]
		if review59fParkedOnQueue(st) {
			return "ok"
		}
		if strings.Contains(st, "sync.(*Mutex).Lock") && strings.Contains(st, "tryPull") {
			for gid, g := range all {
				head, _, _ := strings.Cut(g, "\n")
				if gid != id && strings.Contains(head, "[select") && strings.Contains(g, "pullAfterTry") {
					return "fault"
				}
			}
		}
		runtime.Gosched()
	}
}
