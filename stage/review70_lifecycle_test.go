package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r70scenario is one way a run can end. build returns the stream for a mode
// (its first stage is named "m", its second "f") and run runs it with ctx.
type r70scenario struct {
	name  string
	n     int // items of the source
	build func(m mode, n int, ctx context.Context, cancel func()) stage.Stream[int]
	run   func(ctx context.Context, s stage.Stream[int]) error
	kind  string // ctxtest kind of the caller's ctx
	pre   bool   // cancel the caller's ctx before the run
	ok    bool   // run must return nil
	wrap  func(context.Context) context.Context
}

// r70panicCtx is a caller's context type whose Done panics.
type r70panicCtx struct{ context.Context }

func (r70panicCtx) Done() <-chan struct{} { panic("r70 ctx Done boom") }

var errR70 = errors.New("r70: item failed")

func r70mapFn(fail func(int) bool, hook func(ctx context.Context, v int)) func(context.Context, int) (int, error) {
	return func(ctx context.Context, v int) (int, error) {
		if hook != nil {
			hook(ctx, v)
		}
		if fail != nil && fail(v) {
			return 0, fmt.Errorf("%w: %d", errR70, v)
		}
		return v, nil
	}
}

func r70plain(fail func(int) bool, hook func(ctx context.Context, v int), more ...stage.Option) func(m mode, n int, ctx context.Context, cancel func()) stage.Stream[int] {
	return func(m mode, n int, _ context.Context, _ func()) stage.Stream[int] {
		s := stage.Map(source.Slice(ints(n)), r70mapFn(fail, hook), m.opts(append([]stage.Option{stage.Name("m")}, more...)...)...)
		return stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, m.opts(stage.Name("f"))...)
	}
}

func r70slice(ctx context.Context, s stage.Stream[int]) error {
	_, err := sink.Slice(ctx, s)
	return err
}

