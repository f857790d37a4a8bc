package source_test

// Review 62: the sources under the fast path, where cheap stages run in
// their consumer's goroutines (stage.NeverWaits, in-memory Lines, Chan as
// stage.Interruptible). A broken serialisation of next could crash the
// process (iter.Pull's coroutine resumed concurrently), so each scenario
// runs in a child process.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const review62FastN = 20000

// review62Cheap builds two cheap unordered stages of several workers over s,
// which the fast path may run in their consumers' goroutines.
func review62Cheap(s stage.Stream[int]) stage.Stream[int] {
	m := stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(8))
	f := stage.Filter(m, func(_ context.Context, v int) (bool, error) { return true, nil }, stage.Workers(4))
	return stage.Map(f, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3))
}

// review62Exactly checks that the values 0..n-1 each arrived once.
func review62Exactly(t *testing.T, label string, got []int, n int) {
	t.Helper()
	seen := make([]bool, n)
	for _, v := range got {
		if v < 0 || v >= n || seen[v] {
			t.Errorf("%s: value %d out of range or twice", label, v)
			return
		}
		seen[v] = true
	}
	if len(got) != n {
		t.Errorf("%s: %d values; want %d", label, len(got), n)
	}
}

// "The run calls next only when a stage is ready for an item, never
// concurrently" (Func), "The iterator advances one step each time a stage is
// ready" (Seq, Seq2, over iter.Pull, which must not be resumed concurrently),
// with stage.NeverWaits: "a cheap stage over it may run in its consumer's
// goroutines". Every item exactly once, next never entered twice at once,
// and the iterator stopped once per run, also when First stops the run.
func TestReview62NeverWaitsSourcesUnderTheFastPath(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var inNext, overlaps, stops atomic.Int32
		enter := func() {
			if inNext.Add(1) != 1 {
				overlaps.Add(1)
			}
		}
		leave := func() { inNext.Add(-1) }
		mk := map[string]func() stage.Stream[int]{
			"Func": func() stage.Stream[int] {
				var n int
				return source.Func(func(context.Context) (int, error) {
					enter()
					defer leave()
					if n == review62FastN {
						return 0, io.EOF
					}
					n++
					return n - 1, nil
				})
			},
			"Seq": func() stage.Stream[int] {
				return source.Seq(func(yield func(int) bool) {
					defer stops.Add(1)
					for i := range review62FastN {
						enter()
						leave()
						if !yield(i) {
							return
						}
					}
				})
			},
			"Seq2": func() stage.Stream[int] {
				return source.Seq2(func(yield func(int, error) bool) {
					defer stops.Add(1)
					for i := range review62FastN {
						enter()
						leave()
						if !yield(i, nil) {
							return
						}
					}
				})
			},
		}
		for name, build := range mk {
			stops.Store(0)
			s := review62Cheap(stage.NeverWaits(build()))
			var got []int
			var err error
			runcheck.Run(t, name, func() { got, err = sink.Slice(context.Background(), s) })
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			review62Exactly(t, name, got, review62FastN)
			if name != "Func" {
				if stops.Load() != 1 {
					t.Errorf("%s: stopped %d times; want 1", name, stops.Load())
				}
				runcheck.Run(t, name, func() { _, _, err = sink.First(context.Background(), s) })
				if err != nil || stops.Load() != 2 {
					t.Errorf("%s: First: %v, stopped %d times in all; want nil, 2", name, err, stops.Load())
				}
			}
		}
		if overlaps.Load() != 0 {
			t.Errorf("next (or an iterator step) was entered %d times while another was running", overlaps.Load())
		}
	})
}

// Lines over an in-memory reader "is a source that never waits": cheap
// stages over it run in their consumers' goroutines, and every line still
// arrives exactly once, whole, including one cut at the 4 KiB read buffer;
// a line too long still ends the run after the lines before it.
func TestReview62InMemoryLinesUnderTheFastPath(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var b strings.Builder
		for i := range review62FastN {
			fmt.Fprintf(&b, "%d", i)
			if i%7 == 0 {
				b.WriteString("\r")
			}
			b.WriteString("\n")
		}
		toInt := func(_ context.Context, line string) (int, error) { return strconv.Atoi(line) }
		for _, r := range []io.Reader{strings.NewReader(b.String()), strings.NewReader(b.String() + strings.Repeat("9", 100) + "\n1\n")} {
			s := review62Cheap(stage.Map(source.Lines(r, source.MaxLineLength(99)), toInt, stage.Workers(6)))
			var got []int
			var err error
			runcheck.Run(t, "Lines", func() { got, err = sink.Slice(context.Background(), s) })
			var lt *source.LineTooLongError
			if err != nil && !(errors.As(err, &lt) && lt.Line == review62FastN+1) {
				t.Errorf("err = %v", err)
			}
			review62Exactly(t, "Lines", got, review62FastN)
		}
	})
}

// Chan is "stage.Interruptible: a cheap stage over it may take values that
// are ready in its consumer's goroutines": with a producer that sends while
// the run goes on (values ready and not ready in turn), every value arrives
// once, and a run that stops early leaves in ch exactly what it did not take
// (values taken + values left = values sent).
func TestReview62ChanInterruptibleUnderTheFastPath(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		ch := make(chan int, 16)
		go func() {
			for i := range review62FastN {
				ch <- i
			}
			close(ch)
		}()
		s := review62Cheap(source.Chan(ch))
		var got []int
		var err error
		runcheck.Run(t, "Chan", func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil {
			t.Errorf("err = %v", err)
		}
		review62Exactly(t, "Chan", got, review62FastN)

		// early stop: count what the run took
		ch2 := make(chan int, review62FastN)
		for i := range review62FastN {
			ch2 <- i
		}
		close(ch2)
		var delivered atomic.Int32
		var seenMu sync.Mutex
		seen := map[int]bool{}
		s2 := stage.Map(source.Chan(ch2), func(_ context.Context, v int) (int, error) {
			seenMu.Lock()
			seen[v] = true
			seenMu.Unlock()
			return v, nil
		}, stage.Workers(4))
		runcheck.Run(t, "Chan-stop", func() {
			err = sink.ForEach(context.Background(), s2, func(_ context.Context, v int) error {
				if delivered.Add(1) == 5000 {
					return stage.ErrStop
				}
				return nil
			})
		})
		if err != nil {
			t.Errorf("ErrStop: %v", err)
		}
		left := 0
		for v := range ch2 {
			if seen[v] {
				t.Errorf("value %d was both given to the stage and left in ch", v)
			}
			left++
		}
		// a value taken when the run was ending may be dropped uncomputed,
		// but no more than the stage's read-ahead (workers + buffer = 4).
		if lost := review62FastN - left - len(seen); lost < 0 || lost > 4 {
			t.Errorf("stage saw %d values, %d left in ch: %d taken and never worked on; want at most 4", len(seen), left, lost)
		}
	})
}
