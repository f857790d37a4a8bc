package stage_test

// Until, attacked from its doc comment and combined with Batch, Merge,
// Tee, Retry and RateLimit.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r67Stop returns a stop context of the kind and its cancel.
var r67Stop = ctxtest.New

var r67StopKinds = []string{"std", "own", "cause"}

// "Once stop is done, no source upstream is asked for another item": a
// stop done before the run: no item is taken, the sink returns nil.
func TestReview67UntilStopDoneBefore(t *testing.T) {
	for _, kind := range r67StopKinds {
		stop, cancel := r67Stop(kind)
		cancel()
		var nexts r67Counter
		shapes := map[string]stage.Stream[int]{
			"bare":  stage.Until(r67Src(-1, &nexts), stop),
			"map":   stage.Map(stage.Until(r67Src(-1, &nexts), stop), r67Id, stage.Workers(4)),
			"batch": stage.Unbatch(stage.Batch(stage.Until(r67Src(-1, &nexts), stop), 3, time.Hour)),
			"merge": stage.Merge(stage.Until(r67Src(-1, &nexts), stop), stage.Until(stage.Map(r67Src(-1, &nexts), r67Id), stop)),
			"tee": func() stage.Stream[int] {
				bs := stage.Tee(stage.Until(r67Src(-1, &nexts), stop), 2)
				return stage.Merge(bs[0], stage.Map(bs[1], r67Id))
			}(),
		}
		for name, s := range shapes {
			var got []int
			var err error
			r67Guard(t, name, func() { got, err = sink.Slice(context.Background(), s) })
			if err != nil || len(got) != 0 {
				t.Errorf("%s/%s: %v, %v; want nothing, nil", kind, name, got, err)
			}
		}
		if nexts.get() != 0 {
			t.Errorf("%s: %d items taken after stop was done", kind, nexts.get())
		}
	}
}

// "Then the sources upstream of Until take no new item (a source blocked
// waiting for one, such as source.Chan, sees its context end and stops
// quietly), while every item they already produced goes on through the
// stages: calls in flight finish, Batch flushes its partial batch, and the
// sink returns nil". A channel with 5 items, never closed: once the 5
// were seen, stop; the sink gets them all, in one batch, and nil.
func TestReview67UntilDrainsBatch(t *testing.T) {
	for _, kind := range r67StopKinds {
		for _, w := range []int{1, 4} {
			name := fmt.Sprintf("%s/w=%d", kind, w)
			stop, cancel := r67Stop(kind)
			ch := make(chan int, 5)
			for i := range 5 {
				ch <- i
			}
			seen := make(chan struct{}, 5)
			m := stage.Map(stage.Until(source.Chan(ch), stop), func(_ context.Context, v int) (int, error) {
				seen <- struct{}{}
				return v, nil
			}, stage.Workers(w))
			var got [][]int
			var err error
			r67Guard(t, name, func() {
				go func() {
					for range 5 {
						<-seen
					}
					cancel()
				}()
				got, err = sink.Slice(context.Background(), stage.Batch(m, 100, time.Hour))
			})
			if err != nil || len(got) != 1 || !r67SameInts(got[0], r67Ints(5)) || (w == 1 && !r67Equal(got[0], r67Ints(5))) {
				t.Errorf("%s: %v, %v; want one batch of 0..4 and nil", name, got, err)
			}
		}
	}
}

