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
