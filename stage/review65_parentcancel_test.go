package stage_test

// Review 65: black-box tests of a run under a caller's context that can be
// cancelled (a request's context), written from the documentation only.
// Every verdict is decided by gates and channels; durations are hang
// watchdogs only.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
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

// r65Cause is the cause a WithCancelCause parent is cancelled with.
const r65Cause = ctxtest.Error("r65: the request was abandoned")

// r65ErrX is an error of a user function that is not a context's error.
const r65ErrX = ctxtest.Error("r65: some failure")

// r65Parent is a kind of cancellable caller's context.
type r65Parent struct {
	name  string
	cause error // the cause it is cancelled with (nil: context.Canceled)
	make  func() (context.Context, func())
}

// r65StdParents are the standard parents: a cancellation by them reaches
// every context derived from them before cancel returns.
func r65StdParents() []r65Parent {
	return []r65Parent{
		{name: "WithCancel", make: func() (context.Context, func()) { return context.WithCancel(context.Background()) }},
		{name: "WithCancelCause", cause: r65Cause, make: func() (context.Context, func()) {
			ctx, c := context.WithCancelCause(context.Background())
			return ctx, func() { c(r65Cause) }
		}},
		{name: "WithTimeout1h", make: func() (context.Context, func()) {
			return context.WithTimeout(context.Background(), time.Hour)
		}},
		{name: "WithValue(WithCancel)", make: func() (context.Context, func()) {
			ctx, c := context.WithCancel(context.Background())
			return context.WithValue(ctx, ctxtest.Key{}, 1), c
		}},
		{name: "Observe(WithCancel)", make: func() (context.Context, func()) {
			ctx, c := context.WithCancel(context.Background())
			return stage.Observe(ctx, &stage.Stats{}), c
		}},
	}
}

// r65AllParents adds the caller's own context types.
func r65AllParents() []r65Parent {
	return append(r65StdParents(),
		r65Parent{name: "wrapped", make: func() (context.Context, func()) {
			ctx, c := context.WithCancel(context.Background())
			return ctxtest.WrapCtx{Context: ctx}, c
		}},
		r65Parent{name: "ownDone", make: func() (context.Context, func()) {
			c := ctxtest.NewDoneCtx()
			return c, c.Cancel
		}},
	)
}

// r65IsCancelled: the sink's promise for a cancelled caller's ctx.
// stage.Run: "when ctx was cancelled, an error for which errors.Is(err,
// context.Canceled) (or context.DeadlineExceeded) holds".
func r65IsCancelled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// r65Counted is a waiting source of 0..n-1 (stage.Source) that counts its
// calls: next, open, stop.
type r65Counted struct {
	n                int
	opens, nexts     atomic.Int32
	stops            atomic.Int32
	afterCancelNexts atomic.Int32 // next calls that began once cancelled was set
	cancelled        atomic.Bool
	onNext           func(ctx context.Context, i int) // called in next for item i
}

func (c *r65Counted) stream() stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		c.opens.Add(1)
		i := 0
		return func(ctx context.Context) (int, error) {
				if c.cancelled.Load() {
					c.afterCancelNexts.Add(1)
				}
				if i >= c.n {
					return 0, io.EOF
				}
				c.nexts.Add(1)
				v := i
				i++
				if c.onNext != nil {
					c.onNext(ctx, v)
				}
				return v, nil
			}, func() {
				c.stops.Add(1)
			}
	})
}

// source (package doc): "A source takes an item from the caller's world ...
// only when a stage, or the sink, is ready to work on it, and never after the
// run was cancelled." stage.Source: "The run calls next only when a stage (or
// the sink) is ready to work on an item, never concurrently, and never once
// the run is cancelled". stage.FailFast / README Abort: "calls in flight see
// ctx.Done(), ... the sink returns the cancellation error"; stage.Run: "when
// ctx was cancelled, an error for which errors.Is(err, context.Canceled)
// holds". Source: "stop is called once every goroutine of the run has
// exited, whether the run succeeded, failed or stopped early."
//
// The caller cancels its ctx from inside f for item k. With Workers(1), no
// item after k is taken: next is called exactly k+1 times. With Workers(4),
// item k cancels only once all four workers are inside f (so that no call
// of next is on its way), and no next call may begin after that. The
// control (the same run under a ctx that is not cancelled) delivers all.
func TestReview65FCancelsParentNoNewItem(t *testing.T) {
	const n, k = 40, 2
	for _, p := range r65StdParents() {
		for _, w := range []int{1, 4} {
			for _, ordered := range []bool{false, true} {
				for _, control := range []bool{false, true} {
					name := fmt.Sprintf("%s/w=%d/ordered=%v/control=%v", p.name, w, ordered, control)
					t.Run(name, func(t *testing.T) {
						parent, cancel := p.make()
						defer cancel()
						if control {
							parent = context.Background()
						}
						src := &r65Counted{n: n}
						var calls atomic.Int32
						var all sync.WaitGroup // the first w calls are inside f
						all.Add(w)
						release := make(chan struct{})
						var nextsAtCancel int32
						f := func(ctx context.Context, v int) (int, error) {
							calls.Add(1)
							if w > 1 && v < w {
								all.Done()
							}
							if v == k {
								if w > 1 {
									all.Wait()
								}
								if control {
									close(release)
									return v, nil
								}
								cancel()
								src.cancelled.Store(true)
								nextsAtCancel = src.nexts.Load()
								return 0, ctx.Err()
							}
							if w > 1 && v < w {
								select {
								case <-release:
									return v, nil
								case <-ctx.Done(): // "calls in flight see ctx.Done()"
									return 0, ctx.Err()
								}
							}
							return v, nil
						}
						opts := []stage.Option{stage.Workers(w)}
						if ordered {
							opts = append(opts, stage.Ordered())
						}
						var got []int
						var err error
						runcheck.Run(t, "slice", func() {
							got, err = sink.Slice(parent, stage.Map(src.stream(), f, opts...))
						})
						if src.opens.Load() != 1 || src.stops.Load() != 1 {
							t.Fatalf("open %d, stop %d times; want 1 and 1", src.opens.Load(), src.stops.Load())
						}
						if control {
							if err != nil || len(got) != n {
								t.Fatalf("control: %d values, err %v; want %d, nil", len(got), err, n)
							}
							return
						}
						if !errors.Is(err, context.Canceled) {
							t.Fatalf("err = %v; want errors.Is(err, context.Canceled)", err)
						}
						if a := src.afterCancelNexts.Load(); a != 0 {
							t.Fatalf("next was called %d times after the caller's ctx was cancelled", a)
						}
						if got := src.nexts.Load(); got != nextsAtCancel {
							t.Fatalf("next produced %d items, %d of them after the cancellation", got, got-nextsAtCancel)
						}
						wantCalls := int32(k + 1)
						if w > 1 {
							wantCalls = int32(w)
						}
						if c := calls.Load(); c != wantCalls {
							t.Fatalf("f was called %d times; want %d (no item starts after the cancellation)", c, wantCalls)
						}
						for _, v := range got {
							if v >= k && w == 1 {
								t.Fatalf("got %v: an item at or after the cancelling one was delivered", got)
							}
						}
					})
				}
			}
		}
	}
}

