package sink_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// README, first snippet: "stage.Ordered() // results in input order",
// "stage.OnError(stage.Forward) // a failed line travels on as an error",
// "sink.ForEach ... // returns when everything has stopped".
func TestReview68ReadmeIntroSnippet(t *testing.T) {
	ctx := context.Background()
	file := strings.NewReader("1\n2\nx\n4\n5\n6\n7\n")
	var bal r68Balance
	parse := func(_ context.Context, l string) (int, error) {
		defer bal.enter()()
		return strconv.Atoi(l)
	}
	validate := func(_ context.Context, n int) (bool, error) {
		defer bal.enter()()
		return n%2 == 1, nil
	}
	var mu sync.Mutex
	var stored []int
	store := func(_ context.Context, n int) error {
		mu.Lock()
		stored = append(stored, n)
		mu.Unlock()
		return nil
	}
	var err error
	runcheck.Run(t, "intro", func() {
		lines := source.Lines(file)
		records := stage.Map(lines, parse,
			stage.Workers(8),
			stage.Ordered(),
			stage.OnError(stage.Forward))
		valid := stage.Filter(records, validate)
		err = sink.ForEach(ctx, valid, store)
	})
	bal.check(t, "intro")
	slices.Sort(stored)
	if !slices.Equal(stored, []int{1, 5, 7}) {
		t.Errorf("stored %v, want [1 5 7]", stored)
	}
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 {
		t.Fatalf("err = %v, want a *sink.ForwardedError of 1", err)
	}
	var se *stage.Error
	if !errors.As(err, &se) || se.Index != 2 || se.Input != "x" || se.Stage != "map#1" {
		t.Errorf("forwarded error %#v: want map#1, index 2, input x", se)
	}
	var ne *strconv.NumError
	if !errors.As(err, &ne) {
		t.Errorf("errors.As does not see the *strconv.NumError through %v", err)
	}
}

// r68Backends is the per-request fan-out's input.
func r68Backends(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("backend-%d", i)
	}
	return out
}

// README: "call a handful of backends, at most 3 at a time, answers in the
// order of the calls". Item 0 is held until every other call the window
// allows has finished; answers must still come in the order of the calls.
// Also the Ordered window: "An Ordered() stage takes at most
// 2×workers+buffer items that its consumer has not yet taken".
func TestReview68ReadmeFanOutOrderAndLimit(t *testing.T) {
	for _, userCtx := range []bool{false, true} {
		t.Run(fmt.Sprintf("userctx=%v", userCtx), func(t *testing.T) {
			backends := r68Backends(7)
			var g r68Gauge
			var bal r68Balance
			release0 := make(chan struct{})
			var finished atomic.Int32
			var started [7]atomic.Bool
			call := func(ctx context.Context, b string) (string, error) {
				defer bal.enter()()
				g.enter()
				defer g.leave()
				i, _ := strconv.Atoi(strings.TrimPrefix(b, "backend-"))
				started[i].Store(true)
				if i == 0 {
					<-release0
				} else {
					defer finished.Add(1)
				}
				return "answer from " + b, nil
			}
			var ctx context.Context = context.Background()
			if userCtx {
				ctx = ctxtest.NewDoneCtx()
			}
			var answers []string
			var err error
			wait := r68Start(func() {
				answers, err = sink.Slice(ctx, stage.Map(source.Slice(backends), call,
					stage.Workers(3), stage.Ordered()))
			})
			// 0 in flight, 1..5 finished: 6 = 2×3 items the consumer has not taken.
			r68WaitFor(t, "items 1..5 finished", func() bool { return finished.Load() == 5 })
			r68Settle()
			if started[6].Load() {
				t.Errorf("item 6 started while item 0 held the window: more than 2×workers items ahead of the consumer")
			}
			close(release0)
			wait(t, "fan-out")
			bal.check(t, "fan-out")
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			want := make([]string, len(backends))
			for i, b := range backends {
				want[i] = "answer from " + b
			}
			if !slices.Equal(answers, want) {
				t.Errorf("answers %q, want them in the order of the calls %q", answers, want)
			}
			if m := g.max.Load(); m > 3 {
				t.Errorf("%d calls at once, want at most 3", m)
			}
		})
	}
}

