package stage

import (
	"context"
	"slices"
	"testing"
)

// TestReview83WindowKeepsWorkersBuffers: an item of one output (or none)
// waits in its slot of the reorder window itself, and the worker keeps its
// buffer, which starts in the worker's own room (orderOut.one): were that
// room handed to a slot, a later item of the same worker would overwrite
// an output still waiting in the window. Items of several outputs give
// their (grown) buffer to the slot. Outputs leave in input order, over a
// ring that starts at one slot (an input of one item said) and grows.
func TestReview83WindowKeepsWorkersBuffers(t *testing.T) {
	r := newRun(context.Background())
	defer r.finish()
	q := newQueue[int](r, 64, 1)
	ord := newReorder(8, q, false, 1) // the hint is wrong on purpose: the ring grows
	w := &orderOut[int]{queueOut: queueOut[int]{q: q}, ord: ord}
	// outputs of items 0..n-1; the item at the head runs last, so that
	// every other waits in the window.
	outputs := [][]int{{}, {10}, {20, 21, 22}, {}, {40}, {50}, {60, 61}, {70}}
	run := func(idx int) {
		if !q.tryAcquire() {
			t.Fatalf("item %d: no token", idx)
		}
		w.begin(idx)
		w.tok = true
		for _, v := range outputs[idx] {
			if !w.put(item[int]{v: v}) {
				t.Fatalf("item %d: put refused", idx)
			}
		}
		if !w.end() {
			t.Fatalf("item %d: end reported a cancelled run", idx)
		}
		if w.buf != nil && len(outputs[idx]) <= 1 && cap(w.buf) == 1 && &w.buf[:1][0] != &w.one[0] {
			t.Errorf("item %d: the worker's buffer left its own room", idx)
		}
	}
	for idx := len(outputs) - 1; idx >= 0; idx-- {
		run(idx)
		if idx > 0 && q.ready.Load() != 0 {
			t.Fatalf("item %d: outputs queued while item 0, the head, has not run", idx)
		}
	}
	q.closeWriter()
	var got []int
	for {
		it, _, ok := q.pull()
		if !ok {
			break
		}
		got = append(got, it.v)
	}
	want := slices.Concat(outputs...)
	if !slices.Equal(got, want) {
		t.Errorf("queued %v, want %v", got, want)
	}
	ord.mu.Lock()
	defer ord.mu.Unlock()
	for i, s := range ord.slots {
		if s.done || s.single || len(s.items) != 0 || s.one != (item[int]{}) {
			t.Errorf("slot %d not empty after the window moved on: %+v", i, s)
		}
	}
}

// TestReview83RecycledWindowComesBackEmpty: a fused stage's window goes
// back to its pool when the run finishes, keeping its ring and staging
// room for the next run. A run cut short may leave finished items after a
// head that never completed (an item dropped once the run was ending):
// their outputs and flags must not reach the next run that takes the
// window, where the head's arrival would emit them as its own.
func TestReview83RecycledWindowComesBackEmpty(t *testing.T) {
	r := newRun(context.Background())
	defer r.finish()
	q := newQueue[int](r, 8, 1)
	o := recycledReorder(8, q, -1)
	for idx := 1; idx <= 3; idx++ { // the head, item 0, never completes
		if !q.tryAcquire() {
			t.Fatal("no token")
		}
		if _, emitter := o.complete(idx, []item[int]{{v: idx}}, true); emitter {
			t.Fatalf("item %d became the emitter while item 0 is the head", idx)
		}
	}
	o.complete(4, []item[int]{{v: 4}, {v: 40}}, false)
	o.staged = append(o.staged, item[int]{v: 99})
	ring := len(o.slots)
	o.recycle() // as its stage's state does at the run's finish (zeroed only, in this package's tests)
	if len(o.slots) != ring || cap(o.staged) == 0 || len(o.staged) != 0 {
		t.Fatalf("ring %d (was %d), staging room %d/%d: kept for the next run, empty", len(o.slots), ring, len(o.staged), cap(o.staged))
	}
	for i, s := range o.slots {
		if s.done || s.tok || s.single || len(s.items) != 0 || s.one != (item[int]{}) || s.parked != 0 {
			t.Errorf("slot %d came back holding %+v", i, s)
		}
	}
	if st := o.staged[:cap(o.staged)]; slices.ContainsFunc(st, func(it item[int]) bool { return it != item[int]{} }) {
		t.Errorf("the staging room came back holding %v", st)
	}
	if o.next != 0 || o.hi != 0 || o.emitting || o.parked != 0 || o.out != nil || o.home != nil {
		t.Errorf("the window came back with state: next %d, hi %d, emitting %v, parked %d", o.next, o.hi, o.emitting, o.parked)
	}
}