// stage.Indexed: "once the run is cancelled or its input has ended, no call
// of at starts but one already on its way in another goroutine (calls are
// concurrent)." With Workers(1) (no other goroutine) and a cancellation from
// f for item k, at is called for positions 0..k only; with Workers(4) and
// every worker inside f, no call of at begins after the cancellation.
func TestReview65IndexedFCancelsParent(t *testing.T) {
	const n, k = 40, 2
	for _, p := range r65StdParents()[:2] {
		for _, w := range []int{1, 4} {
			for _, control := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/w=%d/control=%v", p.name, w, control), func(t *testing.T) {
					parent, cancel := p.make()
					defer cancel()
					if control {
						parent = context.Background()
					}
					var ats, atsAfter atomic.Int32
					var cancelled atomic.Bool
					src := stage.Indexed(n, func(i int) int {
						if cancelled.Load() {
							atsAfter.Add(1)
						}
						ats.Add(1)
						return i
					})
					var all sync.WaitGroup
					all.Add(w)
					release := make(chan struct{})
					f := func(ctx context.Context, v int) (int, error) {
						if w > 1 && v < w {
							all.Done()
						}
						if v == k {
							if w > 1 {
								all.Wait()
							}
							if control {
								close(release)
								return v, nil
							}
							cancel()
							cancelled.Store(true)
							return 0, ctx.Err()
						}
						if w > 1 && v < w {
							select {
							case <-release:
							case <-ctx.Done():
								return 0, ctx.Err()
							}
						}
						return v, nil
					}
					var cnt int
					var err error
					runcheck.Run(t, "count", func() {
						cnt, err = sink.Count(parent, stage.Map(src, f, stage.Workers(w), stage.Buffer(1)))
					})
					if control {
						if err != nil || cnt != n {
							t.Fatalf("control: %d, %v; want %d, nil", cnt, err, n)
						}
						return
					}
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("err = %v; want context.Canceled", err)
					}
					if a := atsAfter.Load(); a != 0 {
						t.Fatalf("at was called %d times after the cancellation (total %d)", a, ats.Load())
					}
					if w == 1 && ats.Load() != k+1 {
						t.Fatalf("at was called %d times; want %d", ats.Load(), k+1)
					}
				})
			}
		}
	}
}

// stage.Run: "ctx is the run's context, derived from the ctx passed to Run";
// package doc: "Cancelling the caller's ctx ... cancels the run; the user
// functions see it through their ctx." A context derived from a standard
// one is cancelled, with the parent's cause, before the parent's cancel
// returns (package context). So a function that cancels the caller's ctx
// sees its own ctx done at once: in f, in a source's next, in a sink
// callback, and context.Cause names the parent's cause.
func TestReview65RunCtxSeesParentAtOnce(t *testing.T) {
	for _, p := range r65StdParents() {
		for _, where := range []string{"map", "map-timeout", "next", "callback"} {
			t.Run(p.name+"/"+where, func(t *testing.T) {
				parent, cancel := p.make()
				defer cancel()
				var checked atomic.Bool
				check := func(ctx context.Context) {
					cancel()
					if err := ctx.Err(); !errors.Is(err, context.Canceled) {
						t.Errorf("%s: right after the caller's cancel, ctx.Err() = %v; want context.Canceled", where, err)
					}
					select {
					case <-ctx.Done():
					default:
						t.Errorf("%s: right after the caller's cancel, ctx.Done() is not closed", where)
					}
					if p.cause != nil && !errors.Is(context.Cause(ctx), p.cause) {
						t.Errorf("%s: context.Cause(ctx) = %v; want the parent's cause %v", where, context.Cause(ctx), p.cause)
					}
					checked.Store(true)
				}
				src := &r65Counted{n: 5}
				if where == "next" {
					src.onNext = func(ctx context.Context, i int) {
						if i == 1 {
							check(ctx)
						}
					}
				}
				opts := []stage.Option{stage.Workers(1)}
				if where == "map-timeout" {
					opts = append(opts, stage.Timeout(time.Hour))
				}
				s := stage.Map(src.stream(), func(ctx context.Context, v int) (int, error) {
					if v == 1 && strings.HasPrefix(where, "map") {
						check(ctx)
						return 0, ctx.Err()
					}
					return v, nil
				}, opts...)
				var err error
				runcheck.Run(t, "run", func() {
					err = stage.Run(parent, s, func(ctx context.Context, v int, _ error) error {
						if v == 0 && where == "callback" {
							check(ctx)
						}
						return nil
					})
				})
				if !checked.Load() {
					t.Fatalf("the cancelling function never ran")
				}
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v; want context.Canceled", err)
				}
			})
		}
	}
}