// README: "the first error cancels the calls still running and is what err
// says". Calls 0 and 1 wait for their ctx; call 2 fails once both run.
func TestReview68ReadmeFanOutFirstErrorCancels(t *testing.T) {
	for _, mode := range []string{"error", "panic", "userctx"} {
		t.Run(mode, func(t *testing.T) {
			backends := r68Backends(6)
			var bal r68Balance
			var rec r68Recorder
			running := make(chan int, 6)
			causes := make(chan error, 6)
			call := func(ctx context.Context, b string) (string, error) {
				defer bal.enter()()
				i, _ := strconv.Atoi(strings.TrimPrefix(b, "backend-"))
				rec.add("start " + b)
				if i != 2 {
					running <- i
					<-ctx.Done()
					causes <- context.Cause(ctx)
					return "", ctx.Err()
				}
				<-running
				<-running
				if mode == "panic" {
					panic(r68ErrBoom)
				}
				return "", fmt.Errorf("calling %s: %w", b, r68ErrBoom)
			}
			var ctx context.Context = context.Background()
			if mode == "userctx" {
				ctx = ctxtest.NewDoneCtx()
			}
			var answers []string
			var err error
			runcheck.Run(t, "fan-out", func() {
				answers, err = sink.Slice(ctx, stage.Map(source.Slice(backends), call,
					stage.Workers(3), stage.Ordered()))
			})
			bal.check(t, "fan-out")
			if len(answers) != 0 {
				t.Errorf("answers %q, want none", answers)
			}
			if !errors.Is(err, r68ErrBoom) {
				t.Fatalf("err = %v, want the failed call's error", err)
			}
			var se *stage.Error
			if !errors.As(err, &se) || se.Index != 2 || se.Input != "backend-2" || se.Stage != "map#1" || se.Attempts != 1 {
				t.Errorf("err %#v: want the *stage.Error of map#1, index 2, input backend-2, 1 attempt", se)
			}
			if mode == "panic" {
				var pe *stage.PanicError
				if !errors.As(err, &pe) || pe.Value != r68ErrBoom || len(pe.Stack) == 0 {
					t.Errorf("err = %v: want a *stage.PanicError with the value and a stack", err)
				}
			}
			close(causes)
			n := 0
			for c := range causes {
				n++
				var ce *stage.Error
				if !errors.As(c, &ce) || ce != se {
					t.Errorf("a cancelled call saw cause %v, want the *stage.Error the sink returned", c)
				}
			}
			if n != 2 {
				t.Errorf("%d calls saw their ctx end, want the 2 still running", n)
			}
			starts := rec.list()
			slices.Sort(starts)
			if !slices.Equal(starts, []string{"start backend-0", "start backend-1", "start backend-2"}) {
				t.Errorf("calls started: %v; want only 0, 1, 2 (no new item starts after the first error)", starts)
			}
		})
	}
}

// README, "By hand vs with sluice": the sluice column, word for word, and
// its comments: "err: *stage.Error with the stage, the item's index and
// input; a panic is a *stage.PanicError; add stage.Ordered() for input
// order. When sink.Slice returns, every goroutine has exited."
func TestReview68ReadmeByHandColumn(t *testing.T) {
	ctx := context.Background()
	lines := make([]string, 40)
	for i := range lines {
		lines[i] = strconv.Itoa(i * 3)
	}
	want := make([]int, len(lines))
	for i := range want {
		want[i] = i * 3
	}

	t.Run("ok", func(t *testing.T) {
		var nums []int
		var err error
		runcheck.Run(t, "by hand", func() {
			nums, err = sink.Slice(ctx, stage.Map(
				source.Slice(lines),
				func(_ context.Context, s string) (int, error) {
					return strconv.Atoi(s)
				},
				stage.Workers(4),
			))
		})
		if err != nil {
			t.Fatal(err)
		}
		got := slices.Clone(nums)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("nums %v", nums)
		}
	})
	t.Run("ordered", func(t *testing.T) {
		var nums []int
		var err error
		runcheck.Run(t, "by hand ordered", func() {
			nums, err = sink.Slice(ctx, stage.Map(
				source.Slice(lines),
				func(_ context.Context, s string) (int, error) {
					n, err := strconv.Atoi(s)
					if n%2 == 0 { // even ones take turns with the scheduler, to shuffle completion
						for range 50 {
							runtime.Gosched()
						}
					}
					return n, err
				},
				stage.Workers(4), stage.Ordered(),
			))
		})
		if err != nil || !slices.Equal(nums, want) {
			t.Errorf("nums %v, err %v: want input order", nums, err)
		}
	})
	t.Run("bad line", func(t *testing.T) {
		bad := slices.Clone(lines)
		bad[17] = "seventeen"
		var err error
		runcheck.Run(t, "by hand bad", func() {
			_, err = sink.Slice(ctx, stage.Map(
				source.Slice(bad),
				func(_ context.Context, s string) (int, error) {
					return strconv.Atoi(s)
				},
				stage.Workers(4),
			))
		})
		var se *stage.Error
		if !errors.As(err, &se) || se.Stage != "map#1" || se.Index != 17 || se.Input != "seventeen" {
			t.Fatalf("err = %#v, want *stage.Error map#1 index 17 input seventeen", err)
		}
		var ne *strconv.NumError
		if !errors.As(err, &ne) || ne.Num != "seventeen" {
			t.Errorf("the Atoi error is not reachable with errors.As: %v", err)
		}
		if msg := err.Error(); !strings.Contains(msg, "map#1") || !strings.Contains(msg, "17") {
			t.Errorf("message %q does not say which stage and item", msg)
		}
	})
	t.Run("panic", func(t *testing.T) {
		var err error
		runcheck.Run(t, "by hand panic", func() {
			_, err = sink.Slice(ctx, stage.Map(
				source.Slice(lines),
				func(_ context.Context, s string) (int, error) {
					if s == "30" {
						var m map[string]int
						//lint:ignore SA5000 the runtime panic is the point
						m[s] = 1 // a runtime panic
					}
					return strconv.Atoi(s)
				},
				stage.Workers(4),
			))
		})
		var se *stage.Error
		var pe *stage.PanicError
		if !errors.As(err, &se) || se.Index != 10 || !errors.As(err, &pe) {
			t.Fatalf("err = %v, want *stage.Error (index 10) wrapping *stage.PanicError", err)
		}
		var re interface{ RuntimeError() }
		if !errors.As(err, &re) {
			t.Errorf("PanicError.Unwrap does not expose the runtime.Error: %v", err)
		}
	})
}
