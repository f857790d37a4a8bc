package stage_test

// The per-stage options combined: a matrix of Workers, Ordered, KeyBy,
// Buffer, Retry, RateLimit, Timeout and the policies over one function
// whose outcome depends only on the item and the attempt.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Item v succeeds at its (v%4+1)th attempt. With Retry(a), the items with
// v%4+1 <= a succeed, the others fail after a attempts. The results must
// be exactly that, whatever the options: forwarded errors in the failed
// items' places under Ordered, h seeing each failed item once under Handle
// and Budget, per-key order under KeyBy, and the Batch→Unbatch after the
// stage keeping the order.
func TestReview67OptionMatrix(t *testing.T) {
	const n = 24
	type cfg struct {
		workers  int
		ordered  bool
		keyed    bool
		buffer   int
		attempts int
		policy   string
		limits   bool
		batch    bool
	}
	var cfgs []cfg
	for _, w := range []int{1, 3, -1} {
		for _, o := range []bool{false, true} {
			for _, k := range []bool{false, true} {
				for _, b := range []int{0, 2} {
					for _, a := range []int{1, 3} {
						for _, p := range []string{"forward", "handle", "budget"} {
							for _, l := range []bool{false, true} {
								cfgs = append(cfgs, cfg{w, o, k, b, a, p, l, (w+b+a)%2 == 0})
							}
						}
					}
				}
			}
		}
	}
	for _, c := range cfgs {
		name := fmt.Sprintf("%+v", c)
		var tries r67Tries
		var mu sync.Mutex
		busy := map[int]bool{}
		var handled []int
		h := func(_ context.Context, e *stage.Error) error {
			if e.Attempts != c.attempts || !errors.Is(e, r67Err) {
				t.Errorf("%s: h saw %+v", name, e)
			}
			handled = append(handled, e.Input.(int)) // calls never overlap
			return nil
		}
		opts := []stage.Option{stage.Workers(c.workers), stage.Buffer(c.buffer), stage.Retry(c.attempts, 0)}
		if c.ordered {
			opts = append(opts, stage.Ordered())
		}
		if c.keyed {
			opts = append(opts, stage.KeyBy(func(v int) int { return v % 3 }))
		}
		switch c.policy {
		case "forward":
			opts = append(opts, stage.OnError(stage.Forward))
		case "handle":
			opts = append(opts, stage.OnError(stage.Handle(h)))
		case "budget":
			opts = append(opts, stage.OnError(stage.Budget(n, h)))
		}
		if c.limits {
			opts = append(opts, stage.RateLimit(math.Inf(1), 1), stage.Timeout(time.Hour))
		}
		s := stage.Map(source.Slice(r67Ints(n)), func(ctx context.Context, v int) (int, error) {
			if c.keyed {
				mu.Lock()
				if busy[v%3] {
					t.Errorf("%s: two items of key %d at once", name, v%3)
				}
				busy[v%3] = true
				mu.Unlock()
				defer func() {
					mu.Lock()
					busy[v%3] = false
					mu.Unlock()
				}()
			}
			if ctx.Err() != nil {
				t.Errorf("%s: item %d called with a done ctx", name, v)
			}
			if tries.add(v) < v%4+1 {
				return 0, r67Err
			}
			return 10 * v, nil
		}, opts...)
		if c.batch {
			s = stage.Unbatch(stage.Batch(s, 5, 0))
		}
		var seq []string
		var err error
		r67Guard(t, name, func() {
			err = stage.Run(context.Background(), s, func(_ context.Context, v int, e error) error {
				if e != nil {
					var se *stage.Error
					if !errors.As(e, &se) || se.Attempts != c.attempts {
						t.Errorf("%s: forwarded %v", name, e)
						return nil
					}
					seq = append(seq, fmt.Sprintf("e%d", se.Input))
				} else {
					seq = append(seq, fmt.Sprint(v/10))
				}
				return nil
			})
		})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		var want []string
		var wantH []int
		for v := range n {
			switch {
			case v%4+1 <= c.attempts:
				want = append(want, fmt.Sprint(v))
			case c.policy == "forward":
				want = append(want, fmt.Sprintf("e%d", v))
			default:
				wantH = append(wantH, v)
			}
		}
		if c.ordered || c.workers == 1 {
			if fmt.Sprint(seq) != fmt.Sprint(want) {
				t.Errorf("%s: got %v; want %v", name, seq, want)
			}
		} else if !r67SameStrings(seq, want) {
			t.Errorf("%s: got %v; want %v in any order", name, seq, want)
		}
		if !r67SameInts(handled, wantH) {
			t.Errorf("%s: h saw %v; want %v", name, handled, wantH)
		}
		for v := range n {
			want := min(v%4+1, c.attempts)
			if got := tries.get(v); got != want {
				t.Errorf("%s: item %d called %d times; want %d", name, v, got, want)
			}
		}
	}
}

// r67SameStrings reports whether a and b hold the same strings as
// multisets.
func r67SameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		if m[s]--; m[s] < 0 {
			return false
		}
	}
	return true
}
