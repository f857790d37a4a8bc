package stage

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The queue's tests depend only on the order of events. A goroutine that
// must be waiting is observed waiting (a counter read under the queue's
// mutex, or its stack), never assumed so after a delay; time only bounds a
// wait, to report a hang rather than assert a duration.

// queueHang is how long a queue test waits for an event before it reports a
// hang.
const queueHang = 20 * time.Second

// qtest is one queue test: its run and the goroutines it started.
type qtest struct {
	t  *testing.T
	r  *run
	wg sync.WaitGroup
}

// newQTest makes a test's run. When the test ends the run is finished,
// which cancels it and so wakes every wait of its queues, and the test's
// goroutines are waited for, so that none is left behind.
func newQTest(t *testing.T) *qtest { return newQTestIn(t, context.Background()) }

// newQTestIn is newQTest with a run whose parent context is parent.
func newQTestIn(t *testing.T, parent context.Context) *qtest {
	h := &qtest{t: t, r: newRun(parent)}
	t.Cleanup(func() {
		h.r.finish()
		done := make(chan struct{})
		go func() {
			h.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(queueHang):
			t.Error("hang: a goroutine of the test did not end once the run was finished")
		}
	})
	return h
}

// async runs f in a goroutine of the test; its result comes on the channel.
func async[V any](h *qtest, f func() V) <-chan V {
	ch := make(chan V, 1)
	h.wg.Go(func() { ch <- f() })
	return ch
}

// recv receives what from ch, failing the test on a hang.
func recv[V any](t *testing.T, ch <-chan V, what string) V {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(queueHang):
		t.Fatalf("hang: waited for %s", what)
		panic("unreachable")
	}
}

// now runs f, which must return without waiting for anything else the test
// does, and fails the test on a hang.
func now[V any](h *qtest, what string, f func() V) V {
	h.t.Helper()
	return recv(h.t, async(h, f), what)
}

// notYet fails the test if what has already returned on ch.
func notYet[V any](t *testing.T, ch <-chan V, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s returned (%v) before it could", what, v)
	default:
	}
}

// eventually waits until cond holds, yielding the processor between looks.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(queueHang)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("hang: waited for %s", what)
		}
		runtime.Gosched()
	}
}

// locked returns f() evaluated under the queue's mutex.
func locked[T, V any](q *queue[T], f func() V) V {
	q.mu.Lock()
	defer q.mu.Unlock()
	return f()
}

// pulled is what a pull returned.
type pulled[T any] struct {
	it  item[T]
	idx int
	ok  bool
}

// batch is what a pullBatch returned.
type batch[T any] struct {
	items  []item[T]
	batons int
	ok     bool
}

// Consumers waiting in pull or pullBatch are counted by q.waiting, producers
// waiting in acquire by q.tokWait, both changed under q.mu on either side of
// the sync.Cond wait: a count read under q.mu that includes a goroutine means
// that goroutine is in its wait (registered with the Cond, so that a signal
// reaches it).

// parkedPull starts a pull and returns once it waits for an item.
func parkedPull[T any](h *qtest, q *queue[T]) <-chan pulled[T] {
	h.t.Helper()
	n := locked(q, func() int { return q.waiting })
	ch := async(h, func() pulled[T] {
		it, idx, ok := q.pull()
		return pulled[T]{it, idx, ok}
	})
	eventually(h.t, "a consumer to wait in pull", func() bool {
		return locked(q, func() bool { return q.waiting == n+1 })
	})
	return ch
}

// parkedPullBatch starts a pullBatch and returns once it waits for an item.
func parkedPullBatch[T any](h *qtest, q *queue[T]) <-chan batch[T] {
	h.t.Helper()
	n := locked(q, func() int { return q.waiting })
	ch := async(h, func() batch[T] {
		items, batons, ok := q.pullBatch(nil)
		return batch[T]{items, batons, ok}
	})
	eventually(h.t, "a consumer to wait in pullBatch", func() bool {
		return locked(q, func() bool { return q.waiting == n+1 })
	})
	return ch
}

// parkedAcquire starts an acquire and returns once it waits for a token.
func parkedAcquire[T any](h *qtest, q *queue[T]) <-chan bool {
	h.t.Helper()
	n := locked(q, func() int64 { return q.tokWait.Load() })
	ch := async(h, q.acquire)
	eventually(h.t, "a producer to wait in acquire", func() bool {
		return locked(q, func() bool { return q.tokWait.Load() == n+1 })
	})
	return ch
}