// The caller cancels its ctx from inside a source's next (stage.Source and
// source.Func) while returning item k: next is never called again ("never
// once the run is cancelled"), f never sees an item after k, and the sink
// returns context.Canceled (the end of the source was never seen).
func TestReview65CancelInsideNext(t *testing.T) {
	const n, k = 30, 3
	for _, p := range r65StdParents() {
		for _, kind := range []string{"Source", "Func"} {
			for _, w := range []int{1, 3} {
				for _, control := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/%s/w=%d/control=%v", p.name, kind, w, control), func(t *testing.T) {
						parent, cancel := p.make()
						defer cancel()
						if control {
							parent = context.Background()
						}
						var nexts, afterCancel atomic.Int32
						var cancelled atomic.Bool
						var mu sync.Mutex
						i := 0
						next := func(ctx context.Context) (int, error) {
							mu.Lock()
							defer mu.Unlock()
							if cancelled.Load() {
								afterCancel.Add(1)
							}
							if i >= n {
								return 0, io.EOF
							}
							nexts.Add(1)
							v := i
							i++
							if v == k && !control {
								cancel()
								cancelled.Store(true)
							}
							return v, nil
						}
						var s stage.Stream[int]
						var stops atomic.Int32
						if kind == "Func" {
							s = source.Func(next)
						} else {
							s = stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
								return next, func() { stops.Add(1) }
							})
						}
						var maxSeen atomic.Int32
						maxSeen.Store(-1)
						s = stage.Map(s, func(ctx context.Context, v int) (int, error) {
							for {
								m := maxSeen.Load()
								if int32(v) <= m || maxSeen.CompareAndSwap(m, int32(v)) {
									break
								}
							}
							return v, nil
						}, stage.Workers(w))
						var cnt int
						var err error
						runcheck.Run(t, "count", func() { cnt, err = sink.Count(parent, s) })
						if kind == "Source" && stops.Load() != 1 {
							t.Fatalf("stop called %d times; want 1", stops.Load())
						}
						if control {
							if err != nil || cnt != n {
								t.Fatalf("control: %d, %v; want %d, nil", cnt, err, n)
							}
							return
						}
						if !errors.Is(err, context.Canceled) {
							t.Fatalf("err = %v; want context.Canceled", err)
						}
						if afterCancel.Load() != 0 || nexts.Load() != k+1 {
							t.Fatalf("next took %d items, called %d times after the cancellation; want %d, 0", nexts.Load(), afterCancel.Load(), k+1)
						}
						if m := maxSeen.Load(); m > k {
							t.Fatalf("f saw item %d, after the cancelling item %d", m, k)
						}
					})
				}
			}
		}
	}
}

// r65CountingReader is a reader of a type the library does not know (so
// Lines treats it as a waiting source) that counts its Reads.
type r65CountingReader struct {
	r     io.Reader
	reads atomic.Int32
}

func (c *r65CountingReader) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

