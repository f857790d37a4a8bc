package stage_test

// Batch and Unbatch, attacked from their doc comments.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r67Chunks splits xs into slices of size, the last one partial.
func r67Chunks(xs []int, size int) [][]int {
	var out [][]int
	for len(xs) > size {
		out = append(out, xs[:size])
		xs = xs[size:]
	}
	if len(xs) > 0 {
		out = append(out, xs)
	}
	return out
}

func r67BatchesEqual(got, want [][]int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !r67Equal(got[i], want[i]) {
			return false
		}
	}
	return true
}

// "A batch leaves when it is full, when timeout has passed since its first
// item arrived (timeout 0: only when full), or when the input ends ...: the
// last, partial batch is never lost." "in input order". With timeout 0 (or
// one no run lasts) the batches are exactly the chunks of the input.
func TestReview67BatchExactChunks(t *testing.T) {
	for _, size := range []int{1, 2, 3, 7, 10, 11, 1000} {
		for _, timeout := range []time.Duration{0, time.Hour, math.MaxInt64} {
			for _, src := range []string{"slice", "source"} {
				name := fmt.Sprintf("size=%d/timeout=%v/%s", size, timeout, src)
				in := source.Slice(r67Ints(10))
				if src == "source" {
					in = r67Src(10, nil)
				}
				var got [][]int
				var err error
				r67Guard(t, name, func() {
					got, err = sink.Slice(context.Background(), stage.Batch(in, size, timeout))
				})
				if want := r67Chunks(r67Ints(10), size); err != nil || !r67BatchesEqual(got, want) {
					t.Errorf("%s: got %v, %v; want %v, nil", name, got, err, want)
				}
			}
		}
	}
}

// "Batch groups the items of in into slices of up to size items": a huge
// size is allowed ("a large size costs memory only when batches fill up",
// "It holds at most size+1 items"): size math.MaxInt must neither
// allocate for its size nor overflow its size+1. Child process: a crash
// or an out-of-memory fails this test only.
func TestReview67BatchHugeSize(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, size := range []int{math.MaxInt, math.MaxInt - 1, math.MaxInt32, 1 << 40} {
			for _, timeout := range []time.Duration{0, time.Hour} {
				var got [][]int
				var err error
				r67Guard(t, "huge", func() {
					got, err = sink.Slice(context.Background(), stage.Batch(r67Src(100, nil), size, timeout))
				})
				if err != nil || len(got) != 1 || !r67Equal(got[0], r67Ints(100)) {
					t.Errorf("size=%d timeout=%v: got %v, %v; want one batch of 0..99", size, timeout, got, err)
				}
			}
		}
	})
}

// Whatever the timing, with a timeout that fires all the time: every item
// is delivered once, in input order, in batches of 1..size items.
func TestReview67BatchTinyTimeout(t *testing.T) {
	for _, timeout := range []time.Duration{1, time.Microsecond} {
		for _, size := range []int{1, 3, 64} {
			name := fmt.Sprintf("size=%d/timeout=%v", size, timeout)
			// A Map of one worker between a waiting source and the Batch
			// makes the items arrive in bursts and gaps.
			in := stage.Map(r67Src(500, nil), func(_ context.Context, v int) (int, error) {
				if v%50 == 0 {
					time.Sleep(time.Millisecond)
				}
				return v, nil
			}, stage.Workers(1))
			var got [][]int
			var err error
			r67Guard(t, name, func() {
				got, err = sink.Slice(context.Background(), stage.Batch(in, size, timeout))
			})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var flat []int
			for _, b := range got {
				if len(b) < 1 || len(b) > size {
					t.Errorf("%s: a batch of %d items", name, len(b))
				}
				flat = append(flat, b...)
			}
			if !r67Equal(flat, r67Ints(500)) {
				t.Errorf("%s: items %v; want 0..499 in order", name, flat)
			}
		}
	}
}

