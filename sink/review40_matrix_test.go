package sink_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

var errR40 = errors.New("review40: trigger")

const r40N = 120

// r40World is one run's instrumented world: an AckSource of 0..n-1 that
// records every Ack's calls, and a counter of user functions running (stage
// functions, the source's next, Ack.Done) that must be 0 when a sink returns.
type r40World struct {
	active  atomic.Int64
	reached chan struct{} // closed when the "hold" item's call has started
	once    sync.Once
	mu      sync.Mutex
	done    map[int][]error
	srcErr  bool // the source fails after its n items
}

func newR40World(srcErr bool) *r40World {
	return &r40World{reached: make(chan struct{}), done: map[int][]error{}, srcErr: srcErr}
}

type r40Ack struct {
	w *r40World
	v int
}

func (a r40Ack) Done(err error) {
	a.w.active.Add(1)
	defer a.w.active.Add(-1)
	runtime.Gosched() // widen the window in which a Done would still run
	a.w.mu.Lock()
	a.w.done[a.v] = append(a.w.done[a.v], err)
	a.w.mu.Unlock()
}

func (w *r40World) source() stage.Stream[int] {
	return stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(ctx context.Context) (int, stage.Ack, error) {
			w.active.Add(1)
			defer w.active.Add(-1)
			if i == r40N {
				if w.srcErr {
					return 0, nil, errR40
				}
				return 0, nil, errEOFR40
			}
			i++
			return i - 1, r40Ack{w, i - 1}, nil
		}, nil
	})
}

// fn is the stage function of every shape: identity, except at the item
// hold (the ender's item) where it does what the ender says.
func (w *r40World) fn(ender string, hold int) func(ctx context.Context, v int) (int, error) {
	return func(ctx context.Context, v int) (int, error) {
		w.active.Add(1)
		defer w.active.Add(-1)
		if v == hold {
			switch ender {
			case "cancel":
				w.once.Do(func() { close(w.reached) })
				<-ctx.Done()
				return 0, ctx.Err()
			case "failfast":
				return 0, errR40
			}
		}
		if ender == "forward" && v%10 == 3 {
			return 0, fmt.Errorf("forwarded %d: %w", v, errR40)
		}
		return v, nil
	}
}

// r40Shapes: each builds a pipeline over w's source; fanout is how many
// outputs of value v an item v leads to.
type r40Shape struct {
	fanout, errFanout int
	build             func(w *r40World, src stage.Stream[int], f func(context.Context, int) (int, error), opts ...stage.Option) stage.Stream[int]
}

func r40Shapes() map[string]r40Shape {
	return map[string]r40Shape{
		"tee-merge": {2, 2, func(w *r40World, src stage.Stream[int], f func(context.Context, int) (int, error), opts ...stage.Option) stage.Stream[int] {
			b := stage.Tee(src, 2)
			return stage.Merge(stage.Map(b[0], f, append(opts, stage.Workers(3))...), stage.Map(b[1], f, append(opts, stage.Workers(2))...))
		}},
		"keyby-ordered": {1, 1, func(w *r40World, src stage.Stream[int], f func(context.Context, int) (int, error), opts ...stage.Option) stage.Stream[int] {
			return stage.Map(src, f, append(opts, stage.Workers(4), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 3 }))...)
		}},
		"batch-unbatch": {1, 1, func(w *r40World, src stage.Stream[int], f func(context.Context, int) (int, error), opts ...stage.Option) stage.Stream[int] {
			return stage.Unbatch(stage.Batch(stage.Map(src, f, append(opts, stage.Workers(4))...), 7, 0))
		}},
		"until-merge": {1, 1, func(w *r40World, src stage.Stream[int], f func(context.Context, int) (int, error), opts ...stage.Option) stage.Stream[int] {
			return stage.Merge(stage.Map(stage.Until(src, context.Background()), f, append(opts, stage.Workers(3))...))
		}},
		"apply-ordered-2": {2, 1, func(w *r40World, src stage.Stream[int], f func(context.Context, int) (int, error), opts ...stage.Option) stage.Stream[int] {
			return stage.Apply(src, func(ctx context.Context, v int, emit func(int) bool) error {
				x, err := f(ctx, v)
				if err != nil {
					return err
				}
				emit(x)
				emit(x)
				return nil
			}, append(opts, stage.Workers(3), stage.Ordered())...)
		}},
	}
}