// parkedPushExtra starts a pushExtra and returns once it waits for room.
// Nothing counts those waiters, so it looks at the goroutine's stack.
func parkedPushExtra[T any](h *qtest, q *queue[T], it item[T]) <-chan bool {
	h.t.Helper()
	ids := make(chan int64, 1)
	ch := async(h, func() bool {
		ids <- goid()
		return q.pushExtra(it)
	})
	id := recv(h.t, ids, "the pushExtra goroutine to start")
	eventually(h.t, "a producer to wait in pushExtra", func() bool {
		return condWaitIn(id, ").pushExtra(")
	})
	return ch
}

// goid is the calling goroutine's id, as its stack trace prints it.
func goid() int64 {
	var buf [64]byte
	s := strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine ")
	id, err := strconv.ParseInt(s[:strings.IndexByte(s, ' ')], 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

// condWaitIn reports whether goroutine id is in a sync.Cond wait, called
// from a function whose printed name contains fn.
func condWaitIn(id int64, fn string) bool {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	head := fmt.Sprintf("goroutine %d [sync.Cond.Wait", id)
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.HasPrefix(g, head) {
			return strings.Contains(g, fn)
		}
	}
	return false
}

// tv is a value that carries its item's token; xv one that carries none.
func tv(v int) item[int] { return item[int]{v: v, flags: tok} }
func xv(v int) item[int] { return item[int]{v: v} }

func values(items []item[int]) []int {
	vs := make([]int, len(items))
	for i, it := range items {
		vs[i] = it.v
	}
	return vs
}

// wantFree checks the count of free tokens.
func wantFree[T any](t *testing.T, q *queue[T], want int64) {
	t.Helper()
	if got := q.free.Load(); got != want {
		t.Fatalf("free tokens = %d, want %d", got, want)
	}
}

// TestQueueTokenBound: with capacity c, at most c acquires succeed until a
// token comes back. An acquire beyond waits, whatever the consumer does that
// gives no token back (taking an output without a token; the sink taking a
// batch, whose tokens it holds while it consumes it), and returns once a
// token comes back: the consumer pulls an output that carries one, a
// producer releases one, or the sink comes back for its next batch
// (pullBatch) or says it consumed the last one (releaseHeld).
func TestQueueTokenBound(t *testing.T) {
	const c = 3
	cases := []struct {
		name string
		// idle is what the consumer does that gives no token back; back
		// gives one back.
		idle, back func(h *qtest, q *queue[int])
		free       int64 // free tokens once the waiting acquire took one
	}{
		{
			name: "pull",
			idle: func(h *qtest, q *queue[int]) {
				if p := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} }); !p.ok || p.it.v != 100 || p.it.is(tok) {
					h.t.Fatalf("first pull = %+v, want the output without a token", p)
				}
			},
			back: func(h *qtest, q *queue[int]) {
				if p := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} }); !p.ok || p.it.v != 0 || !p.it.is(tok) {
					h.t.Fatalf("second pull = %+v, want the first output with a token", p)
				}
			},
			free: 0,
		},
		{
			name: "release",
			idle: func(h *qtest, q *queue[int]) {
				now(h, "pull", func() bool { _, _, ok := q.pull(); return ok })
			},
			back: func(h *qtest, q *queue[int]) { q.release(1) },
			free: 0,
		},
		{
			name: "pullBatch",
			idle: func(h *qtest, q *queue[int]) {
				b := now(h, "pullBatch", func() []item[int] { dst, _, _ := q.pullBatch(nil); return dst })
				if len(b) != c+1 || q.held != c {
					h.t.Fatalf("pullBatch took %v holding %d tokens, want %d items holding %d", values(b), q.held, c+1, c)
				}
			},
			back: func(h *qtest, q *queue[int]) {
				now(h, "pushExtra", func() bool { return q.pushExtra(xv(200)) })
				now(h, "pullBatch", func() []item[int] { dst, _, _ := q.pullBatch(nil); return dst })
			},
			free: c - 1,
		},
		{
			name: "releaseHeld",
			idle: func(h *qtest, q *queue[int]) {
				now(h, "pullBatch", func() []item[int] { dst, _, _ := q.pullBatch(nil); return dst })
			},
			back: func(h *qtest, q *queue[int]) {
				if !q.releaseHeld() {
					h.t.Error("releaseHeld reported no producer waiting; one was")
				}
			},
			free: c - 1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newQTest(t)
			q := newQueue[int](h.r, c, 1)
			for i := range c {
				if !now(h, "acquire", q.acquire) {
					t.Fatalf("acquire %d of %d failed", i+1, c)
				}
			}
			wantFree(t, q, 0)
			// Outputs: one without a token, then one per token.
			if !now(h, "pushExtra", func() bool { return q.pushExtra(xv(100)) }) {
				t.Fatal("pushExtra failed")
			}
			for i := range c {
				q.push(tv(i))
			}
			got := parkedAcquire(h, q)
			tc.idle(h, q)
			notYet(t, got, "acquire beyond capacity")
			wantFree(t, q, 0)
			tc.back(h, q)
			if !recv(t, got, "the waiting acquire to return once a token came back") {
				t.Fatal("acquire returned false: the run was not cancelled")
			}
			wantFree(t, q, tc.free)
		})
	}
}

