package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r40FwdThenEnd is 0..n-1 through a Forward stage of one worker that fails
// every item v%10 == 3, then, when srcFail, a source error after the last.
func r40FwdThenEnd(n int, srcFail bool) stage.Stream[int] {
	i := 0
	src := source.Func(func(context.Context) (int, error) {
		if i == n {
			if srcFail {
				return 0, errR40
			}
			return 0, errEOFR40
		}
		i++
		return i - 1, nil
	})
	return stage.Map(src, func(_ context.Context, v int) (int, error) {
		if v%10 == 3 {
			return 0, fmt.Errorf("item %d: %w", v, errFwdR40)
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
}

var errFwdR40 = errors.New("review40: forwarded")

// TestReview40JoinedErrors attacks "the other sinks go on and return what
// succeeded together with a *ForwardedError ... (joined with the error that
// ended the run, if any)" and Reduce's "Reduce returns the accumulator as it
// stands when the run ends, with the error that ended it and a
// *ForwardedError, joined": every sink, runs ended by a source error (after
// every item was delivered) and by a callback's failure at a known item. Each
// kind must be found with errors.As in the one error returned.
func TestReview40JoinedErrors(t *testing.T) {
	const n = 100 // 10 forwarded
	type outcome struct {
		values int
		err    error
	}
	runs := map[string]func() outcome{
		"slice/source": func() outcome {
			vs, err := sink.Slice(context.Background(), r40FwdThenEnd(n, true))
			return outcome{len(vs), err}
		},
		"count/source": func() outcome {
			c, err := sink.Count(context.Background(), r40FwdThenEnd(n, true))
			return outcome{c, err}
		},
		"chan/source": func() outcome {
			out := make(chan int, n)
			err := sink.Chan(context.Background(), r40FwdThenEnd(n, true), out)
			return outcome{len(out), err}
		},
		"reduce/source": func() outcome {
			acc, err := sink.Reduce(context.Background(), r40FwdThenEnd(n, true), 0, func(acc, _ int) int { return acc + 1 })
			return outcome{acc, err}
		},
		"foreach/source": func() outcome {
			c := 0
			err := sink.ForEach(context.Background(), r40FwdThenEnd(n, true), func(context.Context, int) error { c++; return nil })
			return outcome{c, err}
		},
		"foreach/callback": func() outcome {
			c := 0
			err := sink.ForEach(context.Background(), r40FwdThenEnd(n, false), func(_ context.Context, v int) error {
				if v == n-1 {
					return errR40
				}
				c++
				return nil
			})
			return outcome{c + 1, err}
		},
		"reduce/panic": func() outcome {
			acc, err := sink.Reduce(context.Background(), r40FwdThenEnd(n, false), 0, func(acc, v int) int {
				if v == n-1 {
					panic(errR40)
				}
				return acc + 1
			})
			return outcome{acc + 1, err}
		},
	}
	for name, run := range runs {
		t.Run(name, func(t *testing.T) {
			o := run()
			var fe *sink.ForwardedError
			if !errors.As(o.err, &fe) || fe.Count != 10 || len(fe.Sample) != sink.SampleSize || !errors.Is(o.err, errFwdR40) {
				t.Errorf("got %v; want a *sink.ForwardedError of 10 (sample %d) in it", o.err, sink.SampleSize)
			}
			if !errors.Is(o.err, errR40) {
				t.Errorf("got %v; want the error that ended the run in it", o.err)
			}
			var src *stage.SourceError
			var se *stage.Error
			switch name {
			case "foreach/callback", "reduce/panic":
				if !errors.As(o.err, &se) || se.Input != n-1 {
					t.Errorf("got %v; want the callback's *stage.Error at input %d", o.err, n-1)
				}
				if errors.As(o.err, &src) {
					t.Errorf("a *stage.SourceError in %v", o.err)
				}
			default:
				if !errors.As(o.err, &src) {
					t.Errorf("got %v; want a *stage.SourceError in it", o.err)
				}
			}
			if o.values != n-10 {
				t.Errorf("the sink got %d values before the end, want %d", o.values, n-10)
			}
			// The sample is the first 8, in arrival order.
			if fe != nil {
				for k, e := range fe.Sample {
					var ie *stage.Error
					if !errors.As(e, &ie) || ie.Input != 10*k+3 {
						t.Errorf("sample %d: %v, want the forwarded error of input %d", k, e, 10*k+3)
					}
				}
			}
		})
	}
}

// TestReview40ErrStopAfterForwarded: "f may return stage.ErrStop ... ForEach
// then returns nil (or the *ForwardedError of what was forwarded before)";
// and an ErrStop inside a *stage.Error that f returns is a failure (IsStop).
func TestReview40ErrStopAfterForwarded(t *testing.T) {
	err := sink.ForEach(context.Background(), r40FwdThenEnd(100, true), func(_ context.Context, v int) error {
		if v == 50 {
			return fmt.Errorf("done: %w", stage.ErrStop)
		}
		return nil
	})
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 5 || errors.Is(err, errR40) || errors.Is(err, stage.ErrStop) {
		t.Fatalf("ErrStop after 5 forwarded: got %v, want the *ForwardedError of 5 alone", err)
	}
	inner := &stage.Error{Stage: "x", Err: stage.ErrStop}
	err = sink.ForEach(context.Background(), source.Slice([]int{1, 2, 3}), func(context.Context, int) error { return inner })
	var se *stage.Error
	if err == nil || !errors.As(err, &se) {
		t.Fatalf("an ErrStop inside a *stage.Error returned by f: got %v, want a failure", err)
	}
}

// TestReview40NilCallbacksPanic: "A nil out panics", "A nil f panics".
func TestReview40NilCallbacksPanic(t *testing.T) {
	s := source.Slice([]int{1})
	for name, f := range map[string]func(){
		"chan":    func() { _ = sink.Chan(context.Background(), s, nil) },
		"foreach": func() { _ = sink.ForEach(context.Background(), s, nil) },
		"reduce":  func() { _, _ = sink.Reduce[int, int](context.Background(), s, 0, nil) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
