package stage_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review60Cheap is a cheap function, so that consumer goroutines take
// places of a fused stage; every 64th call yields, so that the goroutines
// interleave on a loaded machine.
func review60Cheap(_ context.Context, x int) (int, error) {
	if x%64 == 0 {
		runtime.Gosched()
	}
	return x, nil
}

// review60Bursts feeds ch in bursts and, after each, waits until the sink
// got every output of the burst while ch stays empty and open: the
// Interruptible doc's "a consumer goroutine asks next for an item that is
// ready, and leaves the waiting to the stage's own workers". A consumer
// goroutine that sat in next, or in the source's lock behind a pull that
// waits in next, would hold the burst's last outputs for ever (the child's
// watchdog). It returns the number of items sent.
func review60Bursts(ch chan<- int, got <-chan int, bursts int) int {
	sent := 0
	for b := range bursts {
		size := 1 + (b*37)%97
		for i := range size {
			ch <- sent + i
		}
		for range size {
			<-got
		}
		sent += size
	}
	return sent
}

// 4f91cdd: many workers (128) of a fused stage over source.Chan feeding a
// Map of several workers (several consumer goroutines, each a handle that
// tries the source), and a sink directly over the fused stage; unbuffered
// and buffered channels. Every burst reaches the sink while the channel
// stays empty (see review60Bursts), and the run ends with nil when the
// channel closes.
func TestReview60InterruptibleBurstsManyWorkers(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		shapes := map[string]func(stage.Stream[int]) stage.Stream[int]{
			"sink": func(s stage.Stream[int]) stage.Stream[int] { return s },
			"map4": func(s stage.Stream[int]) stage.Stream[int] {
				return stage.Map(s, review60Cheap, stage.Workers(4))
			},
			"map4-buffered": func(s stage.Stream[int]) stage.Stream[int] {
				return stage.Map(s, review60Cheap, stage.Workers(4), stage.Buffer(1))
			},
		}
		for name, shape := range shapes {
			for _, workers := range []int{2, 3, 128} {
				for _, capacity := range []int{0, 16} {
					ch := make(chan int, capacity)
					got := make(chan int, 128)
					s := shape(stage.Map(source.Chan(ch), review60Cheap, stage.Workers(workers)))
					done := make(chan error, 1)
					go func() {
						done <- sink.ForEach(context.Background(), s, func(_ context.Context, x int) error {
							got <- x
							return nil
						})
					}()
					review60Bursts(ch, got, 40)
					close(ch)
					if err := <-done; err != nil {
						t.Fatalf("%s, Workers(%d), cap %d: %v", name, workers, capacity, err)
					}
				}
			}
		}
	})
}

// 4f91cdd with Until: stop comes while the channel is empty and a goroutine
// of the stage waits in it (every burst was delivered, the channel is open).
// Until's doc: a source blocked waiting sees its context end and stops
// quietly, and the sink returns nil once the items produced have arrived.
func TestReview60InterruptibleUntilDrainWhileWaiting(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, workers := range []int{2, 64} {
			for trial := range 5 {
				ch := make(chan int)
				got := make(chan int, 128)
				stop, drain := context.WithCancel(context.Background())
				s := stage.Map(stage.Until(source.Chan(ch), stop), review60Cheap, stage.Workers(workers))
				s = stage.Map(s, review60Cheap, stage.Workers(3))
				var delivered atomic.Int64
				done := make(chan error, 1)
				go func() {
					done <- sink.ForEach(context.Background(), s, func(_ context.Context, x int) error {
						delivered.Add(1)
						got <- x
						return nil
					})
				}()
				sent := review60Bursts(ch, got, 5+trial)
				drain()
				if err := <-done; err != nil {
					t.Fatalf("Workers(%d): drained while waiting: %v, want nil", workers, err)
				}
				if d := delivered.Load(); d != int64(sent) {
					t.Fatalf("Workers(%d): %d delivered, want %d", workers, d, sent)
				}
			}
		}
	})
}

