package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// erLedger records Done calls per item of an AckSource and what the sink
// committed.
type erLedger struct {
	mu        sync.Mutex
	done      map[int][]error
	committed map[int]bool
}

func newErLedger() *erLedger {
	return &erLedger{done: map[int][]error{}, committed: map[int]bool{}}
}

func (l *erLedger) ack(id int) stage.Ack {
	return erAck(func(err error) {
		l.mu.Lock()
		l.done[id] = append(l.done[id], err)
		l.mu.Unlock()
	})
}

// check: Done at most once; Done(nil) only for an item whose one output was
// committed (a Map); a committed item is told nil when wantAll.
func (l *erLedger) check(n int, mustAll bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for id := range n {
		d := l.done[id]
		if len(d) > 1 {
			return fmt.Errorf("item %d: Done called %d times: %v", id, len(d), d)
		}
		if len(d) == 1 && d[0] == nil && !l.committed[id] {
			return fmt.Errorf("item %d: Done(nil) but its output was never committed", id)
		}
		if l.committed[id] && (len(d) != 1 || d[0] != nil) {
			return fmt.Errorf("item %d: committed, but Done calls %v", id, d)
		}
		if mustAll && !l.committed[id] {
			return fmt.Errorf("item %d: never committed", id)
		}
	}
	return nil
}

// erChanAckSource is an Interruptible AckSource over ch (ids are values).
func erChanAckSource(ch <-chan int, l *erLedger) stage.Stream[int] {
	return stage.Interruptible(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		return func(ctx context.Context) (int, stage.Ack, error) {
			select {
			case v, ok := <-ch:
				if !ok {
					return 0, nil, io.EOF
				}
				return v, l.ack(v), nil
			case <-ctx.Done():
				return 0, nil, context.Cause(ctx)
			}
		}, nil
	}))
}

// TestEngineTriesBoundAndExactlyOnce: Map(Workers(4)) over source.Chan
// (Interruptible), consumed by the sink and by a Workers(3) stage. At most
// 4 calls at once, every value exactly once, acknowledgements settled.
func TestEngineTriesBoundAndExactlyOnce(t *testing.T) {
	for _, consumers := range []int{1, 3, 4} {
		for rep := range 20 {
			t.Run(fmt.Sprintf("consumers=%d/%d", consumers, rep), func(t *testing.T) {
				const n = 2000
				ch := make(chan int, 64)
				go func() {
					for i := range n {
						ch <- i
						if i%100 == 0 {
							time.Sleep(50 * time.Microsecond) // let the source wait now and then
						}
					}
					close(ch)
				}()
				l := newErLedger()
				var active, peak atomic.Int32
				s := stage.Map(erChanAckSource(ch, l), func(_ context.Context, v int) (int, error) {
					a := active.Add(1)
					for {
						p := peak.Load()
						if a <= p || peak.CompareAndSwap(p, a) {
							break
						}
					}
					active.Add(-1)
					return v, nil
				}, stage.Workers(4))
				if consumers > 1 {
					s = stage.Apply(s, func(_ context.Context, v int, emit func(int) bool) error {
						emit(v)
						return nil
					}, stage.Workers(consumers))
				}
				seen := make([]int, n)
				hangGuard(t, func() {
					err := stage.Run(context.Background(), s, func(_ context.Context, v int, err error) error {
						seen[v]++
						l.mu.Lock()
						l.committed[v] = true
						l.mu.Unlock()
						return err
					})
					if err != nil {
						t.Errorf("err = %v", err)
					}
				})
				if p := peak.Load(); p > 4 {
					t.Errorf("%d calls at once, Workers(4)", p)
				}
				for i, c := range seen {
					if c != 1 {
						t.Fatalf("value %d delivered %d times", i, c)
					}
				}
				if err := l.check(n, true); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestEngineTriesLockstep: once the calls are cheap a place is the sink's;
// then values come one at a time, each only after the sink got the last. A
// consumer that waited in the source while an output waited for it would
// hang here.
func TestEngineTriesLockstep(t *testing.T) {
	for _, w := range []int{2, 4} {
		t.Run(fmt.Sprint(w), func(t *testing.T) {
			ch := make(chan int, 256)
			for i := range 200 {
				ch <- i
			}
			got := make(chan int, 1)
			s := stage.Map(source.Chan(ch), double, stage.Workers(w))
			hangGuard(t, func() {
				var feedErr error
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 200 {
						<-got
					}
					for i := 200; i < 1200; i++ {
						ch <- i
						select {
						case <-got:
						case <-time.After(10 * time.Second):
							feedErr = fmt.Errorf("value %d never reached the sink", i)
							close(ch)
							return
						}
					}
					close(ch)
				}()
				n := 0
				err := stage.Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
					n++
					got <- v
					return nil
				})
				wg.Wait()
				if feedErr != nil {
					t.Fatal(feedErr)
				}
				if err != nil || n != 1200 {
					t.Errorf("err = %v, n = %d", err, n)
				}
			})
		})
	}
}

// TestEngineAcksUnderCancel: Map (single output: its output takes over the
// item's reference) over an AckSource, in every mode, fused or not, over a
// source that never waits, one that waits, and an Interruptible one; the
// sink cancels the run after a random number of items. Done at most once
// per item; Done(nil) only for a committed item; a committed item told nil.
func TestEngineAcksUnderCancel(t *testing.T) {
	kinds := []string{"neverwaits", "waits", "interruptible"}
	for _, m := range modes {
		for _, kind := range kinds {
			t.Run(m.String()+"/"+kind, func(t *testing.T) {
				for rep := range 30 {
					const n = 300
					l := newErLedger()
					ch := make(chan int, n)
					for i := range n {
						ch <- i
					}
					close(ch)
					var src stage.Stream[int]
					switch kind {
					case "interruptible":
						src = erChanAckSource(ch, l)
					default:
						i := 0
						src = stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
							return func(context.Context) (int, stage.Ack, error) {
								if i >= n {
									return 0, nil, io.EOF
								}
								i++
								return i - 1, l.ack(i - 1), nil
							}, nil
						})
						if kind == "neverwaits" {
							src = stage.NeverWaits(src)
						}
					}
					stopAt := rand.IntN(n)
					ctx, cancel := context.WithCancel(context.Background())
					s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
						if v%7 == 3 {
							time.Sleep(time.Duration(rand.IntN(30)) * time.Microsecond)
						}
						return v, nil
					}, m.opts()...)
					s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, m.opts()...)
					k := 0
					hangGuard(t, func() {
						_ = stage.Run(ctx, s, func(_ context.Context, v int, err error) error {
							l.mu.Lock()
							l.committed[v] = true
							l.mu.Unlock()
							if k++; k == stopAt {
								cancel()
							}
							return nil
						})
					})
					cancel()
					if err := l.check(n, false); err != nil {
						t.Fatalf("rep %d (stop at %d): %v", rep, stopAt, err)
					}
				}
			})
		}
	}
}