// A caller's ctx that is done before the run starts: a cancelled one, one
// cancelled with a cause, a WithTimeout or WithDeadline that already
// expired. source (package doc): a source takes an item "never after the
// run was cancelled" (a channel receive, a generator call, an iterator step,
// a line read); stage.Indexed: "once the run is cancelled ..., no call of at
// starts"; source.Chan: "A value is received only when a stage is ready to
// work on it". So no item is taken from any source, no user function sees
// an item, and the sink returns an error that errors.Is Canceled (or
// DeadlineExceeded). context.WithoutCancel of a cancelled parent is not
// cancelled: that run delivers everything with no error (the control).
func TestReview65PreCancelledParents(t *testing.T) {
	type pk struct {
		name     string
		ctx      func() context.Context
		deadline bool
		control  bool
	}
	cancelled := func() context.Context {
		ctx, c := context.WithCancel(context.Background())
		c()
		return ctx
	}
	kinds := []pk{
		{name: "Canceled", ctx: cancelled},
		{name: "CancelCause", ctx: func() context.Context {
			ctx, c := context.WithCancelCause(context.Background())
			c(r65Cause)
			return ctx
		}},
		{name: "TimeoutExpired", deadline: true, ctx: func() context.Context {
			ctx, c := context.WithTimeout(context.Background(), -time.Second)
			_ = c // expired already; cancelling would change nothing
			return ctx
		}},
		{name: "DeadlinePast", deadline: true, ctx: func() context.Context {
			ctx, c := context.WithDeadline(context.Background(), time.Unix(1, 0))
			_ = c
			return ctx
		}},
		{name: "ownDone", ctx: func() context.Context {
			c := ctxtest.NewDoneCtx()
			c.Cancel()
			return c
		}},
		{name: "WithoutCancel(Canceled)", control: true, ctx: func() context.Context { return context.WithoutCancel(cancelled()) }},
	}
	const n = 5
	for _, kd := range kinds {
		for _, src := range []string{"Source", "Indexed", "Seq", "Chan", "Lines", "Slice"} {
			for _, w := range []int{1, 4} {
				t.Run(fmt.Sprintf("%s/%s/w=%d", kd.name, src, w), func(t *testing.T) {
					var taken atomic.Int32
					var s stage.Stream[int]
					var ch chan int
					var opens, stops atomic.Int32
					var rd *r65CountingReader
					switch src {
					case "Source":
						s = stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
							opens.Add(1)
							i := 0
							return func(context.Context) (int, error) {
									if i >= n {
										return 0, io.EOF
									}
									taken.Add(1)
									i++
									return i, nil
								}, func() {
									stops.Add(1)
								}
						})
					case "Indexed":
						s = stage.Indexed(n, func(i int) int { taken.Add(1); return i })
					case "Slice":
						s = source.Slice([]int{1, 2, 3, 4, 5})
					case "Seq":
						s = source.Seq(func(yield func(int) bool) {
							for i := range n {
								taken.Add(1)
								if !yield(i) {
									return
								}
							}
						})
					case "Chan":
						ch = make(chan int, n)
						for i := range n {
							ch <- i
						}
						close(ch)
						s = source.Chan(ch)
					case "Lines":
						rd = &r65CountingReader{r: strings.NewReader("1\n2\n3\n4\n5\n")}
						s = stage.Map(source.Lines(rd), func(_ context.Context, l string) (int, error) {
							return len(l), nil
						}, stage.Workers(1))
					}
					var calls, cbs atomic.Int32
					m := stage.Map(s, func(_ context.Context, v int) (int, error) {
						calls.Add(1)
						return v, nil
					}, stage.Workers(w))
					var err error
					runcheck.Run(t, "run", func() {
						err = sink.ForEach(kd.ctx(), m, func(context.Context, int) error {
							cbs.Add(1)
							return nil
						})
					})
					if opens.Load() != stops.Load() {
						t.Fatalf("open called %d times, stop %d", opens.Load(), stops.Load())
					}
					if kd.control {
						if err != nil || cbs.Load() != n {
							t.Fatalf("control: err %v, %d delivered; want nil, %d", err, cbs.Load(), n)
						}
						return
					}
					if kd.deadline {
						if !r65IsCancelled(err) {
							t.Fatalf("err = %v; want context.DeadlineExceeded (or Canceled)", err)
						}
					} else if !errors.Is(err, context.Canceled) {
						t.Fatalf("err = %v; want context.Canceled", err)
					}
					if calls.Load() != 0 || cbs.Load() != 0 {
						t.Fatalf("f called %d times, callback %d times, under a ctx done before the run", calls.Load(), cbs.Load())
					}
					if rd != nil {
						taken.Store(rd.reads.Load())
					}
					if taken.Load() != 0 {
						t.Fatalf("%d items taken from the source under a ctx done before the run", taken.Load())
					}
					if ch != nil && len(ch) != n {
						t.Fatalf("source.Chan received %d values from the channel under a ctx done before the run", n-len(ch))
					}
				})
			}
		}
	}
}

// r65Obs is an Observer whose hooks can cancel the caller's ctx.
type r65Obs struct {
	onStage    func()
	onReceived func()
	onFinished func(err error)
	mu         sync.Mutex
	finished   []error
	closed     atomic.Int32
}

func (o *r65Obs) Stage(stage.Info) stage.Watcher {
	if o.onStage != nil {
		o.onStage()
	}
	return o
}
func (o *r65Obs) Received() {
	if o.onReceived != nil {
		o.onReceived()
	}
}
func (o *r65Obs) Finished(_ time.Duration, err error) {
	o.mu.Lock()
	o.finished = append(o.finished, err)
	o.mu.Unlock()
	if o.onFinished != nil {
		o.onFinished(err)
	}
}
func (o *r65Obs) Closed() { o.closed.Add(1) }

