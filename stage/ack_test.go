package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// acks is a source of 0..n-1 whose items carry acknowledgements, and the
// record of what became of each.
type acks struct {
	t     *testing.T
	mu    sync.Mutex
	done  map[int][]error // each Done call's error, per item
	check func(id int, err error)
}

type ackOf struct {
	a  *acks
	id int
}

func (a ackOf) Done(err error) {
	a.a.mu.Lock()
	defer a.a.mu.Unlock()
	if a.a.check != nil {
		a.a.check(a.id, err)
	}
	a.a.done[a.id] = append(a.a.done[a.id], err)
}

func newAcks(t *testing.T) *acks { return &acks{t: t, done: map[int][]error{}} }

func (a *acks) source(n int) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == n {
				return 0, nil, errEOF
			}
			i++
			return i - 1, ackOf{a, i - 1}, nil
		}, nil
	})
}

// outcome returns "ok", "err" or "none" for id, failing on a second Done.
func (a *acks) outcome(id int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	d := a.done[id]
	switch {
	case len(d) > 1:
		a.t.Fatalf("item %d: Done called %d times", id, len(d))
	case len(d) == 0:
		return "none"
	case d[0] == nil:
		return "ok"
	}
	return "err"
}

func (a *acks) outcomes(n int) map[string]int {
	c := map[string]int{}
	for id := range n {
		c[a.outcome(id)]++
	}
	return c
}

func TestAckAfterCommit(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			a := newAcks(t)
			var committed sync.Map
			a.check = func(id int, err error) {
				if _, ok := committed.Load(id); err == nil && !ok && id%3 != 0 {
					t.Errorf("item %d acknowledged before its commit", id)
				}
			}
			s := stage.Filter(a.source(100), func(_ context.Context, x int) (bool, error) { return x%3 != 0, nil }, m.opts()...)
			s = stage.Map(s, double, m.opts()...)
			err := sink.ForEach(context.Background(), s, func(_ context.Context, x int) error {
				committed.Store(x/2, true)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if got := a.outcomes(100); got["ok"] != 100 {
				t.Fatalf("outcomes %v, want 100 ok (kept and committed, or dropped by Filter)", got)
			}
		})
	}
}

func TestAckFanOutAndForward(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			a := newAcks(t)
			var mu sync.Mutex
			children := map[int]int{} // committed children per parent
			a.check = func(id int, err error) {
				if err == nil && children[id] != 3 {
					t.Errorf("item %d acknowledged after %d of its 3 outputs", id, children[id])
				}
			}
			s := stage.Map(a.source(40), failMultiplesOf3, m.opts(stage.OnError(stage.Forward))...)
			s = stage.FlatMap(s, func(_ context.Context, x int) ([]int, error) { return []int{x, x, x}, nil }, m.opts()...)
			_, err := sink.Slice(context.Background(), stage.Map(s, func(_ context.Context, x int) (int, error) {
				a.mu.Lock() // a.check runs under a.mu
				mu.Lock()
				children[x]++
				mu.Unlock()
				a.mu.Unlock()
				return x, nil
			}, m.opts()...))
			if err == nil {
				t.Fatal("want the forwarded errors")
			}
			for id := range 40 {
				want := "ok"
				if id%3 == 0 {
					want = "err" // forwarded to the sink
				}
				if got := a.outcome(id); got != want {
					t.Fatalf("item %d: %s, want %s", id, got, want)
				}
			}
			var se *stage.Error
			if d := a.done[3][0]; !errors.As(d, &se) || se.Stage != "map#1" {
				t.Fatalf("item 3 Done(%v), want the forwarded *stage.Error", d)
			}
		})
	}
}

func TestAckFailedCommitAndHandle(t *testing.T) {
	a := newAcks(t)
	dead := stage.Handle(func(context.Context, *stage.Error) error { return nil })
	s := stage.Map(a.source(20), failMultiplesOf3, stage.Workers(1), stage.OnError(dead))
	errDB := errors.New("db down")
	err := sink.ForEach(context.Background(), s, func(_ context.Context, x int) error {
		if x == 10 {
			return errDB
		}
		return nil
	})
	if !errors.Is(err, errDB) {
		t.Fatalf("err = %v, want errDB", err)
	}
	for id := range 11 {
		want := "ok" // committed, or handled by the dead-letter policy
		if id == 10 {
			want = "err" // the commit failed
		}
		if got := a.outcome(id); got != want {
			t.Fatalf("item %d: %s, want %s", id, got, want)
		}
	}
	if !errors.Is(a.done[10][0], errDB) {
		t.Fatalf("item 10 Done(%v), want the commit's error", a.done[10][0])
	}
	for id := 12; id < 20; id++ {
		if a.outcome(id) == "ok" {
			t.Fatalf("item %d acknowledged although the run failed before it was committed", id)
		}
	}
}

