package stage_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errR28Other = errors.New("review28: the other branch failed")

// TestReview28HandlerCutShortAck: a Handle or Budget handler that runs
// while the run goes on and returns once it is ending: an error that says
// so (the context's error, the run's cause, a wrap of either) cuts it short
// (the item is not told, the run's result stays what ended it); any other
// error, or a panic (even of context.Canceled: a panic is not a returned
// error), is the item's failure (told once); nil accepts the failure.
func TestReview28HandlerCutShortAck(t *testing.T) {
	type variant struct {
		name string
		ret  func(ctx context.Context) error
		want string // "none", "err", "nil"
	}
	variants := []variant{
		{"ctxErr", func(ctx context.Context) error { return ctx.Err() }, "none"},
		{"cause", func(ctx context.Context) error { return context.Cause(ctx) }, "none"},
		{"wrapCtxErr", func(ctx context.Context) error { return fmt.Errorf("dlq: %w", ctx.Err()) }, "none"},
		{"wrapCause", func(ctx context.Context) error { return fmt.Errorf("dlq: %w", context.Cause(ctx)) }, "none"},
		{"other", func(context.Context) error { return errors.New("dlq down") }, "err"},
		{"nil", func(context.Context) error { return nil }, "nil"},
		{"panicCanceled", func(context.Context) error { panic(context.Canceled) }, "err"},
		{"panicCause", func(ctx context.Context) error { panic(context.Cause(ctx)) }, "err"},
	}
	for _, pol := range []string{"Handle", "Budget"} {
		for _, trig := range []string{"ctx", "mergeFailFast"} {
			for _, w := range []int{1, 3} {
				for _, v := range variants {
					t.Run(fmt.Sprintf("%s/%s/w=%d/%s", pol, trig, w, v.name), func(t *testing.T) {
						acks := newR28Acks()
						entered := make(chan struct{})
						fire := make(chan struct{})
						ctx, cancel := context.WithCancel(context.Background())
						defer cancel()
						h := func(ctx context.Context, e *stage.Error) error {
							if e.Index != 0 {
								t.Errorf("handler saw %v", e)
								return nil
							}
							close(entered)
							<-ctx.Done()
							return v.ret(ctx)
						}
						policy := stage.Handle(h)
						if pol == "Budget" {
							policy = stage.Budget(3, h)
						}
						m := stage.Map(acks.source(3), func(_ context.Context, x int) (int, error) {
							if x == 0 {
								return 0, errR28
							}
							return x, nil
						}, stage.Workers(w), stage.OnError(policy))
						s := m
						if trig == "mergeFailFast" {
							s = stage.Merge(m, stage.Map(source.Slice([]int{-1}), func(context.Context, int) (int, error) {
								<-fire
								return 0, errR28Other
							}))
						}
						var err error
						done := r28Go(func() { err = sink.ForEach(ctx, s, func(context.Context, int) error { return nil }) })
						r28Wait(t, entered, "the handler")
						if trig == "ctx" {
							cancel()
						} else {
							close(fire)
						}
						r28Wait(t, done, "the sink")
						acks.ended.Store(true)
						acks.atMostOnce(t)
						got := acks.get(0)
						switch v.want {
						case "none":
							if len(got) != 0 {
								t.Errorf("item 0 told %v: a handler cut short leaves it unacknowledged", got)
							}
						case "err":
							if len(got) != 1 || got[0] == nil {
								t.Errorf("item 0 told %v, want one Done(err)", got)
							}
						case "nil":
							if len(got) != 1 || got[0] != nil {
								t.Errorf("item 0 told %v, want one Done(nil): the handler accepted its failure", got)
							}
						}
						wantErr := error(context.Canceled)
						if trig == "mergeFailFast" {
							wantErr = errR28Other
						}
						if !errors.Is(err, wantErr) {
							t.Errorf("err = %v, want %v: the run's result stays what ended it", err, wantErr)
						}
						if v.name == "other" && errors.Is(err, errors.New("")) {
							t.Errorf("unreachable")
						}
					})
				}
			}
		}
	}
}

