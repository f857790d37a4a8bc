package stage

// Review of the "over" flag (run.cancelled as one atomic load when the
// parent context can never be cancelled). Every run here has a
// context.Background() parent, so the new path (ownOnly) is the one taken.
// No test depends on timing: gates and channels decide the order of
// events; durations are only hang watchdogs.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
)

const rcfHang = 20 * time.Second

// rcfReps is how many runs each racing scenario repeats.
const rcfReps = 60

var errRCF = errors.New("review: boom")

type rcfMode struct {
	workers int
	ordered bool
}

func (m rcfMode) String() string { return fmt.Sprintf("w%d/ord=%v", m.workers, m.ordered) }

func (m rcfMode) opts() []Option {
	o := []Option{Workers(m.workers)}
	if m.ordered {
		o = append(o, Ordered())
	}
	return o
}

var rcfModes = []rcfMode{{1, false}, {1, true}, {4, false}, {4, true}, {-1, false}, {-1, true}}

// rcfWaitingSource is a Source (may wait) of 0..n-1.
func rcfWaitingSource(n int) Stream[int] {
	return Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, errEOFRCF
			}
			i++
			return i - 1, nil
		}, nil
	})
}

var errEOFRCF = io.EOF

// rcfSources are the two kinds of source: one that never waits (fused and
// sequential paths) and one that may wait (workers of the stage's own).
func rcfSources(n int) map[string]func() Stream[int] {
	return map[string]func() Stream[int]{
		"indexed": func() Stream[int] { return Indexed(n, func(i int) int { return i }) },
		"source":  func() Stream[int] { return rcfWaitingSource(n) },
	}
}

// TestReviewCancelFlagInvariant: the commit's claim, that whoever sees the
// run's context done sees cancelled() true (over is stored before the
// channel closes). Checked while a failure cancels the run concurrently.
func TestReviewCancelFlagInvariant(t *testing.T) {
	for rep := 0; rep < 300; rep++ {
		r := newRun(context.Background())
		if !r.ownOnly {
			t.Fatal("a Background parent must take the ownOnly path")
		}
		var bad atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for g := 0; g < 3; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				done := r.ctx.Done()
				for {
					errSeen := r.ctx.Err() != nil
					var closed bool
					select {
					case <-done:
						closed = true
					default:
					}
					c := r.cancelled()
					if (errSeen || closed) && !c {
						bad.Add(1)
					}
					if closed {
						return
					}
				}
			}()
		}
		close(start)
		r.fail(errRCF)
		wg.Wait()
		r.finish()
		if bad.Load() != 0 {
			t.Fatalf("rep %d: the run's context was seen done while cancelled() was false (%d times)", rep, bad.Load())
		}
		if r.failure != errRCF {
			t.Fatalf("rep %d: failure = %v, want %v", rep, r.failure, errRCF)
		}
	}
}

// TestReviewCancelFlagWakeRace: sleepers in each kind of queue wait
// (acquire, pull, pushExtra) go to sleep while the run is cancelled, by a
// failure or by finish, at the same moment: none may miss the wake-up.
func TestReviewCancelFlagWakeRace(t *testing.T) {
	for _, by := range []string{"fail", "finish"} {
		t.Run(by, func(t *testing.T) {
			for rep := 0; rep < 300; rep++ {
				r := newRun(context.Background())
				qTok := newQueue[int](r, 0, 1)  // acquire waits: no token
				qPop := newQueue[int](r, 1, 1)  // pull waits: empty, one writer
				qPush := newQueue[int](r, 1, 1) // pushExtra waits once full
				if !qPush.pushExtra(item[int]{v: 1}) {
					t.Fatal("the first pushExtra found the run cancelled")
				}
				start := make(chan struct{})
				res := make(chan string, 3)
				go func() { <-start; res <- fmt.Sprint("acquire ", qTok.acquire()) }()
				go func() { <-start; _, _, ok := qPop.pull(); res <- fmt.Sprint("pull ", ok) }()
				go func() { <-start; res <- fmt.Sprint("pushExtra ", qPush.pushExtra(item[int]{v: 2})) }()
				close(start)
				if by == "fail" {
					r.fail(errRCF)
				} else {
					r.finish()
				}
				runcheck.NoHang(t, "a sleeper missed the cancellation", func() {
					for range 3 {
						if s := <-res; s[len(s)-4:] == "true" {
							t.Errorf("rep %d: %s after the run was cancelled", rep, s)
						}
					}
				})
				r.finish()
			}
		})
	}
}

