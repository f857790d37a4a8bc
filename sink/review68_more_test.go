package sink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r68CancelPair returns a live caller ctx of the kind and its cancel:
// standard, of the caller's own type, or a standard one wrapped.
var r68CancelPair = ctxtest.New

var r68CtxKinds = []string{ctxtest.Std, ctxtest.Own, ctxtest.Wrap}

// r68UserCancel is r68CancelPair for a bool: the caller's own context type
// (ctxtest.DoneCtx) when user is true, a standard one otherwise.
func r68UserCancel(user bool) (context.Context, func()) {
	if user {
		return r68CancelPair(ctxtest.Own)
	}
	return r68CancelPair("std")
}

// Source doc: "A source takes an item from the caller's world ... only when
// a stage, or the sink, is ready to work on it, and never after the run was
// cancelled"; stage doc: "from the moment its Done channel is closed no
// source's next is called". A ctx cancelled before the sink is called:
// nothing is taken, and the sink reports the cancellation.
func TestReview68PreCancelledTakesNothing(t *testing.T) {
	for _, kind := range r68CtxKinds {
		for _, shape := range []string{"first chan", "slice map chan", "func", "seq", "map w1 chan", "merge chans"} {
			t.Run(kind+"/"+shape, func(t *testing.T) {
				ctx, cancel := r68CancelPair(kind)
				cancel()
				ch := r68FilledChan(10)
				var calls atomic.Int32
				id := func(_ context.Context, v int) (int, error) { calls.Add(1); return v, nil }
				var err error
				runcheck.Run(t, shape, func() {
					switch shape {
					case "first chan":
						_, _, err = sink.First(ctx, source.Chan(ch))
					case "slice map chan":
						_, err = sink.Slice(ctx, stage.Map(source.Chan(ch), id, stage.Workers(4)))
					case "map w1 chan":
						_, err = sink.Slice(ctx, stage.Map(source.Chan(ch), id, stage.Workers(1)))
					case "merge chans":
						_, err = sink.Slice(ctx, stage.Merge(source.Chan(ch), stage.Map(source.Slice(r68Ints(3)), id)))
					case "func":
						_, err = sink.Count(ctx, stage.Map(source.Func(func(context.Context) (int, error) { calls.Add(100); return 1, nil }), id))
					case "seq":
						_, err = sink.Count(ctx, source.Seq(func(yield func(int) bool) { calls.Add(100); yield(1) }))
					}
				})
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err %v, want context.Canceled", err)
				}
				if len(ch) != 10 {
					t.Errorf("%d values taken from the channel after the cancellation", 10-len(ch))
				}
				if c := calls.Load(); c >= 100 {
					t.Errorf("a source's next was called after the cancellation")
				} else if c > 0 {
					t.Errorf("%d stage calls after the cancellation", c)
				}
			})
		}
	}
}

// Until doc: "Once stop is done, no source upstream is asked for another
// item"; a stop done before the run: nothing taken, the sink returns nil.
func TestReview68UntilStopDoneBeforeTheRun(t *testing.T) {
	for _, kind := range r68CtxKinds {
		t.Run(kind, func(t *testing.T) {
			stop, drain := r68CancelPair(kind)
			drain()
			ch := r68FilledChan(10)
			var nexts atomic.Int32
			fn := source.Func(func(context.Context) (int, error) { nexts.Add(1); return 1, nil })
			var err1, err2 error
			var n1, n2 int
			runcheck.Run(t, "until", func() {
				n1, err1 = sink.Count(context.Background(), stage.Map(stage.Until(source.Chan(ch), stop),
					func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3)))
				n2, err2 = sink.Count(context.Background(), stage.Until(fn, stop))
			})
			if err1 != nil || err2 != nil || n1 != 0 || n2 != 0 {
				t.Errorf("chan: %d, %v; func: %d, %v; want 0 items and nil", n1, err1, n2, err2)
			}
			if len(ch) != 10 || nexts.Load() != 0 {
				t.Errorf("%d values received, next called %d times after stop was done", 10-len(ch), nexts.Load())
			}
		})
	}
}