// An empty input gives no batch (not an empty one) and no error.
func TestReview67BatchEmpty(t *testing.T) {
	for _, timeout := range []time.Duration{0, 1, time.Hour} {
		got, err := sink.Slice(context.Background(), stage.Batch(source.Slice([]int{}), 3, timeout))
		if err != nil || len(got) != 0 {
			t.Errorf("timeout=%v: got %v, %v; want no batch", timeout, got, err)
		}
		v, ok, err := sink.First(context.Background(), stage.Batch(r67Src(0, nil), 3, timeout))
		if ok || err != nil || v != nil {
			t.Errorf("First: got %v, %v, %v; want nil, false, nil", v, ok, err)
		}
	}
}

// r67Event is one item a Run callback saw: a batch or a forwarded error.
type r67Event struct {
	batch []int
	err   error
}

func (e r67Event) String() string {
	if e.err != nil {
		var se *stage.Error
		if errors.As(e.err, &se) {
			return fmt.Sprintf("err(%v)", se.Input)
		}
		return "err(?)"
	}
	return fmt.Sprint(e.batch)
}

// "A forwarded error is a batch boundary: the batch before it leaves first,
// then the error, in order." With one worker upstream and timeout 0 the
// sequence is exact. A batch is a slice of "items of in": none is empty.
func TestReview67BatchForwardBoundary(t *testing.T) {
	cases := []struct {
		fail []int
		want string
	}{
		{[]int{4}, "[[0 1 2] [3] err(4) [5 6 7] [8 9]]"},
		{[]int{3, 4}, "[[0 1 2] err(3) err(4) [5 6 7] [8 9]]"},
		{[]int{0}, "[err(0) [1 2 3] [4 5 6] [7 8 9]]"},
		{[]int{9}, "[[0 1 2] [3 4 5] [6 7 8] err(9)]"},
		{[]int{2, 5, 8}, "[[0 1] err(2) [3 4] err(5) [6 7] err(8) [9]]"},
		{r67Ints(10), "[err(0) err(1) err(2) err(3) err(4) err(5) err(6) err(7) err(8) err(9)]"},
	}
	for _, c := range cases {
		for _, timeout := range []time.Duration{0, time.Hour} {
			failing := map[int]bool{}
			for _, f := range c.fail {
				failing[f] = true
			}
			m := stage.Map(r67Src(10, nil), func(_ context.Context, v int) (int, error) {
				if failing[v] {
					return 0, r67Err
				}
				return v, nil
			}, stage.Workers(1), stage.OnError(stage.Forward))
			var evs []r67Event
			var err error
			r67Guard(t, "boundary", func() {
				err = stage.Run(context.Background(), stage.Batch(m, 3, timeout), func(_ context.Context, b []int, e error) error {
					evs = append(evs, r67Event{b, e})
					return nil
				})
			})
			if got := fmt.Sprint(evs); err != nil || got != c.want {
				t.Errorf("fail=%v timeout=%v: got %s, %v; want %s, nil", c.fail, timeout, got, err, c.want)
			}
			for _, e := range evs {
				if e.err != nil && !errors.Is(e.err, r67Err) {
					t.Errorf("a forwarded error %v does not wrap the function's error", e.err)
				}
			}
		}
	}
}

// "Each batch is a new slice that the consumer may keep": a consumer that
// keeps every batch and appends to it (writing into its spare capacity)
// must not change any other batch, nor race with the Batch stage.
func TestReview67BatchSlicesAreTheConsumers(t *testing.T) {
	for _, size := range []int{1, 2, 5, 64} {
		var kept [][]int
		err := stage.Run(context.Background(), stage.Batch(r67Src(300, nil), size, 0), func(_ context.Context, b []int, _ error) error {
			kept = append(kept, b)
			grown := append(b, -1, -2, -3)
			grown[len(grown)-1] = -9 // a write through the grown slice
			for i := len(b); i < cap(b); i++ {
				b[:cap(b)][i] = -7 // scribble over the spare capacity
			}
			return nil
		})
		if err != nil {
			t.Fatalf("size=%d: %v", size, err)
		}
		if want := r67Chunks(r67Ints(300), size); !r67BatchesEqual(kept, want) {
			t.Errorf("size=%d: the kept batches changed: %v", size, kept)
		}
	}
}