// TestReviewCancelFlagWakeAsleep: the deterministic half: the sleepers are
// seen asleep (their counters, read under the queue's lock) before the
// failure.
func TestReviewCancelFlagWakeAsleep(t *testing.T) {
	for rep := 0; rep < 100; rep++ {
		r := newRun(context.Background())
		qTok := newQueue[int](r, 0, 1)
		qPop := newQueue[int](r, 1, 1)
		res := make(chan bool, 2)
		go func() { res <- qTok.acquire() }()
		go func() { _, _, ok := qPop.pull(); res <- ok }()
		runcheck.NoHang(t, "the sleepers never slept", func() {
			for {
				qTok.mu.Lock()
				a := qTok.tokWait.Load()
				qTok.mu.Unlock()
				qPop.mu.Lock()
				b := qPop.waiting
				qPop.mu.Unlock()
				if a == 1 && b == 1 {
					return
				}
				time.Sleep(time.Microsecond) // polling, not an assumption
			}
		})
		r.fail(errRCF)
		runcheck.NoHang(t, "a sleeper was not woken", func() {
			for range 2 {
				if <-res {
					t.Errorf("rep %d: a wait succeeded after the run failed", rep)
				}
			}
		})
		r.finish()
	}
}

// TestReviewCancelFlagFailFastAtLastItem: a FailFast failure of the last
// item races the end of the input; the sink must return the failure (the
// sink never saw the end of its stream while the run was live), whatever
// the stage's mode, source and depth.
func TestReviewCancelFlagFailFastAtLastItem(t *testing.T) {
	const n = 8
	for name, mk := range rcfSources(n) {
		for _, m := range rcfModes {
			for _, depth := range []int{1, 2} {
				t.Run(fmt.Sprintf("%s/%v/depth%d", name, m, depth), func(t *testing.T) {
					for rep := 0; rep < rcfReps; rep++ {
						s := Map(mk(), func(_ context.Context, v int) (int, error) {
							if v == n-1 {
								return 0, errRCF
							}
							return v, nil
						}, m.opts()...)
						if depth == 2 {
							s = Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, m.opts()...)
						}
						var err error
						got := 0
						runcheck.NoHang(t, "run", func() {
							err = Run(context.Background(), s, func(context.Context, int, error) error {
								got++
								return nil
							})
						})
						var e *Error
						if !errors.As(err, &e) || !errors.Is(err, errRCF) || e.Index != n-1 && depth == 1 {
							t.Fatalf("rep %d: Run = %v (delivered %d), want the *Error of item %d", rep, err, got, n-1)
						}
					}
				})
			}
		}
	}
}

// TestReviewCancelFlagTeeBranchFailsAtEnd: one branch of a Tee fails at
// the last item while the other branch ends: the failure is returned.
func TestReviewCancelFlagTeeBranchFailsAtEnd(t *testing.T) {
	const n = 6
	for rep := 0; rep < 200; rep++ {
		b := Tee(rcfWaitingSource(n), 2)
		ok := Map(b[0], func(_ context.Context, v int) (int, error) { return v, nil }, Workers(2))
		bad := Map(b[1], func(_ context.Context, v int) (int, error) {
			if v == n-1 {
				return 0, errRCF
			}
			return v, nil
		}, Workers(2))
		var err error
		runcheck.NoHang(t, "run", func() {
			err = Run(context.Background(), Merge(ok, bad), func(context.Context, int, error) error { return nil })
		})
		if !errors.Is(err, errRCF) {
			t.Fatalf("rep %d: Run = %v, want the branch's failure", rep, err)
		}
	}
}