// The caller cancels its ctx from inside an observer's hooks.
// Observer.Stage: "called ... when the run is opened, ... before any
// goroutine of the run starts and before any item is taken": a cancellation
// there means no item is ever taken ("never once the run is cancelled").
// Received / Finished for item k (Workers(1)): next is not called again.
// Watcher.Finished: a call that returned an error "once the run was ending
// (..., the caller's cancellation, ...)" is reported with "an error for
// which errors.Is(err, context.Canceled) holds and that neither is nor
// wraps an *Error"; Stats counts no failed call (README: "a call cut short
// by the end of the run (another stage's failure, a cancellation) did not
// fail"). Closed is called once.
func TestReview65ObserverHooksCancel(t *testing.T) {
	const n, k = 20, 2
	for _, p := range r65StdParents()[:2] {
		for _, hook := range []string{"Stage", "Received", "Finished"} {
			for _, control := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/control=%v", p.name, hook, control), func(t *testing.T) {
					parent, cancel := p.make()
					defer cancel()
					src := &r65Counted{n: n}
					var received atomic.Int32
					doCancel := func() {
						if !control {
							cancel()
							src.cancelled.Store(true)
						}
					}
					o := &r65Obs{}
					switch hook {
					case "Stage":
						o.onStage = doCancel
					case "Received":
						o.onReceived = func() {
							if received.Add(1) == k+1 {
								doCancel()
							}
						}
					case "Finished":
						var fin atomic.Int32
						o.onFinished = func(error) {
							if fin.Add(1) == k+1 {
								doCancel()
							}
						}
					}
					stats := &stage.Stats{}
					ctx := stage.Observe(stage.Observe(parent, o), stats)
					m := stage.Map(src.stream(), func(ctx context.Context, v int) (int, error) {
						if hook == "Received" && v == k {
							// Received came before this call: the run is
							// cancelled now (or, in the control, goes on).
							if control {
								return v, nil
							}
							<-ctx.Done()
							return 0, ctx.Err()
						}
						return v, nil
					}, stage.Workers(1), stage.Name("m"))
					var cnt int
					var err error
					runcheck.Run(t, "count", func() { cnt, err = sink.Count(ctx, m) })
					if o.closed.Load() != 1 {
						t.Fatalf("Closed called %d times; want 1", o.closed.Load())
					}
					if control {
						if err != nil || cnt != n {
							t.Fatalf("control: %d, %v", cnt, err)
						}
						return
					}
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("err = %v; want context.Canceled", err)
					}
					if a := src.afterCancelNexts.Load(); a != 0 {
						t.Fatalf("next called %d times after the cancellation", a)
					}
					want := int32(k + 1)
					if hook == "Stage" {
						want = 0
					}
					if hook == "Finished" {
						// Item k's call finished before the cancel; item k+1
						// may not be taken.
						want = k + 1
					}
					if got := src.nexts.Load(); got != want {
						t.Fatalf("next took %d items; want %d", got, want)
					}
					o.mu.Lock()
					defer o.mu.Unlock()
					for i, e := range o.finished {
						var se *stage.Error
						if e != nil && (!errors.Is(e, context.Canceled) || errors.As(e, &se)) {
							t.Fatalf("Finished #%d err = %v; want nil or a Canceled that is no *stage.Error", i, e)
						}
					}
					if c, ok := stats.Get("m"); ok && c.Failed != 0 {
						t.Fatalf("Stats: %d failed calls; a call cut short by a cancellation did not fail", c.Failed)
					}
				})
			}
		}
	}
}

// stage.Retry: "The wait holds the worker and ends early, without a retry,
// when the run is cancelled." Watcher.Finished: a call that returned an error
// once the run was ending (the caller's cancellation) "neither succeeded nor
// failed". f cancels the caller's ctx and returns a plain error under
// Retry(5, 1h): no second attempt, no hour-long wait, and the sink returns
// Canceled, not a *stage.Error. stage.RateLimit: "A worker waits for its
// token as long as it takes ...; only the end of the run ends the wait": a
// worker waiting for a token that comes in about 30 years is released by
// the caller's cancellation. Both could hang: they run in a child process.
func TestReview65RetryAndRateLimitEndOnCancel(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, p := range r65StdParents()[:2] {
			for _, w := range []int{1, 3} {
				t.Run(fmt.Sprintf("retry/%s/w=%d", p.name, w), func(t *testing.T) {
					parent, cancel := p.make()
					defer cancel()
					var attempts atomic.Int32
					m := stage.Map(source.Slice([]int{7}), func(ctx context.Context, v int) (int, error) {
						attempts.Add(1)
						cancel()
						return 0, r65ErrX
					}, stage.Workers(w), stage.Retry(5, time.Hour))
					var err error
					runcheck.Run(t, "slice", func() { _, err = sink.Slice(parent, m) })
					var se *stage.Error
					if !errors.Is(err, context.Canceled) || errors.As(err, &se) {
						t.Fatalf("err = %v; want context.Canceled and no *stage.Error", err)
					}
					if a := attempts.Load(); a != 1 {
						t.Fatalf("%d attempts; want 1 (no retry once the run is cancelled)", a)
					}
				})
				t.Run(fmt.Sprintf("ratelimit/%s/w=%d", p.name, w), func(t *testing.T) {
					parent, cancel := p.make()
					defer cancel()
					var calls atomic.Int32
					first := make(chan struct{})
					m := stage.Map(source.Slice([]int{0, 1, 2, 3}), func(ctx context.Context, v int) (int, error) {
						if calls.Add(1) == 1 {
							close(first)
						}
						return v, nil
					}, stage.Workers(w), stage.RateLimit(1e-9, 1))
					done := make(chan struct{})
					go func() {
						defer close(done)
						<-first // the burst's one token is spent: the next call waits ~30 years
						cancel()
					}()
					var err error
					runcheck.Run(t, "slice", func() { _, err = sink.Slice(parent, m) })
					<-done
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("err = %v; want context.Canceled", err)
					}
				})
			}
		}
	})
}

// r65AckRec records the acknowledgements of an AckSource's items.
type r65AckRec struct {
	mu   sync.Mutex
	done map[int][]error
}