// README Abort: "nothing more is delivered" — for sink.All (a loop body
// that cancels and goes on), sink.Reduce (its f cancels) and sink.Chan
// (its reader cancels, and keeps reading).
func TestReview68NothingDeliveredAfterCancelOtherSinks(t *testing.T) {
	for _, kind := range r68CtxKinds {
		t.Run(kind+"/all", func(t *testing.T) {
			ctx, cancel := r68CancelPair(kind)
			defer cancel()
			seen, after := 0, 0
			var last error
			runcheck.Run(t, "all", func() {
				for _, err := range sink.All(ctx, stage.Map(source.Slice(r68Ints(500)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3))) {
					if seen == 10 {
						if err == nil {
							after++
						}
						last = err
						continue
					}
					seen++
					if seen == 10 {
						cancel()
					}
				}
			})
			if after != 0 || !errors.Is(last, context.Canceled) {
				t.Errorf("%d values yielded after the cancel; last pair's error %v, want context.Canceled", after, last)
			}
		})
		t.Run(kind+"/reduce", func(t *testing.T) {
			ctx, cancel := r68CancelPair(kind)
			defer cancel()
			calls := 0
			var acc int
			var err error
			runcheck.Run(t, "reduce", func() {
				acc, err = sink.Reduce(ctx, stage.Map(source.Slice(r68Ints(500)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3)), 0,
					func(a, v int) int {
						calls++
						if calls == 10 {
							cancel()
						}
						return a + 1
					})
			})
			if calls != 10 || acc != 10 || !errors.Is(err, context.Canceled) {
				t.Errorf("f called %d times, acc %d, err %v; want 10, 10, context.Canceled", calls, acc, err)
			}
		})
		t.Run(kind+"/chan", func(t *testing.T) {
			late := 0
			const runs = 50
			defer func() {
				if late > 0 {
					// The black-box round's finding, fixed: with a caller's own
					// ctx type (ctxtest.DoneCtx), sink.Chan sent a value after
					// the caller's Done channel was closed ("from the moment its
					// Done channel is closed ... the sink delivers nothing more,
					// as with a standard context"); it waits on that channel too.
					t.Errorf("%d of %d runs sent a value on out after the cancel had returned", late, runs)
				}
			}()
			for run := range runs {
				ctx, cancel := r68CancelPair(kind)
				out := make(chan int)
				var after atomic.Int32
				stopReader := make(chan struct{})
				readerDone := make(chan struct{})
				go func() { // the caller's reader: takes 10, cancels, reads on
					defer close(readerDone)
					for range 10 {
						<-out
					}
					cancel()
					for {
						select {
						case <-out:
							after.Add(1)
						case <-stopReader:
							return
						}
					}
				}()
				var err error
				runcheck.Run(t, "chan", func() {
					err = sink.Chan(ctx, stage.Map(source.Slice(r68Ints(500)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3)), out)
				})
				close(stopReader)
				<-readerDone
				if after.Load() != 0 {
					late++
				}
				if !errors.Is(err, context.Canceled) {
					t.Errorf("run %d: err %v, want context.Canceled", run, err)
				}
			}
		})
	}
}

// Sink doc, Chan: "It never closes out: the caller owns it. If the run
// fails while Chan waits on out, Chan stops waiting and returns the error
// that ended the run."
func TestReview68ChanSinkNeverClosesAndStopsWaiting(t *testing.T) {
	out := make(chan int) // nobody reads
	gate := make(chan struct{})
	var err error
	runcheck.Run(t, "chan", func() {
		err = sink.Chan(context.Background(), stage.Map(source.Slice(r68Ints(2)), func(_ context.Context, v int) (int, error) {
			if v == 0 {
				defer close(gate)
				return 0, nil
			}
			<-gate
			return 0, r68ErrBoom
		}, stage.Workers(2), stage.Buffer(1)), out)
	})
	if !errors.Is(err, r68ErrBoom) {
		t.Errorf("err %v, want the failure", err)
	}
	select {
	case out <- 1: // would panic if closed; nobody reads, so default
	default:
	}
	out2 := make(chan int, 5)
	if err := sink.Chan(context.Background(), source.Slice(r68Ints(3)), out2); err != nil || len(out2) != 3 {
		t.Errorf("Chan: %v, %d sent", err, len(out2))
	}
	out2 <- 9 // not closed
}