// review60WaitingSource is an Interruptible source over ch whose next, once
// called with a live context while ch is empty (a goroutine of the stage
// waiting in the source, after its try found nothing), does what fault
// says: panic, or runtime.Goexit. With fault "try-panic" or "try-goexit",
// it does so in a try instead (a done context, ch empty), unless it runs on
// the goroutine whose id is spared (the sink's: a Goexit there would end
// the sink's goroutine, ErrGoexit's documented exception). Otherwise a
// try answers at once.
func review60WaitingSource(ch chan int, fault string, spared int64) stage.Stream[int] {
	return stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) {
			select {
			case v, ok := <-ch:
				if !ok {
					return 0, io.EOF
				}
				return v, nil
			default:
			}
			if ctx.Err() != nil {
				if auditGoid() != spared {
					switch fault {
					case "try-panic":
						panic("review60: try")
					case "try-goexit":
						runtime.Goexit()
					}
				}
				return 0, context.Cause(ctx)
			}
			switch fault {
			case "panic":
				panic("review60: live wait")
			case "goexit":
				runtime.Goexit()
			case "try-panic", "try-goexit":
				return 0, io.EOF // a live wait of these: the end (the stage's own try came first)
			}
			select {
			case v, ok := <-ch:
				if !ok {
					return 0, io.EOF
				}
				return v, nil
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
		}, nil
	}))
}

// 4f91cdd: a panic or a runtime.Goexit in next during the live wait (the
// waiting flag is set, the source's lock held), or during a try (a
// stage goroutine's, before it waits, or a consumer worker's, while other
// tries may be counted as deciding), must neither leave the lock held nor
// the flag set in a way that hangs the run's goroutines: the run fails with a *SourceError (Source: "a panic in
// open, next or stop becomes a *SourceError") or ErrGoexit (its doc: a
// goroutine of the run ended by Goexit), and every goroutine exits.
func TestReview60InterruptibleFaultInLiveWait(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, fault := range []string{"panic", "goexit", "try-panic", "try-goexit"} {
			for _, workers := range []int{2, 100} {
				for trial := range 5 {
					ch := make(chan int, 64)
					for i := range 10 + trial*13 {
						ch <- i
					}
					var err error
					runcheck.Run(t, fault, func() {
						s := stage.Map(review60WaitingSource(ch, fault, auditGoid()), review60Cheap, stage.Workers(workers))
						s = stage.Map(s, review60Cheap, stage.Workers(2)) // fused: at most the stage's workers
						err = sink.ForEach(context.Background(), s, func(context.Context, int) error { return nil })
					})
					switch fault {
					case "panic", "try-panic":
						var se *stage.SourceError
						var pe *stage.PanicError
						if !errors.As(err, &se) || !errors.As(err, &pe) {
							t.Fatalf("Workers(%d): panic in the live wait: %v, want a *SourceError with a *PanicError", workers, err)
						}
					case "goexit", "try-goexit":
						if !errors.Is(err, stage.ErrGoexit) {
							t.Fatalf("Workers(%d): Goexit in the live wait: %v, want ErrGoexit", workers, err)
						}
					}
				}
			}
		}
	})
}

// review60Ack counts its Done calls.
type review60Ack struct {
	calls *atomic.Int64
	twice *atomic.Int64
	done  atomic.Bool
}

func (a *review60Ack) Done(err error) {
	if a.done.Swap(true) {
		a.twice.Add(1)
	}
	if err == nil {
		a.calls.Add(1)
	}
}

// 4f91cdd: an AckSource marked Interruptible, in bursts, under a fused stage
// of many workers and a Map of several: every item is delivered and
// acknowledged once with nil (Ack: "Done is called at most once per item";
// Done(nil) when the sink committed it), with the stage's goroutines now
// trying the source before waiting in it.
func TestReview60InterruptibleAckSourceBursts(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, workers := range []int{2, 128} {
			ch := make(chan int)
			got := make(chan int, 128)
			var acked, twice atomic.Int64
			src := stage.Interruptible(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
				return func(ctx context.Context) (int, stage.Ack, error) {
					select {
					case v, ok := <-ch:
						if !ok {
							return 0, nil, io.EOF
						}
						return v, &review60Ack{calls: &acked, twice: &twice}, nil
					case <-ctx.Done():
						return 0, nil, context.Cause(ctx)
					}
				}, nil
			}))
			s := stage.Map(stage.Map(src, review60Cheap, stage.Workers(workers)), review60Cheap, stage.Workers(3))
			done := make(chan error, 1)
			go func() {
				done <- sink.ForEach(context.Background(), s, func(_ context.Context, x int) error {
					got <- x
					return nil
				})
			}()
			sent := review60Bursts(ch, got, 30)
			close(ch)
			if err := <-done; err != nil {
				t.Fatalf("Workers(%d): %v", workers, err)
			}
			if a, tw := acked.Load(), twice.Load(); a != int64(sent) || tw != 0 {
				t.Fatalf("Workers(%d): %d acknowledged with nil (%d twice), want %d once", workers, a, tw, sent)
			}
		}
	})
}
