package stage

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// TestEngineLazyStartSecondHandleSeesEnd: a fused stage with two consumer
// handles (the workers of a stage over it). Handle A's first pull starts the
// stage's places (startIdle); while it is between its CompareAndSwap of
// started and its first spawn (here: inside the input's handles function),
// handle B pulls. B finds started set, no baton, and a queue with no writer
// yet (newFuseRun made it with writers 0): out.pull reports the end, done()
// agrees, and B tells its consumer that the stream has ended although every
// item is still in the input.
// handlesFunc makes a function the source of a stream's handles.
type handlesFunc[T any] func() puller[T]

func (f handlesFunc[T]) newHandle() puller[T] { return f() }

func TestEngineLazyStartSecondHandleSeesEnd(t *testing.T) {
	r := newRun(context.Background())
	defer r.finish()
	src := Indexed(100, func(i int) int { return i }).open.open(r)

	inHandles := make(chan struct{})
	gate := make(chan struct{})
	var once sync.Once
	handles := handles[int]{fused: handlesFunc[int](func() puller[int] {
		once.Do(func() {
			close(inHandles) // A is inside startIdle, past the CompareAndSwap
			<-gate
		})
		return src
	})}
	var cfg config
	cfg.set("stage.Map", "map", []Option{Workers(2)})
	cfg.single = true
	p := newProcessor(r, cfg.forRun(r, &node{}), func(_ context.Context, v int, e emitter[int]) error {
		e.emit(v)
		return nil
	})
	fr := newFuseRun(p, handles, -1, false)
	a, b := fr.handle(), fr.handle()
	r.start()

	aDone := make(chan int)
	go func() {
		n := 0
		for {
			if _, _, ok := a.pull(); !ok {
				break
			}
			n++
		}
		aDone <- n
	}()
	select {
	case <-inHandles:
	case <-time.After(20 * time.Second):
		t.Fatal("hang: A never reached the input's handles")
	}
	// A has started nothing yet: B's first pull must wait for the places
	// to start, not report the end.
	bDone := make(chan bool)
	go func() {
		_, _, ok := b.pull()
		bDone <- ok
	}()
	for waiting := 0; waiting == 0; {
		fr.out.mu.Lock()
		waiting = fr.out.waiting
		fr.out.mu.Unlock()
		select {
		case okB := <-bDone:
			close(gate)
			t.Fatalf("handle B's first pull returned (ok=%v) before the stage started", okB)
		default:
		}
		runtime.Gosched()
	}
	close(gate)
	var okB bool
	select {
	case okB = <-bDone:
	case <-time.After(20 * time.Second):
		t.Fatal("hang: B's first pull never returned")
	}
	var nA int
	select {
	case nA = <-aDone:
	case <-time.After(20 * time.Second):
		t.Fatal("hang: A never saw the end")
	}
	nB := 0
	if okB {
		nB = 1
		for {
			if _, _, ok := b.pull(); !ok {
				break
			}
			nB++
		}
	}
	if nA+nB != 100 {
		t.Errorf("A and B took %d items, want 100", nA+nB)
	}
	// B's want of a place is still counted: a goroutine of the stage may
	// have retired to it, leaving a baton and an input handle nobody claims.
	fr.mu.Lock()
	spares := len(fr.spares)
	fr.mu.Unlock()
	t.Logf("after the run: unclaimed batons %d, spare input handles %d, wanted %d", fr.batons.Load(), spares, fr.wanted.Load())
}

// TestEngineOrderedHeadBufferedWhileEmitterHoldsRole: an Ordered Apply.
// Item 0 ends with no output; its worker is the emitter and is moving the
// window (head already stored as 1) into the queue. Item 1 now emits: it is
// the head (isHead true) and the oldest item in flight, so by Apply's doc
// ("once the item is the oldest in flight, emit queues them directly") and
// change 5 its output should stream. But tryStream fails while the emitter
// still holds the role, and the output stays in item 1's private buffer
// until item 1 emits again or returns; the emitter, once done, does not
// look at it. A function that emits once and then waits for its consumer
// waits for ever.
func TestEngineOrderedHeadBufferedWhileEmitterHoldsRole(t *testing.T) {
	r := newRun(context.Background())
	defer r.finish()
	q := newQueue[int](r, 4, 2)
	ord := newReorder(4, q, false, -1)
	o0 := &orderOut[int]{queueOut: queueOut[int]{q: q}, ord: ord, eager: true}
	o1 := &orderOut[int]{queueOut: queueOut[int]{q: q}, ord: ord, eager: true}
	o0.begin(0)
	o1.begin(1)

	q.mu.Lock() // hold the emitter inside pushBatch
	ended := make(chan bool)
	go func() { ended <- o0.end() }() // item 0: no output, its token goes back
	deadline := time.Now().Add(20 * time.Second)
	for !erIsHead(ord, 1) {
		if time.Now().After(deadline) {
			q.mu.Unlock()
			t.Fatal("hang: the emitter never moved the head")
		}
		time.Sleep(time.Millisecond)
	}
	// The emitter has stored head = 1 and waits for the queue's lock.
	putDone := make(chan bool)
	go func() { putDone <- o1.put(item[int]{v: 1}) }()
	var ok1 bool
	select {
	case ok1 = <-putDone:
	case <-time.After(20 * time.Second):
		q.mu.Unlock()
		t.Fatal("hang in put")
	}
	q.mu.Unlock()
	<-ended
	if !ok1 {
		t.Fatal("put reported a dropped output")
	}
	// The emitter is done now: nothing else holds the role.
	ord.mu.Lock()
	emitting := ord.emitting
	ord.mu.Unlock()
	if emitting {
		t.Fatal("the emitter still holds the role")
	}
	if q.ready.Load() == 0 {
		t.Errorf("item 1 is the head and emitted, but its output is not in the queue (streaming=%v, queued=%d, buffered=%d): it waits until item 1 emits again or returns", o1.streaming, q.ready.Load(), len(o1.buf))
	}
}

func erIsHead[T any](o *reorder[T], idx int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.next == idx
}
