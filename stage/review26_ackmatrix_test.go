package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// TestReview26AckMatrix runs an AckSource through each operator and ends
// the run each way, checking the Ack promises at the moment each call is
// made: Done at most once; Done(nil) only once every copy of the item was
// committed (the sink saw it and returned nil or ErrStop) or the item was
// dropped on purpose, never before; Done(err) only for the item that
// failed, with its error; at the input's end every item settled.
func TestReview26AckMatrix(t *testing.T) {
	const n = 40
	type op struct {
		name   string
		build  func(stage.Stream[int]) stage.Stream[int]
		copies func(id int) int
		id     func(v int) int
	}
	one := func(int) int { return 1 }
	self := func(v int) int { return v }
	ops := []op{
		{"map", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4))
		}, one, self},
		{"filter", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Filter(s, func(_ context.Context, x int) (bool, error) { return x%2 == 0, nil }, stage.Workers(4))
		}, func(id int) int { return 1 - id%2 }, self},
		{"flatmap", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.FlatMap(s, func(_ context.Context, x int) ([]int, error) { return []int{2 * x, 2*x + 1}, nil }, stage.Workers(4))
		}, func(int) int { return 2 }, func(v int) int { return v / 2 }},
		{"batch-unbatch", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Unbatch(stage.Batch(s, 3, 0))
		}, one, self},
		{"tee3-merge", func(s stage.Stream[int]) stage.Stream[int] {
			b := stage.Tee(s, 3)
			return stage.Merge(b[0], stage.Map(b[1], func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(2)), b[2])
		}, func(int) int { return 3 }, self},
		{"keyby", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4), stage.KeyBy(func(x int) int { return x % 3 }))
		}, one, self},
		{"ordered-flatmap", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.FlatMap(s, func(_ context.Context, x int) ([]int, error) { return []int{2 * x, 2*x + 1}, nil }, stage.Workers(4), stage.Ordered())
		}, func(int) int { return 2 }, func(v int) int { return v / 2 }},
		{"until-interruptible", func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4))
		}, one, self},
	}
	const failID, atCommit = 8, 10
	errFF := errors.New("failfast at item 8")
	errSink := errors.New("commit failed")
	endings := []string{"end", "failfast", "forward-sinkerr", "sinkerr", "errstop", "cancel", "panic", "goexit"}
	for _, o := range ops {
		for _, ending := range endings {
			t.Run(o.name+"/"+ending, func(t *testing.T) {
				var mu sync.Mutex
				committed := map[int]int{}
				var bad []string
				a := newR26Acks()
				a.onDone = func(id int, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err == nil && committed[id] != o.copies(id) {
						bad = append(bad, fmt.Sprintf("item %d: Done(nil) with %d of %d copies committed", id, committed[id], o.copies(id)))
					}
				}
				src := a.source(n)
				if o.name == "until-interruptible" {
					stop, drain := context.WithCancel(context.Background())
					defer drain()
					src = stage.Until(stage.Interruptible(src), stop)
				}
				s := o.build(src)
				switch ending {
				case "failfast", "forward-sinkerr":
					opts := []stage.Option{stage.Workers(2)}
					if ending == "forward-sinkerr" {
						opts = append(opts, stage.OnError(stage.Forward))
					}
					s = stage.Map(s, func(_ context.Context, v int) (int, error) {
						if o.id(v) == failID {
							return 0, errFF
						}
						return v, nil
					}, opts...)
				}
				parent, cancel := context.WithCancel(context.Background())
				defer cancel()
				commits := 0
				f := func(_ context.Context, v int, fwd error) error {
					if fwd != nil {
						return fwd // the sink fails the forwarded error's commit
					}
					id := o.id(v)
					if fate := a.fate(id); fate != "unsettled" {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("item %d: Done(%s) before a copy's commit", id, fate))
						mu.Unlock()
					}
					commits++
					if commits == atCommit {
						switch ending {
						case "sinkerr":
							return errSink
						case "panic":
							panic("sink panics")
						case "goexit":
							runtime.Goexit()
						}
					}
					mu.Lock()
					committed[id]++
					mu.Unlock()
					if commits == atCommit {
						switch ending {
						case "errstop":
							return stage.ErrStop
						case "cancel":
							cancel()
						}
					}
					return nil
				}
				done := make(chan struct{})
				var err error
				go func() {
					defer close(done)
					defer func() { _ = recover() }()
					err = stage.Run(parent, s, f)
				}()
				r26Wait(t, done, "the run")
				a.check(t, 1)
				mu.Lock()
				defer mu.Unlock()
				for _, b := range bad {
					t.Error(b)
				}
				for id := range n {
					a.mu.Lock()
					calls := a.calls[id]
					a.mu.Unlock()
					if len(calls) > 1 {
						t.Errorf("item %d: Done called %d times: %v", id, len(calls), calls)
						continue
					}
					if len(calls) == 1 && calls[0] != nil {
						e := calls[0]
						switch {
						case errors.Is(e, errFF) && id == failID:
						case errors.Is(e, errSink):
						default:
							t.Errorf("item %d: Done(%v): no failure of its own", id, e)
						}
					}
					if ending == "end" && (len(calls) != 1 || calls[0] != nil) {
						t.Errorf("item %d at the input's end: %s, want nil", id, a.fate(id))
					}
				}
				if ending == "end" && err != nil {
					t.Errorf("Run = %v", err)
				}
			})
		}
	}
}
