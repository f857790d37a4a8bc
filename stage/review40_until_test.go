package stage_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r40Ack records the fate of one item.
type r40Ack struct {
	calls atomic.Int32
	mu    sync.Mutex
	err   error
}

func (a *r40Ack) Done(err error) {
	a.calls.Add(1)
	a.mu.Lock()
	a.err = err
	a.mu.Unlock()
}

// r40Taker is an AckSource of 0, 1, 2, ... whose next blocks on its own
// channel and ignores its context: an item is produced only when the test
// sends on feed. It records every item it produced and its Ack.
type r40Taker struct {
	feed     chan struct{}
	inNext   chan struct{} // receives once per call of next, as it starts
	mu       sync.Mutex
	produced []int
	acks     []*r40Ack
}

func newR40Taker() *r40Taker {
	return &r40Taker{feed: make(chan struct{}), inNext: make(chan struct{}, 1000)}
}

func (s *r40Taker) stream() stage.Stream[int] {
	return stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
		return func(ctx context.Context) (int, stage.Ack, error) {
			s.inNext <- struct{}{}
			<-s.feed // ignores ctx on purpose: a next that blocks in a read
			s.mu.Lock()
			defer s.mu.Unlock()
			v := len(s.produced)
			a := &r40Ack{}
			s.produced = append(s.produced, v)
			s.acks = append(s.acks, a)
			return v, a, nil
		}, nil
	})
}

// TestReview40UntilItemProducedAfterStop attacks stage.Until's "every item
// they already produced goes on through the stages" and the README's "Nothing
// taken is lost", with a source whose next is inside a blocking read (it
// ignores its context, as the doc of Interruptible allows of "a next that
// blocks in a read") when stop becomes done. The read then returns an item:
// the source took it from the outside world, so it must reach the sink and
// be acknowledged with nil, or at least not be acknowledged as committed
// without reaching the sink.
func TestReview40UntilItemProducedAfterStop(t *testing.T) {
	for _, name := range []string{"bare", "map", "ordered", "batch"} {
		t.Run(name, func(t *testing.T) {
			src := newR40Taker()
			stop, drain := context.WithCancel(context.Background())
			var s stage.Stream[int] = stage.Until(src.stream(), stop)
			switch name {
			case "map":
				s = stage.Map(s, double, stage.Workers(1))
			case "ordered":
				s = stage.Map(s, double, stage.Workers(3), stage.Ordered())
			case "batch":
				s = stage.Unbatch(stage.Batch(s, 10, 0))
			}
			var got []int
			var err error
			done := r40Go(func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
					got = append(got, v)
					return nil
				})
			})
			// Two items pass, then next is in its read for the third.
			for range 2 {
				r40Wait(t, src.inNext, "next")
				src.feed <- struct{}{}
			}
			r40Wait(t, src.inNext, "next, third call")
			drain()
			src.feed <- struct{}{} // the read returns an item after stop
			r40Wait(t, done, "the drained run")
			if err != nil {
				t.Fatalf("drained run returned %v, want nil", err)
			}
			src.mu.Lock()
			defer src.mu.Unlock()
			if len(src.produced) != 3 {
				t.Fatalf("the source produced %d items, want 3", len(src.produced))
			}
			want := []int{0, 1, 2}
			if name == "map" || name == "ordered" {
				want = []int{0, 2, 4}
			}
			slices.Sort(got)
			for i, a := range src.acks {
				delivered := slices.Contains(got, want[i])
				calls := a.calls.Load()
				switch {
				case calls > 1:
					t.Errorf("item %d: Done called %d times", i, calls)
				case delivered && (calls != 1 || a.err != nil):
					t.Errorf("item %d reached the sink, committed, but its Ack was told (calls %d, err %v), want Done(nil)", i, calls, a.err)
				case !delivered && calls == 1 && a.err == nil:
					t.Errorf("item %d never reached the sink but was acknowledged as done: lost", i)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("delivered %v; the source produced %v: an item the source produced (taken from the world) after stop was lost, although Until says every item produced goes on", got, want)
			}
		})
	}
}