func TestAckBatchTeeUnbatch(t *testing.T) {
	a := newAcks(t)
	b := stage.Tee(stage.Batch(a.source(25), 4, time.Hour), 2)
	flat := stage.Unbatch(b[0])
	count := stage.Map(b[1], func(_ context.Context, batch []int) (int, error) { return len(batch), nil })
	n, err := sink.Count(context.Background(), stage.Merge(flat, count))
	if err != nil || n != 25+7 {
		t.Fatalf("%d, %v; want 32, nil", n, err)
	}
	if got := a.outcomes(25); got["ok"] != 25 {
		t.Fatalf("outcomes %v, want 25 ok", got)
	}
}

func TestAckNeverOnCancelOrFailFast(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			a := newAcks(t)
			ctx, cancel := context.WithCancel(context.Background())
			seen := 0
			err := stage.Run(ctx, stage.Map(a.source(1000), double, m.opts()...), func(context.Context, int, error) error {
				if seen++; seen == 10 {
					cancel()
				}
				return nil
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v", err)
			}
			got := a.outcomes(1000)
			if got["err"] != 0 || got["ok"] > 10 || got["ok"] < 9 {
				t.Fatalf("outcomes %v: want the ≤10 committed acknowledged, the rest left alone", got)
			}
			// FailFast: the failed item is told its error; those in flight
			// are left alone.
			a = newAcks(t)
			_, err = sink.Count(context.Background(), stage.Map(a.source(100), failMultiplesOf3, m.opts()...))
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("FailFast: err %v, want a *stage.Error", err)
			}
			if a.outcome(se.Index) != "err" {
				t.Fatalf("FailFast: item %d ended the run with %v but was told %s", se.Index, err, a.outcome(se.Index))
			}
			for id := range 100 { // items failing at once may each be told
				if a.outcome(id) == "err" && (id%3 != 0 || !errors.Is(a.done[id][0], errBoom)) {
					t.Fatalf("FailFast: item %d told %v, want only failed items told their error", id, a.done[id][0])
				}
			}
		})
	}
}

func ExampleAckSource() {
	ctx := context.Background()
	// A queue whose messages must be acknowledged once stored.
	queue := []string{"a", "b", "bad", "c"}
	acked := map[string]string{}
	src := stage.AckSource(func(context.Context) (func(context.Context) (string, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (string, stage.Ack, error) {
			if i == len(queue) {
				return "", nil, errEOF
			}
			msg := queue[i]
			i++
			return msg, ackFunc(func(err error) {
				if err != nil {
					acked[msg] = "nak"
				} else {
					acked[msg] = "ack"
				}
			}), nil
		}, nil
	})
	err := sink.ForEach(ctx, stage.Map(src, func(_ context.Context, s string) (string, error) { return s, nil }, stage.Workers(1)),
		func(_ context.Context, s string) error {
			if s == "bad" {
				return errors.New("cannot store")
			}
			return nil
		})
	fmt.Println(acked, err != nil)
	// Output: map[a:ack b:ack bad:nak] true
}

type ackFunc func(error)

func (f ackFunc) Done(err error) { f(err) }

func TestAckUnbatchSettlesEachElement(t *testing.T) {
	a := newAcks(t)
	s := stage.Unbatch(stage.Batch(a.source(30), 4, time.Hour))
	s = stage.Map(s, failMultiplesOf3, stage.Workers(2), stage.OnError(stage.Forward))
	if _, err := sink.Count(context.Background(), s); err == nil {
		t.Fatal("want the forwarded errors")
	}
	for id := range 30 {
		want := "ok"
		if id%3 == 0 {
			want = "err" // only the failed element, not its batch mates
		}
		if got := a.outcome(id); got != want {
			t.Fatalf("item %d: %s, want %s", id, got, want)
		}
	}
}
