package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r30Acks is an AckSource of n items (0..n-1) that records every Done.
type r30Acks struct {
	mu    sync.Mutex
	calls map[int][]error
	// onDone runs inside Done (a panic or a Goexit there, say).
	onDone func(id int, err error)
}

type r30Ack struct {
	a  *r30Acks
	id int
}

func (k r30Ack) Done(err error) {
	k.a.mu.Lock()
	k.a.calls[k.id] = append(k.a.calls[k.id], err)
	f := k.a.onDone
	k.a.mu.Unlock()
	if f != nil {
		f(k.id, err)
	}
}

func r30NewAcks() *r30Acks { return &r30Acks{calls: map[int][]error{}} }

func (a *r30Acks) source(n int) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == n {
				return 0, nil, io.EOF
			}
			i++
			return i - 1, r30Ack{a, i - 1}, nil
		}, nil
	})
}

func (a *r30Acks) snapshot() map[int][]error {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := map[int][]error{}
	for k, v := range a.calls {
		m[k] = append([]error(nil), v...)
	}
	return m
}

// check verifies, once the sink returned: items in nilIDs were told nil
// exactly once; the item failID (if >= 0) was told exactly once an error
// for which match holds; every other item was told nothing.
func (a *r30Acks) check(n int, nilIDs map[int]bool, failID int, match func(error) bool) string {
	var bad []string
	m := a.snapshot()
	for id := range n {
		calls := m[id]
		switch {
		case nilIDs[id]:
			if len(calls) != 1 || calls[0] != nil {
				bad = append(bad, fmt.Sprintf("item %d: Done calls %v, want one Done(nil)", id, calls))
			}
		case id == failID:
			if len(calls) != 1 || calls[0] == nil || !match(calls[0]) {
				bad = append(bad, fmt.Sprintf("item %d: Done calls %v, want one Done with the commit's error", id, calls))
			}
		default:
			if len(calls) != 0 {
				bad = append(bad, fmt.Sprintf("item %d: Done calls %v, want none", id, calls))
			}
		}
	}
	return strings.Join(bad, "; ")
}

func r30Upto(k int) map[int]bool {
	m := map[int]bool{}
	for i := range k {
		m[i] = true
	}
	return m
}

// r30AckShapes keep input order, so that "the k-th item the sink saw" is
// item k.
func r30AckShapes() map[string]func(stage.Stream[int]) stage.Stream[int] {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	return map[string]func(stage.Stream[int]) stage.Stream[int]{
		"bare":       func(s stage.Stream[int]) stage.Stream[int] { return s },
		"neverwaits": func(s stage.Stream[int]) stage.Stream[int] { return stage.NeverWaits(s) },
		"map1":       func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, id, stage.Workers(1)) },
		"map1-cheap": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.NeverWaits(s), id, stage.Workers(1))
		},
		"map4-ordered": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(4), stage.Ordered())
		},
		"batch-unbatch": func(s stage.Stream[int]) stage.Stream[int] { return stage.Unbatch(stage.Batch(s, 3, 0)) },
	}
}

// TestReview30SinkAcks attacks stage.Ack's promises through each sink of
// package sink: "Done is called at most once per item"; "Done(nil) when ...
// the sink committed it (its callback returned nil or ErrStop; the item
// sink.First returns, or the one before a break out of sink.All, counts)";
// "Done(err) as soon as its way failed, with the first error: ... the sink
// callback that got it ... returned err (the commit failed)"; a panic in a
// sink callback that the sink turns into an error (ForEach, Reduce: "the
// sinks that take user callbacks turn their panics into errors
// themselves") is such an error; "Done is not called when the run ended
// before the item's fate was known: ... a sink that stopped early". Checked
// when the sink has returned (the Acks are called from goroutines of the
// run, which have all exited then).
func TestReview30SinkAcks(t *testing.T) {
	const n = 12
	boom := errors.New("commit failed")
	isBoom := func(err error) bool { return errors.Is(err, boom) }
	isPanic := func(err error) bool {
		var pe *stage.PanicError
		return errors.As(err, &pe)
	}
	type ending struct {
		run  func(s stage.Stream[int]) string
		nils map[int]bool
		fail int
		is   func(error) bool
	}
	ctx := context.Background()
	endings := map[string]ending{
		"Slice": {func(s stage.Stream[int]) string {
			got, err := sink.Slice(ctx, s)
			return fmt.Sprint(len(got), err)
		}, r30Upto(n), -1, nil},
		"Count": {func(s stage.Stream[int]) string {
			c, err := sink.Count(ctx, s)
			return fmt.Sprint(c, err)
		}, r30Upto(n), -1, nil},
		"Reduce": {func(s stage.Stream[int]) string {
			r, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a + v })
			return fmt.Sprint(r, err)
		}, r30Upto(n), -1, nil},
		"Chan": {func(s stage.Stream[int]) string {
			out := make(chan int)
			got := make(chan int)
			go func() {
				c := 0
				for range out {
					c++
				}
				got <- c
			}()
			err := sink.Chan(ctx, s, out)
			close(out)
			return fmt.Sprint(<-got, err)
		}, r30Upto(n), -1, nil},
		"First": {func(s stage.Stream[int]) string {
			v, ok, err := sink.First(ctx, s)
			return fmt.Sprint(v, ok, err)
		}, r30Upto(1), -1, nil},
		"All-break@4": {func(s stage.Stream[int]) string {
			c := 0
			for v, err := range sink.All(ctx, s) {
				c++
				if err != nil || v == 4 {
					break
				}
			}
			return fmt.Sprint(c)
		}, r30Upto(5), -1, nil},
		"ForEach-stop@4": {func(s stage.Stream[int]) string {
			err := sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				if v == 4 {
					return stage.ErrStop
				}
				return nil
			})
			return fmt.Sprint(err)
		}, r30Upto(5), -1, nil},
		"ForEach-err@4": {func(s stage.Stream[int]) string {
			err := sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				if v == 4 {
					return boom
				}
				return nil
			})
			return fmt.Sprint(err)
		}, r30Upto(4), 4, isBoom},
		"ForEach-panic@4": {func(s stage.Stream[int]) string {
			err := sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				if v == 4 {
					panic(boom)
				}
				return nil
			})
			return fmt.Sprint(err)
		}, r30Upto(4), 4, isPanic},
		"Reduce-panic@4": {func(s stage.Stream[int]) string {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int {
				if v == 4 {
					panic(boom)
				}
				return a + v
			})
			return fmt.Sprint(err)
		}, r30Upto(4), 4, isPanic},
	}
	for ename, e := range endings {
		for sname, shape := range r30AckShapes() {
			for rep := range 10 {
				label := fmt.Sprintf("%s/%s#%d", ename, sname, rep)
				a := r30NewAcks()
				var res string
				runcheck.Run(t, label, func() { res = e.run(shape(a.source(n))) })
				if bad := a.check(n, e.nils, e.fail, e.is); bad != "" {
					t.Errorf("%s (sink said %s): %s", label, res, bad)
				}
			}
		}
	}
}
