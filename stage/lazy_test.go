package stage_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestBuildingRunsNoUserCode(t *testing.T) {
	var calls atomic.Int64
	count := func(_ context.Context, x int) (int, error) { calls.Add(1); return x, nil }
	src := source.Func(func(context.Context) (int, error) { calls.Add(1); return 0, nil })
	s := stage.Map(src, count)
	s = stage.Filter(s, func(context.Context, int) (bool, error) { calls.Add(1); return true, nil })
	_ = stage.Merge(s, stage.Map(source.Slice([]int{1}), count))
	_ = stage.Concurrent(source.Func(func(context.Context) (func(context.Context) (int, error), error) {
		calls.Add(1)
		return nil, nil
	}))
	if got := calls.Load(); got != 0 {
		t.Fatalf("building called user code %d times, want 0", got)
	}
}

func TestEachRunStartsAnew(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			s := stage.Map(source.Slice(ints(50)), double, m.opts()...)
			for run := range 3 {
				got, err := sink.Slice(context.Background(), s)
				if err != nil {
					t.Fatalf("run %d: err = %v", run, err)
				}
				slices.Sort(got)
				want := make([]int, 50)
				for i := range want {
					want[i] = 2 * i
				}
				if !slices.Equal(got, want) {
					t.Fatalf("run %d: got %v, want %v", run, got, want)
				}
			}
		})
	}
}

func TestStreamUsedTwicePanics(t *testing.T) {
	src := source.Slice(ints(3))
	a := stage.Map(src, double)
	b := stage.Filter(src, func(context.Context, int) (bool, error) { return true, nil })
	cases := map[string]func(){
		"same stream twice":          func() { stage.Merge(src, src) },
		"two stages on one stream":   func() { stage.Merge(a, b) },
		"stream and a stage on it":   func() { stage.Merge(src, a) },
		"nested merge shares source": func() { stage.Merge(stage.Merge(a, source.Slice(ints(1))), b) },
	}
	for name, build := range cases {
		t.Run(name, func(t *testing.T) {
			msg := panicMessage(build)
			if !strings.Contains(msg, "stage.Merge") || !strings.Contains(msg, "share") {
				t.Fatalf("panic = %q, want a message naming stage.Merge and the shared stream", msg)
			}
		})
	}
	// Disjoint inputs are fine.
	n, err := sink.Count(context.Background(), stage.Merge(source.Slice(ints(2)), source.Slice(ints(3))))
	if n != 5 || err != nil {
		t.Fatalf("Count(Merge) = %d, %v; want 5, nil", n, err)
	}
}

// panicMessage returns what f panics with, or "" if it does not panic.
func panicMessage(f func()) (msg string) {
	defer func() {
		if p := recover(); p != nil {
			msg, _ = p.(string)
			if msg == "" {
				msg = "non-string panic"
			}
		}
	}()
	f()
	return ""
}
