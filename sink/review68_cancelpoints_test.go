package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r68CancelObserver calls cancel from its hook named where.
type r68CancelObserver struct {
	where  string
	cancel func()
	once   *sync.Once
}

func (o r68CancelObserver) Stage(stage.Info) stage.Watcher {
	if o.where == "observer Stage" {
		o.once.Do(o.cancel)
	}
	return r68NopWatcher{}
}

type r68NopWatcher struct{}

func (r68NopWatcher) Received()                     {}
func (r68NopWatcher) Finished(time.Duration, error) {}
func (r68NopWatcher) Closed()                       {}

// README Guarantees, Cancellation: "Every blocking step of a run can be
// abandoned. User functions get the run's context; it is cancelled by the
// caller's ctx". Abort: "nothing more is delivered, and the sink returns
// the cancellation error"; stage doc: "from the moment its Done channel is
// closed no source's next is called and the sink delivers nothing more".
// The caller's ctx (standard, or of the caller's own type) is cancelled
// from inside each user function in turn, at item 5; then:
//   - the sink returns an error for which errors.Is(err, context.Canceled);
//   - no next is called after the cancel (checked where next itself
//     cancelled, or open, or the observer's Stage: no next at all);
//   - the item whose function cancelled is not delivered, nor anything
//     after a callback that cancelled;
//   - committed items are acknowledged with nil exactly once, the item of
//     the cancelling function never with nil; no goroutine is left.
func TestReview68CancelAtEveryPoint(t *testing.T) {
	points := []string{"open", "next", "map", "key", "handle", "callback", "observer Stage", "ack", "stop"}
	for _, userCtx := range []bool{false, true} {
		for _, pt := range points {
			t.Run(fmt.Sprintf("%s/userctx=%v", pt, userCtx), func(t *testing.T) {
				ctx, cancelFn := r68UserCancel(userCtx)
				defer cancelFn()
				var once sync.Once
				var cancelled atomic.Bool
				cancel := func() {
					once.Do(func() { cancelFn(); cancelled.Store(true) })
				}
				var nextsAfter atomic.Int32
				var mu sync.Mutex
				acks := map[int][]error{}
				committed := map[int]bool{}
				const n = 40
				src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
					if pt == "open" {
						cancel()
					}
					i := 0
					return func(context.Context) (int, stage.Ack, error) {
							if cancelled.Load() {
								nextsAfter.Add(1)
							}
							if i == n {
								return 0, nil, io.EOF
							}
							i++
							item := i - 1
							if pt == "next" && item == 5 {
								cancel()
							}
							return item, r68AckFunc(func(err error) {
								if pt == "ack" && item == 5 {
									cancel()
								}
								mu.Lock()
								acks[item] = append(acks[item], err)
								mu.Unlock()
							}), nil
						}, func() {
							if pt == "stop" {
								cancel()
							}
						}
				})
				policy := stage.OnError(stage.Handle(func(context.Context, *stage.Error) error {
					if pt == "handle" {
						cancel()
					}
					return nil
				}))
				m := stage.Map(src, func(_ context.Context, v int) (int, error) {
					if v == 5 {
						switch pt {
						case "map":
							cancel()
						case "handle":
							return 0, r68ErrBoom
						}
					}
					return v, nil
				}, stage.Workers(3), stage.Buffer(1), policy,
					stage.KeyBy(func(v int) int {
						if pt == "key" && v == 5 {
							cancel()
						}
						return v % 4
					}))
				runCtx := stage.Observe(ctx, r68CancelObserver{where: pt, cancel: cancel, once: new(sync.Once)})
				var got []int
				var err error
				runcheck.Run(t, pt, func() {
					err = sink.ForEach(runCtx, m, func(_ context.Context, v int) error {
						got = append(got, v)
						if pt == "callback" && v == 5 {
							cancel()
						}
						mu.Lock()
						committed[v] = true
						mu.Unlock()
						return nil
					})
				})
				switch pt {
				case "stop":
					// The sink had seen the end when stop ran: "once f saw the end
					// of s ... nil" (the result depends on what f saw).
					if err != nil {
						t.Errorf("err %v, want nil: the cancellation came after the end", err)
					}
					return
				case "ack":
					// Done(nil) of item 5 may run before or after its callback
					// returned, on the sink's goroutine: only the error is checked.
					if !errors.Is(err, context.Canceled) && err != nil {
						t.Errorf("err %v", err)
					}
					return
				}
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err %v, want context.Canceled", err)
				}
				if k := nextsAfter.Load(); k != 0 && (pt == "next" || pt == "open" || pt == "observer Stage") {
					t.Errorf("next called %d times after the cancellation", k)
				}
				for k, v := range got {
					if v == 5 && pt != "callback" && pt != "handle" {
						t.Errorf("item 5 delivered although its %s cancelled the run first", pt)
					}
					if pt == "callback" && v == 5 && k != len(got)-1 {
						t.Errorf("delivered %v after the callback of item 5 cancelled", got[k+1:])
					}
				}
				if (pt == "open" || pt == "observer Stage") && len(got) != 0 {
					t.Errorf("delivered %v although the run was cancelled before it started", got)
				}
				mu.Lock()
				defer mu.Unlock()
				for item, errs := range acks {
					switch {
					case len(errs) != 1:
						t.Errorf("item %d acknowledged %d times", item, len(errs))
					case errs[0] == nil && !committed[item] && !(pt == "handle" && item == 5):
						t.Errorf("item %d acknowledged nil without being committed", item)
					}
				}
				for item := range committed {
					if e := acks[item]; len(e) != 1 || e[0] != nil {
						t.Errorf("committed item %d acknowledged %v, want nil once", item, e)
					}
				}
			})
		}
	}
}