// erCancelObserver cancels the run's parent context while the pipeline is
// being opened, at the given stage.
type erCancelObserver struct {
	at     int
	n      int
	cancel context.CancelFunc
}

func (o *erCancelObserver) Stage(stage.Info) stage.Watcher {
	if o.n++; o.n == o.at {
		o.cancel()
		time.Sleep(time.Millisecond) // let the cancellation hook run meanwhile
	}
	return nil
}

// TestEngineCancelWhileOpening: the parent context is cancelled while the
// pipeline is opened (between the queues' registrations of their wakers):
// the run ends with the cancellation, without a hang or a leak.
func TestEngineCancelWhileOpening(t *testing.T) {
	for at := 1; at <= 4; at++ {
		for _, m := range modes {
			t.Run(fmt.Sprintf("at=%d/%v", at, m), func(t *testing.T) {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				ctx = stage.Observe(ctx, &erCancelObserver{at: at, cancel: cancel})
				s := stage.Map(source.Chan(make(chan int)), double, m.opts()...)
				s = stage.Map(s, double, m.opts(stage.Buffer(1))...)
				s = stage.Map(s, double, m.opts()...)
				s = stage.Map(s, double, m.opts(stage.Buffer(2))...)
				hangGuard(t, func() {
					err := stage.Run(ctx, s, func(context.Context, int, error) error { return nil })
					if !errors.Is(err, context.Canceled) {
						t.Errorf("err = %v, want Canceled", err)
					}
				})
			})
		}
	}
}

// TestEngineLazyStartSmallInputs: a fused stage over 0, 1, 2 and 3 items
// (sized and unsized) delivers every item, and calls f at most once per
// item and at most Workers at once.
func TestEngineLazyStartSmallInputs(t *testing.T) {
	for _, sized := range []bool{true, false} {
		for n := range 4 {
			for _, w := range []int{1, 2, 4} {
				t.Run(fmt.Sprintf("sized=%v/n=%d/w=%d", sized, n, w), func(t *testing.T) {
					for range 50 {
						var src stage.Stream[int]
						if sized {
							src = source.Slice(ints(n))
						} else {
							src = counterSource(n)
						}
						var calls, active, peak atomic.Int32
						s := stage.Map(src, func(_ context.Context, v int) (int, error) {
							calls.Add(1)
							a := active.Add(1)
							for {
								p := peak.Load()
								if a <= p || peak.CompareAndSwap(p, a) {
									break
								}
							}
							active.Add(-1)
							return v, nil
						}, stage.Workers(w))
						var got []int
						hangGuard(t, func() {
							err := stage.Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
								got = append(got, v)
								return nil
							})
							if err != nil {
								t.Errorf("err = %v", err)
							}
						})
						if len(got) != n || int(calls.Load()) != n || int(peak.Load()) > w {
							t.Fatalf("got %v, %d calls, peak %d", got, calls.Load(), peak.Load())
						}
					}
				})
			}
		}
	}
}
