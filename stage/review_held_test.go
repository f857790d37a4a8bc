package stage_test

// Review of bef11a1: the only output of a Map, Filter or Concurrent item is
// held by the stepper and queued by step once the call has returned. These
// tests pin what must not have changed: acknowledgements, observer events,
// policies, cancellation, and that a held output is not kept across items.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

const rhWatchdog = 20 * time.Second // hang watchdog only

func rhGuard(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(rhWatchdog):
		t.Fatal("the run hung")
	}
}

// rhAcks records every Done call, by item id.
type rhAcks struct {
	mu    sync.Mutex
	calls map[int][]error
}

func newRhAcks() *rhAcks { return &rhAcks{calls: map[int][]error{}} }

type rhAck struct {
	a  *rhAcks
	id int
}

func (k rhAck) Done(err error) {
	k.a.mu.Lock()
	k.a.calls[k.id] = append(k.a.calls[k.id], err)
	k.a.mu.Unlock()
}

func (a *rhAcks) calls0(id int) []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.calls[id])
}

// source is an AckSource of 0..n-1, each with its own acknowledgement;
// marked NeverWaits when never is set (a cheap stage over it fuses).
func (a *rhAcks) source(n int, never bool) stage.Stream[int] {
	s := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == n {
				return 0, nil, io.EOF
			}
			i++
			return i - 1, rhAck{a, i - 1}, nil
		}, nil
	})
	if never {
		s = stage.NeverWaits(s)
	}
	return s
}

// rhObs counts Received and Finished per stage kind.
type rhObs struct {
	mu       sync.Mutex
	received map[string]int
	finished map[string]int
	failed   map[string]int
	bad      []string
}

func newRhObs() *rhObs {
	return &rhObs{received: map[string]int{}, finished: map[string]int{}, failed: map[string]int{}}
}

type rhWatch struct {
	o    *rhObs
	kind string
}

func (o *rhObs) Stage(info stage.Info) stage.Watcher { return rhWatch{o, info.Kind} }

func (w rhWatch) Received() {
	w.o.mu.Lock()
	w.o.received[w.kind]++
	w.o.mu.Unlock()
}

func (w rhWatch) Finished(_ time.Duration, err error) {
	w.o.mu.Lock()
	w.o.finished[w.kind]++
	if err != nil {
		w.o.failed[w.kind]++
	}
	if w.o.finished[w.kind] > w.o.received[w.kind] {
		w.o.bad = append(w.o.bad, w.kind+": Finished before its Received")
	}
	w.o.mu.Unlock()
}

func (w rhWatch) Closed() {}

type rhConfig struct {
	name  string
	never bool
	opts  []stage.Option
	keyed bool // add KeyBy(v % 3) to the stages over ints
}

// intOpts is the configuration's options for a stage over ints.
func (c rhConfig) intOpts() []stage.Option {
	if !c.keyed {
		return c.opts
	}
	return append(slices.Clone(c.opts), stage.KeyBy(func(v int) int { return v % 3 }))
}

func rhConfigs() []rhConfig {
	return []rhConfig{
		{"w1-serial", false, []stage.Option{stage.Workers(1)}, false},
		{"w1-serial-never", true, []stage.Option{stage.Workers(1)}, false},
		{"w1-buffer", false, []stage.Option{stage.Workers(1), stage.Buffer(1)}, false},
		{"w4", false, []stage.Option{stage.Workers(4)}, false},
		{"w4-fused", true, []stage.Option{stage.Workers(4)}, false},
		{"w-1", false, []stage.Option{stage.Workers(-1)}, false},
		{"w4-ordered", true, []stage.Option{stage.Workers(4), stage.Ordered()}, false},
		{"w4-ordered-buf", false, []stage.Option{stage.Workers(4), stage.Ordered(), stage.Buffer(3)}, false},
		{"w4-keyby", true, []stage.Option{stage.Workers(4)}, true},
		{"w-1-keyby", false, []stage.Option{stage.Workers(-1)}, true},
		{"w4-retry", false, []stage.Option{stage.Workers(4), stage.Retry(3, 0)}, false},
		{"w4-fused-retry", true, []stage.Option{stage.Workers(4), stage.Retry(3, 0)}, false},
		{"w4-fused-timeout", true, []stage.Option{stage.Workers(4), stage.Timeout(time.Hour)}, false},
		{"w4-ratelimit", false, []stage.Option{stage.Workers(4), stage.RateLimit(1e9, 1<<20)}, false},
		{"w2-all", true, []stage.Option{stage.Workers(2), stage.Retry(2, 0), stage.Timeout(time.Hour), stage.RateLimit(1e9, 1<<20)}, false},
	}
}