// TestReviewCancelFlagStopOrFailure: the sink's f returns ErrStop at the
// first item while every other item fails FailFast in the stage. The
// result depends only on what f saw: nil if f was called (it returned
// ErrStop), else the failure that cut the run short before.
func TestReviewCancelFlagStopOrFailure(t *testing.T) {
	const n = 16
	for name, mk := range rcfSources(n) {
		for _, m := range rcfModes {
			t.Run(name+"/"+m.String(), func(t *testing.T) {
				saw := [2]int{}
				for rep := 0; rep < rcfReps; rep++ {
					s := Map(mk(), func(_ context.Context, v int) (int, error) {
						if v != 0 {
							return 0, errRCF
						}
						return v, nil
					}, m.opts()...)
					called := false
					var err error
					runcheck.NoHang(t, "run", func() {
						err = Run(context.Background(), s, func(context.Context, int, error) error {
							if called {
								t.Error("f called after it returned ErrStop")
							}
							called = true
							return ErrStop
						})
					})
					switch {
					case called && err != nil:
						t.Fatalf("rep %d: f returned ErrStop but Run = %v", rep, err)
					case !called && !errors.Is(err, errRCF):
						t.Fatalf("rep %d: f never called but Run = %v, want the failure", rep, err)
					}
					if called {
						saw[0]++
					} else {
						saw[1]++
					}
				}
				t.Logf("stopped %d, failed %d", saw[0], saw[1])
			})
		}
	}
}

// TestReviewCancelFlagNextNeverAfterCancel: Source's "never once the run is
// cancelled". next for item 1 returns only once it has seen the run's
// context done (item 0 fails FailFast meanwhile); no call of next may
// follow, since calls are serialised and the run was cancelled before.
func TestReviewCancelFlagNextNeverAfterCancel(t *testing.T) {
	for _, m := range rcfModes {
		t.Run(m.String(), func(t *testing.T) {
			for rep := 0; rep < rcfReps; rep++ {
				var seen atomic.Bool
				var late, atEntry atomic.Int32
				src := Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(ctx context.Context) (int, error) {
						if seen.Load() {
							late.Add(1)
						}
						if ctx.Err() != nil {
							atEntry.Add(1)
						}
						v := i
						i++
						if v == 1 {
							select {
							case <-ctx.Done():
							case <-time.After(rcfHang):
								t.Error("hang: item 0's failure never cancelled the run")
							}
							seen.Store(true)
						}
						return v, nil
					}, nil
				})
				s := Map(src, func(_ context.Context, v int) (int, error) {
					if v == 0 {
						return 0, errRCF
					}
					return v, nil
				}, m.opts()...)
				var err error
				runcheck.NoHang(t, "run", func() {
					err = Run(context.Background(), s, func(context.Context, int, error) error { return nil })
				})
				if !errors.Is(err, errRCF) {
					t.Fatalf("rep %d: Run = %v, want the failure", rep, err)
				}
				if late.Load() != 0 {
					t.Fatalf("rep %d: next was called %d times after the source saw the run cancelled", rep, late.Load())
				}
				if atEntry.Load() != 0 {
					t.Logf("rep %d: next entered with a done context %d times (a check-then-call race, not asserted)", rep, atEntry.Load())
				}
			}
		})
	}
}