// TestQueuePushExtraWaitsWhileFull: an output without a token waits while the
// queue holds capacity items, whatever carried them there, and goes in once
// the consumer takes one (pull) or all (pullBatch, which lets every waiting
// producer go).
func TestQueuePushExtraWaitsWhileFull(t *testing.T) {
	t.Run("pull", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 2, 1)
		now(h, "acquire", q.acquire)
		q.push(tv(0))
		if !now(h, "pushExtra", func() bool { return q.pushExtra(xv(1)) }) {
			t.Fatal("pushExtra into a queue with room failed")
		}
		got := parkedPushExtra(h, q, xv(2))
		now(h, "acquire", q.acquire) // the producers' other token: no room
		q.release(1)
		notYet(t, got, "pushExtra into a full queue")
		p := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} })
		if p.it.v != 0 {
			t.Fatalf("pull = %+v, want item 0", p)
		}
		if !recv(t, got, "the waiting pushExtra to return once the consumer pulled") {
			t.Fatal("pushExtra returned false: the run was not cancelled")
		}
		if size := locked(q, func() int { return q.size }); size != 2 {
			t.Fatalf("size = %d, want 2", size)
		}
		for want := 1; want <= 2; want++ {
			if p := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} }); p.it.v != want {
				t.Fatalf("pull = %+v, want item %d", p, want)
			}
		}
	})
	t.Run("pullBatch", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 2, 2)
		for i := range 2 {
			if !now(h, "pushExtra", func() bool { return q.pushExtra(xv(i)) }) {
				t.Fatal("pushExtra into a queue with room failed")
			}
		}
		a := parkedPushExtra(h, q, xv(2))
		b := parkedPushExtra(h, q, xv(3))
		if got := now(h, "pullBatch", func() []item[int] { dst, _, _ := q.pullBatch(nil); return dst }); fmt.Sprint(values(got)) != "[0 1]" {
			t.Fatalf("pullBatch = %v, want [0 1]", values(got))
		}
		// Both go in: the batch emptied the queue.
		if !recv(t, a, "the first waiting pushExtra") || !recv(t, b, "the second waiting pushExtra") {
			t.Fatal("pushExtra returned false: the run was not cancelled")
		}
	})
}