// TestReview28HandlerContextErrorWhileLive: while the run goes on, a handler
// error that is (or wraps) a context error is no "cut short": the run fails
// with it and the item is told it. Also Budget's own error for an item whose
// error was a context error of the function's own (a Timeout's, or a bare
// context.Canceled).
func TestReview28HandlerContextErrorWhileLive(t *testing.T) {
	ownCanceled := func(context.Context, int) (int, error) { return 0, context.Canceled }
	ownTimeout := func(ctx context.Context, _ int) (int, error) {
		<-ctx.Done() // the Timeout's context, not the run's
		return 0, ctx.Err()
	}
	cases := []struct {
		name    string
		f       func(context.Context, int) (int, error)
		opts    []stage.Option
		wantErr []error
	}{
		{"HandleReturnsE/ownCanceled", ownCanceled, []stage.Option{stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error { return e }))}, []error{context.Canceled}},
		{"HandleReturnsLiteralCanceled", func(context.Context, int) (int, error) { return 0, errR28 }, []stage.Option{stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return context.Canceled }))}, []error{context.Canceled}},
		{"HandleReturnsLiteralDeadline", func(context.Context, int) (int, error) { return 0, errR28 }, []stage.Option{stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return context.DeadlineExceeded }))}, []error{context.DeadlineExceeded}},
		{"HandleReturnsE/timeout", ownTimeout, []stage.Option{stage.Timeout(time.Millisecond), stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error { return e }))}, []error{context.DeadlineExceeded}},
		{"Budget0/ownCanceled", ownCanceled, []stage.Option{stage.OnError(stage.Budget(0, nil))}, []error{stage.ErrBudget, context.Canceled}},
		{"Budget0/timeout", ownTimeout, []stage.Option{stage.Timeout(time.Millisecond), stage.OnError(stage.Budget(0, nil))}, []error{stage.ErrBudget, context.DeadlineExceeded}},
		{"Budget1/handlerCanceled", ownCanceled, []stage.Option{stage.OnError(stage.Budget(1, func(context.Context, *stage.Error) error { return context.Canceled }))}, []error{context.Canceled}},
		{"Budget1/secondOwnCanceled", ownCanceled, []stage.Option{stage.OnError(stage.Budget(1, func(context.Context, *stage.Error) error { return nil }))}, []error{stage.ErrBudget, context.Canceled}},
		{"Budget0/RetryTimeout", ownTimeout, []stage.Option{stage.Timeout(time.Millisecond), stage.Retry(2, 0), stage.OnError(stage.Budget(0, nil))}, []error{stage.ErrBudget, context.DeadlineExceeded}},
	}
	for _, c := range cases {
		for _, w := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/w=%d", c.name, w), func(t *testing.T) {
				acks := newR28Acks()
				// Items 0 and 1 fail; later items wait for the run's end so the
				// run is live when the policy decides.
				s := stage.Map(acks.source(2), c.f, append([]stage.Option{stage.Workers(w)}, c.opts...)...)
				var err error
				done := r28Go(func() { _, err = sink.Count(context.Background(), s) })
				r28Wait(t, done, "the sink")
				acks.ended.Store(true)
				acks.atMostOnce(t)
				for _, we := range c.wantErr {
					if !errors.Is(err, we) {
						t.Errorf("err = %v, want it to wrap %v", err, we)
					}
				}
				told := 0
				for id := range 2 {
					for _, e := range acks.get(id) {
						if e != nil {
							told++
						}
					}
				}
				if told == 0 {
					t.Errorf("no item was told its failure (err %v): the policy's error was taken for a cut-short handler", err)
				}
			})
		}
	}
}