type r65Ack struct {
	rec *r65AckRec
	i   int
}

func (a r65Ack) Done(err error) {
	a.rec.mu.Lock()
	defer a.rec.mu.Unlock()
	a.rec.done[a.i] = append(a.rec.done[a.i], err)
}

func (r *r65AckRec) stream(n int) stage.Stream[int] {
	r.done = map[int][]error{}
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i >= n {
				return 0, nil, io.EOF
			}
			v := i
			i++
			return v, r65Ack{r, v}, nil
		}, nil
	})
}

// stage.Ack / stage.Run, under a caller's cancellation from inside the sink's
// callback for item k: "An item for which f returned nil or ErrStop is
// committed (its acknowledgement, if any, is released)"; "A committed item
// is always acknowledged ... whatever ends the run afterwards" (README);
// "Done is not called when the run ended before the item's fate was known:
// ... a cancelled context"; an item whose callback returned the context's
// error once the run was ending "was cut short, and the item's fate is
// unknown (its acknowledgement is not told)"; "one for which f returned an
// error failed with it, unless the run was ending already when f returned
// ... and the error says so": a plain error is told. Done "is called at most
// once per item". So: Done(nil) exactly for the items whose callback
// returned nil, Done(errX) for item k when the callback returned errX, and
// nothing else.
func TestReview65AckSettledOnParentCancel(t *testing.T) {
	const n, k = 30, 4
	for _, p := range r65StdParents()[:3] {
		for _, w := range []int{0, 1, 4} { // 0: no Map, the sink reads the source
			for _, ret := range []string{"nil", "ctxErr", "errX", "control"} {
				t.Run(fmt.Sprintf("%s/w=%d/%s", p.name, w, ret), func(t *testing.T) {
					parent, cancel := p.make()
					defer cancel()
					rec := &r65AckRec{}
					s := rec.stream(n)
					if w > 0 {
						s = stage.Map(s, func(ctx context.Context, v int) (int, error) { return v, nil }, stage.Workers(w))
					}
					committed := map[int]bool{}
					afterCancel := 0
					cancelled := false
					var errX error
					var err error
					runcheck.Run(t, "run", func() {
						err = stage.Run(parent, s, func(ctx context.Context, v int, fwd error) error {
							if fwd != nil {
								t.Errorf("forwarded %v", fwd)
								return nil
							}
							if cancelled {
								afterCancel++
							}
							if v != k || ret == "control" {
								committed[v] = true
								return nil
							}
							cancel()
							cancelled = true
							switch ret {
							case "nil":
								committed[v] = true
								return nil
							case "ctxErr":
								return ctx.Err()
							default:
								errX = fmt.Errorf("r65 commit %d: %w", v, r65ErrX)
								return errX
							}
						})
					})
					if ret == "control" {
						if err != nil || len(committed) != n {
							t.Fatalf("control: %v, %d committed", err, len(committed))
						}
					} else if err == nil {
						t.Fatalf("the run was cancelled, yet err = nil")
					} else if ret != "errX" && !errors.Is(err, context.Canceled) {
						t.Fatalf("err = %v; want context.Canceled", err)
					}
					if afterCancel != 0 {
						// README, Abort: "nothing more is delivered".
						t.Fatalf("%d items were delivered to the callback after it cancelled the caller's ctx", afterCancel)
					}
					rec.mu.Lock()
					defer rec.mu.Unlock()
					for i := range n {
						d := rec.done[i]
						if len(d) > 1 {
							t.Fatalf("item %d: Done called %d times: %v", i, len(d), d)
						}
						switch {
						case committed[i]:
							if len(d) != 1 || d[0] != nil {
								t.Fatalf("item %d was committed; Done calls %v, want [nil]", i, d)
							}
						case i == k && ret == "errX":
							if len(d) != 1 || !errors.Is(d[0], r65ErrX) {
								t.Fatalf("item %d's commit failed with errX; Done calls %v, want [errX]", i, d)
							}
						default:
							if len(d) != 0 {
								t.Fatalf("item %d was never committed (fate unknown); Done calls %v, want none", i, d)
							}
						}
					}
				})
			}
		}
	}
}

