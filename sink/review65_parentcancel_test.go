package sink_test

// Review 65: black-box tests of the sinks under a caller's context that can
// be cancelled (a request's context), written from the documentation only.
// Every verdict is decided by gates and channels; durations are hang
// watchdogs only.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
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

// r65Parent is a kind of cancellable caller's context.
type r65Parent struct {
	name  string
	cause error
	make  func() (context.Context, func())
}

func r65Parents() []r65Parent {
	return []r65Parent{
		{name: "WithCancel", make: func() (context.Context, func()) { return context.WithCancel(context.Background()) }},
		{name: "WithCancelCause", cause: r65Cause, make: func() (context.Context, func()) {
			ctx, c := context.WithCancelCause(context.Background())
			return ctx, func() { c(r65Cause) }
		}},
		{name: "WithDeadline1h", make: func() (context.Context, func()) {
			return context.WithDeadline(context.Background(), time.Now().Add(time.Hour))
		}},
		{name: "wrapped", make: func() (context.Context, func()) {
			ctx, c := context.WithCancel(context.Background())
			return ctxtest.WrapCtx{Context: ctx}, c
		}},
		{name: "ownDone", make: func() (context.Context, func()) {
			c := ctxtest.NewDoneCtx()
			return c, c.Cancel
		}},
	}
}

// r65Pipe builds the stream the sinks run: the bare slice source, a Map of
// one worker, or an Ordered Map of four.
func r65Pipe(kind string, items []int) stage.Stream[int] {
	s := source.Slice(items)
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	switch kind {
	case "map1":
		return stage.Map(s, id, stage.Workers(1))
	case "map4ordered":
		return stage.Map(s, id, stage.Workers(4), stage.Ordered())
	case "map4buffer":
		return stage.Map(s, id, stage.Workers(4), stage.Buffer(2))
	}
	return s
}

func r65Items(n int) []int {
	items := make([]int, n)
	for i := range items {
		items[i] = i
	}
	return items
}

// r65CallbackScenario runs one sink whose callback cancels the caller's ctx
// at its (k+1)th delivery; it returns how many deliveries came after the
// cancellation, how many in all, and the sink's error.
func r65CallbackScenario(t *testing.T, sk, pipe string, parent context.Context, cancel func(), n, k int) (after, total int, err error) {
	t.Helper()
	s := r65Pipe(pipe, r65Items(n))
	cancelled := false
	seen := func() {
		if cancelled {
			after++
		}
		total++
		if total == k+1 && cancel != nil {
			cancel()
			cancelled = true
		}
	}
	runcheck.Run(t, sk, func() {
		switch sk {
		case "ForEach":
			err = sink.ForEach(parent, s, func(context.Context, int) error { seen(); return nil })
		case "Run":
			err = stage.Run(parent, s, func(context.Context, int, error) error { seen(); return nil })
		case "Reduce":
			var acc int
			acc, err = sink.Reduce(parent, s, 0, func(acc, v int) int { seen(); return acc + 1 })
			if acc != total {
				t.Errorf("Reduce returned the accumulator %d; %d values were folded", acc, total)
			}
		case "All":
			var lastErr error
			pairs := 0
			for _, e := range sink.All(parent, s) {
				if lastErr != nil {
					t.Errorf("All yielded a pair after the error %v", lastErr)
				}
				pairs++
				if e != nil {
					lastErr = e
					continue
				}
				seen()
			}
			err = lastErr
		}
	})
	return after, total, err
}

// stage.Run (every sink is written with it): "Its result depends only on
// what f saw and returned, never on timing (f saw the end of s when Run,
// asking for the next item after f returned for the last one, found none: a
// cancellation of ctx while f works on the last item comes before the
// end)"; "when ctx was cancelled, an error for which errors.Is(err,
// context.Canceled) ... holds"; README (Abort): "calls in flight see
// ctx.Done(), nothing more is delivered, and the sink returns the
// cancellation error"; sink.All: "If the run fails, the last pair is (zero,
// err) with the error that ended it"; sink.Reduce: "returns the accumulator
// as it stands when the run ends, with the error that ended it".
//
// The callback (ForEach, Run, Reduce's f, All's loop body) cancels the
// caller's ctx at item k, the middle one or the last one: no item is
// delivered after it, and the sink returns Canceled, also when k is the
// last item. Parents: standard ones, a wrapper of one, and a context type
// of the caller's with its own Done channel. Control: Background, no error,
// every item.
//
// The caller's own Done-channel type is left to
// TestReview65OwnDoneCtxNothingDeliveredAfterCancel.
func TestReview65SinkCallbackCancelsParent(t *testing.T) {
	const n = 12
	for _, p := range r65Parents() {
		if p.name == "ownDone" {
			continue
		}
		for _, sk := range []string{"ForEach", "Run", "Reduce", "All"} {
			for _, pipe := range []string{"slice", "map1", "map4ordered", "map4buffer"} {
				for _, k := range []int{n / 2, n - 1, -1} { // -1: control
					t.Run(fmt.Sprintf("%s/%s/%s/k=%d", p.name, sk, pipe, k), func(t *testing.T) {
						parent, cancel := p.make()
						defer cancel()
						c := cancel
						if k < 0 {
							parent, c = context.Background(), nil
						}
						after, total, err := r65CallbackScenario(t, sk, pipe, parent, c, n, k)
						if k < 0 {
							if err != nil || total != n {
								t.Fatalf("control: %d delivered, err %v; want %d, nil", total, err, n)
							}
							return
						}
						if after != 0 {
							t.Fatalf("%d items delivered after the callback cancelled the caller's ctx", after)
						}
						if !errors.Is(err, context.Canceled) {
							t.Fatalf("err = %v (%d delivered); want errors.Is(err, context.Canceled)", err, total)
						}
						if p.cause != nil && !errors.Is(err, p.cause) {
							t.Logf("note: the sink's error %v does not wrap the parent's cause (not promised)", err)
						}
					})
				}
			}
		}
	}
}