// "A FailFast error or a cancelled run drops the partial batch": a
// cancellation while the Batch waits out its timeout delivers nothing, and
// the sink returns the cancellation (for a caller's own context type too:
// "from the moment its Done channel is closed ... the sink delivers nothing
// more").
func TestReview67BatchCancelDuringTimeoutWait(t *testing.T) {
	for _, kind := range r67CtxKinds {
		ctx, cancel := r67Parent(kind)
		ch := make(chan int, 3)
		ch <- 1
		ch <- 2
		seen := make(chan int, 3)
		m := stage.Map(source.Chan(ch), func(_ context.Context, v int) (int, error) {
			seen <- v
			return v, nil
		}, stage.Workers(1))
		var delivered [][]int
		var err error
		r67Guard(t, kind, func() {
			go func() {
				<-seen
				<-seen
				cancel()
			}()
			err = stage.Run(ctx, stage.Batch(m, 10, time.Hour), func(_ context.Context, b []int, e error) error {
				delivered = append(delivered, b)
				return nil
			})
		})
		if !errors.Is(err, context.Canceled) || len(delivered) != 0 {
			t.Errorf("%s: got %v, %v; want nothing delivered and context.Canceled", kind, delivered, err)
		}
	}
}

// "A FailFast error ... drops the partial batch" and the sink returns the
// *Error: items 0..2 passed, item 3 fails, the batch of size 10 was
// partial, nothing reaches the sink.
func TestReview67BatchFailFastDropsPartial(t *testing.T) {
	m := stage.Map(r67Src(-1, nil), func(_ context.Context, v int) (int, error) {
		if v == 3 {
			return 0, r67Err
		}
		return v, nil
	}, stage.Workers(1))
	var delivered [][]int
	var err error
	r67Guard(t, "failfast", func() {
		err = stage.Run(context.Background(), stage.Batch(m, 10, time.Hour), func(_ context.Context, b []int, e error) error {
			delivered = append(delivered, b)
			return nil
		})
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Index != 3 || se.Input != 3 || !errors.Is(err, r67Err) || len(delivered) != 0 {
		t.Errorf("got %v, %v; want nothing delivered and the *Error of item 3", delivered, err)
	}
}

// "It holds at most size+1 items of in, plus one finished batch that waits
// for its consumer." With the sink's callback holding the first batch,
// the source gives at most size (held by the callback) + size (the
// finished batch) + size+1 items. See r67Window for how the bound is
// watched.
func TestReview67BatchReadAheadBound(t *testing.T) {
	for _, size := range []int{1, 4} {
		var nexts r67Counter
		var held int64
		r67Guard(t, "bound", func() {
			first := true
			_ = stage.Run(context.Background(), stage.Batch(r67Src(-1, &nexts), size, 0), func(ctx context.Context, b []int, e error) error {
				if first {
					first = false
					held = r67Settle(&nexts)
					return stage.ErrStop
				}
				return nil
			})
		})
		if bound := int64(3*size + 1); held > bound {
			t.Errorf("size=%d: the source gave %d items while the sink held the first batch; the doc's bound is %d", size, held, bound)
		} else {
			t.Logf("size=%d: the source gave %d items (bound %d)", size, held, 3*size+1)
		}
	}
}

// "Unbatch flattens a stream of slices into their elements, in order":
// empty and nil slices give nothing; forwarded errors pass through in
// their place.
func TestReview67UnbatchOrderAndForward(t *testing.T) {
	slices := [][]int{{0, 1}, nil, {}, {2}, {3, 4, 5}, {}, {6}}
	m := stage.Map(source.Slice(slices), func(_ context.Context, v []int) ([]int, error) {
		if len(v) == 1 && v[0] == 2 {
			return nil, r67Err
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var seq []string
	err := stage.Run(context.Background(), stage.Unbatch(m), func(_ context.Context, v int, e error) error {
		if e != nil {
			seq = append(seq, "err")
		} else {
			seq = append(seq, fmt.Sprint(v))
		}
		return nil
	})
	if got, want := fmt.Sprint(seq), "[0 1 err 3 4 5 6]"; err != nil || got != want {
		t.Errorf("got %s, %v; want %s, nil", got, err, want)
	}
	// An input of one slice (Len 1): Unbatch runs in its consumer's goroutine.
	got, err := sink.Slice(context.Background(), stage.Unbatch(source.Slice([][]int{r67Ints(1000)})))
	if err != nil || !r67Equal(got, r67Ints(1000)) {
		t.Errorf("one slice: got %d items, %v", len(got), err)
	}
	// Nothing at all.
	got, err = sink.Slice(context.Background(), stage.Unbatch(source.Slice([][]int{})))
	if err != nil || len(got) != 0 {
		t.Errorf("empty: got %v, %v", got, err)
	}
}

// "it is the inverse of Batch": Unbatch(Batch(in)) is in, in order, for
// any size and timeout.
func TestReview67BatchUnbatchInverse(t *testing.T) {
	for _, size := range []int{1, 2, 3, 100, math.MaxInt} {
		for _, timeout := range []time.Duration{0, 1, time.Hour} {
			var got []int
			var err error
			r67Guard(t, "inverse", func() {
				got, err = sink.Slice(context.Background(), stage.Unbatch(stage.Batch(r67Src(257, nil), size, timeout)))
			})
			if err != nil || !r67Equal(got, r67Ints(257)) {
				t.Errorf("size=%d timeout=%v: got %v, %v", size, timeout, got, err)
			}
		}
	}
}

// Early exit: sink.First over Batch (of an endless source) returns the
// first batch; over Unbatch of huge slices, the first element; and a break
// out of sink.All over Batch→Unbatch stops the run. No goroutine is left.
func TestReview67BatchUnbatchEarlyExit(t *testing.T) {
	r67Guard(t, "first batch", func() {
		v, ok, err := sink.First(context.Background(), stage.Batch(r67Src(-1, nil), 3, time.Hour))
		if !ok || err != nil || !r67Equal(v, []int{0, 1, 2}) {
			t.Errorf("First(Batch): %v, %v, %v", v, ok, err)
		}
	})
	r67Guard(t, "first element", func() {
		big := source.Func(func(context.Context) ([]int, error) { return r67Ints(100000), nil })
		v, ok, err := sink.First(context.Background(), stage.Unbatch(big))
		if !ok || err != nil || v != 0 {
			t.Errorf("First(Unbatch): %v, %v, %v", v, ok, err)
		}
	})
	r67Guard(t, "break", func() {
		n := 0
		for v, err := range sink.All(context.Background(), stage.Unbatch(stage.Batch(r67Src(-1, nil), 4, 0))) {
			if err != nil || v != n {
				t.Errorf("All: item %d is %v, %v", n, v, err)
			}
			n++
			if n == 10 {
				break
			}
		}
	})
}

// r67AckRec records the Done calls of the items of an AckSource.
type r67AckRec struct {
	mu    sync.Mutex
	calls map[int][]error
}

type r67Ack struct {
	id  int
	rec *r67AckRec
}

func (a r67Ack) Done(err error) {
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	a.rec.calls[a.id] = append(a.rec.calls[a.id], err)
}

func (r *r67AckRec) snapshot() map[int][]error {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[int][]error{}
	for k, v := range r.calls {
		out[k] = append([]error(nil), v...)
	}
	return out
}

// r67AckSrc is an AckSource of the items 0..n-1, each with its Ack.
func r67AckSrc(n int, rec *r67AckRec) stage.Stream[int] {
	return r95MixedAckSrc(n, func(int) bool { return true }, rec)
}

// "Straight after a Batch, each element takes back its own item's
// acknowledgement (see Ack), so that elements are settled one by one;
// elsewhere they share their slice's." A break at the first element
// commits it ("The item of the loop body that breaks counts as
// committed"): straight after a Batch its item is told nil and the other
// item of its batch is not told; with a Map between, the batch's items
// share the fate of a slice not all committed, and none is told.
func TestReview67UnbatchAckStraightAfterBatch(t *testing.T) {
	for _, between := range []bool{false, true} {
		rec := &r67AckRec{calls: map[int][]error{}}
		b := stage.Batch(r67AckSrc(4, rec), 2, 0)
		if between {
			// One worker: the batches keep their order, so that the first
			// element is 0 (several could let [2 3] overtake [0 1]).
			b = stage.Map(b, func(_ context.Context, v []int) ([]int, error) { return v, nil }, stage.Workers(1))
		}
		r67Guard(t, "ack", func() {
			for v, err := range sink.All(context.Background(), stage.Unbatch(b)) {
				if v != 0 || err != nil {
					t.Errorf("first element %v, %v", v, err)
				}
				break
			}
		})
		calls := rec.snapshot()
		if !between {
			if len(calls[0]) != 1 || calls[0][0] != nil || len(calls[1]) != 0 || len(calls[2]) != 0 || len(calls[3]) != 0 {
				t.Errorf("straight after Batch: Done calls %v; want item 0 told nil once, the others not told", calls)
			}
		} else if len(calls) != 0 {
			t.Errorf("with a Map between: Done calls %v; want none (the slice was not all committed)", calls)
		}
	}
}

// Whatever the timing, forwarded errors keep their places among the
// batches ("A forwarded error is a batch boundary: the batch before it
// leaves first, then the error, in order"): with a timeout that fires all
// the time, the values and errors flattened are the input's sequence, and
// no batch is empty.
func TestReview67BatchTinyTimeoutForward(t *testing.T) {
	for _, size := range []int{1, 2, 5} {
		m := stage.Map(r67Src(300, nil), func(_ context.Context, v int) (int, error) {
			if v%7 == 3 || v%11 == 0 {
				return 0, r67Err
			}
			if v%40 == 0 {
				time.Sleep(time.Millisecond)
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward))
		var seq []string
		var err error
		r67Guard(t, "tiny forward", func() {
			err = stage.Run(context.Background(), stage.Batch(m, size, time.Nanosecond), func(_ context.Context, b []int, e error) error {
				if e != nil {
					var se *stage.Error
					errors.As(e, &se)
					seq = append(seq, fmt.Sprintf("e%v", se.Input))
					return nil
				}
				if len(b) < 1 || len(b) > size {
					t.Errorf("size=%d: a batch of %d", size, len(b))
				}
				for _, v := range b {
					seq = append(seq, fmt.Sprint(v))
				}
				return nil
			})
		})
		var want []string
		for v := range 300 {
			if v%7 == 3 || v%11 == 0 {
				want = append(want, fmt.Sprintf("e%d", v))
			} else {
				want = append(want, fmt.Sprint(v))
			}
		}
		if err != nil || fmt.Sprint(seq) != fmt.Sprint(want) {
			t.Errorf("size=%d: %v, %v; want %v", size, seq, err, want)
		}
	}
}

// Unbatch "is a stage of one worker that holds one slice at a time": with
// the sink's callback holding the first element, few slices were taken:
// the one being flattened, one hand-over, and (for the Map in front) the
// Map's read-ahead of one. See r67Window.
func TestReview67UnbatchHoldsOneSlice(t *testing.T) {
	for _, src := range []string{"source", "chan"} {
		var nexts r67Counter
		var in stage.Stream[[]int]
		if src == "source" {
			in = stage.Map(r67Src(-1, &nexts), func(_ context.Context, v int) ([]int, error) { return []int{v, v, v}, nil }, stage.Workers(1))
		} else {
			ch := make(chan []int)
			done := make(chan struct{})
			defer close(done)
			go func() {
				for {
					select {
					case ch <- []int{1, 2, 3}:
						nexts.inc()
					case <-done:
						return
					}
				}
			}()
			in = source.Chan(ch)
		}
		var held int64
		r67Guard(t, src, func() {
			_ = stage.Run(context.Background(), stage.Unbatch(in), func(context.Context, int, error) error {
				held = r67Settle(&nexts)
				return stage.ErrStop
			})
		})
		if held > 3 {
			t.Errorf("%s: %d slices taken while the sink held the first element", src, held)
		} else {
			t.Logf("%s: %d slices taken while the sink held the first element", src, held)
		}
	}
}