// Nested runs: a stage's function runs a run of its own with its ctx. The
// caller cancels the outer ctx from inside the inner run's callback (or
// from another goroutine, gated on the inner functions waiting on their
// ctx). The inner run's functions see it through their ctx, the inner sink
// returns Canceled, nothing more is delivered to the inner callback, and the
// outer sink returns Canceled, not a *stage.Error (Watcher.Finished: a call
// returning an error once the run was ending, the caller's cancellation,
// "neither succeeded nor failed").
func TestReview65NestedRunParentCancel(t *testing.T) {
	for _, p := range r65StdParents()[:2] {
		for _, from := range []string{"inner-callback", "goroutine", "control"} {
			for _, w := range []int{1, 3} {
				t.Run(fmt.Sprintf("%s/%s/w=%d", p.name, from, w), func(t *testing.T) {
					parent, cancel := p.make()
					defer cancel()
					var innerErrs sync.Map
					var afterCancel atomic.Int32
					var cancelled atomic.Bool
					waiting := make(chan struct{}, 64)
					outer := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, o int) (int, error) {
						inner := stage.Map(source.Slice([]int{0, 1, 2, 3, 4}), func(ctx context.Context, v int) (int, error) {
							if from == "goroutine" && o == 1 && v == 2 {
								waiting <- struct{}{}
								<-ctx.Done()
								return 0, ctx.Err()
							}
							return v, nil
						}, stage.Workers(w))
						err := sink.ForEach(ctx, inner, func(ctx context.Context, v int) error {
							if cancelled.Load() {
								afterCancel.Add(1)
							}
							if from == "inner-callback" && o == 1 && v == 2 {
								cancel()
								cancelled.Store(true)
							}
							return nil
						})
						innerErrs.Store(o, err)
						return o, err
					}, stage.Workers(w))
					done := make(chan struct{})
					go func() {
						defer close(done)
						if from == "goroutine" {
							<-waiting
							cancel()
						}
					}()
					var err error
					runcheck.Run(t, "outer", func() { _, err = sink.Slice(parent, outer) })
					<-done
					if from == "control" {
						if err != nil {
							t.Fatalf("control: %v", err)
						}
						return
					}
					var se *stage.Error
					if !errors.Is(err, context.Canceled) || errors.As(err, &se) {
						t.Fatalf("outer err = %v; want context.Canceled, no *stage.Error", err)
					}
					if e, ok := innerErrs.Load(1); !ok || !errors.Is(e.(error), context.Canceled) {
						t.Fatalf("inner run of item 1 returned %v; want context.Canceled", e)
					}
					if afterCancel.Load() != 0 {
						t.Fatalf("the inner callback was called %d times after the cancellation", afterCancel.Load())
					}
				})
			}
		}
	}
}

// Drain is not abort. stage.Until: "Cancelling the run's context (the ctx
// given to the sink) is the other way to stop, and it aborts: calls in
// flight see ctx.Done(), nothing more is delivered, and the sink returns
// the cancellation error." A drain already begun (stop done) does not turn
// a later cancellation into a success: f, holding the last item taken,
// closes stop, then the caller cancels, and the sink returns Canceled. The
// control (drain only) returns nil. stage.Batch: "A FailFast error or a
// cancelled run drops the partial batch": a cancellation before the input
// ends delivers no partial batch (the control delivers one batch of all).
func TestReview65UntilAndBatchUnderCancel(t *testing.T) {
	for _, p := range r65StdParents()[:2] {
		for _, control := range []bool{false, true} {
			t.Run(fmt.Sprintf("until/%s/control=%v", p.name, control), func(t *testing.T) {
				parent, cancel := p.make()
				defer cancel()
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				src := &r65Counted{n: 1000}
				m := stage.Map(stage.Until(src.stream(), stop), func(ctx context.Context, v int) (int, error) {
					if v == 3 {
						drain()
						if !control {
							cancel()
							return 0, ctx.Err()
						}
					}
					return v, nil
				}, stage.Workers(1))
				var err error
				var n int
				runcheck.Run(t, "count", func() { n, err = sink.Count(parent, m) })
				if control {
					if err != nil || n < 4 {
						t.Fatalf("drain: %d, %v; want at least 4 and nil", n, err)
					}
					return
				}
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v; want context.Canceled (an abort during a drain)", err)
				}
			})
			t.Run(fmt.Sprintf("batch/%s/control=%v", p.name, control), func(t *testing.T) {
				parent, cancel := p.make()
				defer cancel()
				m := stage.Map(source.Slice([]int{0, 1, 2, 3, 4, 5}), func(ctx context.Context, v int) (int, error) {
					if v == 4 && !control {
						cancel()
						return 0, ctx.Err()
					}
					return v, nil
				}, stage.Workers(1))
				var batches [][]int
				var err error
				runcheck.Run(t, "batch", func() {
					err = sink.ForEach(parent, stage.Batch(m, 100, 0), func(_ context.Context, b []int) error {
						batches = append(batches, b)
						return nil
					})
				})
				if control {
					if err != nil || len(batches) != 1 || len(batches[0]) != 6 {
						t.Fatalf("control: %v, %v", batches, err)
					}
					return
				}
				if !errors.Is(err, context.Canceled) || len(batches) != 0 {
					t.Fatalf("batches %v, err %v; want none and context.Canceled", batches, err)
				}
			})
		}
	}
}

// Cancellation from another goroutine, gated on every worker waiting in f
// on its ctx: the calls in flight see ctx.Done() ("calls in flight see
// ctx.Done()"), no item is taken after the cancellation, and the sink
// returns Canceled. Parents include the caller's own context types: one
// wrapping a standard context and one with its own Done channel (package
// doc, Leaks, speaks of "a context type of the caller's"). Runs in a child
// process, since a run that misses a cancellation hangs.
func TestReview65GoroutineCancelGated(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, p := range r65AllParents() {
			for _, w := range []int{1, 4} {
				for _, ordered := range []bool{false, true} {
					t.Run(fmt.Sprintf("%s/w=%d/ordered=%v", p.name, w, ordered), func(t *testing.T) {
						parent, cancel := p.make()
						defer cancel()
						src := &r65Counted{n: 100}
						entered := make(chan struct{}, w)
						f := func(ctx context.Context, v int) (int, error) {
							if v < w {
								entered <- struct{}{}
								<-ctx.Done()
								return 0, ctx.Err()
							}
							return v, nil
						}
						opts := []stage.Option{stage.Workers(w)}
						if ordered {
							opts = append(opts, stage.Ordered())
						}
						done := make(chan struct{})
						go func() {
							defer close(done)
							for range w {
								<-entered
							}
							src.cancelled.Store(true)
							cancel()
						}()
						var err error
						var got []int
						runcheck.Run(t, "slice", func() { got, err = sink.Slice(parent, stage.Map(src.stream(), f, opts...)) })
						<-done
						if !errors.Is(err, context.Canceled) || len(got) != 0 {
							t.Fatalf("got %v, err %v; want nothing and context.Canceled", got, err)
						}
						if src.afterCancelNexts.Load() != 0 || src.nexts.Load() != int32(w) {
							t.Fatalf("next took %d items (%d calls after the cancellation); want %d", src.nexts.Load(), src.afterCancelNexts.Load(), w)
						}
						if src.stops.Load() != 1 {
							t.Fatalf("stop called %d times", src.stops.Load())
						}
					})
				}
			}
		}
	})
}

