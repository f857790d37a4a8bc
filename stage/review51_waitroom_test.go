package stage_test

// Review 51: the fifth sleeper of review 46, an Ordered stage's emitter
// waiting for room in its queue before it moves a running head's outputs
// (Apply's doc: "the moment they have, the outputs waiting go to the
// queue, even while f still runs"; the package doc: a cancelled run's
// goroutines exit). The parent's cancellation must wake it, though nothing
// else of the run could: every function that looks at its ctx waits on
// the gate until no goroutine sleeps in a queue any more.

import (
	"context"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r51WaitRoom builds the shape. An Ordered Apply with two workers (a
// window of four outputs) over items 0 and 1, under a Map with one worker
// that waits on the gate:
//  1. item 1 emits an output, which waits in memory (item 0 is the head
//     and runs), then waits on the gate;
//  2. item 0 emits its first output, which the Map takes and waits on
//     the gate with, then four more, which fill the queue (the fourth
//     does not wait: the queue held three);
//  3. item 0 returns: its worker moves the head on to item 1, which still
//     runs with an output waiting, and must wait for room first.
func r51WaitRoom(gate <-chan struct{}, seen chan<- r46Seen, entered func()) stage.Stream[int] {
	parked := make(chan struct{}) // item 1 emitted
	taken := make(chan struct{})  // the Map took item 0's first output
	var takenOnce sync.Once
	a := stage.Apply(source.Slice([]int{0, 1}), func(ctx context.Context, v int, emit func(int) bool) error {
		if v == 1 {
			emit(100)
			close(parked)
			<-gate
			return ctx.Err()
		}
		<-parked
		emit(0)
		<-taken
		for i := 1; i <= 4; i++ {
			emit(i)
		}
		return nil
	}, stage.Workers(2), stage.Ordered())
	return r46Blocker(a, gate, seen, func() {
		takenOnce.Do(func() { close(taken) })
		entered()
	}, stage.Workers(1))
}

// TestReview51ParentCancelWakesWaitRoom: for each kind of parent, the
// emitter asleep in waitRoom wakes at the parent's cancellation, the sink
// returns context.Canceled, the Map's ctx carries the parent's value,
// deadline and cause, and nothing of the run is left (r46WakeOnce).
func TestReview51ParentCancelWakesWaitRoom(t *testing.T) {
	sh := r46Shape{name: "wait-room", sleeps: ").waitRoom(", build: r51WaitRoom}
	for _, pk := range r46Parents {
		t.Run(pk.name, func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				for i := range 20 {
					if msg := r46WakeOnce(pk.make(), sh); msg != "" {
						t.Fatalf("run %d: %s", i, msg)
					}
				}
			})
		})
	}
}