func r70scenarios() []r70scenario {
	return []r70scenario{
		{name: "success", ok: true, n: 40, build: r70plain(nil, nil), run: r70slice},
		{name: "empty", ok: true, n: 0, build: r70plain(nil, nil), run: r70slice},
		{name: "one", ok: true, n: 1, build: r70plain(nil, nil), run: r70slice},
		{name: "failfast", n: 40, build: r70plain(func(v int) bool { return v == 5 }, nil), run: r70slice},
		{name: "failall", n: 40, build: r70plain(func(int) bool { return true }, nil), run: r70slice},
		{name: "forward", n: 40, build: r70plain(func(v int) bool { return v%3 == 0 }, nil, stage.OnError(stage.Forward)), run: r70slice},
		{name: "handle-err", n: 40, build: r70plain(func(v int) bool { return v == 7 }, nil,
			stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return errors.New("handler says no") }))), run: r70slice},
		{name: "panic", n: 40, build: r70plain(nil, func(_ context.Context, v int) {
			if v == 9 {
				panic("r70 boom")
			}
		}), run: r70slice},
		{name: "foreach-err", n: 40, build: r70plain(nil, nil), run: func(ctx context.Context, s stage.Stream[int]) error {
			k := 0
			return sink.ForEach(ctx, s, func(context.Context, int) error {
				if k++; k == 3 {
					return errors.New("callback no")
				}
				return nil
			})
		}},
		{name: "foreach-panic", n: 40, build: r70plain(nil, nil), run: func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { panic("callback boom") })
		}},
		{name: "foreach-stop", ok: true, n: 40, build: r70plain(nil, nil), run: func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return stage.ErrStop })
		}},
		{name: "first", ok: true, n: 40, build: r70plain(nil, nil), run: func(ctx context.Context, s stage.Stream[int]) error {
			_, _, err := sink.First(ctx, s)
			return err
		}},
		{name: "all-break", ok: true, n: 40, build: r70plain(nil, nil), run: func(ctx context.Context, s stage.Stream[int]) error {
			k := 0
			for _, err := range sink.All(ctx, s) {
				if err != nil {
					return err
				}
				if k++; k == 2 {
					break
				}
			}
			return nil
		}},
		{name: "source-err", n: 0, build: func(m mode, _ int, _ context.Context, _ func()) stage.Stream[int] {
			k := 0
			src := source.Func(func(context.Context) (int, error) {
				if k++; k > 7 {
					return 0, errors.New("source broke")
				}
				return k, nil
			})
			s := stage.Map(src, double, m.opts(stage.Name("m"))...)
			return stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, m.opts(stage.Name("f"))...)
		}, run: r70slice},
		{name: "source-panic", n: 0, build: func(m mode, _ int, _ context.Context, _ func()) stage.Stream[int] {
			k := 0
			src := source.Func(func(context.Context) (int, error) {
				if k++; k > 3 {
					panic("source boom")
				}
				return k, nil
			})
			s := stage.Map(src, double, m.opts(stage.Name("m"))...)
			return stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, m.opts(stage.Name("f"))...)
		}, run: r70slice},
		{name: "until", ok: true, n: 0, build: func(m mode, _ int, _ context.Context, _ func()) stage.Stream[int] {
			stop, drain := context.WithCancel(context.Background())
			k := 0
			src := source.Func(func(ctx context.Context) (int, error) {
				if k++; k == 6 {
					drain()
				}
				if k > 6 {
					<-ctx.Done()
					return 0, ctx.Err()
				}
				return k, nil
			})
			s := stage.Map(stage.Until(src, stop), double, m.opts(stage.Name("m"))...)
			return stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, m.opts(stage.Name("f"))...)
		}, run: r70slice},
		{name: "tee-unconsumed", ok: true, n: 40, build: func(m mode, n int, _ context.Context, _ func()) stage.Stream[int] {
			br := stage.Tee(stage.Map(source.Slice(ints(n)), double, m.opts(stage.Name("m"))...), 2)
			return stage.Filter(br[0], func(context.Context, int) (bool, error) { return true, nil }, m.opts(stage.Name("f"))...)
		}, run: func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Slice(ctx, s)
			if !errors.Is(err, stage.ErrUnconsumedBranch) {
				return fmt.Errorf("want ErrUnconsumedBranch, got %w", err)
			}
			return nil
		}},
		{name: "run-callback-panic", ok: true, n: 40, build: r70plain(nil, nil), run: func(ctx context.Context, s stage.Stream[int]) (err error) {
			defer func() {
				if r := recover(); r != "run callback boom" {
					err = fmt.Errorf("recovered %v", r)
				}
			}()
			k := 0
			return stage.Run(ctx, s, func(context.Context, int, error) error {
				if k++; k == 3 {
					panic("run callback boom")
				}
				return nil
			})
		}},
		{name: "all-body-panic", ok: true, n: 40, build: r70plain(nil, nil), run: func(ctx context.Context, s stage.Stream[int]) (err error) {
			defer func() {
				if r := recover(); r != "body boom" {
					err = fmt.Errorf("recovered %v", r)
				}
			}()
			for range sink.All(ctx, s) {
				panic("body boom")
			}
			return nil
		}},
		{name: "ctx-done-panics", n: 40, ok: true, wrap: func(ctx context.Context) context.Context { return r70panicCtx{ctx} },
			build: r70plain(nil, nil), run: func(ctx context.Context, s stage.Stream[int]) (err error) {
				defer func() {
					if r := recover(); r != "r70 ctx Done boom" {
						err = fmt.Errorf("recovered %v", r)
					}
				}()
				_, err = sink.Slice(ctx, s)
				return fmt.Errorf("the sink returned %v", err)
			}},
		{name: "pre-cancelled", n: 40, pre: true, build: r70plain(nil, nil), run: r70slice},
		{name: "pre-cancelled-own", n: 40, pre: true, kind: ctxtest.Own, build: r70plain(nil, nil), run: r70slice},
	}
}