// TestQueueFIFOAndIndexes: items come out in the order they went in, however
// they went in (push, pushExtra, pushBatch) and however they come out (pull,
// pullBatch), also when the ring wraps around and grows; the index pull
// returns counts the items taken before (pullBatch's included), batons not
// counted, and a baton keeps its place in the order.
func TestQueueFIFOAndIndexes(t *testing.T) {
	h := newQTest(t)
	q := newQueue[int](h.r, 1000, 1)
	const batonV = -1
	var model []int // what is queued, batonV for a baton
	next := 0       // the next value, which is also its index
	push := func(n int) {
		for range n {
			if !now(h, "acquire", q.acquire) {
				t.Fatal("acquire failed")
			}
			q.push(tv(next))
			model = append(model, next)
			next++
		}
	}
	pushExtra := func(n int) {
		for range n {
			if !now(h, "pushExtra", func() bool { return q.pushExtra(xv(next)) }) {
				t.Fatal("pushExtra failed")
			}
			model = append(model, next)
			next++
		}
	}
	pushBatch := func(n int) {
		var items []item[int]
		for i := range n {
			if i%2 == 0 && !now(h, "acquire", q.acquire) {
				t.Fatal("acquire failed")
			}
			items = append(items, item[int]{v: next, flags: tokIf(i%2 == 0)})
			model = append(model, next)
			next++
		}
		q.pushBatch(items, 0)
	}
	addBaton := func() {
		q.addWorker()
		q.retireWorker(false)
		model = append(model, batonV)
	}
	taken := 0 // items taken, batons not counted
	pull := func(n int) {
		t.Helper()
		for range n {
			p := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} })
			want := model[0]
			model = model[1:]
			switch {
			case !p.ok:
				t.Fatalf("pull ended the queue with %d items queued", len(model)+1)
			case want == batonV:
				if !p.it.is(baton) || p.idx != taken {
					t.Fatalf("pull = %+v, want a baton with index %d", p, taken)
				}
			case p.it.is(baton) || p.it.v != want || p.idx != taken:
				t.Fatalf("pull = %+v, want item %d with index %d", p, want, taken)
			default:
				taken++
			}
		}
	}
	pullBatch := func() {
		t.Helper()
		b := now(h, "pullBatch", func() batch[int] { items, batons, ok := q.pullBatch(nil); return batch[int]{items, batons, ok} })
		var want []int
		batons := 0
		for _, v := range model {
			if v == batonV {
				batons++
			} else {
				want = append(want, v)
			}
		}
		model = nil
		if !b.ok || fmt.Sprint(values(b.items)) != fmt.Sprint(want) || b.batons != batons {
			t.Fatalf("pullBatch = %v with %d batons (ok=%v), want %v with %d", values(b.items), b.batons, b.ok, want, batons)
		}
		taken += len(want)
		if q.releaseHeld() {
			t.Fatal("releaseHeld reported a producer waiting; none was")
		}
	}

	push(5)
	pull(3) // the head moves on
	pushExtra(3)
	pushBatch(4) // 9 queued from head 3 of 8: wraps, then grows
	addBaton()
	push(2)
	pull(len(model))
	push(3)
	addBaton()
	pushBatch(3)
	addBaton()
	pushExtra(2)
	pullBatch()
	pushBatch(1)
	push(1)
	pull(2) // indexes go on after the batch
	for range 20 {
		push(1)
		pushExtra(1)
		pull(1)
	}
	pull(len(model))
	if taken != next {
		t.Fatalf("took %d items, want %d", taken, next)
	}
	if got := locked(q, func() int { return q.taken }); got != next {
		t.Fatalf("q.taken = %d, want %d", got, next)
	}
}

// TestQueuePullBatch: pullBatch takes everything queued at once, and holds
// the tokens of its batch: they come back only when the sink comes back for
// the next batch (at the start of it, even if it then waits) or says it
// consumed the batch (releaseHeld, once).
func TestQueuePullBatch(t *testing.T) {
	h := newQTest(t)
	const c = 3
	q := newQueue[int](h.r, c, 1)
	fill := func() {
		for i := range c {
			if !now(h, "acquire", q.acquire) {
				t.Fatal("acquire failed")
			}
			q.push(tv(i))
		}
		wantFree(t, q, 0)
	}
	pullBatch := func() []item[int] {
		return now(h, "pullBatch", func() []item[int] { dst, _, _ := q.pullBatch(nil); return dst })
	}

	fill()
	if got := pullBatch(); fmt.Sprint(values(got)) != "[0 1 2]" {
		t.Fatalf("pullBatch = %v, want [0 1 2]", values(got))
	}
	if size := locked(q, func() int { return q.size }); size != 0 || q.held != c {
		t.Fatalf("after pullBatch: size %d, held %d; want 0 and %d", size, q.held, c)
	}
	wantFree(t, q, 0)
	if q.releaseHeld() {
		t.Error("releaseHeld reported a producer waiting; none was")
	}
	wantFree(t, q, c)
	q.releaseHeld() // nothing held: nothing given twice
	wantFree(t, q, c)

	fill()
	pullBatch()
	now(h, "pushExtra", func() bool { return q.pushExtra(xv(9)) })
	wantFree(t, q, 0)
	if got := pullBatch(); fmt.Sprint(values(got)) != "[9]" || q.held != 0 {
		t.Fatalf("pullBatch = %v holding %d, want [9] holding 0", values(got), q.held)
	}
	wantFree(t, q, c)

	fill()
	pullBatch()
	wait := parkedPullBatch(h, q) // the queue is empty: it waits
	wantFree(t, q, c)
	q.closeWriter()
	if b := recv(t, wait, "pullBatch to end with the queue"); b.ok || len(b.items) != 0 {
		t.Fatalf("pullBatch at the end = %+v, want nothing and ok=false", b)
	}
}