// r40Result is what a sink gave back.
type r40Result struct {
	values    []int
	forwarded int // forwarded errors seen (All) or counted in a *ForwardedError
	err       error
}

// r40Sinks run s with each sink of the package, returning what it gave.
func r40Sinks() map[string]func(ctx context.Context, s stage.Stream[int]) r40Result {
	fwd := func(err error) int {
		var fe *sink.ForwardedError
		if errors.As(err, &fe) {
			return fe.Count
		}
		return 0
	}
	return map[string]func(ctx context.Context, s stage.Stream[int]) r40Result{
		"slice": func(ctx context.Context, s stage.Stream[int]) r40Result {
			vs, err := sink.Slice(ctx, s)
			return r40Result{vs, fwd(err), err}
		},
		"count": func(ctx context.Context, s stage.Stream[int]) r40Result {
			n, err := sink.Count(ctx, s)
			return r40Result{make([]int, n), fwd(err), err}
		},
		"foreach": func(ctx context.Context, s stage.Stream[int]) r40Result {
			var vs []int
			err := sink.ForEach(ctx, s, func(_ context.Context, v int) error { vs = append(vs, v); return nil })
			return r40Result{vs, fwd(err), err}
		},
		"reduce": func(ctx context.Context, s stage.Stream[int]) r40Result {
			vs, err := sink.Reduce(ctx, s, []int(nil), func(acc []int, v int) []int { return append(acc, v) })
			return r40Result{vs, fwd(err), err}
		},
		"chan": func(ctx context.Context, s stage.Stream[int]) r40Result {
			out := make(chan int, 4*r40N)
			err := sink.Chan(ctx, s, out)
			var vs []int
			for len(out) > 0 {
				vs = append(vs, <-out)
			}
			return r40Result{vs, fwd(err), err}
		},
		"all": func(ctx context.Context, s stage.Stream[int]) r40Result {
			var r r40Result
			for v, err := range sink.All(ctx, s) {
				switch {
				case err == nil:
					r.values = append(r.values, v)
				case errors.As(err, new(*stage.Error)) && errors.Is(err, errR40) && !errors.Is(err, context.Canceled):
					// A forwarded error, or the FailFast error that ends the run
					// (the last pair): told apart below by position.
					r.forwarded++
					r.err = err
				default:
					r.err = err
				}
			}
			return r
		},
	}
}

// TestReview40SinkMatrix runs every sink over every composition shape and
// ends the run every way, checking each sink's promises on return:
//   - no goroutine of the run is left and no user function (stage function,
//     next, Ack.Done) is running when it returns;
//   - the error: context.Canceled on cancel, the *stage.Error of FailFast,
//     the *stage.SourceError once every item was delivered, a
//     *sink.ForwardedError with the count of forwarded errors;
//   - acknowledgements: at most one Done per item; Done(nil) only for an item
//     all of whose outputs reached the sink; on success every item Done(nil).
func TestReview40SinkMatrix(t *testing.T) {
	for sname, run := range r40Sinks() {
		for shname, sh := range r40Shapes() {
			for _, ender := range []string{"none", "cancel", "failfast", "source", "forward"} {
				t.Run(sname+"/"+shname+"/"+ender, func(t *testing.T) {
					r40MatrixCell(t, sname, run, sh, ender)
				})
			}
		}
	}
}

