package stage_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var errBoom = errors.New("boom")

func TestFailFastEndsTheRun(t *testing.T) {
	const bad = 7
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			var mu sync.Mutex
			var causes []error // what calls in flight saw when cancelled
			f := func(ctx context.Context, x int) (int, error) {
				if x == bad {
					return 0, errBoom
				}
				if x > bad && m.workers != 1 {
					<-ctx.Done() // in flight when item 7 fails
					mu.Lock()
					causes = append(causes, context.Cause(ctx))
					mu.Unlock()
					return 0, ctx.Err()
				}
				return x, nil
			}
			var err error
			hangGuard(t, func() {
				_, err = sink.Slice(context.Background(), stage.Map(source.Slice(ints(50)), f, m.opts(stage.Name("parse"))...))
			})
			var se *stage.Error
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *stage.Error", err)
			}
			if se.Stage != "parse" || se.Index != bad || se.Input != bad || !errors.Is(err, errBoom) {
				t.Fatalf("err = %+v, want stage parse, index %d, input %d, wrapping errBoom", se, bad, bad)
			}
			for _, c := range causes {
				if c != se {
					t.Fatalf("a call in flight saw cause %v, want the *stage.Error", c)
				}
			}
		})
	}
}

func TestFailFastStartsNoNewItem(t *testing.T) {
	// Workers 1: nothing after the failing item is called.
	var calls atomic.Int64
	f := func(_ context.Context, x int) (int, error) {
		calls.Add(1)
		if x == 3 {
			return 0, errBoom
		}
		return x, nil
	}
	if _, err := sink.Count(context.Background(), stage.Map(source.Slice(ints(100)), f, stage.Workers(1))); !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want errBoom", err)
	}
	if got := calls.Load(); got != 4 {
		t.Fatalf("%d calls, want 4 (items 0..3)", got)
	}

	// Workers 4: items 0..3 are in flight together; item 0 fails once all
	// four started; the others end on ctx.Done(); no fifth item starts.
	for _, ordered := range []bool{false, true} {
		calls.Store(0)
		all := make(chan struct{})
		f := func(ctx context.Context, x int) (int, error) {
			if calls.Add(1) == 4 {
				close(all)
			}
			<-all
			if x == 0 {
				return 0, errBoom
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}
		opts := []stage.Option{stage.Workers(4)}
		if ordered {
			opts = append(opts, stage.Ordered())
		}
		var err error
		hangGuard(t, func() {
			_, err = sink.Count(context.Background(), stage.Map(source.Slice(ints(100)), f, opts...))
		})
		if !errors.Is(err, errBoom) {
			t.Fatalf("ordered=%v: err = %v, want errBoom", ordered, err)
		}
		if got := calls.Load(); got != 4 {
			t.Fatalf("ordered=%v: %d calls, want 4", ordered, got)
		}
	}
}

func TestFailFastIndexCountsForwardedErrors(t *testing.T) {
	// Stage 1 forwards an error for item 1; stage 2 fails on item 3 of its
	// input, which the forwarded error is part of.
	s := stage.Map(source.Slice(ints(10)), func(_ context.Context, x int) (int, error) {
		if x == 1 {
			return 0, errors.New("first")
		}
		return x, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	s = stage.Map(s, func(_ context.Context, x int) (int, error) {
		if x == 3 {
			return 0, errBoom
		}
		return x, nil
	}, stage.Workers(1))
	_, err := sink.Slice(context.Background(), s)
	var se *stage.Error
	if !errors.As(err, &se) || !errors.Is(err, errBoom) {
		t.Fatalf("err = %v, want a *stage.Error wrapping errBoom", err)
	}
	if se.Stage != "map#2" || se.Index != 3 {
		t.Fatalf("stage %q index %d, want map#2 3", se.Stage, se.Index)
	}
}

func TestSinkCallbackErrorEndsTheRun(t *testing.T) {
	var cause atomic.Value
	inFlight := make(chan struct{})
	f := func(ctx context.Context, x int) (int, error) {
		if x == 1 {
			close(inFlight)
			<-ctx.Done()
			cause.Store(context.Cause(ctx))
			return 0, ctx.Err()
		}
		return x, nil
	}
	var err error
	hangGuard(t, func() {
		err = sink.ForEach(context.Background(), stage.Map(source.Slice(ints(100)), f, stage.Workers(2)),
			func(context.Context, int) error {
				<-inFlight
				return errBoom
			})
	})
	var se *stage.Error
	if !errors.As(err, &se) || !errors.Is(err, errBoom) || se.Stage != "foreach" || se.Index != 0 {
		t.Fatalf("err = %v, want a *stage.Error of stage foreach, item 0, wrapping errBoom", err)
	}
	if c, _ := cause.Load().(error); c != err {
		t.Fatalf("the call in flight saw cause %v, want the sink's error", c)
	}
}

func TestEverySinkReportsTheFailure(t *testing.T) {
	fail := func() stage.Stream[int] {
		return stage.Map(source.Slice(ints(20)), func(_ context.Context, x int) (int, error) {
			if x == 10 {
				return 0, errBoom
			}
			return x, nil
		}, stage.Workers(1), stage.Buffer(20)) // item 10 fails whatever the sink does
	}
	ctx := context.Background()
	sinks := map[string]func() error{
		"Slice":   func() error { _, err := sink.Slice(ctx, fail()); return err },
		"Count":   func() error { _, err := sink.Count(ctx, fail()); return err },
		"Reduce":  func() error { _, err := sink.Reduce(ctx, fail(), 0, func(a, b int) int { return a + b }); return err },
		"ForEach": func() error { return sink.ForEach(ctx, fail(), func(context.Context, int) error { return nil }) },
		"First": func() error {
			_, _, err := sink.First(ctx, stage.Filter(fail(), func(context.Context, int) (bool, error) { return false, nil }))
			return err
		},
		"All": func() error {
			var last error
			for _, err := range sink.All(ctx, fail()) {
				last = err
			}
			return last
		},
		// Nobody reads out: Chan blocks on it after two items.
		"Chan": func() error { return sink.Chan(ctx, fail(), make(chan int, 2)) },
	}
	for name, run := range sinks {
		t.Run(name, func(t *testing.T) {
			var err error
			hangGuard(t, func() { err = run() })
			var se *stage.Error
			if !errors.As(err, &se) || !errors.Is(err, errBoom) || se.Index != 10 {
				t.Fatalf("err = %v, want the *stage.Error of item 10", err)
			}
		})
	}
}

func TestParentCancellation(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			started := make(chan struct{})
			var once sync.Once
			f := func(ctx context.Context, x int) (int, error) {
				once.Do(func() { close(started) })
				<-ctx.Done()
				return 0, ctx.Err()
			}
			go func() { <-started; cancel() }()
			var err error
			hangGuard(t, func() {
				_, err = sink.Slice(ctx, stage.Map(source.Slice(ints(100)), f, m.opts()...))
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})
	}
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 0)
		defer cancel()
		<-ctx.Done()
		_, err := sink.Slice(ctx, stage.Map(source.Slice(ints(10)), double))
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want context.DeadlineExceeded", err)
		}
	})
	t.Run("cause", func(t *testing.T) {
		ctx, cancel := context.WithCancelCause(context.Background())
		cancel(errBoom)
		_, err := sink.Count(ctx, source.Slice(ints(10)))
		if !errors.Is(err, context.Canceled) || !errors.Is(err, errBoom) {
			t.Fatalf("err = %v, want context.Canceled and the cause", err)
		}
	})
}
