package stage_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestRunErrStopWinsOverAFailureMeanwhile pins: when Run's callback returns
// ErrStop, Run returns nil, even if another item failed (FailFast) while the
// callback ran. Order, by events: the callback starts for item 0; only then
// does item 1's call fail; the callback sees the run cancelled by that
// failure, and returns ErrStop.
func TestRunErrStopWinsOverAFailureMeanwhile(t *testing.T) {
	const runs = 50
	bad := 0
	var first error
	for range runs {
		started := make(chan struct{})
		s := stage.Map(source.Slice(ints(2)), func(_ context.Context, x int) (int, error) {
			if x == 1 {
				<-started
				return 0, errBoom
			}
			return x, nil
		}, stage.Workers(2), stage.Buffer(1))
		var err error
		hangGuard(t, func() {
			err = stage.Run(context.Background(), s, func(ctx context.Context, v int, err error) error {
				close(started)
				<-ctx.Done() // item 1 has failed
				if !errors.Is(context.Cause(ctx), errBoom) {
					t.Errorf("the run ended with %v, want item 1's failure", context.Cause(ctx))
				}
				return stage.ErrStop
			})
		})
		if err != nil {
			if bad++; first == nil {
				first = err
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d runs returned an error after the callback returned ErrStop; first: %v", bad, runs, first)
	}
}

// untilSources are sources over a next function, of each kind: a generator
// (source.Func), a waiting source (stage.Source), an iterator (source.Seq,
// where each step of the iterator is a call of next).
func untilSources(next func() int) map[string]stage.Stream[int] {
	return map[string]stage.Stream[int]{
		"source.Func": source.Func(func(context.Context) (int, error) { return next(), nil }),
		"stage.Source": stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(context.Context) (int, error) { return next(), nil }, nil
		}),
		"source.Seq": source.Seq(iter.Seq[int](func(yield func(int) bool) {
			for yield(next()) {
			}
		})),
	}
}

// TestUntilAsksNoItemOnceStopIsDone pins: once Until's stop context is done,
// no source upstream is asked for another item; the run then drains and
// returns nil. The source's next cancels stop itself (so stop is done before
// next returns) and counts every call made after that: there must be none.
func TestUntilAsksNoItemOnceStopIsDone(t *testing.T) {
	const runs = 100
	for _, kind := range []string{"source.Func", "stage.Source", "source.Seq"} {
		t.Run(kind, func(t *testing.T) {
			bad, worst := 0, int64(0)
			for range runs {
				stop, drain := context.WithCancel(context.Background())
				var calls, late atomic.Int64
				var stopped atomic.Bool
				next := func() int {
					n := calls.Add(1)
					if stopped.Load() {
						late.Add(1)
					}
					if n == 10 {
						drain()
						stopped.Store(true) // stop is done from here on
					}
					return int(n)
				}
				s := stage.Map(stage.Until(untilSources(next)[kind], stop), double, stage.Workers(4))
				var err error
				hangGuard(t, func() { _, err = sink.Count(context.Background(), s) })
				drain()
				if err != nil {
					t.Fatalf("err = %v, want nil after a drain", err)
				}
				if n := late.Load(); n > 0 {
					bad++
					worst = max(worst, n)
				}
			}
			if bad > 0 {
				t.Fatalf("%d of %d runs asked the source for items after stop was done (up to %d calls)", bad, runs, worst)
			}
		})
	}
}

// eventLog is a log of what happened in a run, in order.
type eventLog struct {
	mu sync.Mutex
	ev []string
}

func (l *eventLog) add(e string) {
	l.mu.Lock()
	l.ev = append(l.ev, e)
	l.mu.Unlock()
}

func (l *eventLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.ev)
}

// stageLogger is an Observer that logs each Stage call.
type stageLogger struct{ log *eventLog }

func (o stageLogger) Stage(info stage.Info) stage.Watcher {
	o.log.add("stage " + info.Name)
	return nil
}

// TestObserverSeesEveryStageBeforeAnyItem pins: an Observer's Stage is
// called for every stage of the pipeline when the run starts, before any
// item is taken from the source: in the log of events, every "stage" event
// comes before the first call of the source.
func TestObserverSeesEveryStageBeforeAnyItem(t *testing.T) {
	const runs = 20
	sources := map[string]func(log *eventLog) stage.Stream[int]{
		"stage.Source": func(log *eventLog) stage.Stream[int] {
			return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				i := 0
				return func(context.Context) (int, error) {
					log.add("next")
					if i == 20 {
						return 0, errEOF
					}
					i++
					return i, nil
				}, nil
			})
		},
		"source.Func": func(log *eventLog) stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				log.add("next")
				if i == 20 {
					return 0, errEOF
				}
				i++
				return i, nil
			})
		},
		"stage.Indexed": func(log *eventLog) stage.Stream[int] {
			return stage.Indexed(20, func(i int) int { log.add("next"); return i })
		},
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			for range runs {
				log := &eventLog{}
				s := stage.Map(src(log), double, stage.Name("first"), stage.Workers(4))
				s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("keep"), stage.Workers(2))
				s = stage.Unbatch(stage.Batch(s, 3, time.Hour))
				s = stage.Map(s, double, stage.Name("last"), stage.Workers(1))
				ctx := stage.Observe(context.Background(), stageLogger{log})
				if n, err := sink.Count(ctx, s); err != nil || n != 20 {
					t.Fatalf("%d, %v; want 20 items", n, err)
				}
				ev := log.all()
				shown := ev
				if len(shown) > 12 {
					shown = append(shown[:12:12], "...")
				}
				firstItem := slices.Index(ev, "next")
				for _, want := range []string{"stage first", "stage keep", "stage last"} {
					if i := slices.Index(ev, want); i < 0 || i > firstItem {
						t.Fatalf("%q came after the source was first asked for an item (or never): events %v", want, shown)
					}
				}
				for i := firstItem; i < len(ev); i++ {
					if strings.HasPrefix(ev[i], "stage ") {
						t.Fatalf("%q came after the source was first asked for an item: events %v", ev[i], shown)
					}
				}
			}
		})
	}
}