// "Until drains only the sources it is built on; in a Merge of an Until
// branch and another, the other branch runs on."
func TestReview67UntilMergeOtherRunsOn(t *testing.T) {
	for _, kind := range r67StopKinds {
		stop, cancel := r67Stop(kind)
		cancel()
		ch := make(chan int) // never sends: the Until branch gives nothing
		s := stage.Merge(stage.Until(source.Chan(ch), stop), stage.Map(r67Src(50, nil), r67Id, stage.Workers(3)))
		var got []int
		var err error
		r67Guard(t, kind, func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil || !r67SameInts(got, r67Ints(50)) {
			t.Errorf("%s: %v, %v; want the other branch's 0..49, nil", kind, got, err)
		}
	}
}

// Until in front of a Tee, stopped mid-run: both branches get every item.
func TestReview67UntilBeforeTee(t *testing.T) {
	for _, kind := range r67StopKinds {
		stop, cancel := r67Stop(kind)
		ch := make(chan int, 6)
		for i := range 6 {
			ch <- i
		}
		var mu sync.Mutex
		seen := 0
		bs := stage.Tee(stage.Until(source.Chan(ch), stop), 2)
		count := func(_ context.Context, v int) (int, error) {
			mu.Lock()
			seen++
			if seen == 12 {
				cancel()
			}
			mu.Unlock()
			return v, nil
		}
		s := stage.Merge(stage.Map(bs[0], count), stage.Map(bs[1], count, stage.Workers(1)))
		var got []int
		var err error
		r67Guard(t, kind, func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil || !r67SameInts(got, append(r67Ints(6), r67Ints(6)...)) {
			t.Errorf("%s: %v, %v; want 0..5 twice, nil", kind, got, err)
		}
	}
}

// "every item they already produced goes on through the stages: calls in
// flight finish": an item in its Retry backoff, or waiting for its
// RateLimit token, when stop is done, is still tried and delivered, and
// its function's ctx is not done (only the sources' ctx ends). Whatever
// the timing, the items delivered are exactly the items the source gave.
func TestReview67UntilItemsInRetryAndRateWait(t *testing.T) {
	for _, kind := range r67StopKinds {
		for _, opt := range []string{"retry", "ratelimit"} {
			name := kind + "/" + opt
			stop, cancel := r67Stop(kind)
			var nexts r67Counter
			var tries r67Tries
			var once sync.Once
			opts := []stage.Option{stage.Workers(3)}
			if opt == "retry" {
				opts = append(opts, stage.Retry(3, 5*time.Millisecond))
			} else {
				opts = append(opts, stage.RateLimit(100, 1))
			}
			m := stage.Map(stage.Until(r67Src(-1, &nexts), stop), func(ctx context.Context, v int) (int, error) {
				n := tries.add(v)
				if ctx.Err() != nil {
					t.Errorf("%s: item %d attempt %d: the function's ctx is done", name, v, n)
				}
				if v == 2 {
					once.Do(cancel)
				}
				if opt == "retry" && n == 1 && v%2 == 0 {
					return 0, r67Err
				}
				return v, nil
			}, opts...)
			var got []int
			var err error
			r67Guard(t, name, func() { got, err = sink.Slice(context.Background(), m) })
			if err != nil || !r67SameInts(got, r67Ints(int(nexts.get()))) || len(got) < 3 {
				t.Errorf("%s: %v, %v; want every item the source gave (%d), nil", name, got, err, nexts.get())
			}
		}
	}
}

// "Cancelling the run's context (the ctx given to the sink) is the other
// way to stop, and it aborts: calls in flight see ctx.Done(), nothing more
// is delivered, and the sink returns the cancellation error."
func TestReview67UntilAbort(t *testing.T) {
	for _, kind := range r67CtxKinds {
		ctx, cancel := r67Parent(kind)
		stop, stopCancel := context.WithCancel(context.Background())
		entered := make(chan struct{})
		var sawDone bool
		m := stage.Map(stage.Until(r67Src(-1, nil), stop), func(fctx context.Context, v int) (int, error) {
			if v == 3 {
				close(entered)
				<-fctx.Done()
				sawDone = true
				return 0, fctx.Err()
			}
			return v, nil
		}, stage.Workers(1), stage.Buffer(1))
		var err error
		r67Guard(t, kind, func() {
			go func() { <-entered; cancel() }()
			err = stage.Run(ctx, stage.Batch(m, 10, time.Hour), func(context.Context, []int, error) error {
				t.Errorf("%s: a batch was delivered", kind)
				return nil
			})
		})
		stopCancel()
		if !errors.Is(err, context.Canceled) || !sawDone {
			t.Errorf("%s: %v (the call saw Done: %v); want context.Canceled", kind, err, sawDone)
		}
	}
}

// r67PanicDoneCtx is a stop context whose Done panics.
type r67PanicDoneCtx struct{ context.Context }

func (r67PanicDoneCtx) Done() <-chan struct{} { panic("r67 Done") }

// "If ... the stop context of an Until, is a context type of the caller's
// whose methods panic when the run calls them, the run is cancelled and the
// sink raises that panic again once the run is over, in place of its
// result." No goroutine of the run is left. Child process.
func TestReview67UntilStopPanics(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, shape := range []string{"bare", "map", "batch", "merge"} {
			stop := r67PanicDoneCtx{context.Background()}
			var s stage.Stream[int]
			switch shape {
			case "bare":
				s = stage.Until(r67Src(10, nil), stop)
			case "map":
				s = stage.Map(stage.Until(r67Src(10, nil), stop), r67Id, stage.Workers(3))
			case "batch":
				s = stage.Unbatch(stage.Batch(stage.Until(r67Src(10, nil), stop), 3, time.Hour))
			case "merge":
				s = stage.Merge(stage.Until(r67Src(10, nil), stop), r67Src(10, nil))
			}
			_, before := runcheck.Goroutines()
			v, panicked := r67Recover(func() { _, _ = sink.Slice(context.Background(), s) })
			if !panicked || fmt.Sprint(v) != "r67 Done" {
				t.Errorf("%s: panicked %v with %v; want the stop's panic, r67 Done", shape, panicked, v)
			}
			r67NoLeakSince(t, shape, before)
		}
	})
}
