package stage_test

import (
	"context"
	"io"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// review61GatedChan is an Interruptible source over buf (a channel the test
// fills and closes). Once armed, the first call of next with a done
// context that finds buf empty on a goroutine other than the sink's (a
// goroutine of the stage, in the try it makes before it waits) says so by
// closing holding and returns nothing ready only once gate is closed: it
// holds the source's lock meanwhile. With the live context, next waits for
// buf.
type review61GatedChan struct {
	buf     chan int
	sinkID  atomic.Int64
	onSink  atomic.Int64 // calls of next on the sink's goroutine: its handle holds a place
	armed   atomic.Bool
	held    atomic.Bool
	holding chan struct{}
	gate    chan struct{}
	// stop: an Until's stop context (nil: none); afterStop counts the
	// calls of next that began once it was done.
	stop      context.Context
	afterStop atomic.Int64
	taken     atomic.Int64 // items next returned
}

func (s *review61GatedChan) stream() stage.Stream[int] {
	return stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) {
			if s.stop != nil && s.stop.Err() != nil {
				s.afterStop.Add(1)
			}
			if auditGoid() == s.sinkID.Load() {
				s.onSink.Add(1)
			}
			select {
			case v, ok := <-s.buf:
				if !ok {
					return 0, io.EOF
				}
				s.taken.Add(1)
				return v, nil
			default:
			}
			if ctx.Err() != nil {
				if s.armed.Load() && auditGoid() != s.sinkID.Load() && s.held.CompareAndSwap(false, true) {
					close(s.holding)
					<-s.gate
				}
				return 0, context.Cause(ctx)
			}
			select {
			case v, ok := <-s.buf:
				if !ok {
					return 0, io.EOF
				}
				s.taken.Add(1)
				return v, nil
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
		}, nil
	}))
}

// The Interruptible doc: "a consumer goroutine asks next for an item that is
// ready, and leaves the waiting to the stage's own workers" and "the
// stage's own goroutines also ask with a done context first, and call next
// with the run's context only when that found nothing ready ... (the
// stage's goroutine then lets it go first and asks again)".
//
// The pipeline-level form of TestReview61TryPullLetsADecidedTryGoFirst: a
// Map of Workers(2) fused into the sink, whose goroutine holds a place (it
// made calls of next). The source is empty and open. A goroutine of the
// stage is inside the try it makes before it waits (held at a gate, holding
// the source's lock), and the sink's handle, asking the source, has met the
// lock held and waits for it in tryPull (it decided to: the holder was not
// waiting). The gate opens. The sink's goroutine must then get its answer
// (nothing ready) and park on the stage's queue while the source stays
// empty; a goroutine of the stage that went on to wait in next while the
// sink's handle was still waiting for the lock would hold the sink for as
// long as the source stays empty. The verdict is the two goroutines'
// states, an order of events; a trial where the sink's handle did not meet
// the held lock decides nothing.
func TestReview61TryConsumerNotHeldBehindAPullThatWentOnToWait(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) { review61HeldTryTrials(t, false) })
}

// Until's doc: "Once stop is done, no source upstream is asked for another
// item", and "the sink returns nil once the last of them has arrived". The
// same moment as above (a goroutine of the stage inside the try it makes
// before it waits, the sink's handle waiting for the lock), under Until,
// whose stop is done before the try ends: the pull's back-off (it lets the
// sink's handle go first and asks again) and the handle's try must ask the
// source nothing more, every item next returned reaches the sink, and the
// sink returns nil.
func TestReview61TryUntilStopWhileATryIsDeciding(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) { review61HeldTryTrials(t, true) })
}

// review61HeldTryTrials runs trials of the moment the two tests above
// describe, until 3 decided something (the sink's handle met the held
// lock): under Until, stop is done then, before the held try ends.
func review61HeldTryTrials(t *testing.T, until bool) {
	{
		decided := 0
		for trial := 0; trial < 60 && decided < 3; trial++ {
			const warm = 4000
			s := &review61GatedChan{buf: make(chan int, warm), holding: make(chan struct{}), gate: make(chan struct{})}
			s.sinkID.Store(-1)
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			in := s.stream()
			if until {
				s.stop = stop
				in = stage.Until(in, stop)
			}
			var delivered atomic.Int64
			for i := range warm {
				s.buf <- i
			}
			got := make(chan int, warm+2) // never full: the sink never waits for the test
			done := make(chan error, 1)
			ids := make(chan int64, 1)
			go func() {
				s.sinkID.Store(auditGoid())
				ids <- s.sinkID.Load()
				done <- sink.ForEach(context.Background(), stage.Map(in, review59fIdentity, stage.Workers(2)), func(_ context.Context, x int) error {
					delivered.Add(1)
					got <- x
					return nil
				})
			}()
			id := <-ids
			for range warm {
				<-got
			}
			if s.onSink.Load() == 0 { // the sink's goroutine holds no place: nothing to decide
				drain()
				close(s.buf)
				if err := <-done; err != nil {
					t.Fatal(err)
				}
				continue
			}
			// The source is empty: arm the gate and send one item, which a
			// goroutine of the stage takes in its wait; its next pull's try
			// is held, while the sink's handle comes back for more.
			s.armed.Store(true)
			s.buf <- warm
			<-s.holding // its output may wait in the queue for the sink: got is read at the end
			met := false
			for {
				st := review59fStacks()[id]
				if review59fParkedOnQueue(st) {
					break // the sink's handle asked before the lock was taken: undecided
				}
				if strings.Contains(st, "sync.(*Mutex).Lock") && strings.Contains(st, "tryPull") {
					met = true
					break
				}
				runtime.Gosched()
			}
			if met && until {
				drain() // stop is done while the stage's try is held and the sink's handle waits for the lock
			}
			close(s.gate)
			if met && until {
				if err := <-done; err != nil {
					t.Errorf("trial %d: the sink returned %v after stop, want nil", trial, err)
				}
				if n := s.afterStop.Load(); n != 0 {
					t.Errorf("trial %d: %d call(s) of next began once stop was done", trial, n)
				}
				// The item sent last may never have been taken: the stage's
				// try may have found the source empty just before it came.
				if d, n := delivered.Load(), s.taken.Load(); d != n {
					t.Errorf("trial %d: %d delivered, want the %d items next returned", trial, d, n)
				}
				decided++
				if t.Failed() {
					return
				}
				continue
			}
			if met {
				verdict := tryHandleVerdict(id)
				if verdict == "fault" {
					t.Errorf("trial %d: the sink's handle, which decided to wait for the source's lock, waits behind a goroutine of the stage that went on to wait in the empty source", trial)
				} else {
					decided++
				}
			}
			<-got
			drain()
			close(s.buf)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if t.Failed() {
				return
			}
		}
		t.Logf("%d trial(s) decided", decided)
		if decided == 0 {
			t.Errorf("no trial decided anything: the sink's handle never met the held lock")
		}
	}
}