// TestTeeUnconsumedBranchWithAStageUpstreamTakesNothing pins: a run that
// does not consume every branch of a Tee fails before it takes an item, also
// when a stage sits between the source and the Tee: the source is never
// asked for an item and the stage's function is never called. Looped; any
// run that took an item fails the test.
func TestTeeUnconsumedBranchWithAStageUpstreamTakesNothing(t *testing.T) {
	const runs = 50
	sources := map[string]func(asked *atomic.Int64) stage.Stream[int]{
		"source.Func": func(asked *atomic.Int64) stage.Stream[int] {
			return source.Func(func(context.Context) (int, error) { asked.Add(1); return 1, nil })
		},
		"stage.Source": func(asked *atomic.Int64) stage.Stream[int] {
			return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				return func(context.Context) (int, error) { asked.Add(1); return 1, nil }, nil
			})
		},
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			bad := 0
			var first string
			for range runs {
				var asked, called atomic.Int64
				up := stage.Map(src(&asked), func(_ context.Context, x int) (int, error) { called.Add(1); return x, nil }, stage.Workers(2))
				b := stage.Tee(up, 2)
				var err error
				hangGuard(t, func() { _, err = sink.Count(context.Background(), stage.Map(b[0], double)) })
				if err == nil {
					t.Fatal("the run succeeded with a branch of the Tee unconsumed")
				}
				if asked.Load() != 0 || called.Load() != 0 {
					if bad++; first == "" {
						first = fmt.Sprintf("err = %v after the source was asked for %d items and the stage upstream called %d times", err, asked.Load(), called.Load())
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%d of %d runs took items before failing; first: %s", bad, runs, first)
			}
		})
	}
}

// TestRateLimitWaitsUnderAFarDeadline pins: a RateLimit stage waits for its
// token, holding its place, until the token comes or the run ends; a context
// deadline an hour away does not make it fail items. 5 items at 1000 calls
// per second with a burst of 1 must all succeed.
func TestRateLimitWaitsUnderAFarDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers=%d", workers), func(t *testing.T) {
			s := stage.Map(source.Slice(ints(5)), double, stage.Workers(workers), stage.RateLimit(1000, 1))
			var got []int
			var err error
			hangGuard(t, func() { got, err = sink.Slice(ctx, s) })
			if err != nil || len(got) != 5 {
				t.Fatalf("got %v, err = %v; want the 5 items and no error", got, err)
			}
		})
	}
}

// TestRateLimitWaitsPastTheDeadlineForTheRunsEnd pins: a worker whose
// token comes only after the context's deadline (here 10,000 s away, against
// a deadline in an hour) still waits for it, until the run ends, instead of
// failing its item at once. sink.First over such a stage returns the first
// value with no error: the item that waits for its token is abandoned when
// First stops the run, it does not fail it. Looped; any failing run fails.
func TestRateLimitWaitsPastTheDeadlineForTheRunsEnd(t *testing.T) {
	const runs = 50
	bad := 0
	var first error
	for range runs {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		s := stage.Map(source.Slice(ints(3)), double, stage.Workers(2), stage.Buffer(1), stage.RateLimit(1e-4, 1))
		var ok bool
		var err error
		hangGuard(t, func() { _, ok, err = sink.First(ctx, s) })
		cancel()
		if !ok || err != nil {
			if bad++; first == nil {
				first = fmt.Errorf("ok = %v, err = %v", ok, err)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d runs did not return the first value without error; first: %v", bad, runs, first)
	}
}

// TestRateLimitDeadlineIsTheRunsEnd pins: when the run's deadline does
// expire while a worker waits for its token, the run ends as any run whose
// context expired: the sink's error satisfies
// errors.Is(err, context.DeadlineExceeded). The second token comes after
// 1000 s; the deadline (50 ms) always comes first, however fast the machine.
func TestRateLimitDeadlineIsTheRunsEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	s := stage.Map(source.Slice(ints(3)), double, stage.Workers(1), stage.RateLimit(0.001, 1))
	var err error
	hangGuard(t, func() { _, err = sink.Slice(ctx, s) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want errors.Is(err, context.DeadlineExceeded)", err)
	}
}