// The caller cancels its ctx from a stage's function at item k (Workers(1),
// so input order) and returns ctx.Err(). sink.Slice: "When the run fails it
// returns the values received before it ended and the error"; sink.Count
// counts what reached the end; sink.First: "(zero, false, err) when ... the
// run failed before any item"; sink.Chan with a channel of room: the values
// sent are values before k. All return Canceled; no value at or after k
// arrives (they were never made: no item starts once the run is cancelled).
func TestReview65StageCancelsForEachSink(t *testing.T) {
	const n = 10
	for _, p := range r65Parents() {
		for _, sk := range []string{"Slice", "Count", "First", "Chan"} {
			for _, control := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/control=%v", p.name, sk, control), func(t *testing.T) {
					parent, cancel := p.make()
					defer cancel()
					if control {
						parent = context.Background()
					}
					k := 5
					if sk == "First" {
						k = 0
					}
					var calls atomic.Int32
					m := stage.Map(source.Slice(r65Items(n)), func(ctx context.Context, v int) (int, error) {
						calls.Add(1)
						if v == k && !control {
							cancel()
							<-ctx.Done() // "calls in flight see ctx.Done()"
							return 0, ctx.Err()
						}
						return v, nil
					}, stage.Workers(1))
					var got []int
					var err error
					runcheck.Run(t, sk, func() {
						switch sk {
						case "Slice":
							got, err = sink.Slice(parent, m)
						case "Count":
							var c int
							c, err = sink.Count(parent, m)
							got = r65Items(c)
						case "First":
							var v int
							var ok bool
							v, ok, err = sink.First(parent, m)
							if ok {
								got = []int{v}
							}
						case "Chan":
							out := make(chan int, n)
							err = sink.Chan(parent, m, out)
							close(out)
							for v := range out {
								got = append(got, v)
							}
						}
					})
					if control {
						want := n
						if sk == "First" {
							want = 1
						}
						if err != nil || len(got) != want {
							t.Fatalf("control: %v, %v", got, err)
						}
						return
					}
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("err = %v; want context.Canceled", err)
					}
					for i, v := range got {
						if v != i || v >= k {
							t.Fatalf("got %v; want a prefix of the items before %d", got, k)
						}
					}
					if c := calls.Load(); c != int32(k+1) {
						t.Fatalf("f called %d times; want %d (no item starts after the cancellation)", c, k+1)
					}
				})
			}
		}
	}
}

// sink.Chan: "If the run fails while Chan waits on out, Chan stops waiting
// and returns the error that ended the run"; "It never closes out". out is
// full (the caller's own value in it), so Chan waits to send the first
// value; another goroutine, gated on that value having been made, cancels
// the caller's ctx. Chan returns Canceled and out holds only the caller's
// value. Runs in a child process: a Chan that keeps waiting hangs.
func TestReview65ChanSinkWaitingOnOutCancelled(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, p := range r65Parents() {
			for _, pipe := range []string{"slice", "map1", "map4ordered"} {
				t.Run(p.name+"/"+pipe, func(t *testing.T) {
					parent, cancel := p.make()
					defer cancel()
					made := make(chan struct{})
					var once sync.Once
					m := stage.Map(r65Pipe(pipe, r65Items(5)), func(_ context.Context, v int) (int, error) {
						once.Do(func() { close(made) })
						return v, nil
					}, stage.Workers(1))
					out := make(chan int, 1)
					out <- -1
					done := make(chan struct{})
					go func() {
						defer close(done)
						<-made
						cancel()
					}()
					var err error
					runcheck.Run(t, "chan", func() { err = sink.Chan(parent, m, out) })
					<-done
					if !errors.Is(err, context.Canceled) {
						t.Fatalf("err = %v; want context.Canceled", err)
					}
					if len(out) != 1 || <-out != -1 {
						t.Fatalf("out changed")
					}
				})
			}
		}
	})
}