func r70cancelling(kind string) []r70scenario {
	var out []r70scenario
	for _, at := range []int{0, 1, 13} {
		out = append(out, r70scenario{
			name: fmt.Sprintf("cancel-%s-at-%d", kind, at), n: 40, kind: kind,
			build: func(m mode, n int, ctx context.Context, cancel func()) stage.Stream[int] {
				return r70plain(nil, func(fctx context.Context, v int) {
					if v == at {
						cancel()
						<-fctx.Done()
					}
				})(m, n, ctx, cancel)
			},
			run: r70slice,
		})
	}
	return out
}

// Watcher.Closed: "the run is over and every goroutine of it has exited; the
// stage reports nothing more. Called once, from the sink's goroutine."
// Watcher.Finished follows the call that Received announced, with nil, the
// *Error, or an error for which errors.Is(err, context.Canceled) holds;
// Observer.Stage "is called from the sink's goroutine". Checked across every
// way a run ends (success, failures, early exits, cancellation at several
// points under each kind of caller's ctx, panics, source errors, drain) and
// every mode.
func TestReview70ClosedOnceEveryEnding(t *testing.T) {
	scs := r70scenarios()
	for _, k := range []string{ctxtest.Std, ctxtest.Own, ctxtest.Wrap, ctxtest.Cause} {
		scs = append(scs, r70cancelling(k)...)
	}
	for _, sc := range scs {
		for _, m := range append(modes, mode{1000, false}, mode{1000, true}) {
			t.Run(sc.name+"/"+m.String(), func(t *testing.T) {
				ctx, cancel := ctxtest.New(sc.kind)
				defer cancel()
				if sc.pre {
					cancel()
				}
				s := sc.build(m, sc.n, ctx, cancel)
				if sc.wrap != nil {
					ctx = sc.wrap(ctx)
				}
				o := &r70obs{}
				var err error
				runcheck.Run(t, sc.name, func() {
					o.arm()
					err = sc.run(stage.Observe(ctx, o), s)
				})
				if sc.ok && err != nil {
					t.Errorf("run returned %v", err)
				}
				for _, v := range o.check() {
					t.Error(v)
				}
				for _, w := range o.watchers {
					if w.fin.Load() != int64(w.kindCount("ok")+w.kindCount("failed")+w.kindCount("cut")) {
						t.Errorf("stage %s: %d Finished, not all of a documented kind", w.info.Name, w.fin.Load())
					}
				}
			})
		}
	}
}

// Same as above, but with many runs at once sharing one observer's Stats and
// a recording observer each (the race detector watches the hooks).
func TestReview70ClosedOnceConcurrentRuns(t *testing.T) {
	stats := &stage.Stats{}
	scs := r70scenarios()
	scs = append(scs, r70cancelling(ctxtest.Own)...)
	done := make(chan []string, len(scs)*len(modes))
	for _, sc := range scs {
		for _, m := range modes {
			go func() {
				ctx, cancel := ctxtest.New(sc.kind)
				defer cancel()
				if sc.pre {
					cancel()
				}
				s := sc.build(m, sc.n, ctx, cancel)
				if sc.wrap != nil {
					ctx = sc.wrap(ctx)
				}
				o := &r70obs{}
				o.sinkG.Store(r70gid())
				_ = sc.run(stage.Observe(stage.Observe(ctx, stats), o), s)
				var vs []string
				for _, v := range o.check() {
					vs = append(vs, sc.name+"/"+m.String()+": "+v)
				}
				done <- vs
			}()
		}
	}
	runcheck.NoHang(t, "runs", func() {
		for range len(scs) * len(modes) {
			for _, v := range <-done {
				t.Error(v)
			}
		}
	})
	for _, c := range stats.Snapshot() {
		if c.Received != c.Finished || c.InFlight != 0 || c.Running != 0 {
			t.Errorf("Stats %s after every run: %+v", c.Name, c)
		}
	}
}