// TestReview40UntilDrainComposition drains a pipeline that holds items at
// every place when stop becomes done: a KeyBy stage with a key's items
// waiting, an Ordered window behind a slow item, a partial Batch, a Tee whose
// branches go at different paces, merged back. Every item the source produced
// must reach the sink (once per branch), with nil, and every Ack told nil.
func TestReview40UntilDrainComposition(t *testing.T) {
	for round := range 20 {
		stop, drain := context.WithCancel(context.Background())
		var produced atomic.Int64
		acks := make([]*r40Ack, 0, 1000)
		var amu sync.Mutex
		drainAt := int64(7 + round%11)
		src := stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
			return func(ctx context.Context) (int, stage.Ack, error) {
				n := produced.Add(1) - 1
				if n == drainAt {
					drain()
				}
				if n >= 1000 {
					<-ctx.Done()
					return 0, nil, ctx.Err()
				}
				a := &r40Ack{}
				amu.Lock()
				acks = append(acks, a)
				amu.Unlock()
				return int(n), a, nil
			}, nil
		})
		keyed := stage.Map(stage.Until(src, stop), func(_ context.Context, v int) (int, error) {
			r37Jitter()
			return v, nil
		}, stage.Workers(4), stage.KeyBy(func(v int) int { return v % 2 }))
		ord := stage.Map(keyed, func(_ context.Context, v int) (int, error) {
			r37Jitter()
			return v, nil
		}, stage.Workers(3), stage.Ordered())
		b := stage.Tee(ord, 2)
		left := stage.Unbatch(stage.Batch(b[0], 4, 0))
		right := stage.Map(b[1], func(_ context.Context, v int) (int, error) {
			r37Jitter()
			return v + 100000, nil
		}, stage.Workers(2))
		var got []int
		var err error
		done := r40Go(func() { got, err = sink.Slice(context.Background(), stage.Merge(left, right)) })
		r40Wait(t, done, "the drained run")
		if err != nil {
			t.Fatalf("round %d: drained run returned %v, want nil", round, err)
		}
		if p := produced.Load(); p != drainAt+1 {
			t.Errorf("round %d: stop was done inside call %d of next, yet next was called %d times: \"once stop is done, none is asked for another item\"", round, drainAt+1, p)
		}
		amu.Lock()
		n := len(acks)
		var want []int
		for i := range n {
			want = append(want, i, i+100000)
			if c := acks[i].calls.Load(); c != 1 || acks[i].err != nil {
				t.Errorf("round %d: item %d taken before the drain: Done called %d times, err %v; want Done(nil) once", round, i, c, acks[i].err)
			}
		}
		amu.Unlock()
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: drained run delivered %d items, the source produced %d (want each on both branches): %v", round, len(got), n, got)
		}
	}
}

