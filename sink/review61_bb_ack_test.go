package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r61Acks records per item how its acknowledgement was told.
type r61Acks struct {
	mu      sync.Mutex
	n       int
	done    []int
	errs    []error
	taken   int
	panicOn int // item whose Done panics (-1: none)
}

func r61NewAcks(n int) *r61Acks {
	return &r61Acks{n: n, done: make([]int, n), errs: make([]error, n), panicOn: -1}
}

func (a *r61Acks) src() stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i >= a.n {
				return 0, nil, io.EOF
			}
			i++
			a.mu.Lock()
			a.taken = i
			a.mu.Unlock()
			return i - 1, r61Ack{a, i - 1}, nil
		}, nil
	})
}

type r61Ack struct {
	a *r61Acks
	v int
}

func (k r61Ack) Done(err error) {
	k.a.mu.Lock()
	k.a.done[k.v]++
	k.a.errs[k.v] = err
	p := k.a.panicOn == k.v
	k.a.mu.Unlock()
	if p {
		panic(fmt.Sprintf("r61 Done panics for %d", k.v))
	}
}

func (a *r61Acks) state() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := ""
	for v := range a.n {
		s += fmt.Sprintf("%d:%d/%v ", v, a.done[v], a.errs[v])
	}
	return s
}

// stage.Ack: "an Unbatch straight after a Batch gives each element its
// item's acknowledgement back, so that each is settled on its own" and
// "Done(nil) when ... the item sink.First returns ... counts"; "Done is not
// called when the run ended before the item's fate was known: ... a sink
// that stopped early". Unbatch: "elsewhere they share their slice's".
func TestReview61BBBatchUnbatchFirstAcks(t *testing.T) {
	for _, mid := range []bool{false, true} {
		t.Run(fmt.Sprint("mapBetween=", mid), func(t *testing.T) {
			a := r61NewAcks(6)
			b := stage.Batch(a.src(), 3, 0)
			if mid {
				b = stage.Map(b, func(_ context.Context, v []int) ([]int, error) { return v, nil }, stage.Workers(1))
			}
			var v int
			var ok bool
			var err error
			runcheck.Run(t, "first", func() { v, ok, err = sink.First(context.Background(), stage.Unbatch(b)) })
			if v != 0 || !ok || err != nil {
				t.Fatalf("First = %d %v %v", v, ok, err)
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			for i := range a.n {
				want := 0
				if i == 0 && !mid {
					want = 1
				}
				if a.done[i] != want || a.errs[i] != nil {
					t.Fatalf("item %d told %d times (%v), want %d; all: %v", i, a.done[i], a.errs[i], want, a.done)
				}
			}
		})
	}
}

// FlatMap then Unbatch: "(the parent is done when all its children are)";
// Unbatch "elsewhere they share their slice's". First commits only the first
// element of the first slice: the parent must not be told.
func TestReview61BBFlatMapUnbatchFirstAcks(t *testing.T) {
	a := r61NewAcks(3)
	fm := stage.FlatMap(a.src(), func(_ context.Context, v int) ([][]int, error) {
		return [][]int{{v, v}, {v}}, nil
	}, stage.Workers(1))
	var ok bool
	var err error
	runcheck.Run(t, "first", func() { _, ok, err = sink.First(context.Background(), stage.Unbatch(fm)) })
	if !ok || err != nil {
		t.Fatalf("First: %v %v", ok, err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.n {
		if a.done[i] != 0 {
			t.Fatalf("item %d told %v (%d times): its outputs were not all committed", i, a.errs[i], a.done[i])
		}
	}
}

// stage.Run: "nil when f returned ErrStop, whatever else happened meanwhile
// (a failure of the run after that, such as a panic in an Ack's Done, no
// longer changes the result)"; sink.First: "always the first pair of `for v,
// err := range All(ctx, s) { ...; break }`"; stage.Ack: the item First
// returns counts as committed. Here the Done of that committed item panics.
func TestReview61BBFirstDonePanicKeepsResult(t *testing.T) {
	for _, shape := range []string{"bare", "map", "batchunbatch", "tee"} {
		t.Run(shape, func(t *testing.T) {
			a := r61NewAcks(4)
			a.panicOn = 0
			var s stage.Stream[int]
			switch shape {
			case "bare":
				s = a.src()
			case "map":
				s = stage.Map(a.src(), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
			case "batchunbatch":
				s = stage.Unbatch(stage.Batch(a.src(), 1, 0))
			case "tee":
				b := stage.Tee(a.src(), 1)
				s = b[0]
			}
			var v int
			var ok bool
			var err error
			runcheck.Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
			if v != 0 || !ok || err != nil {
				t.Fatalf("First = %d %v %v; want 0 true nil (the Done panic came after the stop)", v, ok, err)
			}
			// and All with a break: the same pair
			runcheck.Run(t, "all", func() {
				for v, err := range sink.All(context.Background(), s) {
					if v != 0 || err != nil {
						t.Errorf("All first pair = %d %v", v, err)
					}
					break
				}
			})
			// ForEach returning ErrStop: nil
			runcheck.Run(t, "foreach", func() {
				err = sink.ForEach(context.Background(), s, func(context.Context, int) error { return stage.ErrStop })
			})
			if err != nil {
				t.Fatalf("ForEach with ErrStop = %v; want nil", err)
			}
		})
	}
}

// stage.Ack: "A panic in Done ends the run with a *SourceError, which the
// sink returns unless its own result was decided first". A committed item's
// Done panics in a run that would otherwise succeed: the sink must not
// report success ("A sink never reports success for a run that failed").
func TestReview61BBDonePanicFailsRun(t *testing.T) {
	for _, shape := range []string{"bare", "map1", "map4buf", "batch", "tee2", "filter"} {
		for _, p := range []int{0, 3} {
			t.Run(fmt.Sprint(shape, "/", p), func(t *testing.T) {
				a := r61NewAcks(4)
				a.panicOn = p
				var s stage.Stream[int]
				switch shape {
				case "bare":
					s = a.src()
				case "map1":
					s = stage.Map(a.src(), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
				case "map4buf":
					s = stage.Map(a.src(), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4), stage.Buffer(2))
				case "batch":
					s = stage.Unbatch(stage.Batch(a.src(), 3, 0))
				case "tee2":
					b := stage.Tee(a.src(), 2)
					s = stage.Merge(b[0], b[1])
				case "filter":
					s = stage.Filter(a.src(), func(_ context.Context, v int) (bool, error) { return v != p, nil }, stage.Workers(1))
				}
				var err error
				runcheck.Run(t, "count", func() { _, err = sink.Count(context.Background(), s) })
				var se *stage.SourceError
				var pe *stage.PanicError
				if !errors.As(err, &se) || !errors.As(err, &pe) {
					t.Fatalf("Count err = %v; want a *SourceError wrapping a *PanicError (acks %s)", err, a.state())
				}
			})
		}
	}
}

// sink.All: "A panic in the loop body stops the run the same way and then
// continues; its item is not committed, and its acknowledgement is not told".
// Ack: "an Unbatch straight after a Batch gives each element its item's
// acknowledgement back, so that each is settled on its own": the element the
// loop finished before the panic is committed and told nil.
func TestReview61BBAllPanicAfterUnbatch(t *testing.T) {
	for _, shape := range []string{"batch-unbatch", "batch-unbatch-map"} {
		t.Run(shape, func(t *testing.T) {
			a := r61NewAcks(6)
			s := stage.Unbatch(stage.Batch(a.src(), 3, 0))
			if shape == "batch-unbatch-map" {
				s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
			}
			var p any
			runcheck.Run(t, "all", func() {
				defer func() { p = recover() }()
				for v, err := range sink.All(context.Background(), s) {
					if err != nil {
						t.Errorf("err %v", err)
					}
					if v == 1 {
						panic("r61 body")
					}
				}
			})
			if p == nil {
				t.Fatal("the panic did not continue")
			}
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.done[0] != 1 || a.errs[0] != nil {
				t.Fatalf("item 0 (committed) told %d times %v; all %v", a.done[0], a.errs[0], a.done)
			}
			for i := 1; i < a.n; i++ {
				if a.done[i] != 0 {
					t.Fatalf("item %d told %v; all %v", i, a.errs[i], a.done)
				}
			}
		})
	}
}