// TestReviewHeldAcksAndObserver: every item of a Map, a Filter and a
// Concurrent is acknowledged exactly once with nil, the outputs are right
// (in order when Ordered), and the observer sees one Received and one
// Finished(nil) per item, under every configuration. Retry configurations
// fail the first attempt of odd items.
func TestReviewHeldAcksAndObserver(t *testing.T) {
	const n = 200
	for _, c := range rhConfigs() {
		for _, kind := range []string{"map", "filter", "concurrent"} {
			t.Run(c.name+"/"+kind, func(t *testing.T) {
				acks := newRhAcks()
				obs := newRhObs()
				retrying := slices.ContainsFunc([]string{"w4-retry", "w4-fused-retry", "w2-all"}, func(s string) bool { return s == c.name })
				var tried sync.Map
				flaky := func(v int) error {
					if retrying && v%2 == 1 {
						if _, again := tried.LoadOrStore(v, true); !again {
							return fmt.Errorf("first attempt of %d", v)
						}
					}
					return nil
				}
				src := acks.source(n, c.never)
				var out stage.Stream[int]
				switch kind {
				case "map":
					out = stage.Map(src, func(_ context.Context, v int) (int, error) {
						if err := flaky(v); err != nil {
							return 0, err
						}
						return v * 10, nil
					}, c.intOpts()...)
				case "filter":
					out = stage.Filter(src, func(_ context.Context, v int) (bool, error) {
						if err := flaky(v); err != nil {
							return false, err
						}
						return v%3 != 0, nil
					}, c.intOpts()...)
				case "concurrent":
					// The tasks come from a Map with the same options: both single.
					tasks := stage.Map(src, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
						return func(context.Context) (int, error) {
							if err := flaky(v); err != nil {
								return 0, err
							}
							return v * 10, nil
						}, nil
					}, c.intOpts()...)
					out = stage.Concurrent(tasks, c.opts...)
				}
				var got []int
				var err error
				rhGuard(t, func() {
					err = stage.Run(stage.Observe(context.Background(), obs), out, func(_ context.Context, v int, err error) error {
						if err != nil {
							return err
						}
						got = append(got, v)
						return nil
					})
				})
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				var want []int
				for i := range n {
					if kind == "filter" {
						if i%3 != 0 {
							want = append(want, i)
						}
					} else {
						want = append(want, i*10)
					}
				}
				if c.name == "w4-ordered" || c.name == "w4-ordered-buf" || c.name == "w1-serial" || c.name == "w1-serial-never" || c.name == "w1-buffer" {
					if !slices.Equal(got, want) {
						t.Fatalf("outputs out of order or wrong:\n got %v\nwant %v", got, want)
					}
				}
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Fatalf("outputs:\n got %v\nwant %v", got, want)
				}
				for i := range n {
					if calls := acks.calls0(i); len(calls) != 1 || calls[0] != nil {
						t.Fatalf("item %d: Done calls %v, want one Done(nil)", i, calls)
					}
				}
				obs.mu.Lock()
				defer obs.mu.Unlock()
				if len(obs.bad) > 0 {
					t.Fatalf("observer: %v", obs.bad)
				}
				for k, r := range obs.received {
					if r != n || obs.finished[k] != n || obs.failed[k] != 0 {
						t.Fatalf("observer %s: %d received, %d finished, %d failed; want %d, %d, 0", k, r, obs.finished[k], obs.failed[k], n, n)
					}
				}
			})
		}
	}
}

