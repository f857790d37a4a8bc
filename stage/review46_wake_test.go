package stage_test

// Review 46 (commits 346d759, abaf9f1): the parent's cancellation must wake
// every goroutine of the run that sleeps in a queue (the sleepers' hook
// now watches the run's own context, made from a watched parent), for each
// kind of parent; the run's context and a stage function's ctx still carry
// the parent's values, deadline and cause; no goroutine of the run
// outlives the sink.
//
// The sleepers are isolated from every other way of waking: the functions
// that would see the cancellation (a stage downstream) ignore their ctx and
// wait on a gate, which the test opens only once no goroutine sleeps in a
// queue any more. Without the hook's wake-up, a sleeper stays, and the
// test hangs (the child process's watchdog fails it).

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r46Key struct{}

// r46OwnDone is a caller's context type with a Done channel of its own
// (the context package cannot see into it): values and deadline come from
// base.
type r46OwnDone struct {
	base context.Context
	done chan struct{}
	once sync.Once
}

func (c *r46OwnDone) Deadline() (time.Time, bool) { return c.base.Deadline() }
func (c *r46OwnDone) Done() <-chan struct{}       { return c.done }
func (c *r46OwnDone) Value(k any) any             { return c.base.Value(k) }
func (c *r46OwnDone) Err() error {
	select {
	case <-c.done:
		return context.Canceled
	default:
		return nil
	}
}

// r46Embed is a caller's context type that embeds a standard one.
type r46Embed struct{ context.Context }

// r46Parent is a parent of a kind, its cancel, and what it should report.
type r46Parent struct {
	ctx      context.Context
	cancel   func()
	deadline bool
}

var r46Deadline = time.Now().Add(365 * 24 * time.Hour)

var errR46Cause = errors.New("r46 parent's cause")

// r46Parents are the kinds of parent: each carries r46Key's value "v".
var r46Parents = []struct {
	name string
	make func() r46Parent
}{
	{"std", func() r46Parent {
		ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), r46Key{}, "v"))
		return r46Parent{ctx: ctx, cancel: func() { cancel(errR46Cause) }}
	}},
	{"value-over-std", func() r46Parent {
		ctx, cancel := context.WithCancelCause(context.Background())
		return r46Parent{ctx: context.WithValue(ctx, r46Key{}, "v"), cancel: func() { cancel(errR46Cause) }}
	}},
	{"embed", func() r46Parent {
		ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), r46Key{}, "v"))
		return r46Parent{ctx: r46Embed{ctx}, cancel: func() { cancel(errR46Cause) }}
	}},
	{"own-done", func() r46Parent {
		c := &r46OwnDone{base: context.WithValue(context.Background(), r46Key{}, "v"), done: make(chan struct{})}
		return r46Parent{ctx: c, cancel: func() { c.once.Do(func() { close(c.done) }) }}
	}},
	{"own-done-deadline", func() r46Parent {
		base, stop := context.WithDeadline(context.WithValue(context.Background(), r46Key{}, "v"), r46Deadline)
		_ = stop // never cancelled: a far deadline
		c := &r46OwnDone{base: base, done: make(chan struct{})}
		return r46Parent{ctx: c, deadline: true, cancel: func() { c.once.Do(func() { close(c.done) }) }}
	}},
	{"deadline", func() r46Parent {
		ctx, cancel := context.WithCancelCause(context.WithValue(context.Background(), r46Key{}, "v"))
		ctx, stop := context.WithDeadline(ctx, r46Deadline)
		_ = stop
		return r46Parent{ctx: ctx, deadline: true, cancel: func() { cancel(errR46Cause) }}
	}},
}

// r46Sleepers returns the stacks of the goroutines that sleep in a queue
// of the stage package (a sync.Cond wait under one of its waits).
func r46Sleepers() []string {
	_, all := runcheck.Goroutines()
	var out []string
	for _, st := range all {
		if !strings.Contains(st, "sync.(*Cond).Wait") || !strings.Contains(st, "sluice/stage.") {
			continue
		}
		out = append(out, st)
	}
	return out
}