// TestQueueCapacityChanges: addWorker adds a producer and a token (one
// waiting for a token gets it); retireWorker takes a token away, even one
// out with a queued item (free goes below zero until that item is taken),
// and queues a baton, which wakes a waiting consumer: pull returns it as a
// baton, pullBatch counts it and leaves it out.
func TestQueueCapacityChanges(t *testing.T) {
	t.Run("addWorker", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 1, 1)
		now(h, "acquire", q.acquire)
		got := parkedAcquire(h, q)
		q.addWorker()
		if !recv(t, got, "the waiting acquire to take the new worker's token") {
			t.Fatal("acquire returned false: the run was not cancelled")
		}
		if c := locked(q, func() int { return q.capacity }); c != 2 {
			t.Fatalf("capacity = %d, want 2", c)
		}
		wantFree(t, q, 0)
		// Two writers now: the queue ends with the second closeWriter.
		p := parkedPull(h, q)
		q.closeWriter()
		notYet(t, p, "pull with one writer left")
		q.closeWriter()
		if r := recv(t, p, "pull to end with the last writer"); r.ok {
			t.Fatalf("pull = %+v, want the end", r)
		}
	})
	t.Run("retireWorker wakes pull", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 2, 2)
		p := parkedPull(h, q)
		q.retireWorker(false)
		r := recv(t, p, "the waiting pull to wake for the baton")
		if !r.ok || !r.it.is(baton) || r.idx != 0 {
			t.Fatalf("pull = %+v, want a baton with index 0", r)
		}
		if c := locked(q, func() int { return q.capacity }); c != 1 {
			t.Fatalf("capacity = %d, want 1", c)
		}
		wantFree(t, q, 1)
		now(h, "acquire", q.acquire)
		got := parkedAcquire(h, q) // one token left, and it is taken
		q.release(1)
		if !recv(t, got, "acquire after release") {
			t.Fatal("acquire returned false: the run was not cancelled")
		}
	})
	t.Run("retireWorker with its token out", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 2, 2)
		for i := range 2 {
			now(h, "acquire", q.acquire)
			q.push(tv(i))
		}
		q.retireWorker(false)
		wantFree(t, q, -1)
		for i, want := range []int64{0, 1, 1} {
			r := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} })
			if i < 2 && (r.it.v != i || !r.it.is(tok)) || i == 2 && !r.it.is(baton) {
				t.Fatalf("pull %d = %+v", i, r)
			}
			wantFree(t, q, want)
		}
	})
	t.Run("pullBatch counts batons", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 10, 3)
		b := parkedPullBatch(h, q)
		q.retireWorker(false)
		got := recv(t, b, "the waiting pullBatch to wake for the baton")
		if !got.ok || len(got.items) != 0 || got.batons != 1 {
			t.Fatalf("pullBatch = %+v, want no item and 1 baton", got)
		}
		q.pushExtra(xv(0))
		q.retireWorker(false)
		q.pushExtra(xv(1))
		q.addWorker()
		q.retireWorker(false)
		got = now(h, "pullBatch", func() batch[int] { items, batons, ok := q.pullBatch(nil); return batch[int]{items, batons, ok} })
		if !got.ok || fmt.Sprint(values(got.items)) != "[0 1]" || got.batons != 2 {
			t.Fatalf("pullBatch = %v with %d batons, want [0 1] with 2", values(got.items), got.batons)
		}
		if taken := locked(q, func() int { return q.taken }); taken != 2 {
			t.Fatalf("taken = %d, want 2: batons are not counted", taken)
		}
	})
}