// TestReviewCancelFlagBatchLastFlush: Batch's last partial batch is
// delivered when the input ends (and the run is live), also after an
// Until drain; it is dropped when a FailFast failure cut the run short.
func TestReviewCancelFlagBatchLastFlush(t *testing.T) {
	t.Run("end", func(t *testing.T) {
		const n = 7
		for name, mk := range rcfSources(n) {
			for _, m := range rcfModes {
				for rep := 0; rep < rcfReps; rep++ {
					s := Batch(Map(mk(), func(_ context.Context, v int) (int, error) { return v, nil }, m.opts()...), 3, 0)
					var sizes []int
					total := 0
					var err error
					runcheck.NoHang(t, "run", func() {
						err = Run(context.Background(), s, func(_ context.Context, b []int, _ error) error {
							sizes = append(sizes, len(b))
							total += len(b)
							return nil
						})
					})
					if err != nil || total != n || len(sizes) != 3 || sizes[2] != 1 {
						t.Fatalf("%s/%v rep %d: Run = %v, batches %v: the last partial batch was lost", name, m, rep, err, sizes)
					}
				}
			}
		}
	})
	t.Run("failure", func(t *testing.T) {
		const k = 4
		for name, mk := range rcfSources(20) {
			for _, ord := range []bool{false, true} {
				for rep := 0; rep < rcfReps; rep++ {
					opts := []Option{Workers(1)}
					if ord {
						opts = append(opts, Ordered())
					}
					s := Batch(Map(mk(), func(_ context.Context, v int) (int, error) {
						if v == k {
							return 0, errRCF
						}
						return v, nil
					}, opts...), 10, 0)
					var batches [][]int
					var err error
					runcheck.NoHang(t, "run", func() {
						err = Run(context.Background(), s, func(_ context.Context, b []int, _ error) error {
							batches = append(batches, b)
							return nil
						})
					})
					if !errors.Is(err, errRCF) || len(batches) != 0 {
						t.Fatalf("%s rep %d: Run = %v, batches %v: want the failure and no partial batch", name, rep, err, batches)
					}
				}
			}
		}
	})
	t.Run("until", func(t *testing.T) {
		const k = 5
		for rep := 0; rep < rcfReps; rep++ {
			stop, cancelStop := context.WithCancel(context.Background())
			src := Source(func(context.Context) (func(context.Context) (int, error), func()) {
				i := 0
				return func(ctx context.Context) (int, error) {
					if i == k {
						cancelStop()
						select {
						case <-ctx.Done():
						case <-time.After(rcfHang):
							t.Error("hang: the drain never ended the source's context")
						}
						return 0, ctx.Err()
					}
					i++
					return i - 1, nil
				}, nil
			})
			s := Batch(Map(Until(src, stop), func(_ context.Context, v int) (int, error) { return v, nil }, Workers(2)), 10, 0)
			var batches [][]int
			var err error
			runcheck.NoHang(t, "run", func() {
				err = Run(context.Background(), s, func(_ context.Context, b []int, _ error) error {
					batches = append(batches, b)
					return nil
				})
			})
			cancelStop()
			if err != nil || len(batches) != 1 || len(batches[0]) != k {
				t.Fatalf("rep %d: Run = %v, batches %v: want nil and one batch of %d", rep, err, batches, k)
			}
		}
	})
}

// rcfAck records the acknowledgement of one item.
type rcfAck struct {
	v    int
	told *sync.Map // v -> error (nilErr for nil)
	n    *atomic.Int32
}

type rcfNil struct{}

func (a rcfAck) Done(err error) {
	var x any = rcfNil{}
	if err != nil {
		x = err
	}
	if _, dup := a.told.LoadOrStore(a.v, x); dup {
		a.n.Add(1)
	}
}

// TestReviewCancelFlagAcks: with acknowledgements, a FailFast failure at
// item k: k is told its error, every item the sink committed is told nil,
// no other item is told nil, and none is told twice.
func TestReviewCancelFlagAcks(t *testing.T) {
	const n, k = 12, 5
	for _, m := range rcfModes {
		t.Run(m.String(), func(t *testing.T) {
			for rep := 0; rep < rcfReps; rep++ {
				var told sync.Map
				var dups atomic.Int32
				src := AckSource(func(context.Context) (func(context.Context) (int, Ack, error), func()) {
					i := 0
					return func(context.Context) (int, Ack, error) {
						if i == n {
							return 0, nil, errEOFRCF
						}
						i++
						return i - 1, rcfAck{v: i - 1, told: &told, n: &dups}, nil
					}, nil
				})
				s := Map(src, func(_ context.Context, v int) (int, error) {
					if v == k {
						return 0, errRCF
					}
					return v, nil
				}, m.opts()...)
				committed := map[int]bool{}
				var err error
				runcheck.NoHang(t, "run", func() {
					err = Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
						committed[v] = true
						return nil
					})
				})
				if !errors.Is(err, errRCF) {
					t.Fatalf("rep %d: Run = %v", rep, err)
				}
				if dups.Load() != 0 {
					t.Fatalf("rep %d: Done called twice for an item", rep)
				}
				if x, ok := told.Load(k); !ok || !errors.Is(x.(error), errRCF) {
					t.Fatalf("rep %d: the failed item was told %v (told=%v), want its error", rep, x, ok)
				}
				for v := range n {
					x, ok := told.Load(v)
					_, isNil := x.(rcfNil)
					if committed[v] && !(ok && isNil) {
						t.Fatalf("rep %d: committed item %d told %v (told=%v), want nil", rep, v, x, ok)
					}
					if !committed[v] && ok && isNil {
						t.Fatalf("rep %d: item %d told nil but never committed", rep, v)
					}
				}
			}
		})
	}
}
