package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

type r22Acks struct {
	mu    sync.Mutex
	calls map[int][]error
}

type r22Ack struct {
	a *r22Acks
	i int
}

func (k r22Ack) Done(err error) {
	k.a.mu.Lock()
	defer k.a.mu.Unlock()
	k.a.calls[k.i] = append(k.a.calls[k.i], err)
}

func (a *r22Acks) get(i int) ([]error, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.calls[i]
	return c, ok
}

func r22Src(n int) (stage.Stream[int], *r22Acks) {
	acks := &r22Acks{calls: map[int][]error{}}
	s := stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(ctx context.Context) (int, stage.Ack, error) {
			if i >= n {
				var z int
				return z, nil, io.EOF
			}
			i++
			return i - 1, r22Ack{acks, i - 1}, nil
		}, func() {}
	})
	return s, acks
}

func r22Wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("hang waiting for %s", what)
	}
}

// Cancellation of the caller's ctx during the callback; callback returns
// ctx.Err(): the commit was cut short, Done is not called; Run returns Canceled.
func TestReview22AckCancelDuringCallback(t *testing.T) {
	for _, ret := range []string{"ctxerr", "cause", "wrapped", "other"} {
		t.Run(ret, func(t *testing.T) {
			src, acks := r22Src(1)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			otherErr := errors.New("other")
			err := stage.Run(ctx, src, func(rctx context.Context, v int, _ error) error {
				cancel()
				<-rctx.Done()
				switch ret {
				case "ctxerr":
					return rctx.Err()
				case "cause":
					return context.Cause(rctx)
				case "wrapped":
					return fmt.Errorf("write: %w", rctx.Err())
				}
				return otherErr
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Run = %v, want Canceled", err)
			}
			c, ok := acks.get(0)
			if ret == "other" {
				if !ok || len(c) != 1 || !errors.Is(c[0], otherErr) {
					t.Fatalf("Done calls %v, want [other]", c)
				}
				return
			}
			if ok {
				t.Fatalf("Done called %v, want not called (commit cut short)", c)
			}
		})
	}
}

// The callback returns context.Canceled while the run is NOT ending:
// the item failed with it, Done(context.Canceled), Run returns it.
func TestReview22AckCanceledNotEnding(t *testing.T) {
	src, acks := r22Src(3)
	err := stage.Run(context.Background(), src, func(rctx context.Context, v int, _ error) error {
		if v == 1 {
			return context.Canceled
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	c, ok := acks.get(1)
	if !ok || len(c) != 1 || !errors.Is(c[0], context.Canceled) {
		t.Fatalf("Done for item 1: %v %v, want [context.Canceled]", c, ok)
	}
	if c, _ := acks.get(0); len(c) != 1 || c[0] != nil {
		t.Fatalf("item 0: %v", c)
	}
}

// Until drain is not a cancellation: a callback returning context.Canceled
// after stop is done is an ordinary failure, told to the item.
func TestReview22AckUntilDrainNotCancel(t *testing.T) {
	acks := &r22Acks{calls: map[int][]error{}}
	asked := make(chan struct{}) // closed when next is asked for item 2
	src := stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(ctx context.Context) (int, stage.Ack, error) {
			if i == 2 {
				close(asked)
				<-ctx.Done()
				return 0, nil, io.EOF
			}
			i++
			return i - 1, r22Ack{acks, i - 1}, nil
		}, func() {}
	})
	stop, stopNow := context.WithCancel(context.Background())
	s := stage.Map(stage.Until(src, stop), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1), stage.Buffer(4))
	err := stage.Run(context.Background(), s, func(rctx context.Context, v int, _ error) error {
		if v == 0 {
			r22Wait(t, asked, "source asked for item 2")
			stopNow()
			return nil
		}
		if v == 1 {
			return context.Canceled
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled (f's own error)", err)
	}
	c, ok := acks.get(1)
	if !ok || len(c) != 1 || !errors.Is(c[0], context.Canceled) {
		t.Fatalf("item 1: %v %v, want [Canceled]", c, ok)
	}
}

// A forwarded error's item, whose callback returns ctx.Err() once the run was
// cancelled, is still told the forwarded error.
func TestReview22AckForwardedCutShort(t *testing.T) {
	src, acks := r22Src(1)
	boom := errors.New("boom")
	s := stage.Map(src, func(_ context.Context, v int) (int, error) { return 0, boom }, stage.OnError(stage.Forward))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := stage.Run(ctx, s, func(rctx context.Context, v int, ferr error) error {
		cancel()
		<-rctx.Done()
		return rctx.Err()
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v", err)
	}
	c, ok := acks.get(0)
	if !ok || len(c) != 1 || !errors.Is(c[0], boom) {
		t.Fatalf("Done: %v %v, want [boom]", c, ok)
	}
}

// FailFast elsewhere: item 0's callback waits until item 1 failed FailFast in the
// stage (run's cause is the *Error), then returns context.Cause: cut short, not told.
// Returning nil instead commits: told nil.
func TestReview22AckFailFastElsewhere(t *testing.T) {
	for _, ret := range []string{"cause", "nil", "errStop", "own"} {
		t.Run(ret, func(t *testing.T) {
			src, acks := r22Src(2)
			boom := errors.New("boom")
			gate := make(chan struct{})
			s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
				if v == 1 {
					<-gate
					return 0, boom
				}
				return v, nil
			}, stage.Workers(2), stage.Ordered())
			own := errors.New("own")
			err := stage.Run(context.Background(), s, func(rctx context.Context, v int, _ error) error {
				close(gate)
				<-rctx.Done()
				switch ret {
				case "cause":
					return context.Cause(rctx)
				case "nil":
					return nil
				case "errStop":
					return stage.ErrStop
				}
				return own
			})
			var se *stage.Error
			if ret == "errStop" {
				if err != nil {
					t.Fatalf("Run = %v, want nil after ErrStop", err)
				}
			} else if !errors.As(err, &se) || !errors.Is(err, boom) {
				t.Fatalf("Run = %v, want the FailFast *Error", err)
			}
			c, ok := acks.get(0)
			switch ret {
			case "cause":
				if ok {
					t.Fatalf("Done %v, want not called", c)
				}
			case "nil", "errStop":
				if !ok || len(c) != 1 || c[0] != nil {
					t.Fatalf("Done %v %v, want [nil]", c, ok)
				}
			case "own":
				if !ok || len(c) != 1 || !errors.Is(c[0], own) {
					t.Fatalf("Done %v %v, want [own]", c, ok)
				}
			}
			c1, ok1 := acks.get(1)
			if ok1 && (len(c1) != 1 || !errors.Is(c1[0], boom)) {
				t.Fatalf("item 1 Done %v", c1)
			}
			if !ok1 {
				t.Fatalf("item 1 (FailFast at its stage) not told: doc says Done(err) when its stage's policy ended the run at it")
			}
		})
	}
}

// Batch/Unbatch, FlatMap, Tee/Merge: cut-short commit of one output after
// cancellation leaves the item not told; if another output failed before
// (with its own error), the item was told that error.
func TestReview22AckFanOutCutShort(t *testing.T) {
	type build func(src stage.Stream[int]) stage.Stream[int]
	builds := map[string]build{
		"flatmap": func(src stage.Stream[int]) stage.Stream[int] {
			return stage.FlatMap(src, func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil }, stage.Workers(1))
		},
		"tee-merge": func(src stage.Stream[int]) stage.Stream[int] {
			b := stage.Tee(src, 2)
			return stage.Merge(b[0], b[1])
		},
		"batch-unbatch": func(src stage.Stream[int]) stage.Stream[int] {
			u := stage.Unbatch(stage.Batch(src, 2, time.Hour))
			return stage.FlatMap(u, func(_ context.Context, v int) ([]int, error) { return []int{v, v}, nil }, stage.Workers(1))
		},
	}
	for name, b := range builds {
		for _, first := range []string{"nil", "fail"} {
			t.Run(name+"/"+first, func(t *testing.T) {
				src, acks := r22Src(1)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				own := errors.New("own")
				n := 0
				err := stage.Run(ctx, b(src), func(rctx context.Context, v int, _ error) error {
					n++
					if n == 1 {
						if first == "fail" {
							return own
						}
						return nil
					}
					cancel()
					<-rctx.Done()
					return rctx.Err()
				})
				c, ok := acks.get(0)
				if first == "fail" {
					if !errors.Is(err, own) || !ok || len(c) != 1 || !errors.Is(c[0], own) {
						t.Fatalf("Run=%v Done=%v %v, want own", err, c, ok)
					}
					return
				}
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Run = %v", err)
				}
				if ok {
					t.Fatalf("Done %v, want not called (second output's commit cut short)", c)
				}
			})
		}
	}
}