func r40MatrixCell(t *testing.T, sname string, run func(context.Context, stage.Stream[int]) r40Result, sh r40Shape, ender string) {
	w := newR40World(ender == "source")
	hold := 20
	var opts []stage.Option
	if ender == "forward" {
		opts = append(opts, stage.OnError(stage.Forward))
	}
	s := sh.build(w, w.source(), w.fn(ender, hold), opts...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if ender == "cancel" {
		go func() {
			select {
			case <-w.reached:
				cancel()
			case <-time.After(runcheck.Watchdog):
			}
		}()
	}
	var r r40Result
	runcheck.Run(t, sname, func() {
		r = run(ctx, s)
		if n := w.active.Load(); n != 0 {
			t.Errorf("%d user functions still running when the sink returned", n)
		}
	})
	counts := map[int]int{}
	for _, v := range r.values {
		counts[v]++
	}
	full := r40N * sh.fanout
	fwdWant := 0
	if ender == "forward" {
		fwdWant = (r40N / 10) * sh.errFanout
		full -= (r40N / 10) * sh.fanout
	}
	switch ender {
	case "none":
		if r.err != nil || len(r.values) != full {
			t.Fatalf("got %d values, %v; want %d, nil", len(r.values), r.err, full)
		}
	case "cancel":
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled run returned %v, want context.Canceled", r.err)
		}
	case "failfast":
		var se *stage.Error
		if !errors.As(r.err, &se) || !errors.Is(r.err, errR40) || se.Index < 0 {
			t.Fatalf("FailFast run returned %v, want a *stage.Error wrapping errR40", r.err)
		}
		if se.Input != hold {
			t.Errorf("*stage.Error Input %v, want %d", se.Input, hold)
		}
	case "source":
		var se *stage.SourceError
		if !errors.As(r.err, &se) || !errors.Is(r.err, errR40) {
			t.Fatalf("run with a failing source returned %v, want a *stage.SourceError wrapping errR40", r.err)
		}
		if len(r.values) != full {
			t.Fatalf("source error returned after %d values, want every one of the %d produced before it", len(r.values), full)
		}
	case "forward":
		if sname == "all" {
			if r.forwarded != fwdWant || len(r.values) != full {
				t.Fatalf("All yielded %d values and %d forwarded errors, want %d and %d (last err %v)", len(r.values), r.forwarded, full, fwdWant, r.err)
			}
			break
		}
		var fe *sink.ForwardedError
		if !errors.As(r.err, &fe) || fe.Count != fwdWant || len(fe.Sample) != min(fwdWant, sink.SampleSize) || !errors.Is(r.err, errR40) {
			t.Fatalf("forwarding run returned %v, want a *sink.ForwardedError of %d", r.err, fwdWant)
		}
		if len(r.values) != full {
			t.Fatalf("got %d values, want %d", len(r.values), full)
		}
		var se *stage.Error
		if !errors.As(r.err, &se) {
			t.Errorf("errors.As finds no *stage.Error through the *ForwardedError")
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for v, errs := range w.done {
		if len(errs) > 1 {
			t.Errorf("item %d: Done called %d times: %v", v, len(errs), errs)
			continue
		}
		if errs[0] == nil && counts[v] < sh.fanout && sname != "count" {
			t.Errorf("item %d: Done(nil) but only %d of its %d outputs reached the sink", v, counts[v], sh.fanout)
		}
		if errs[0] != nil {
			switch {
			case ender == "failfast" && v == hold && errors.Is(errs[0], errR40):
			case ender == "forward" && v%10 == 3 && errors.Is(errs[0], errR40):
			default:
				t.Errorf("item %d: Done(%v) under ender %s", v, errs[0], ender)
			}
		}
	}
	if ender == "none" || ender == "source" || ender == "forward" {
		for v := range r40N {
			if len(w.done[v]) != 1 {
				t.Errorf("item %d: Done called %d times, want once (the run saw everything)", v, len(w.done[v]))
			}
		}
	}
}

var errEOFR40 = ioEOF