// TestReview28SinkCallbackCutShortAck: a sink callback that cancels the
// run and then returns: the context's error cuts the commit short (not
// told), another error fails it (told once), nil commits it (told nil); a
// forwarded error's item is told its error even when cut short.
func TestReview28SinkCallbackCutShortAck(t *testing.T) {
	type variant struct {
		name string
		ret  func(ctx context.Context) error
		want string
	}
	for _, v := range []variant{
		{"ctxErr", func(ctx context.Context) error { return ctx.Err() }, "none"},
		{"wrapCause", func(ctx context.Context) error { return fmt.Errorf("w: %w", context.Cause(ctx)) }, "none"},
		{"other", func(context.Context) error { return errors.New("write failed") }, "err"},
		{"nil", func(context.Context) error { return nil }, "nil"},
		{"errStop", func(context.Context) error { return stage.ErrStop }, "nil"},
	} {
		for _, forwarded := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/forwarded=%v", v.name, forwarded), func(t *testing.T) {
				acks := newR28Acks()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				s := stage.Map(acks.source(3), func(_ context.Context, x int) (int, error) {
					if forwarded && x == 0 {
						return 0, errR28
					}
					return x, nil
				}, stage.Workers(1), stage.OnError(stage.Forward))
				calls := 0
				err := stage.Run(ctx, s, func(ctx context.Context, x int, ferr error) error {
					calls++
					if calls > 1 {
						t.Errorf("callback called again (%d, %v) after it ended the run", x, ferr)
						return nil
					}
					cancel()
					return v.ret(ctx)
				})
				acks.ended.Store(true)
				acks.atMostOnce(t)
				got := acks.get(0)
				want := v.want
				if forwarded {
					want = "err"
				}
				switch want {
				case "none":
					if len(got) != 0 {
						t.Errorf("item 0 told %v: a commit cut short is not told", got)
					}
				case "err":
					if len(got) != 1 || got[0] == nil {
						t.Errorf("item 0 told %v, want one Done(err)", got)
					} else if forwarded && !errors.Is(got[0], errR28) {
						// "with the first error": the forwarded error, or the
						// callback's own? The docs read either way.
						t.Logf("note: forwarded item whose callback failed otherwise told %v, not its forwarded error", got[0])
					}
				case "nil":
					if len(got) != 1 || got[0] != nil {
						t.Errorf("item 0 told %v, want Done(nil)", got)
					}
				}
				_ = err
			})
		}
	}
}

// TestReview28SinkPanicCanceledAfterCancel: a sink callback (ForEach,
// Reduce) that panics with a context error once the run is ending. The Ack
// docs leave an item unacknowledged only when the callback "returned an error
// that says so"; a panic is no returned error ("a panic, whatever its value,
// is a failure", IsStop), and a Handle handler's panic(context.Canceled) in
// the same spot is told as a failure (TestReview28HandlerCutShortAck). So the
// item's commit failed: Done(err) once.
func TestReview28SinkPanicCanceledAfterCancel(t *testing.T) {
	for _, snk := range []string{"foreach", "reduce"} {
		for _, val := range []string{"canceled", "cause"} {
			t.Run(snk+"/"+val, func(t *testing.T) {
				acks := newR28Acks()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				boom := func(ctx context.Context) {
					cancel()
					if val == "canceled" {
						panic(context.Canceled)
					}
					panic(context.Cause(ctx))
				}
				var err error
				switch snk {
				case "foreach":
					err = sink.ForEach(ctx, acks.source(3), func(ctx context.Context, x int) error {
						boom(ctx)
						return nil
					})
				case "reduce":
					err = func() error {
						_, err := sink.Reduce(ctx, acks.source(3), 0, func(acc, x int) int {
							boom(ctx)
							return 0
						})
						return err
					}()
				}
				acks.ended.Store(true)
				acks.atMostOnce(t)
				if got := acks.get(0); len(got) != 1 || got[0] == nil {
					t.Errorf("item 0 told %v (run err %v): its callback panicked, a failure, yet it was left as if cut short", got, err)
				}
			})
		}
	}
}