// TestReview40UntilThenFailure: a drain does not hide a failure. stop is done,
// then an item in flight fails under FailFast: the sink must return that
// *stage.Error, not nil. And a cancellation of ctx during the drain aborts.
func TestReview40UntilThenFailure(t *testing.T) {
	t.Run("failfast", func(t *testing.T) {
		stop, drain := context.WithCancel(context.Background())
		inCall := make(chan struct{})
		one := false
		src := stage.Until(source.Func(func(ctx context.Context) (int, error) {
			if !one {
				one = true
				return 1, nil
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}), stop)
		m := stage.Map(src, func(ctx context.Context, v int) (int, error) {
			close(inCall)
			<-stop.Done()
			return 0, errR40
		}, stage.Workers(2))
		var err error
		done := r40Go(func() { _, err = sink.Slice(context.Background(), m) })
		r40Wait(t, inCall, "the call")
		drain()
		r40Wait(t, done, "the run")
		var se *stage.Error
		if !errors.As(err, &se) || !errors.Is(err, errR40) {
			t.Fatalf("a FailFast error after the drain started: sink returned %v, want the *stage.Error", err)
		}
	})
	t.Run("cancel-during-drain", func(t *testing.T) {
		stop, drain := context.WithCancel(context.Background())
		ctx, cancel := context.WithCancel(context.Background())
		inCall := make(chan struct{})
		one := false
		src := stage.Until(source.Func(func(ctx context.Context) (int, error) {
			if !one {
				one = true
				return 1, nil
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}), stop)
		m := stage.Map(src, func(ctx context.Context, v int) (int, error) {
			close(inCall)
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Workers(2))
		var err error
		var got []int
		done := r40Go(func() { got, err = sink.Slice(ctx, m) })
		r40Wait(t, inCall, "the call")
		drain()
		cancel()
		r40Wait(t, done, "the run")
		if !errors.Is(err, context.Canceled) || len(got) != 0 {
			t.Fatalf("cancel during drain: got %v, %v; want no value and context.Canceled", got, err)
		}
	})
}

// TestReview40UntilMergeOtherRunsOn: "in a Merge of an Until branch and
// another, the other branch runs on": the other branch's items after the
// drain must all arrive, and its source failure still fails the run.
func TestReview40UntilMergeOtherRunsOn(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	drained := stage.Until(source.Func(func(ctx context.Context) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}), stop)
	feed := make(chan int)
	other := source.Chan(feed)
	var got []int
	var err error
	done := r40Go(func() { got, err = sink.Slice(context.Background(), stage.Merge(drained, other)) })
	feed <- 1
	drain()
	// The other branch must still take values after the drain.
	for i := 2; i <= 5; i++ {
		select {
		case feed <- i:
		case <-done:
			t.Fatalf("the run ended (%v, %v) when only the Until branch was drained", got, err)
		}
	}
	close(feed)
	r40Wait(t, done, "the run")
	if err != nil || !slices.Equal(got, []int{1, 2, 3, 4, 5}) {
		t.Fatalf("got %v, %v; want [1 2 3 4 5], nil", got, err)
	}
}

// TestReview40UntilChanNothingLost drains a source.Chan (Interruptible: a
// cheap Map over it may receive in its consumer's goroutines) while values
// keep arriving: after the drain, every value that left the channel reached
// the sink, and every value left in it stays there ("Nothing taken is lost";
// "a source blocked waiting for one, such as source.Chan, sees its context
// end and stops quietly").
func TestReview40UntilChanNothingLost(t *testing.T) {
	for _, shape := range []string{"map", "map-batch", "ordered", "keyby"} {
		t.Run(shape, func(t *testing.T) {
			for round := range 30 {
				ch := make(chan int, 64)
				stop, drain := context.WithCancel(context.Background())
				s := stage.Until(source.Chan(ch), stop)
				var out stage.Stream[int]
				switch shape {
				case "map":
					out = stage.Map(s, double, stage.Workers(4))
				case "map-batch":
					out = stage.Unbatch(stage.Batch(stage.Map(s, double, stage.Workers(4)), 5, 0))
				case "ordered":
					out = stage.Map(s, double, stage.Workers(4), stage.Ordered())
				case "keyby":
					out = stage.Map(s, double, stage.Workers(4), stage.KeyBy(func(v int) int { return v % 3 }))
				}
				var got []int
				var err error
				seen := make(chan struct{}, 1000)
				done := r40Go(func() {
					err = sink.ForEach(context.Background(), out, func(_ context.Context, v int) error {
						got = append(got, v/2)
						seen <- struct{}{}
						return nil
					})
				})
				sent := 0
				for range 10 {
					ch <- sent
					sent++
				}
				for range 5 {
					r40Wait(t, seen, "a value at the sink")
				}
				// Keep sending while the drain happens.
				go drain()
				for range 20 + round {
					select {
					case ch <- sent:
						sent++
					default:
					}
				}
				r40Wait(t, done, "the drained run")
				if err != nil {
					t.Fatalf("round %d: drained run returned %v", round, err)
				}
				left := len(ch)
				if len(got)+left != sent {
					t.Fatalf("round %d: sent %d, delivered %d, left in the channel %d: %d value(s) taken from the channel and lost", round, sent, len(got), left, sent-left-len(got))
				}
				slices.Sort(got)
				for i, v := range got {
					if v != i {
						t.Fatalf("round %d: delivered %v, want the first %d values sent", round, got, len(got))
					}
				}
			}
		})
	}
}

// TestReview40UntilErrorAfterStopIsQuiet attacks stage.Source's "an error
// next returns once stop is done ends the stream quietly, whether or not its
// context has ended yet": next waits on the stop context itself (not on its
// own ctx) and returns a non-context error the moment stop is done. Through
// a Merge of two drained sources, a Tee and a Batch, the sink returns nil with
// every item.
func TestReview40UntilErrorAfterStopIsQuiet(t *testing.T) {
	for round := range 20 {
		stop, drain := context.WithCancel(context.Background())
		waiting := make(chan struct{}, 2)
		mk := func(base int) stage.Stream[int] {
			i := 0
			return source.Func(func(ctx context.Context) (int, error) {
				if i < 5 {
					i++
					return base + i, nil
				}
				waiting <- struct{}{}
				<-stop.Done()
				return 0, errR40
			})
		}
		s := stage.Until(stage.Merge(mk(0), mk(100)), stop)
		b := stage.Tee(s, 2)
		out := stage.Merge(stage.Unbatch(stage.Batch(b[0], 3, 0)), stage.Map(b[1], double, stage.Workers(2)))
		var got []int
		var err error
		seen := make(chan struct{}, 100)
		done := r40Go(func() {
			err = sink.ForEach(context.Background(), out, func(_ context.Context, v int) error {
				got = append(got, v)
				seen <- struct{}{}
				return nil
			})
		})
		for range round % 10 {
			r40Wait(t, seen, "values before the drain")
		}
		// Both sources have produced their 5 items and wait on stop.
		r40Wait(t, waiting, "a source's wait")
		r40Wait(t, waiting, "a source's wait")
		drain()
		r40Wait(t, done, "the drained run")
		if err != nil || len(got) != 20 {
			t.Fatalf("round %d: an error of next after stop: got %d values, %v; want 20, nil", round, len(got), err)
		}
	}
}

// TestReview40UntilStopDoneBeforeRunEverySink: stop done before the run:
// "once stop is done, none is asked for another item" — the source is never
// called, every sink returns nil with nothing (First: zero, false, nil),
// through a Tee, a Batch and a KeyBy stage.
func TestReview40UntilStopDoneBeforeRunEverySink(t *testing.T) {
	stop, drain := context.WithCancel(context.Background())
	drain()
	var calls atomic.Int32
	src := source.Func(func(ctx context.Context) (int, error) {
		calls.Add(1)
		return 1, nil
	})
	build := func() stage.Stream[int] {
		b := stage.Tee(stage.Until(src, stop), 2)
		return stage.Merge(stage.Unbatch(stage.Batch(b[0], 3, 0)),
			stage.Map(b[1], double, stage.Workers(3), stage.KeyBy(func(v int) int { return v })))
	}
	ctx := context.Background()
	vs, err := sink.Slice(ctx, build())
	if len(vs) != 0 || err != nil {
		t.Errorf("Slice: %v, %v", vs, err)
	}
	v, ok, err := sink.First(ctx, build())
	if v != 0 || ok || err != nil {
		t.Errorf("First: %v, %v, %v", v, ok, err)
	}
	n := 0
	for _, err := range sink.All(ctx, build()) {
		n++
		if err != nil {
			t.Errorf("All: %v", err)
		}
	}
	if n != 0 {
		t.Errorf("All yielded %d pairs", n)
	}
	if err := sink.Chan(ctx, build(), make(chan int)); err != nil {
		t.Errorf("Chan: %v", err)
	}
	if c := calls.Load(); c != 0 {
		t.Errorf("the source was called %d times although stop was done before the run", c)
	}
}

// TestReview40UntilRetryDuringDrain: "calls in flight finish" under a drain
// includes their retries: a call that fails its first attempt after stop is
// done is tried again (the drain is not a cancellation), and its success is
// delivered; the sink returns nil.
func TestReview40UntilRetryDuringDrain(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		stop, drain := context.WithCancel(context.Background())
		inCall := make(chan struct{})
		sent := false
		src := stage.Until(source.Func(func(ctx context.Context) (int, error) {
			if !sent {
				sent = true
				return 7, nil
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}), stop)
		var attempts atomic.Int32
		opts := []stage.Option{stage.Workers(2), stage.Retry(3, 0)}
		if ordered {
			opts = append(opts, stage.Ordered())
		}
		m := stage.Map(src, func(ctx context.Context, v int) (int, error) {
			if attempts.Add(1) == 1 {
				close(inCall)
				<-stop.Done()
				return 0, errR40
			}
			return v, nil
		}, opts...)
		var got []int
		var err error
		done := r40Go(func() { got, err = sink.Slice(context.Background(), m) })
		r40Wait(t, inCall, "the first attempt")
		drain()
		r40Wait(t, done, "the drained run")
		if err != nil || !slices.Equal(got, []int{7}) || attempts.Load() != 2 {
			t.Errorf("ordered=%v: a retry during the drain: got %v, %v after %d attempts; want [7], nil after 2", ordered, got, err, attempts.Load())
		}
	}
}