// TestQueueWakeUps: a consumer waiting in pull wakes for an item however it
// is queued; a producer waiting in acquire wakes when a token is released;
// the queue ends (pull returns ok=false) once its last writer has closed,
// after what was queued, and that wakes every waiting consumer, not before.
func TestQueueWakeUps(t *testing.T) {
	pushes := []struct {
		name string
		push func(q *queue[int])
	}{
		{"push", func(q *queue[int]) { q.acquire(); q.push(tv(7)) }},
		{"pushExtra", func(q *queue[int]) { q.pushExtra(xv(7)) }},
		{"pushBatch", func(q *queue[int]) { q.acquire(); q.pushBatch([]item[int]{tv(7)}, 0) }},
		{"pushBatch of two", func(q *queue[int]) { q.acquire(); q.pushBatch([]item[int]{tv(7), xv(8)}, 0) }},
	}
	for _, tc := range pushes {
		t.Run("pull wakes on "+tc.name, func(t *testing.T) {
			h := newQTest(t)
			q := newQueue[int](h.r, 2, 1)
			p := parkedPull(h, q)
			tc.push(q)
			if r := recv(t, p, "the waiting pull to wake for the item"); !r.ok || r.it.v != 7 || r.idx != 0 {
				t.Fatalf("pull = %+v, want item 7 with index 0", r)
			}
		})
	}
	t.Run("acquire wakes on release", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 1, 1)
		now(h, "acquire", q.acquire)
		got := parkedAcquire(h, q)
		q.release(1)
		if !recv(t, got, "the waiting acquire to wake for the released token") {
			t.Fatal("acquire returned false: the run was not cancelled")
		}
		wantFree(t, q, 0)
	})
	t.Run("the last closeWriter ends the queue", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 2, 2)
		a, b := parkedPull(h, q), parkedPull(h, q)
		q.closeWriter()
		notYet(t, a, "pull with a writer left")
		notYet(t, b, "pull with a writer left")
		q.closeWriter()
		if r := recv(t, a, "a waiting pull to see the end"); r.ok {
			t.Fatalf("pull = %+v, want the end", r)
		}
		if r := recv(t, b, "a waiting pull to see the end"); r.ok {
			t.Fatalf("pull = %+v, want the end", r)
		}
	})
	t.Run("the end comes after what is queued", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 2, 1)
		q.pushExtra(xv(0))
		q.pushExtra(xv(1))
		q.closeWriter()
		for i := range 2 {
			if r := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} }); !r.ok || r.it.v != i {
				t.Fatalf("pull = %+v, want item %d", r, i)
			}
		}
		for range 2 {
			if r := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} }); r.ok {
				t.Fatalf("pull after the end = %+v, want the end", r)
			}
		}
		if b := now(h, "pullBatch", func() batch[int] { items, batons, ok := q.pullBatch(nil); return batch[int]{items, batons, ok} }); b.ok {
			t.Fatalf("pullBatch after the end = %+v, want the end", b)
		}
	})
}

// TestQueueCancelWakesEveryWaiter: cancelling the run (its cause given by
// cancel or by fail) wakes every wait of its queues: a waiting acquire
// returns false, a waiting pushExtra false, a waiting pull or pullBatch
// ok=false; and once cancelled no item starts, so pull and pullBatch return
// ok=false even with items queued.
func TestQueueCancelWakesEveryWaiter(t *testing.T) {
	errX := errors.New("x")
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	for _, tc := range []struct {
		name   string
		cancel func(r *run)
	}{
		{"cancel", func(r *run) { r.cancelRun(errX) }},
		{"fail", func(r *run) { r.fail(errX) }},
		{"parent", func(*run) { cancelParent() }}, // the run is not told: its parent's hook wakes them
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newQTestIn(t, parent)
			qa := newQueue[int](h.r, 1, 1)
			now(h, "acquire", qa.acquire)
			acquire := parkedAcquire(h, qa)

			qe := newQueue[int](h.r, 1, 1)
			qe.pushExtra(xv(0))
			pushExtra := parkedPushExtra(h, qe, xv(1))

			qp := newQueue[int](h.r, 1, 1)
			pull := parkedPull(h, qp)

			qb := newQueue[int](h.r, 1, 1)
			pullBatch := parkedPullBatch(h, qb)

			qi := newQueue[int](h.r, 2, 1)
			now(h, "acquire", qi.acquire)
			qi.push(tv(0))
			qi.pushExtra(xv(1))

			tc.cancel(h.r)
			if recv(t, acquire, "the waiting acquire to wake on cancellation") {
				t.Error("acquire returned true after cancellation")
			}
			if recv(t, pushExtra, "the waiting pushExtra to wake on cancellation") {
				t.Error("pushExtra returned true after cancellation")
			}
			if r := recv(t, pull, "the waiting pull to wake on cancellation"); r.ok {
				t.Errorf("pull = %+v after cancellation, want ok=false", r)
			}
			if b := recv(t, pullBatch, "the waiting pullBatch to wake on cancellation"); b.ok {
				t.Errorf("pullBatch = %+v after cancellation, want ok=false", b)
			}
			if r := now(h, "pull", func() pulled[int] { it, idx, ok := qi.pull(); return pulled[int]{it, idx, ok} }); r.ok {
				t.Errorf("pull with items queued = %+v after cancellation, want ok=false", r)
			}
			if b := now(h, "pullBatch", func() batch[int] { items, batons, ok := qi.pullBatch(nil); return batch[int]{items, batons, ok} }); b.ok || len(b.items) != 0 {
				t.Errorf("pullBatch with items queued = %+v after cancellation, want nothing and ok=false", b)
			}
			if tc.name == "fail" && h.r.failure != errX {
				t.Errorf("run failure = %v, want %v", h.r.failure, errX)
			}
			want := errX
			if tc.name == "parent" {
				want = context.Canceled
			}
			if cause := context.Cause(h.r.ctx); cause != want {
				t.Errorf("cause = %v, want %v", cause, want)
			}
		})
	}
}

