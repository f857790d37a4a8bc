package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func r61Panics(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// "Within one pipeline a stream feeds one consumer. Using a stream twice
// (Merge of a stream with itself, or with a stage built on it) panics when
// the pipeline is built." Until: "Until panics ... if in reads some branches
// of a Tee but not all."
func TestReview61BBBuildPanics(t *testing.T) {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	stop := context.Background()
	cases := map[string]func(){
		"merge-until-and-map-of-one": func() {
			s := source.Slice([]int{1})
			stage.Merge(stage.Until(s, stop), stage.Map(s, id))
		},
		"merge-batchunbatch-and-self": func() {
			s := source.Slice([]int{1})
			stage.Merge(s, stage.Unbatch(stage.Batch(s, 2, 0)))
		},
		"merge-deep-and-self": func() {
			s := source.Slice([]int{1})
			m := stage.Map(stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }), id)
			stage.Merge(stage.Map(m, id), s)
		},
		"merge-two-of-one-branch": func() {
			b := stage.Tee(source.Slice([]int{1}), 2)
			stage.Merge(stage.Map(b[0], id), stage.Map(b[0], id), b[1])
		},
		"merge-of-merge-sharing": func() {
			s := source.Slice([]int{1})
			x := source.Slice([]int{2})
			stage.Merge(stage.Merge(s, x), stage.Merge(stage.Map(x, id)))
		},
		"until-one-branch": func() {
			b := stage.Tee(source.Slice([]int{1}), 2)
			stage.Until(stage.Map(b[0], id), stop)
		},
		"until-two-of-three-branches": func() {
			b := stage.Tee(source.Slice([]int{1}), 3)
			stage.Until(stage.Merge(b[0], b[2]), stop)
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			if p := r61Panics(f); p == nil {
				t.Fatal("no panic when the pipeline was built")
			}
		})
	}
	// and no panic where the doc allows it
	ok := map[string]func(){
		"until-all-branches": func() {
			b := stage.Tee(source.Slice([]int{1}), 2)
			stage.Until(stage.Merge(stage.Map(b[0], id), b[1]), stop)
		},
		"merge-none": func() { stage.Merge[int]() },
	}
	for name, f := range ok {
		t.Run(name, func(t *testing.T) {
			if p := r61Panics(f); p != nil {
				t.Fatalf("panic %v", p)
			}
		})
	}
}

// Tee: "A run that does not consume every branch fails before any goroutine
// of it starts and before any item is taken, with an error that wraps
// ErrUnconsumedBranch and names the missing branch". Source: "stop is called
// once every goroutine of the run has exited, whether the run succeeded,
// failed or stopped early" (so: once per open).
func TestReview61BBUnconsumedBranchRun(t *testing.T) {
	var opens, stops, nexts atomic.Int32
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		opens.Add(1)
		return func(context.Context) (int, error) {
				nexts.Add(1)
				return 0, io.EOF
			}, func() {
				stops.Add(1)
			}
	})
	b := stage.Tee(src, 3)
	s := stage.Merge(b[0], stage.Map(b[2], func(_ context.Context, v int) (int, error) { return v, nil }))
	for _, sk := range []string{"slice", "first", "all", "foreach", "chan"} {
		t.Run(sk, func(t *testing.T) {
			var err error
			runcheck.Run(t, sk, func() {
				switch sk {
				case "slice":
					_, err = sink.Slice(context.Background(), s)
				case "first":
					_, _, err = sink.First(context.Background(), s)
				case "all":
					for _, e := range sink.All(context.Background(), s) {
						err = e
					}
				case "foreach":
					err = sink.ForEach(context.Background(), s, func(context.Context, int) error { return nil })
				case "chan":
					err = sink.Chan(context.Background(), s, make(chan int, 1))
				}
			})
			if !errors.Is(err, stage.ErrUnconsumedBranch) || !strings.Contains(err.Error(), "1") {
				t.Fatalf("err = %v; want ErrUnconsumedBranch naming branch 1", err)
			}
			if nexts.Load() != 0 || opens.Load() != stops.Load() {
				t.Fatalf("next called %d times; open %d, stop %d", nexts.Load(), opens.Load(), stops.Load())
			}
		})
	}
}

// sink.First: "over a bare source, exactly one item is taken". source.Chan:
// "A value is received only when a stage is ready to work on it, so a run
// that stops early (an error, sink.First, a break) leaves the rest in ch".
func TestReview61BBFirstBareTakesOne(t *testing.T) {
	for _, kind := range []string{"chan", "func", "seq", "ack", "indexed", "lines"} {
		t.Run(kind, func(t *testing.T) {
			var taken atomic.Int32
			var s stage.Stream[string]
			ch := make(chan string, 5)
			for i := range 5 {
				ch <- fmt.Sprint(i)
			}
			switch kind {
			case "chan":
				s = source.Chan(ch)
			case "func":
				s = source.Func(func(context.Context) (string, error) { return fmt.Sprint(taken.Add(1) - 1), nil })
			case "seq":
				s = source.Seq(func(yield func(string) bool) {
					for i := 0; ; i++ {
						taken.Add(1)
						if !yield(fmt.Sprint(i)) {
							return
						}
					}
				})
			case "ack":
				s = stage.AckSource(func(context.Context) (func(context.Context) (string, stage.Ack, error), func()) {
					return func(context.Context) (string, stage.Ack, error) {
						return fmt.Sprint(taken.Add(1) - 1), nil, nil
					}, nil
				})
			case "indexed":
				s = stage.Indexed(5, func(i int) string { taken.Add(1); return fmt.Sprint(i) })
			case "lines":
				s = source.Lines(strings.NewReader("0\n1\n2\n"))
				taken.Add(1)
			}
			var v string
			var ok bool
			var err error
			runcheck.Run(t, "first", func() { v, ok, err = sink.First(context.Background(), s) })
			if v != "0" || !ok || err != nil {
				t.Fatalf("First = %q %v %v", v, ok, err)
			}
			if kind == "chan" {
				if len(ch) != 4 {
					t.Fatalf("channel holds %d values after First, want 4", len(ch))
				}
			} else if taken.Load() != 1 {
				t.Fatalf("%d items taken, want exactly 1", taken.Load())
			}
		})
	}
}