// As TestReview65OwnDoneCtxFCancels, but f returns at once after it
// cancelled the caller's ctx (a context type of the caller's with its own
// Done channel, which the run watches from a goroutine of its own): the
// source still takes no new item, and the sink returns Canceled, as under
// a standard context (the run's "ending": its sources and its sink look
// at the parent's Done channel too).
func TestReview65OwnDoneCtxFCancelsNoWait(t *testing.T) {
	const n, k = 40, 2
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			for range 20 {
				c := ctxtest.NewDoneCtx()
				src := &r65Counted{n: n}
				opts := []stage.Option{stage.Workers(1)}
				if ordered {
					opts = append(opts, stage.Ordered())
				}
				m := stage.Map(src.stream(), func(ctx context.Context, v int) (int, error) {
					if v == k {
						c.Cancel()
						src.cancelled.Store(true)
					}
					return v, nil
				}, opts...)
				var err error
				runcheck.Run(t, "count", func() { _, err = sink.Count(c, m) })
				c.Cancel()
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v; want context.Canceled", err)
				}
				if a := src.afterCancelNexts.Load(); a != 0 || src.nexts.Load() != k+1 {
					t.Fatalf("next took %d items, %d calls after the cancellation; want %d, 0", src.nexts.Load(), a, k+1)
				}
			}
		})
	}
}

// A source's next (a stage.Source, and an Indexed's at) closes the Done
// channel of the caller's ctx, a context type of the caller's, as it
// returns item k: that item does not start ("no new item starts once the
// run is cancelled"), next is not called again, and the sink returns
// Canceled, as under a standard context.
func TestReview65OwnDoneCtxSourceCancels(t *testing.T) {
	const n, k = 40, 3
	for _, kind := range []string{"source", "indexed"} {
		t.Run(kind, func(t *testing.T) {
			for range 20 {
				c := ctxtest.NewDoneCtx()
				src := &r65Counted{n: n}
				src.onNext = func(_ context.Context, i int) {
					if i == k {
						c.Cancel()
						src.cancelled.Store(true)
					}
				}
				in := src.stream()
				if kind == "indexed" {
					in = stage.Indexed(n, func(i int) int {
						src.nexts.Add(1)
						src.onNext(context.Background(), i)
						return i
					})
				}
				var started []int
				m := stage.Map(in, func(_ context.Context, v int) (int, error) {
					started = append(started, v)
					return v, nil
				}, stage.Workers(1))
				var err error
				runcheck.Run(t, "count", func() { _, err = sink.Count(c, m) })
				c.Cancel()
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v; want context.Canceled", err)
				}
				if src.nexts.Load() != k+1 || src.afterCancelNexts.Load() != 0 {
					t.Fatalf("%d items made, %d next calls after the cancellation; want %d, 0", src.nexts.Load(), src.afterCancelNexts.Load(), k+1)
				}
				for _, v := range started {
					if v >= k {
						t.Fatalf("f started %v; want none from item %d on", started, k)
					}
				}
			}
		})
	}
}

// The scenario of TestReview65FCancelsParentNoNewItem (Workers(1), f
// cancels the caller's ctx at item k) under a context type of the caller's
// with its own Done channel; f then waits on its ctx ("calls in flight see
// ctx.Done()"), which must close (else the run hangs: runcheck's watchdog).
// Source: next is called "never once the run is cancelled": exactly k+1
// items are taken, and the sink returns Canceled.
func TestReview65OwnDoneCtxFCancels(t *testing.T) {
	const n, k = 40, 2
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			c := ctxtest.NewDoneCtx()
			defer c.Cancel()
			src := &r65Counted{n: n}
			opts := []stage.Option{stage.Workers(1)}
			if ordered {
				opts = append(opts, stage.Ordered())
			}
			m := stage.Map(src.stream(), func(ctx context.Context, v int) (int, error) {
				if v == k {
					c.Cancel()
					src.cancelled.Store(true)
					<-ctx.Done() // "calls in flight see ctx.Done()"
					return 0, ctx.Err()
				}
				return v, nil
			}, opts...)
			var err error
			runcheck.Run(t, "count", func() { _, err = sink.Count(c, m) })
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v; want context.Canceled", err)
			}
			if a := src.afterCancelNexts.Load(); a != 0 || src.nexts.Load() != k+1 {
				t.Fatalf("BROKEN PROMISE: next took %d items, %d calls after the cancellation; want %d, 0", src.nexts.Load(), a, k+1)
			}
		})
	}
}