// Sink doc, ForEach: "An error returned by f (or a panic in f) ends the run
// ... with a *stage.Error (Stage "foreach") as its cause"; "f may return
// stage.ErrStop ... ForEach then returns nil (or the *ForwardedError of
// what was forwarded before)"; IsStop: an ErrStop inside an *Error (a
// callback that returns the result of a run of its own) is a failure;
// Handle: "one that IsStop would take for a stop, such as ErrStop, comes
// wrapped in an *Error of the item's stage and index".
func TestReview68CallbackErrorsAndStops(t *testing.T) {
	ctx := context.Background()
	cbErr := errors.New("r68: store failed")
	err := sink.ForEach(ctx, source.Slice(r68Ints(10)), func(rctx context.Context, v int) error {
		if v == 4 {
			return cbErr
		}
		return nil
	})
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" || se.Input != 4 || !errors.Is(err, cbErr) {
		t.Errorf("err %#v, want *stage.Error foreach, input 4, wrapping the callback's error", err)
	}
	// The cause seen by a function of the run.
	causeCh := make(chan error, 1)
	started1 := make(chan struct{})
	err = sink.ForEach(ctx, stage.Map(source.Slice(r68Ints(2)), func(rctx context.Context, v int) (int, error) {
		if v == 1 {
			close(started1)
			<-rctx.Done()
			causeCh <- context.Cause(rctx)
			return 0, rctx.Err()
		}
		<-started1
		return v, nil
	}, stage.Workers(2), stage.Buffer(1)), func(_ context.Context, v int) error {
		return cbErr
	})
	if c := <-causeCh; !errors.As(c, &se) || se.Stage != "foreach" || !errors.Is(c, cbErr) || !errors.Is(err, cbErr) {
		t.Errorf("cause %v, err %v: want the callback's *stage.Error as the run's cause", c, err)
	}
	// ErrStop after forwarded errors: the ForwardedError of what came before.
	s := stage.Map(source.Slice(r68Ints(20)), r68FailEvery3, stage.Workers(1), stage.OnError(stage.Forward))
	err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
		if v == 5 {
			return stage.ErrStop
		}
		return nil
	})
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 2 || errors.Is(err, stage.ErrStop) {
		t.Errorf("err %v: want the ForwardedError of items 0 and 3, and no ErrStop", err)
	}
	// A nested run's ErrStop inside its *Error fails the outer run.
	err = sink.ForEach(ctx, source.Slice(r68Ints(3)), func(ctx context.Context, v int) error {
		_, inner := sink.Slice(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) { return 0, stage.ErrStop }))
		return inner
	})
	if err == nil || !errors.Is(err, stage.ErrStop) {
		t.Errorf("err %v: a callback returning an inner run's *stage.Error wrapping ErrStop must fail the run", err)
	}
	// Handle returning ErrStop fails the run, in an *Error of the item.
	_, err = sink.Slice(ctx, stage.Map(source.Slice(r68Ints(10)), r68FailEvery3, stage.Workers(1), stage.Name("h"),
		stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
			if e.Index == 3 {
				return stage.ErrStop
			}
			return nil
		}))))
	if !errors.As(err, &se) || se.Stage != "h" || se.Index != 3 || !errors.Is(err, stage.ErrStop) {
		t.Errorf("err %v: want an *Error of stage h, index 3, wrapping ErrStop", err)
	}
	// A source that returns ErrStop fails.
	_, err = sink.Count(ctx, source.Func(func(context.Context) (int, error) { return 0, stage.ErrStop }))
	var srcErr *stage.SourceError
	if !errors.As(err, &srcErr) {
		t.Errorf("err %v: a source's ErrStop is a *stage.SourceError", err)
	}
	// ForwardedError's message.
	fe2 := &sink.ForwardedError{Count: 3}
	if fe2.Error() == "" || len(fe2.Unwrap()) != 0 {
		t.Errorf("ForwardedError made by hand: %q", fe2.Error())
	}
}