// context.WithoutCancel of a cancelled parent is not cancelled (package
// context: its Done is nil): a run under it is no cancelled run. Every item
// is delivered, the functions' ctx is never done, and the sink returns nil.
// The same holds for a WithoutCancel of a parent cancelled during the run,
// from inside the callback.
func TestReview65WithoutCancelIsNotCancelled(t *testing.T) {
	const n = 20
	for _, when := range []string{"before", "during"} {
		for _, pipe := range []string{"slice", "map1", "map4ordered", "map4buffer"} {
			t.Run(when+"/"+pipe, func(t *testing.T) {
				parent, cancel := context.WithCancelCause(context.Background())
				defer cancel(nil)
				if when == "before" {
					cancel(r65Cause)
				}
				ctx := context.WithoutCancel(parent)
				s := stage.Map(r65Pipe(pipe, r65Items(n)), func(ctx context.Context, v int) (int, error) {
					if ctx.Err() != nil {
						return 0, fmt.Errorf("f's ctx is done: %w", ctx.Err())
					}
					return v, nil
				}, stage.Workers(2))
				var got int
				var err error
				runcheck.Run(t, "foreach", func() {
					err = sink.ForEach(ctx, s, func(ctx context.Context, v int) error {
						if got == n/2 {
							cancel(r65Cause)
						}
						got++
						return ctx.Err()
					})
				})
				if err != nil || got != n {
					t.Fatalf("%d delivered, err %v; want %d, nil", got, err, n)
				}
			})
		}
	}
}

// A context type of the caller's with its own Done channel, cancelled from
// inside the sink's callback for the LAST item, while nothing else of the
// run can run (GOMAXPROCS(1), so a goroutine that would notice the
// cancellation later does not get to run first; and the default, many
// times). stage.Run: "a cancellation of ctx while f works on the last item
// comes before the end", and the result is "never of timing": the sink must
// return Canceled every time. A wrapper of a standard context is the
// control of the same shape. Runs in a child process (GOMAXPROCS is
// process-wide).
func TestReview65OwnDoneCtxCancelAtLastItem(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, procs := range []int{1, 0} {
			for _, kind := range []string{"ownDone", "wrapped"} {
				for _, pipe := range []string{"slice", "map1", "map4ordered"} {
					t.Run(fmt.Sprintf("procs=%d/%s/%s", procs, kind, pipe), func(t *testing.T) {
						if procs > 0 {
							defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
						}
						const n = 3
						wrong := 0
						var first error
						for range 100 {
							var parent context.Context
							var cancel func()
							if kind == "ownDone" {
								c := ctxtest.NewDoneCtx()
								parent, cancel = c, c.Cancel
							} else {
								ctx, c := context.WithCancel(context.Background())
								parent, cancel = ctxtest.WrapCtx{Context: ctx}, c
							}
							seen := 0
							err := sink.ForEach(parent, r65Pipe(pipe, r65Items(n)), func(context.Context, int) error {
								seen++
								if seen == n {
									cancel()
								}
								return nil
							})
							cancel()
							if !errors.Is(err, context.Canceled) {
								wrong++
								if first == nil {
									first = fmt.Errorf("err = %v after %d items", err, seen)
								}
							}
						}
						if wrong > 0 {
							t.Fatalf("%d of 100 runs whose caller's ctx was cancelled while the callback worked on the last item did not return context.Canceled; first: %v", wrong, first)
						}
					})
				}
			}
		}
	})
}

// This test found a broken promise (it failed on every run before the
// fix): the run learns of such a context's end from a goroutine of its
// own, and the sink went on delivering until that goroutine had cancelled
// the run's context. The sink now stops at the parent's closed Done channel.
//
// The scenario of TestReview65SinkCallbackCancelsParent (the callback
// cancels the caller's ctx at item k of 12, k the middle one) under a
// context type of the caller's with its own Done channel (a valid
// context.Context: Err is non-nil exactly once Done is closed). README
// (Abort): "cancel the ctx given to the sink: calls in flight see
// ctx.Done(), nothing more is delivered, and the sink returns the
// cancellation error"; stage.Until: "it aborts: ... nothing more is
// delivered"; the docs name no exception for the caller's own context types
// (they are named in the package doc's Leaks paragraph, and no lag is
// documented for the caller's ctx, unlike Until's stop: "a moment after").
// Observed: the sink goes on delivering items after the callback cancelled
// the ctx (often every remaining item), then returns Canceled; under a
// standard context, or a wrapper of one, nothing more is delivered.
func TestReview65OwnDoneCtxNothingDeliveredAfterCancel(t *testing.T) {
	const n, k = 12, 6
	for _, sk := range []string{"ForEach", "Run", "Reduce", "All"} {
		for _, pipe := range []string{"slice", "map1", "map4ordered", "map4buffer"} {
			t.Run(sk+"/"+pipe, func(t *testing.T) {
				c := ctxtest.NewDoneCtx()
				defer c.Cancel()
				after, total, err := r65CallbackScenario(t, sk, pipe, c, c.Cancel, n, k)
				if !errors.Is(err, context.Canceled) {
					t.Errorf("err = %v; want context.Canceled", err)
				}
				if after != 0 {
					t.Errorf("%d of %d items delivered after the callback cancelled the caller's ctx (own Done channel)", after, total)
				}
			})
		}
	}
}