// TestQueueUnbounded: with capacity -1 there are no tokens: acquire never
// waits (it fails only once the run is cancelled), release and give change
// nothing, pushExtra never waits, and taking an output that carries a token
// gives nothing back.
func TestQueueUnbounded(t *testing.T) {
	h := newQTest(t)
	q := newQueue[int](h.r, -1, 1)
	const n = 1000
	if !now(h, "acquires", func() bool {
		for range n {
			if !q.acquire() {
				return false
			}
		}
		return true
	}) {
		t.Fatal("acquire failed on a live run")
	}
	wantFree(t, q, -1)
	q.release(5)
	locked(q, func() int { q.give(5); return 0 })
	wantFree(t, q, -1)
	if !now(h, "pushExtras", func() bool {
		for i := range n {
			q.push(tv(2 * i))
			if !q.pushExtra(xv(2*i + 1)) {
				return false
			}
		}
		return true
	}) {
		t.Fatal("pushExtra failed on a live run")
	}
	for i := range 2 * n {
		if r := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} }); !r.ok || r.it.v != i || r.idx != i {
			t.Fatalf("pull = %+v, want item %d with index %d", r, i, i)
		}
	}
	wantFree(t, q, -1)
	h.r.cancelRun(errors.New("x"))
	if now(h, "acquire", q.acquire) {
		t.Fatal("acquire returned true on a cancelled run")
	}
}

