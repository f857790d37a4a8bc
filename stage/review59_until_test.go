package stage_test

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r59LateSource is a Source of 0..n-1 that counts the calls of next made
// once stop is done (late). At most one call can be in progress when stop
// becomes done (calls never overlap), so a source that Until drains has at
// most one late call.
type r59LateSource struct {
	n    int
	stop context.Context
	mu   sync.Mutex
	late int
}

func (s *r59LateSource) stream() stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			s.mu.Lock()
			if s.stop.Err() != nil {
				s.late++
			}
			s.mu.Unlock()
			if i == s.n {
				return 0, io.EOF
			}
			i++
			return i - 1, nil
		}, nil
	})
}

func (s *r59LateSource) lateCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.late
}

// TestReview59UntilOnATeeBranch: Until built on one branch of a Tee (the
// branches share one source, upstream of the Until). A review found that
// whether the source then saw the stop depended on which branch the run
// opened first (Merge opens its inputs in order, and the Tee's source
// joined the scope of whichever branch was opened first): with the Until
// branch opened second, the source was asked 197 more times after the stop
// (10 of 10), against "Once stop is done, no source upstream is asked for
// another item". Until's doc said not to build it ("Put Until before a
// Tee, not on one of its branches"); now Until refuses it when it is built
// ("Until panics if ... in reads some branches of a Tee but not all"), and
// an Until over a stream that reads every branch drains the shared source.
func TestReview59UntilOnATeeBranch(t *testing.T) {
	stop := context.Background()
	for _, shape := range []struct {
		name  string
		build func(b []stage.Stream[int]) stage.Stream[int]
	}{
		{"until-branch-opened-first", func(b []stage.Stream[int]) stage.Stream[int] { return stage.Merge(stage.Until(b[1], stop), b[0]) }},
		{"until-branch-opened-second", func(b []stage.Stream[int]) stage.Stream[int] { return stage.Merge(b[0], stage.Until(b[1], stop)) }},
		{"two-of-three", func(b []stage.Stream[int]) stage.Stream[int] { return stage.Until(stage.Merge(b[0], b[1]), stop) }},
		{"a-tee-above-a-whole-tee", func(b []stage.Stream[int]) stage.Stream[int] {
			c := stage.Tee(b[0], 2)
			return stage.Until(stage.Merge(c[0], c[1]), stop) // all of c, one of b
		}},
	} {
		t.Run(shape.name, func(t *testing.T) {
			b := stage.Tee(source.Slice([]int{1, 2, 3}), 3)
			var rec any
			func() {
				defer func() { rec = recover() }()
				shape.build(b)
			}()
			if msg, ok := rec.(string); !ok || !strings.HasPrefix(msg, "sluice: stage.Until:") {
				t.Errorf("building Until over part of a Tee's branches: recovered %v, want a panic prefixed \"sluice: stage.Until:\"", rec)
			}
		})
	}
	t.Run("over-every-branch", func(t *testing.T) {
		runcheck.InChildTest(t, func(t *testing.T) {
			const n = 200
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			src := &r59LateSource{n: n, stop: stop}
			b := stage.Tee(src.stream(), 2)
			merged := stage.Until(stage.Merge(b[0], b[1]), stop)
			seen := 0
			var err error
			runcheck.Run(t, "over-every-branch", func() {
				err = stage.Run(context.Background(), merged, func(_ context.Context, _ int, ferr error) error {
					if seen++; seen == 5 {
						drain()
					}
					return ferr
				})
			})
			if err != nil {
				t.Errorf("err = %v, want nil", err)
			}
			if late := src.lateCalls(); late > 1 {
				t.Errorf("the source upstream of the Until was asked for %d items once stop was done (the sink saw %d items of a %d-item source, both branches)", late, seen, n)
			}
			if seen >= 2*n {
				t.Errorf("the sink saw all %d items of both branches: the drain stopped nothing", seen)
			}
		})
	})
}
