package stage

import (
	"fmt"
	"testing"
)

// Suspicion 2 (queue.addWorker, engine_queue.go): addWorker raises the
// capacity without waking pushExtra's waiters (canPush), so a producer
// waiting for room stays parked although there is room now. The wake-up
// that does come: a waiter in pushExtra waits only while the queue holds
// capacity items, so the queue is not empty, and the consumer's next pull
// (pull signals canPush, pullBatch broadcasts it) wakes it. In a fused
// stage the only producers that wait in pushExtra are a FlatMap's
// goroutines (further outputs of an item), whose consumer has one
// goroutine, and that consumer's handle pulls from the queue whenever
// anything is queued (ownTurn: out.ready == 0 only) before it calls the
// function itself; so the missed wake-up delays the waiter until the
// consumer's next take, which it would wait for anyway once the room it
// got is used. Harmless: no hang, no item lost, no promise about how much
// a stage buffers beyond the bound.
//
// Here, in order: a queue of capacity 1 holds one output; a producer waits
// in pushExtra; addWorker makes the capacity 2 (room for the waiter); the
// waiter is still parked (logged, not asserted: a wake-up there would be
// right too); the consumer pulls, and the waiter's output follows, with
// the order and tokens right.
func TestReview59fAddWorkerThenPullWakesPushExtra(t *testing.T) {
	for _, how := range []string{"pull", "pullBatch"} {
		t.Run(how, func(t *testing.T) {
			h := newQTest(t)
			q := newQueue[int](h.r, 1, 1)
			if !now(h, "acquire", q.acquire) {
				t.Fatal("acquire failed")
			}
			q.push(tv(0))
			w := parkedPushExtra(h, q, xv(1))
			q.addWorker()
			select {
			case <-w:
				t.Log("addWorker woke the waiter")
			default:
				t.Log("after addWorker the waiter is still parked, with room for its item (capacity 2, 1 queued)")
			}
			var got []int
			switch how {
			case "pull":
				p := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} })
				if !p.ok || p.it.v != 0 || !p.it.is(tok) {
					t.Fatalf("pull = %+v, want 0 with its token", p)
				}
				got = append(got, p.it.v)
			default:
				b := now(h, "pullBatch", func() batch[int] { items, batons, ok := q.pullBatch(nil); return batch[int]{items, batons, ok} })
				got = append(got, values(b.items)...)
			}
			if !recv(t, w, "the pushExtra waiter to go on after the consumer's take") {
				t.Fatal("pushExtra returned false: the run was not cancelled")
			}
			for len(got) < 2 {
				if how == "pull" {
					p := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} })
					if !p.ok {
						t.Fatal("the queue ended")
					}
					got = append(got, p.it.v)
					continue
				}
				b := now(h, "pullBatch", func() batch[int] { items, batons, ok := q.pullBatch(nil); return batch[int]{items, batons, ok} })
				if !b.ok {
					t.Fatal("the queue ended")
				}
				got = append(got, values(b.items)...)
			}
			if fmt.Sprint(got) != "[0 1]" {
				t.Fatalf("the consumer got %v, want [0 1]", got)
			}
			// The token of 0 is back (for pullBatch: once the sink has
			// consumed its batch), and the new worker's: 2 free.
			q.releaseHeld()
			wantFree(t, q, 2)
		})
	}
}
