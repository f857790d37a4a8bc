package sink_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// c61Gate is a source of k items (0..k-1) that, asked for item k, closes
// asked, waits for its context to end, closes ended and returns the
// context's error.
type c61Gate struct {
	k      int
	asked  chan struct{}
	ended  chan struct{}
	taken  atomic.Int32
	stop   context.Context
	cancel context.CancelFunc
}

func c61NewGate(k int) *c61Gate {
	g := &c61Gate{k: k, asked: make(chan struct{}), ended: make(chan struct{})}
	g.stop, g.cancel = context.WithCancel(context.Background())
	return g
}

func (g *c61Gate) src() stage.Stream[int] {
	return stage.Until(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
			if i < g.k {
				i++
				g.taken.Add(1)
				return i - 1, nil
			}
			if i == g.k {
				i++
				close(g.asked)
				<-ctx.Done()
				close(g.ended)
				return 0, ctx.Err()
			}
			panic("c61: next called again after it returned an error")
		}, nil
	}), g.stop)
}

// drain: the call of item 0 waits until the source was asked for more
// than it has, cancels stop, and waits until the source saw its context end.
func (g *c61Gate) drain(ctx context.Context) error {
	<-g.asked
	g.cancel()
	<-g.ended
	return ctx.Err()
}

// stage.Until: "the sources upstream of Until take no new item ..., while
// every item they already produced goes on through the stages: calls in
// flight finish, Batch flushes its partial batch, and the sink returns nil
// once the last of them has arrived, as at the end of the input." and
// "Cancelling the run's context ... is the other way to stop, and it aborts:
// calls in flight see ctx.Done()". README: "Drain ...: calls in flight
// finish ... Nothing taken is lost." Retry: "The wait holds the worker and
// ends early, without a retry, when the run is cancelled" (a drain is not a
// cancellation). RateLimit: "only the end of the run ends the wait".
//
// Here the stop is done while item 0's call is in flight (its first
// attempt, under Retry; the second attempt then comes after the drain
// began). Every item the source produced must arrive, the function's ctx must
// not be done (the run was not aborted), and the sink must return nil.
func TestReview61BBCDrainInFlightCombos(t *testing.T) {
	type shape struct {
		k    int
		opts []stage.Option
	}
	shapes := map[string]shape{
		"w2buf":           {1, []stage.Option{stage.Workers(2), stage.Buffer(1)}},
		"w4":              {3, []stage.Option{stage.Workers(4)}},
		"retry":           {1, []stage.Option{stage.Workers(2), stage.Buffer(1), stage.Retry(3, 0)}},
		"retry-backoff":   {2, []stage.Option{stage.Workers(3), stage.Retry(3, time.Millisecond)}},
		"retryif":         {2, []stage.Option{stage.Workers(3), stage.RetryIf(3, time.Millisecond, func(error) bool { return true })}},
		"ratelimit":       {3, []stage.Option{stage.Workers(4), stage.RateLimit(1000, 1)}},
		"timeout":         {2, []stage.Option{stage.Workers(3), stage.Timeout(time.Hour)}},
		"keyby-one-key":   {4, []stage.Option{stage.Workers(4), stage.Buffer(4), stage.KeyBy(func(int) int { return 0 })}},
		"keyby-ordered":   {4, []stage.Option{stage.Workers(2), stage.Buffer(4), stage.Ordered(), stage.KeyBy(func(v int) int { return v % 2 })}},
		"ordered":         {4, []stage.Option{stage.Workers(4), stage.Ordered()}},
		"unlimited":       {4, []stage.Option{stage.Workers(-1)}},
		"handle":          {3, []stage.Option{stage.Workers(4), stage.Retry(2, 0), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))}},
		"forward-retried": {3, []stage.Option{stage.Workers(4), stage.Retry(2, 0), stage.OnError(stage.Forward)}},
	}
	for name, sh := range shapes {
		for _, kind := range []string{"map", "apply", "flatmap", "filter"} {
			t.Run(name+"/"+kind, func(t *testing.T) {
				g := c61NewGate(sh.k)
				retry := name == "retry" || name == "retry-backoff" || name == "retryif" || name == "handle" || name == "forward-retried"
				var mu sync.Mutex
				attempts := map[int]int{}
				var ctxErr error
				call := func(ctx context.Context, v int) error {
					mu.Lock()
					attempts[v]++
					a := attempts[v]
					mu.Unlock()
					if v == 0 && a == 1 {
						if err := g.drain(ctx); err != nil {
							mu.Lock()
							ctxErr = err
							mu.Unlock()
						}
						if retry {
							return errC61
						}
					}
					return ctx.Err()
				}
				var s stage.Stream[int]
				switch kind {
				case "map":
					s = stage.Map(g.src(), func(ctx context.Context, v int) (int, error) { return v, call(ctx, v) }, sh.opts...)
				case "apply":
					s = stage.Apply(g.src(), func(ctx context.Context, v int, emit func(int) bool) error {
						if err := call(ctx, v); err != nil {
							return err
						}
						for j := range 5 {
							if !emit(v*10 + j) {
								return fmt.Errorf("emit %d of %d returned false during a drain", j, v)
							}
						}
						return nil
					}, sh.opts...)
				case "flatmap":
					s = stage.FlatMap(g.src(), func(ctx context.Context, v int) ([]int, error) {
						return []int{v * 10, v*10 + 1}, call(ctx, v)
					}, sh.opts...)
				case "filter":
					s = stage.Filter(g.src(), func(ctx context.Context, v int) (bool, error) { return true, call(ctx, v) }, sh.opts...)
				}
				var got [][]int
				var err error
				runcheck.Run(t, "run", func() { got, err = sink.Slice(context.Background(), stage.Batch(s, 1000, 0)) })
				var flat []int
				for _, b := range got {
					flat = append(flat, b...)
				}
				if len(got) > 1 {
					t.Errorf("%d batches; want one (timeout 0, size 1000)", len(got))
				}
				var want []int
				for v := range sh.k {
					switch kind {
					case "apply":
						for j := range 5 {
							want = append(want, v*10+j)
						}
					case "flatmap":
						want = append(want, v*10, v*10+1)
					default:
						want = append(want, v)
					}
				}
				slices.Sort(flat)
				if err != nil || !slices.Equal(flat, want) {
					t.Fatalf("Slice = %v, %v; want %v, nil (every taken item, drained)", flat, err, want)
				}
				if ctxErr != nil {
					t.Fatalf("the function's ctx ended during a drain: %v (a drain is not an abort)", ctxErr)
				}
				if retry && attempts[0] != 2 {
					t.Fatalf("item 0 tried %d times; want 2 (a drain does not end a retry)", attempts[0])
				}
			})
		}
	}
}