// TestReviewHeldForwardAndPanic: under Forward, an item whose call failed
// or panicked leads to a forwarded error that passes through a second
// single stage (a Filter) and is acknowledged with an error; the others
// with nil. With Ordered, the errors keep their place. Under Handle that
// accepts, the failed item is acknowledged with nil and emits nothing.
func TestReviewHeldForwardAndPanic(t *testing.T) {
	const n = 120
	for _, c := range rhConfigs() {
		for _, policy := range []string{"forward", "handle"} {
			t.Run(c.name+"/"+policy, func(t *testing.T) {
				acks := newRhAcks()
				opts := slices.Clone(c.intOpts())
				if policy == "forward" {
					opts = append(opts, stage.OnError(stage.Forward))
				} else {
					opts = append(opts, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
				}
				boom := errors.New("boom")
				m := stage.Map(acks.source(n, c.never), func(_ context.Context, v int) (int, error) {
					switch v % 4 {
					case 1:
						return 0, boom
					case 2:
						panic(fmt.Sprintf("panic at %d", v))
					}
					return v, nil
				}, opts...)
				f := stage.Filter(m, func(_ context.Context, v int) (bool, error) { return true, nil }, c.intOpts()...)
				var got []string
				var err error
				rhGuard(t, func() {
					err = stage.Run(context.Background(), f, func(_ context.Context, v int, err error) error {
						if err != nil {
							var se *stage.Error
							if !errors.As(err, &se) {
								return fmt.Errorf("forwarded error is not a *stage.Error: %v", err)
							}
							got = append(got, fmt.Sprintf("e%d", se.Index))
							return nil
						}
						got = append(got, fmt.Sprint(v))
						return nil
					})
				})
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
				var want []string
				for i := range n {
					switch {
					case i%4 == 0 || i%4 == 3:
						want = append(want, fmt.Sprint(i))
					case policy == "forward":
						want = append(want, fmt.Sprintf("e%d", i))
					}
				}
				if c.name == "w4-ordered" || c.name == "w4-ordered-buf" || c.name == "w1-serial" || c.name == "w1-serial-never" || c.name == "w1-buffer" {
					if !slices.Equal(got, want) {
						t.Fatalf("order:\n got %v\nwant %v", got, want)
					}
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("outputs:\n got %v\nwant %v", got, want)
				}
				for i := range n {
					calls := acks.calls0(i)
					failed := (i%4 == 1 || i%4 == 2) && policy == "forward"
					if len(calls) != 1 || (calls[0] != nil) != failed {
						t.Fatalf("item %d: Done calls %v, want one Done with error=%v", i, calls, failed)
					}
				}
			})
		}
	}
}

// TestReviewHeldCancelledDuringCall: the run is cancelled while an item's
// call runs; the call then returns a value and nil. Its output is dropped
// and the item is left unacknowledged (its fate is unknown), under every
// configuration; the observer saw the call finish.
func TestReviewHeldCancelledDuringCall(t *testing.T) {
	for _, c := range rhConfigs() {
		for _, kind := range []string{"map", "filter", "concurrent"} {
			t.Run(c.name+"/"+kind, func(t *testing.T) {
				acks := newRhAcks()
				obs := newRhObs()
				entered := make(chan struct{})
				var once sync.Once
				body := func(ctx context.Context, v int) int {
					once.Do(func() { close(entered) })
					<-ctx.Done() // the run's cancellation (Timeout(1h) does not fire)
					return v + 1
				}
				src := acks.source(1, c.never)
				var out stage.Stream[int]
				switch kind {
				case "map":
					out = stage.Map(src, func(ctx context.Context, v int) (int, error) { return body(ctx, v), nil }, c.intOpts()...)
				case "filter":
					out = stage.Filter(src, func(ctx context.Context, v int) (bool, error) { body(ctx, v); return true, nil }, c.intOpts()...)
				case "concurrent":
					tasks := stage.Map(src, func(_ context.Context, v int) (func(context.Context) (int, error), error) {
						return func(ctx context.Context) (int, error) { return body(ctx, v), nil }, nil
					})
					out = stage.Concurrent(tasks, c.opts...)
				}
				ctx, cancel := context.WithCancel(stage.Observe(context.Background(), obs))
				defer cancel()
				go func() {
					select {
					case <-entered:
					case <-time.After(rhWatchdog):
					}
					cancel()
				}()
				var err error
				delivered := 0
				rhGuard(t, func() {
					err = stage.Run(ctx, out, func(context.Context, int, error) error { delivered++; return nil })
				})
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Run = %v, want context.Canceled", err)
				}
				if delivered != 0 {
					t.Fatalf("%d outputs delivered after the cancellation", delivered)
				}
				if calls := acks.calls0(0); len(calls) != 0 {
					t.Fatalf("Done calls %v, want none (the item's fate is unknown)", calls)
				}
				obs.mu.Lock()
				defer obs.mu.Unlock()
				if obs.received[kind] != 1 || obs.finished[kind] != 1 {
					t.Fatalf("observer %s: %d received, %d finished; want 1, 1", kind, obs.received[kind], obs.finished[kind])
				}
			})
		}
	}
}