// README Cancellation: "Every blocking step of a run can be abandoned": a
// run in which every goroutine blocks (a channel source with nothing to
// give, a stage waiting for room, a Batch, a Tee, a Merge, a callback that
// waits for its ctx) ends when the caller cancels, from outside.
func TestReview68EveryBlockingStepAbandoned(t *testing.T) {
	for _, userCtx := range []bool{false, true} {
		for _, shape := range []string{"empty chan", "stage waits for room", "emit waits", "batch tee merge", "callback waits", "ratelimit", "retry backoff"} {
			t.Run(fmt.Sprintf("%s/userctx=%v", shape, userCtx), func(t *testing.T) {
				ctx, cancel := r68UserCancel(userCtx)
				defer cancel()
				ready := make(chan struct{})
				var readyOnce sync.Once
				signal := func() { readyOnce.Do(func() { close(ready) }) }
				id := func(_ context.Context, v int) (int, error) { return v, nil }
				var s stage.Stream[int]
				cb := func(context.Context, int) error { return nil }
				switch shape {
				case "empty chan":
					ch := make(chan int)
					s = stage.Map(source.Chan(ch), id, stage.Workers(3))
					close(ready) // nothing to wait for: the receive blocks
				case "stage waits for room":
					s = stage.Map(source.Slice(r68Ints(100)), id, stage.Workers(3))
					cb = func(ctx context.Context, _ int) error { signal(); <-ctx.Done(); return ctx.Err() }
				case "emit waits":
					s = stage.Apply(source.Slice(r68Ints(3)), func(_ context.Context, v int, emit func(int) bool) error {
						for k := 0; ; k++ {
							if !emit(k) {
								return nil
							}
						}
					}, stage.Workers(2))
					cb = func(ctx context.Context, _ int) error { signal(); <-ctx.Done(); return ctx.Err() }
				case "batch tee merge":
					ch := make(chan int, 5)
					for i := range 5 {
						ch <- i
					}
					b := stage.Tee(stage.Unbatch(stage.Batch(source.Chan(ch), 3, time.Hour)), 2)
					s = stage.Merge(b[0], b[1])
					cb = func(context.Context, int) error { signal(); return nil }
				case "callback waits":
					s = source.Slice(r68Ints(3))
					cb = func(ctx context.Context, _ int) error { signal(); <-ctx.Done(); return nil }
				case "ratelimit":
					s = stage.Map(source.Slice(r68Ints(3)), func(_ context.Context, v int) (int, error) { signal(); return v, nil },
						stage.RateLimit(1e-9, 1))
				case "retry backoff":
					s = stage.Map(source.Slice(r68Ints(1)), func(context.Context, int) (int, error) { signal(); return 0, r68ErrBoom },
						stage.Retry(3, time.Duration(1<<62)))
				}
				var err error
				wait := r68Start(func() { err = sink.ForEach(ctx, s, cb) })
				<-ready
				r68Settle()
				cancel()
				wait(t, shape)
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err %v, want context.Canceled", err)
				}
			})
		}
	}
}

// README Cancellation: the run's context "is cancelled by ... a FailFast
// error, a failing sink callback, or a sink that stops early": functions
// blocked on their ctx are released in each case, and see the cause.
func TestReview68RunContextCancelledByEveryEnder(t *testing.T) {
	for _, ender := range []string{"failfast", "callback error", "callback panic", "errstop", "first", "all break", "chan sink error", "handle error", "budget"} {
		t.Run(ender, func(t *testing.T) {
			var bal r68Balance
			var released atomic.Int32
			blocked := make(chan struct{}, 100)
			policy := stage.FailFast
			switch ender {
			case "handle error":
				policy = stage.Handle(func(context.Context, *stage.Error) error { return r68ErrBoom })
			case "budget":
				policy = stage.Budget(0, nil)
			}
			s := stage.Map(source.Slice(r68Ints(50)), func(ctx context.Context, v int) (int, error) {
				defer bal.enter()()
				if v > 0 {
					blocked <- struct{}{}
					<-ctx.Done()
					released.Add(1)
					return 0, ctx.Err()
				}
				<-blocked // another call is blocked before item 0 ends
				if ender == "failfast" || ender == "handle error" || ender == "budget" {
					return 0, r68ErrBoom
				}
				return v, nil
			}, stage.Workers(4), stage.Buffer(1), stage.OnError(policy))
			ctx := context.Background()
			var err error
			runcheck.Run(t, ender, func() {
				switch ender {
				case "first":
					_, _, err = sink.First(ctx, s)
				case "all break":
					for range sink.All(ctx, s) {
						break
					}
				case "chan sink error":
					// Chan has no callback: an item failure ends it instead.
					err = sink.Chan(ctx, stage.Map(s, func(context.Context, int) (int, error) { return 0, r68ErrBoom }), make(chan int, 10))
				default:
					err = sink.ForEach(ctx, s, func(context.Context, int) error {
						switch ender {
						case "callback error":
							return r68ErrBoom
						case "callback panic":
							panic(r68ErrBoom)
						case "errstop":
							return stage.ErrStop
						}
						return nil
					})
				}
			})
			bal.check(t, ender)
			if released.Load() == 0 {
				t.Errorf("no blocked call was released")
			}
			switch ender {
			case "first", "all break", "errstop":
				if err != nil {
					t.Errorf("err %v, want nil", err)
				}
			default:
				if !errors.Is(err, r68ErrBoom) {
					t.Errorf("err %v, want r68ErrBoom", err)
				}
			}
		})
	}
}