// r46WaitFor polls until cond holds (a hang is the child's watchdog's).
func r46WaitFor(cond func() bool) {
	for !cond() {
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// r46Seen is what a stage function saw of its ctx once it was cancelled.
type r46Seen struct {
	value    any
	deadline time.Time
	hasDL    bool
	cause    error
}

// r46Shape is a pipeline in which, once it settles, a goroutine sleeps in
// the queue function named by sleeps, while the function downstream waits
// on gate ignoring its ctx; seen receives what that function saw of its
// ctx after the gate opened.
type r46Shape struct {
	name   string
	sleeps string // a frame of the sleeper: ").acquire(", ...
	build  func(gate <-chan struct{}, seen chan<- r46Seen, entered func()) stage.Stream[int]
}

// r46Blocker is a Map whose function waits on gate (not on its ctx), then
// reports what its ctx says.
func r46Blocker(in stage.Stream[int], gate <-chan struct{}, seen chan<- r46Seen, entered func(), opts ...stage.Option) stage.Stream[int] {
	var once sync.Once
	return stage.Map(in, func(ctx context.Context, v int) (int, error) {
		entered()
		<-gate
		once.Do(func() {
			dl, ok := ctx.Deadline()
			seen <- r46Seen{value: ctx.Value(r46Key{}), deadline: dl, hasDL: ok, cause: context.Cause(ctx)}
		})
		return v, ctx.Err()
	}, opts...)
}

func r46Ints(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

var r46Shapes = []r46Shape{
	{"token", ").acquire(", func(gate <-chan struct{}, seen chan<- r46Seen, entered func()) stage.Stream[int] {
		// A's workers fill B's read-ahead and wait for a token.
		a := stage.Map(source.Slice(r46Ints(1000)), double, stage.Workers(2))
		return r46Blocker(a, gate, seen, entered, stage.Workers(1))
	}},
	{"sink", ").wait(", func(gate <-chan struct{}, seen chan<- r46Seen, entered func()) stage.Stream[int] {
		// The sink waits for an item of B, whose workers all wait on the gate.
		return r46Blocker(source.Slice(r46Ints(100)), gate, seen, entered, stage.Workers(2))
	}},
	{"push-extra", ").pushExtra(", func(gate <-chan struct{}, seen chan<- r46Seen, entered func()) stage.Stream[int] {
		a := stage.Apply(source.Slice([]int{0}), func(ctx context.Context, v int, emit func(int) bool) error {
			for i := 0; i < 1000 && emit(i); i++ {
			}
			return nil
		}, stage.Workers(1))
		return r46Blocker(a, gate, seen, entered, stage.Workers(1))
	}},
	{"park", ").park(", func(gate <-chan struct{}, seen chan<- r46Seen, entered func()) stage.Stream[int] {
		// Item 0, the head, waits on the gate; item 1 parks outputs until
		// the window is full, then waits in park.
		return stage.Apply(source.Slice([]int{0, 1}), func(ctx context.Context, v int, emit func(int) bool) error {
			if v == 0 {
				entered()
				<-gate
				dl, ok := ctx.Deadline()
				seen <- r46Seen{value: ctx.Value(r46Key{}), deadline: dl, hasDL: ok, cause: context.Cause(ctx)}
				return ctx.Err()
			}
			for i := 0; i < 1000 && emit(i); i++ {
			}
			return nil
		}, stage.Workers(2), stage.Ordered())
	}},
}

// TestReview46ParentCancelWakesSleepers: for each parent kind and sleeper
// shape, the parent's cancellation wakes the sleepers (with the sink's
// function out of the way), and then the sink returns an error for which
// errors.Is(err, context.Canceled) holds; the stage function's ctx reports
// the parent's value, deadline and cause; no goroutine of the run is left.
func TestReview46ParentCancelWakesSleepers(t *testing.T) {
	for _, pk := range r46Parents {
		for _, sh := range r46Shapes {
			t.Run(pk.name+"/"+sh.name, func(t *testing.T) {
				runcheckInChild(t, func(t *testing.T) {
					for i := range 20 {
						if msg := r46WakeOnce(pk.make(), sh); msg != "" {
							t.Fatalf("run %d: %s", i, msg)
						}
					}
				})
			})
		}
	}
}

func r46WakeOnce(p r46Parent, sh r46Shape) string {
	gate := make(chan struct{})
	seen := make(chan r46Seen, 1)
	entered := make(chan struct{})
	var enteredOnce sync.Once
	in := sh.build(gate, seen, func() { enteredOnce.Do(func() { close(entered) }) })
	_, before := runcheck.Goroutines()
	res := make(chan error, 1)
	go func() {
		res <- stage.Run(p.ctx, in, func(context.Context, int, error) error { return nil })
	}()
	// A function waits on the gate, and the shape's sleeper is there.
	<-entered
	r46WaitFor(func() bool {
		for _, st := range r46Sleepers() {
			if strings.Contains(st, sh.sleeps) {
				return true
			}
		}
		return false
	})
	p.cancel()
	// Every sleeper wakes, though nothing of the run but the hook can see
	// the cancellation (the functions that look at ctx wait on the gate).
	r46WaitFor(func() bool { return len(r46Sleepers()) == 0 })
	close(gate)
	err := <-res
	if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
		return fmt.Sprintf("goroutines of the run alive after the sink returned:\n%s", strings.Join(leaked, "\n\n"))
	}
	if !errors.Is(err, context.Canceled) {
		return fmt.Sprintf("stage.Run = %v, want context.Canceled", err)
	}
	var s r46Seen
	select {
	case s = <-seen:
	default:
		return "the blocked function never reported its ctx"
	}
	if s.value != "v" {
		return fmt.Sprintf("the stage's ctx.Value = %v, want the parent's %q", s.value, "v")
	}
	if s.hasDL != p.deadline || p.deadline && !s.deadline.Equal(r46Deadline) {
		return fmt.Sprintf("the stage's ctx.Deadline = %v, %v; want the parent's (%v)", s.deadline, s.hasDL, p.deadline)
	}
	if want := context.Cause(p.ctx); s.cause != want {
		return fmt.Sprintf("context.Cause of the stage's ctx = %v, want the parent's %v", s.cause, want)
	}
	return ""
}

// TestReview46ParentCancelRacesEnd: the parent's cancellation before the
// run, during its opening, or racing its own end (the sink's ErrStop, the
// input's end, a failure): the sink returns, nothing of the run is left,
// and the result is one of the outcomes the race allows.
func TestReview46ParentCancelRacesEnd(t *testing.T) {
	for _, pk := range r46Parents {
		t.Run(pk.name, func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				boom := errors.New("boom")
				for i := range 400 {
					p := pk.make()
					when := i % 4
					if when == 0 {
						p.cancel() // before the run
					}
					var opened atomic.Bool
					src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
						if when == 1 {
							p.cancel() // as the run opens its source
						}
						opened.Store(true)
						n := 0
						return func(context.Context) (int, error) {
							if n == 50 {
								return 0, errEOF
							}
							n++
							return n, nil
						}, func() {}
					})
					in := stage.Map(src, double, stage.Workers(2), stage.Buffer(1))
					go func() {
						if when >= 2 {
							runtime.Gosched()
							p.cancel() // racing the end
						}
					}()
					_, before := runcheck.Goroutines()
					k := 0
					err := stage.Run(p.ctx, in, func(context.Context, int, error) error {
						k++
						switch {
						case when == 2 && k == 3:
							return stage.ErrStop
						case when == 3 && k == 3:
							return boom
						}
						return nil
					})
					if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
						t.Fatalf("run %d: goroutines of the run alive after the sink returned:\n%s", i, strings.Join(leaked, "\n\n"))
					}
					p.cancel()
					switch {
					case err == nil && (when == 2 || k == 50):
					case errors.Is(err, context.Canceled):
					case when == 3 && errors.Is(err, boom):
					default:
						t.Fatalf("run %d (when %d, %d items): stage.Run = %v", i, when, k, err)
					}
				}
			})
		})
	}
}