// TestReviewHeldSinkStopsWhileCalling: the sink stops (ErrStop) at item 0's
// output while item 1's call waits for the end of the run, then returns a
// value. Item 0 is acknowledged with nil, item 1 not at all. The stage keeps
// goroutines of its own (Buffer), so that the sink never runs item 1's call.
func TestReviewHeldSinkStopsWhileCalling(t *testing.T) {
	for _, opts := range [][]stage.Option{
		{stage.Workers(2), stage.Buffer(1)},
		{stage.Workers(2), stage.Buffer(1), stage.Ordered()},
		{stage.Workers(-1)},
		{stage.Workers(2), stage.Buffer(1), stage.Retry(2, 0), stage.Timeout(time.Hour)},
	} {
		t.Run(fmt.Sprint(len(opts)), func(t *testing.T) {
			acks := newRhAcks()
			entered := make(chan struct{})
			out := stage.Map(acks.source(2, false), func(ctx context.Context, v int) (int, error) {
				if v == 1 {
					close(entered)
					<-ctx.Done()
				}
				return v, nil
			}, opts...)
			var err error
			rhGuard(t, func() {
				err = stage.Run(context.Background(), out, func(_ context.Context, v int, err error) error {
					if v != 0 || err != nil {
						return fmt.Errorf("got %d, %v first", v, err)
					}
					<-entered // item 1's call is running
					return stage.ErrStop
				})
			})
			if err != nil {
				t.Fatalf("Run = %v", err)
			}
			if c := acks.calls0(0); len(c) != 1 || c[0] != nil {
				t.Fatalf("item 0: Done calls %v, want Done(nil)", c)
			}
			if c := acks.calls0(1); len(c) != 0 {
				t.Fatalf("item 1: Done calls %v, want none", c)
			}
		})
	}
}

// TestReviewHeldTimeoutIgnored: a call that outlives its Timeout and then
// returns a value is a success ("nil is a success, even after the
// deadline"): its output goes through although the attempt's context was
// cancelled (by the deferred cancel) before step queues it.
func TestReviewHeldTimeoutIgnored(t *testing.T) {
	for _, never := range []bool{false, true} {
		acks := newRhAcks()
		out := stage.Map(acks.source(8, never), func(ctx context.Context, v int) (int, error) {
			<-ctx.Done() // the attempt's deadline: certain to come
			return v, nil
		}, stage.Workers(4), stage.Timeout(time.Nanosecond))
		var got []int
		var err error
		rhGuard(t, func() {
			got, err = sink.Slice(context.Background(), out)
		})
		slices.Sort(got)
		if err != nil || !slices.Equal(got, []int{0, 1, 2, 3, 4, 5, 6, 7}) {
			t.Fatalf("never=%v: %v, %v", never, got, err)
		}
		for i := range 8 {
			if c := acks.calls0(i); len(c) != 1 || c[0] != nil {
				t.Fatalf("item %d: Done calls %v", i, c)
			}
		}
	}
}

// TestReviewHeldRetryPanic: under RetryIf that retries panics, an attempt
// that panics emits nothing, and the retry's output is the only one.
func TestReviewHeldRetryPanic(t *testing.T) {
	for _, never := range []bool{false, true} {
		acks := newRhAcks()
		var attempts atomic.Int64
		var tried sync.Map
		out := stage.Map(acks.source(50, never), func(_ context.Context, v int) (int, error) {
			attempts.Add(1)
			if _, again := tried.LoadOrStore(v, true); !again {
				panic("first attempt")
			}
			return v, nil
		}, stage.Workers(4), stage.RetryIf(2, 0, func(error) bool { return true }))
		var got []int
		var err error
		rhGuard(t, func() { got, err = sink.Slice(context.Background(), out) })
		slices.Sort(got)
		if err != nil || len(got) != 50 || attempts.Load() != 100 {
			t.Fatalf("never=%v: %d outputs, %d attempts, %v", never, len(got), attempts.Load(), err)
		}
		for i := range 50 {
			if got[i] != i {
				t.Fatalf("outputs %v", got)
			}
			if c := acks.calls0(i); len(c) != 1 || c[0] != nil {
				t.Fatalf("item %d: Done calls %v", i, c)
			}
		}
	}
}

// rhBig is an output large enough not to come from the tiny allocator.
type rhBig struct {
	id int
	_  [256]byte
	p  *int
}