// README Metrics: "A call's outcome is error when its item failed and ok
// otherwise: a call cut short by the end of the run (another stage's
// failure, a cancellation) did not fail." Watcher doc: a call that
// returned an error once the run was ending is reported with an error for
// which errors.Is(err, context.Canceled) holds and that is not an *Error,
// "whatever error the function returned".
func TestReview68CutShortCallsDidNotFail(t *testing.T) {
	for _, how := range []string{"other stage failed", "cancel", "cancel userctx"} {
		t.Run(how, func(t *testing.T) {
			var obs r68Observer
			var stats stage.Stats
			logs := &r68CountHandler{}
			kind := "std"
			if how == "cancel userctx" {
				kind = ctxtest.Own
			}
			ctx, cancel := r68CancelPair(kind)
			defer cancel()
			ctx = stage.Observe(stage.Observe(ctx, &obs), &stats)
			inFlight := make(chan struct{}, 10)
			a := stage.Map(source.Slice(r68Ints(100)), func(ctx context.Context, v int) (int, error) {
				if v >= 1 {
					inFlight <- struct{}{}
					<-ctx.Done()
					return 0, errors.New("r68: not the context's error") // whatever error
				}
				return v, nil
			}, stage.Name("a"), stage.Workers(3), stage.Buffer(1))
			b := stage.Map(a, func(ctx context.Context, v int) (int, error) {
				<-inFlight
				<-inFlight
				<-inFlight
				if how == "other stage failed" {
					return 0, r68ErrBoom
				}
				cancel()
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Name("b"), stage.Workers(1), stage.Buffer(1))
			var err error
			runcheck.Run(t, how, func() { _, err = sink.Slice(ctx, b) })
			_ = logs
			ca, _ := stats.Get("a")
			if ca.Failed != 0 || ca.Finished != ca.Received || ca.Received < 4 {
				t.Errorf("stage a counts %+v: calls cut short must not be failures", ca)
			}
			obs.mu.Lock()
			defer obs.mu.Unlock()
			if w := obs.watchers[0]; w.failed.Load() != 0 || w.cutShort.Load() != 3 {
				t.Errorf("stage a: %d failed, %d cut short; want 0 and 3", w.failed.Load(), w.cutShort.Load())
			}
			cb, _ := stats.Get("b")
			switch how {
			case "other stage failed":
				if cb.Failed != 1 || !errors.Is(err, r68ErrBoom) {
					t.Errorf("stage b %+v, err %v", cb, err)
				}
			default:
				if cb.Failed != 0 || !errors.Is(err, context.Canceled) {
					t.Errorf("stage b %+v, err %v", cb, err)
				}
			}
		})
	}
}

// r68CutShortWatcher records the errors that Finished reports.
type r68ErrWatcher struct {
	mu   sync.Mutex
	errs []error
}

func (w *r68ErrWatcher) Stage(stage.Info) stage.Watcher { return w }
func (w *r68ErrWatcher) Received()                      {}
func (w *r68ErrWatcher) Finished(_ time.Duration, err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err)
	w.mu.Unlock()
}
func (w *r68ErrWatcher) Closed() {}

// Watcher doc: the cut-short error "neither is nor wraps an *Error,
// whatever error the function returned", and errors.Is(err,
// context.Canceled) holds; "A call that returned nil is a success, even
// once the run was ending".
func TestReview68WatcherCutShortError(t *testing.T) {
	w := &r68ErrWatcher{}
	ctx := stage.Observe(context.Background(), w)
	started := make(chan struct{}, 4)
	inner := &stage.Error{Stage: "elsewhere", Err: r68ErrBoom}
	_, err := sink.Slice(ctx, stage.Map(source.Slice(r68Ints(4)), func(ctx context.Context, v int) (int, error) {
		switch v {
		case 0:
			<-started
			<-started
			<-started
			return 0, errors.New("r68: first failure")
		case 1:
			started <- struct{}{}
			<-ctx.Done()
			return 0, inner // an *Error of a run of its own
		case 2:
			started <- struct{}{}
			<-ctx.Done()
			return 1, nil
		default:
			started <- struct{}{}
			<-ctx.Done()
			return 0, ctx.Err()
		}
	}, stage.Workers(4), stage.Buffer(1)))
	if err == nil {
		t.Fatal("no error")
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var failed, cut, ok int
	for _, e := range w.errs {
		var se *stage.Error
		switch {
		case e == nil:
			ok++
		case errors.Is(e, context.Canceled):
			cut++
			if errors.As(e, &se) {
				t.Errorf("a cut-short call reported %v, which wraps an *Error", e)
			}
		case errors.As(e, &se):
			failed++
		default:
			t.Errorf("Finished(%v): neither nil, a failure nor cut short", e)
		}
	}
	if failed != 1 || cut != 2 || ok != 1 {
		t.Errorf("%d failed, %d cut short, %d ok; want 1, 2, 1", failed, cut, ok)
	}
}

// README Bounded concurrency: "a function that waits for its consumer to
// take another output of the same stage ... needs Buffer(1)": with it, it
// works, over a slice and over a channel.
func TestReview68Buffer1LetsACallWaitForItsConsumer(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, src := range []string{"slice", "chan", "neverwaits"} {
			t.Run(src, func(t *testing.T) {
				var s stage.Stream[int]
				switch src {
				case "slice":
					s = source.Slice(r68Ints(50))
				case "chan":
					ch := make(chan int, 50)
					for i := range 50 {
						ch <- i
					}
					close(ch)
					s = source.Chan(ch)
				case "neverwaits":
					var n atomic.Int64
					s = stage.NeverWaits(source.Func(func(context.Context) (int, error) {
						i := n.Add(1) - 1
						if i >= 50 {
							return 0, fmt.Errorf("done: %w", r68ErrEnd)
						}
						return int(i), nil
					}))
				}
				// taken[v] closes when the sink took v. (Not "the sink's
				// next output": when a call starts late, every other
				// output may have been taken already; item v+1's comes.)
				taken := make([]chan struct{}, 50)
				for i := range taken {
					taken[i] = make(chan struct{})
				}
				var err error
				runcheck.Run(t, src, func() {
					err = sink.ForEach(context.Background(), stage.Map(s, func(_ context.Context, v int) (int, error) {
						// Wait until the sink took another output: item v+1's.
						if v > 0 && v%10 == 0 {
							<-taken[v+1]
						}
						return v, nil
					}, stage.Workers(3), stage.Buffer(1)), func(_ context.Context, v int) error {
						close(taken[v])
						return nil
					})
				})
				if src == "neverwaits" {
					var se *stage.SourceError
					if !errors.As(err, &se) {
						t.Errorf("err %v", err)
					}
				} else if err != nil {
					t.Errorf("err %v", err)
				}
			})
		}
	})
}

