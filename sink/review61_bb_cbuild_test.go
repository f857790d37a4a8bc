package sink_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// stage.Merge: "Merge panics if ... two inputs share a stream (the same
// stream given twice, or two stages built on one stream): each stream feeds
// one consumer." A Tee is a stage built on its input: two Tees of one stream,
// or a Tee and the stream itself, merged, share it.
func TestReview61BBCBuildTeeSharing(t *testing.T) {
	cases := map[string]func(){
		"two-tees-of-one": func() {
			s := source.Slice([]int{1, 2})
			stage.Merge(stage.Tee(s, 1)[0], stage.Tee(s, 1)[0])
		},
		"tee-and-its-input": func() {
			s := source.Slice([]int{1, 2})
			b := stage.Tee(s, 2)
			stage.Merge(b[0], b[1], s)
		},
		"two-tees-all-branches": func() {
			s := source.Slice([]int{1, 2})
			x, y := stage.Tee(s, 2), stage.Tee(s, 2)
			stage.Merge(x[0], x[1], y[0], y[1])
		},
		"tee-of-tee-and-outer-branch-twice": func() {
			b := stage.Tee(source.Slice([]int{1, 2}), 2)
			c := stage.Tee(b[0], 2)
			stage.Merge(c[0], c[1], b[1], b[0])
		},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			p := r61Panics(f)
			if p == nil {
				// if it is not caught when built, say what a run does
				var out string
				runcheck.NoHang(t, name, func() {
					s := source.Slice([]int{1, 2})
					var m stage.Stream[int]
					switch name {
					case "two-tees-of-one":
						m = stage.Merge(stage.Tee(s, 1)[0], stage.Tee(s, 1)[0])
					case "tee-and-its-input":
						b := stage.Tee(s, 2)
						m = stage.Merge(b[0], b[1], s)
					case "two-tees-all-branches":
						x, y := stage.Tee(s, 2), stage.Tee(s, 2)
						m = stage.Merge(x[0], x[1], y[0], y[1])
					case "tee-of-tee-and-outer-branch-twice":
						b := stage.Tee(s, 2)
						c := stage.Tee(b[0], 2)
						m = stage.Merge(c[0], c[1], b[1], b[0])
					}
					func() {
						defer func() {
							if r := recover(); r != nil {
								out = fmt.Sprintf("the run panicked: %v", r)
							}
						}()
						got, err := sink.Slice(context.Background(), m)
						out = fmt.Sprintf("the run returned %v, %v", got, err)
					}()
				})
				t.Fatalf("no panic when the pipeline was built; %s", out)
			}
			if !strings.HasPrefix(fmt.Sprint(p), "sluice:") {
				t.Fatalf("panic %q: no sluice: prefix", p)
			}
		})
	}
}
