package sink_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"runtime"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// hangGuard fails the test if f does not return within a long time: it
// detects a deadlock and asserts no duration.
func hangGuard(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("hung")
	}
}

// TestFirstEqualsTheFirstPairOfAll pins: First(s) is what the first pair of
// `for v, err := range All(ctx, s)` followed by a break gives: for a source
// that yields one value and then an error, through a Map with 4 workers, the
// value, true and no error, (1, true, nil), in every run; no worker reading
// ahead into the failing item may change it. Looped; any failing run fails.
func TestFirstEqualsTheFirstPairOfAll(t *testing.T) {
	const runs = 200
	errSrc := errors.New("source broke")
	stream := func() stage.Stream[int] {
		src := source.Seq2(iter.Seq2[int, error](func(yield func(int, error) bool) {
			if yield(1, nil) {
				yield(0, errSrc)
			}
		}))
		return stage.Map(src, func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(4))
	}
	ctx := context.Background()
	bad := 0
	var first string
	for range runs {
		var av int
		var aerr error
		for v, err := range sink.All(ctx, stream()) {
			av, aerr = v, err
			break
		}
		if av != 1 || aerr != nil {
			t.Fatalf("the first pair of All is (%d, %v), want (1, nil)", av, aerr)
		}
		var v int
		var ok bool
		var err error
		hangGuard(t, func() { v, ok, err = sink.First(ctx, stream()) })
		if v != 1 || !ok || err != nil {
			if bad++; first == "" {
				first = fmt.Sprintf("(%d, %v, %v)", v, ok, err)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d runs of First returned other than (1, true, nil), the first pair of All; first: %s", bad, runs, first)
	}
}

// TestEverySinkReportsACancellationAfterASourceError pins: a sink never
// reports a run as delivered in full when it was not. A source fails after 2
// items; the parent context is cancelled while those items are still held by
// a stage (they never reach the sink); every sink returns an error for which
// errors.Is(err, context.Canceled) holds, whatever else it joins. Looped (the
// cancellation follows the source's failure, but how soon the engine notes
// that failure is not ordered by an event a test can see); any run that
// breaks the promise fails the test.
func TestEverySinkReportsACancellationAfterASourceError(t *testing.T) {
	const runs, k = 20, 2
	errSrc := errors.New("source broke")
	sinks := map[string]func(ctx context.Context, s stage.Stream[int]) error{
		"ForEach": func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		},
		"Slice": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err },
		"Count": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Count(ctx, s); return err },
		"Reduce": func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a + v })
			return err
		},
		"Chan": func(ctx context.Context, s stage.Stream[int]) error { return sink.Chan(ctx, s, make(chan int, 10)) },
		"All": func(ctx context.Context, s stage.Stream[int]) error {
			var last error
			for _, err := range sink.All(ctx, s) {
				last = err
			}
			return last
		},
	}
	for name, run := range sinks {
		t.Run(name, func(t *testing.T) {
			bad := 0
			var first error
			for range runs {
				ctx, cancel := context.WithCancel(context.Background())
				failed := make(chan struct{})
				release := make(chan struct{})
				src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
						if i == k {
							close(failed)
							return 0, errSrc
						}
						i++
						return i - 1, nil
					}, nil
				})
				s := stage.Map(src, func(_ context.Context, x int) (int, error) {
					<-release // hold the item until the parent is cancelled
					return x, nil
				}, stage.Workers(4), stage.Buffer(1))
				go func() {
					<-failed
					// Let the engine note the failure before the cancellation
					// comes; on a correct engine the result does not depend on it.
					for range 100 {
						runtime.Gosched()
					}
					cancel()
					close(release)
				}()
				var err error
				hangGuard(t, func() { err = run(ctx, s) })
				cancel()
				if !errors.Is(err, context.Canceled) {
					if bad++; first == nil {
						first = err
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%d of %d runs did not report the cancellation; first: %v", bad, runs, first)
			}
		})
	}
}