// TestReviewHeldNotRetained: once the sink is done with an output, nothing
// of the stage keeps it alive: not the stepper's held slot (cleared after
// the put), not the outlet. The sink's callback for output i collects
// garbage and checks that every output delivered before is gone (Run
// clears its batch slot once delivered; the callback keeps nothing).
// Sequential (handOut), goroutine (queueOut), fused, ordered and KeyBy
// steppers.
func TestReviewHeldNotRetained(t *testing.T) {
	cases := []struct {
		name  string
		never bool
		opts  []stage.Option
	}{
		{"serial", false, []stage.Option{stage.Workers(1)}},
		{"own-goroutine", false, []stage.Option{stage.Workers(1), stage.Buffer(1)}},
		{"fused", true, []stage.Option{stage.Workers(2)}},
		{"ordered", false, []stage.Option{stage.Workers(2), stage.Ordered()}},
		{"keyby", false, []stage.Option{stage.Workers(2), stage.KeyBy(func(int) int { return 0 })}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			const n = 12
			var mu sync.Mutex
			ptrs := map[int]weak.Pointer[rhBig]{}
			acks := newRhAcks()
			out := stage.Map(acks.source(n, c.never), func(_ context.Context, v int) (*rhBig, error) {
				b := &rhBig{id: v, p: new(int)}
				mu.Lock()
				ptrs[v] = weak.Make(b)
				mu.Unlock()
				return b, nil
			}, c.opts...)
			var err error
			var order []int // ids delivered, in delivery order
			var leaked []int
			rhGuard(t, func() {
				err = stage.Run(context.Background(), out, func(_ context.Context, b *rhBig, err error) error {
					if err != nil {
						return err
					}
					order = append(order, b.id)
					b = nil
					if len(order) < 2 {
						return nil
					}
					runtime.GC()
					runtime.GC()
					mu.Lock()
					defer mu.Unlock()
					for _, k := range order[:len(order)-1] {
						if ptrs[k].Value() != nil && !slices.Contains(leaked, k) {
							leaked = append(leaked, k)
						}
					}
					return nil
				})
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(order) != n {
				t.Fatalf("%d outputs, want %d", len(order), n)
			}
			if len(leaked) > 0 {
				t.Fatalf("outputs still reachable once the sink is done with them: %v", leaked)
			}
		})
	}
}

// TestReviewHeldAroundBatch: single stages next to Batch and Unbatch.
// Batch → Unbatch (split: each element takes its item's acknowledgement
// back) → Filter → Map, and Batch → Map (over slices: the batch's group
// reference is moved to the output) → Unbatch. The sink fails the commit of
// item 5: exactly the items that share its fate are told the error (its own
// item after a split; its whole batch otherwise), the rest nil, each once.
func TestReviewHeldAroundBatch(t *testing.T) {
	const n, size = 40, 4
	commitErr := errors.New("commit failed")
	for _, never := range []bool{false, true} {
		for _, opts := range [][]stage.Option{{stage.Workers(1)}, {stage.Workers(4)}, {stage.Workers(4), stage.Ordered()}, {stage.Workers(-1)}} {
			for _, shape := range []string{"split", "map-over-batches"} {
				t.Run(fmt.Sprintf("never=%v/%d/%s", never, len(opts), shape), func(t *testing.T) {
					acks := newRhAcks()
					src := acks.source(n, never)
					var out stage.Stream[int]
					if shape == "split" {
						els := stage.Unbatch(stage.Batch(src, size, 0))
						kept := stage.Filter(els, func(_ context.Context, v int) (bool, error) { return v%7 != 3, nil }, opts...)
						out = stage.Map(kept, func(_ context.Context, v int) (int, error) { return v, nil }, opts...)
					} else {
						bs := stage.Map(stage.Batch(src, size, 0), func(_ context.Context, b []int) ([]int, error) { return b, nil }, opts...)
						out = stage.Unbatch(bs)
					}
					var err error
					seen := map[int]bool{}
					rhGuard(t, func() {
						err = stage.Run(context.Background(), out, func(_ context.Context, v int, err error) error {
							if err != nil {
								return err
							}
							seen[v] = true
							if v == 5 {
								return commitErr
							}
							return nil
						})
					})
					if !errors.Is(err, commitErr) {
						t.Fatalf("Run = %v, want the commit error", err)
					}
					for i := range n {
						calls := acks.calls0(i)
						shares := i == 5 || (shape == "map-over-batches" && i/size == 5/size)
						switch {
						case shares:
							if len(calls) != 1 || !errors.Is(calls[0], commitErr) {
								t.Fatalf("item %d: Done calls %v, want Done(commit error)", i, calls)
							}
						case len(calls) > 1:
							t.Fatalf("item %d: Done calls %v, want at most one", i, calls)
						case len(calls) == 1 && calls[0] != nil:
							t.Fatalf("item %d: Done calls %v, want nil", i, calls)
						case len(calls) == 1 && shape == "split" && i%7 != 3 && !seen[i]:
							t.Fatalf("item %d: Done(nil) but its output was never committed", i)
						}
					}
				})
			}
		}
	}
}