// TestQueueOwedHandOff: once producers' calls are slow (q.slow), an output
// with a token pushed while a consumer waits for an item is handed to that
// consumer, as an unbuffered send to a waiting receiver: its token goes back
// by the time push returns, and the item carries the owed flag instead of
// tok, so that taking it gives nothing back (free tokens end at capacity).
// One item is handed per waiting consumer; without a waiting consumer, or
// before calls are slow, the token travels with the item.
func TestQueueOwedHandOff(t *testing.T) {
	t.Run("pull", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 1, 1)
		q.slow.Store(true)
		now(h, "acquire", q.acquire)
		p := parkedPull(h, q)
		q.push(tv(5))
		wantFree(t, q, 1) // back before the consumer need have run
		r := recv(t, p, "the waiting pull to take the handed item")
		if !r.ok || r.it.v != 5 || r.idx != 0 || !r.it.is(owed) || r.it.is(tok) {
			t.Fatalf("pull = %+v (flags %b), want item 5, owed and not tok", r, r.it.flags)
		}
		wantFree(t, q, 1)
	})
	t.Run("pullBatch", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 1, 1)
		q.slow.Store(true)
		now(h, "acquire", q.acquire)
		b := parkedPullBatch(h, q)
		q.push(tv(5))
		got := recv(t, b, "the waiting pullBatch to take the handed item")
		if !got.ok || len(got.items) != 1 || !got.items[0].is(owed) || got.items[0].is(tok) {
			t.Fatalf("pullBatch = %+v, want the item, owed and not tok", got)
		}
		if q.held != 0 {
			t.Fatalf("held = %d, want 0: the handed item's token is back already", q.held)
		}
		wantFree(t, q, 1)
	})
	t.Run("one per waiting consumer", func(t *testing.T) {
		h := newQTest(t)
		const c = 3
		q := newQueue[int](h.r, c, 1)
		q.slow.Store(true)
		for range c {
			now(h, "acquire", q.acquire)
		}
		a, b := parkedPull(h, q), parkedPull(h, q)
		for i := range c {
			q.push(tv(i))
		}
		// Items 0 and 1 went to the two waiting consumers, whether or not
		// either has woken yet; item 2 found none left to hand to.
		wantFree(t, q, 2)
		ra, rb := recv(t, a, "a waiting pull"), recv(t, b, "a waiting pull")
		if ra.it.v+rb.it.v != 1 || !ra.it.is(owed) || !rb.it.is(owed) {
			t.Fatalf("the waiting pulls took %+v and %+v, want items 0 and 1, both owed", ra, rb)
		}
		r := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} })
		if r.it.v != 2 || !r.it.is(tok) || r.it.is(owed) || r.idx != 2 {
			t.Fatalf("pull = %+v (flags %b), want item 2 with its token and index 2", r, r.it.flags)
		}
		wantFree(t, q, c)
	})
	t.Run("not slow", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 1, 1)
		now(h, "acquire", q.acquire)
		p := parkedPull(h, q)
		q.push(tv(5))
		r := recv(t, p, "the waiting pull")
		if !r.it.is(tok) || r.it.is(owed) {
			t.Fatalf("pull = %+v (flags %b), want the item with its token", r, r.it.flags)
		}
		wantFree(t, q, 1)
	})
	t.Run("no consumer waiting", func(t *testing.T) {
		h := newQTest(t)
		q := newQueue[int](h.r, 1, 1)
		q.slow.Store(true)
		now(h, "acquire", q.acquire)
		q.push(tv(5))
		wantFree(t, q, 0)
		r := now(h, "pull", func() pulled[int] { it, idx, ok := q.pull(); return pulled[int]{it, idx, ok} })
		if !r.it.is(tok) || r.it.is(owed) {
			t.Fatalf("pull = %+v (flags %b), want the item with its token", r, r.it.flags)
		}
		wantFree(t, q, 1)
	})
}

// TestQueueAcquireSleepsBelowZero: a producer with no token free waits for
// one in its sync.Cond wait, also while free tokens are below zero (a worker
// retired while its token was out with a queued item), rather than going
// round its loop until the items are taken.
func TestQueueAcquireSleepsBelowZero(t *testing.T) {
	h := newQTest(t)
	q := newQueue[int](h.r, 2, 2)
	for i := range 2 {
		now(h, "acquire", q.acquire)
		q.push(tv(i))
	}
	q.retireWorker(false)
	wantFree(t, q, -1)
	got := parkedAcquire(h, q) // with the bug: hangs here, never waiting
	now(h, "pull", func() bool { _, _, ok := q.pull(); return ok })
	wantFree(t, q, 0)
	notYet(t, got, "acquire with no token free")
	now(h, "pull", func() bool { _, _, ok := q.pull(); return ok })
	if !recv(t, got, "the waiting acquire once a token came back") {
		t.Fatal("acquire returned false: the run was not cancelled")
	}
}

// TestQueueHandOffToTheTaker: an item handed to a waiting consumer (its
// token back at once) is the item that consumer takes. If another output
// was queued first and has not yet woken the consumer (its producer between
// unlocking and signalling), the consumer takes that one, and the handed
// item waits in the queue with its token already back: producers may then
// run ahead of the consumer by more than capacity.
func TestQueueHandOffToTheTaker(t *testing.T) {
	h := newQTest(t)
	q := newQueue[int](h.r, 1, 2)
	q.slow.Store(true)
	now(h, "acquire", q.acquire) // producer B's token
	p := parkedPull(h, q)
	// Producer A's pushExtra, up to its unlock: its output is queued, and
	// its signal to the consumer not sent yet.
	q.mu.Lock()
	q.put(xv(100))
	q.mu.Unlock()
	// Producer B's output, with its token.
	q.push(tv(0))
	q.canPop.Signal() // producer A's signal
	r := recv(t, p, "the waiting pull")
	if r.it.v != 100 {
		t.Fatalf("pull = %+v, want A's output, queued first", r)
	}
	queued := locked(q, func() []item[int] { return []item[int]{q.ring[q.head]} })
	if free := q.free.Load(); free != 0 || queued[0].is(owed) {
		t.Fatalf("B's output is queued untaken (flags %b) with its token back (free %d of capacity 1): "+
			"the stage may take another input while it waits", queued[0].flags, free)
	}
}