//lint:ignore ST1012 package-level helpers of this review carry the r68 prefix
var r68ErrEnd = errors.New("r68 end")

// All doc: "Each range over the iterator runs s anew", and a break while
// the run fails around it drops what the loop never saw (no yield after
// the break: the runtime would panic).
func TestReview68AllRerunsAndBreaks(t *testing.T) {
	it := sink.All(context.Background(), stage.Map(source.Slice(r68Ints(30)), func(_ context.Context, v int) (int, error) { return v, nil }))
	for range 2 {
		n := 0
		for _, err := range it {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		if n != 30 {
			t.Errorf("a range over All yielded %d, want 30", n)
		}
	}
	runcheck.InChildTest(t, func(t *testing.T) {
		for k := range 30 {
			s := stage.Map(source.Func(func(context.Context) (int, error) { return 1, nil }), func(_ context.Context, v int) (int, error) {
				if k%3 == 0 {
					return 0, r68ErrBoom
				}
				return v, nil
			}, stage.Workers(4), stage.OnError(stage.Forward))
			n := 0
			runcheck.Run(t, "break", func() {
				for range sink.All(context.Background(), s) {
					n++
					if n == k%4+1 {
						break
					}
				}
			})
			if n != k%4+1 {
				t.Errorf("%d pairs, want %d", n, k%4+1)
			}
		}
	})
}

// Reduce doc: "Reduce returns the accumulator as it stands when the run
// ends, with the error that ended it". A source's failure ends the run after
// every item it produced was delivered (SourceError doc), so the
// accumulator is exact: 100 plus 0..9.
func TestReview68ReduceAccumulatorAtTheEnd(t *testing.T) {
	i := 0
	src := source.Func(func(context.Context) (int, error) {
		if i == 10 {
			return 0, r68ErrBoom
		}
		i++
		return i - 1, nil
	})
	var se *stage.SourceError
	acc, err := sink.Reduce(context.Background(), stage.Map(src, func(_ context.Context, v int) (int, error) { return v, nil },
		stage.Workers(1)), 100, func(a, v int) int { return a + v })
	if acc != 100+45 || !errors.As(err, &se) || !errors.Is(err, r68ErrBoom) {
		t.Errorf("acc %d, err %v; want 145 and the *stage.SourceError", acc, err)
	}
}

// The same when a FailFast error at item 10 ends the run: the items already
// on their way to the sink may be dropped (no item is delivered once the
// run is cancelled), so f saw some prefix of 0..9 (one worker: in order),
// and the accumulator is the fold of just those.
func TestReview68ReduceAccumulatorAtAFailFastEnd(t *testing.T) {
	for range 20 {
		var seen []int
		acc, err := sink.Reduce(context.Background(), stage.Map(source.Slice(r68Ints(20)), func(_ context.Context, v int) (int, error) {
			if v == 10 {
				return 0, r68ErrBoom
			}
			return v, nil
		}, stage.Workers(1)), 100, func(a, v int) int {
			seen = append(seen, v)
			return a + v
		})
		want := 100
		for _, v := range seen {
			want += v
		}
		if acc != want || len(seen) > 10 || !slices.Equal(seen, r68Ints(len(seen))) || !errors.Is(err, r68ErrBoom) {
			t.Fatalf("acc %d after f saw %v, err %v; want the fold of a prefix of 0..9 from 100 and the failure", acc, seen, err)
		}
	}
}