// stage.Source: "an error next returns once stop is done ends the stream
// quietly, whether or not its context has ended yet." Until: "the sink
// returns nil once the last of them has arrived". A next that waits for the
// stop context itself (not its ctx) and then fails, in every shape of
// consumer: the run drains quietly.
func TestReview61BBCDrainSourceErrorAfterStop(t *testing.T) {
	shapes := map[string][]stage.Option{
		"w1":      {stage.Workers(1)},
		"w1buf":   {stage.Workers(1), stage.Buffer(1)},
		"w3":      {stage.Workers(3)},
		"ordered": {stage.Workers(3), stage.Ordered()},
		"keyby":   {stage.Workers(3), stage.KeyBy(func(v int) int { return v })},
	}
	for name, opts := range shapes {
		for _, errKind := range []string{"plain", "wrapped-eof", "canceled"} {
			for _, waitCtx := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/waitctx=%v", name, errKind, waitCtx), func(t *testing.T) {
					stop, cancel := context.WithCancel(context.Background())
					defer cancel()
					src := stage.Until(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
						i := 0
						return func(ctx context.Context) (int, error) {
							i++
							if i == 1 {
								return 0, nil
							}
							<-stop.Done()
							if waitCtx {
								<-ctx.Done()
							}
							switch errKind {
							case "wrapped-eof":
								return 0, fmt.Errorf("truncated: %w", ioEOF)
							case "canceled":
								return 0, context.Canceled
							}
							return 0, errC61
						}, nil
					}), stop)
					s := stage.Map(src, func(_ context.Context, v int) (int, error) { cancel(); return v, nil }, opts...)
					var got []int
					var err error
					runcheck.Run(t, "run", func() { got, err = sink.Slice(context.Background(), s) })
					if err != nil || len(got) != 1 {
						t.Fatalf("Slice = %v, %v; want [0], nil (a drain ends the stream quietly)", got, err)
					}
				})
			}
		}
	}
}

// Until: "every item they already produced goes on through the stages ...
// and the sink returns nil once the last of them has arrived, as at the end
// of the input". As at the end of the input: an item that fails during the
// drain fails the run as it would have anyway (FailFast), or is forwarded.
func TestReview61BBCDrainThenFailure(t *testing.T) {
	for _, pol := range []string{"failfast", "forward"} {
		g := c61NewGate(3)
		opts := []stage.Option{stage.Workers(4), stage.Name("m")}
		if pol == "forward" {
			opts = append(opts, stage.OnError(stage.Forward))
		}
		s := stage.Map(g.src(), func(ctx context.Context, v int) (int, error) {
			if v == 0 {
				g.drain(ctx)
				return 0, errC61
			}
			return v, nil
		}, opts...)
		var got []int
		var err error
		runcheck.Run(t, "run", func() { got, err = sink.Slice(context.Background(), s) })
		var e *stage.Error
		if !errors.As(err, &e) || e.Stage != "m" || e.Input != 0 {
			t.Fatalf("%s: Slice = %v, %v; want m's *Error at item 0", pol, got, err)
		}
		if pol == "forward" && len(got) != 2 {
			t.Fatalf("forward: got %v; want items 1 and 2", got)
		}
	}
}
