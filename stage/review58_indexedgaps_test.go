package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// Review 58: fresh eyes on review 57's fix (an Indexed at that panics
// leaves a gap that an Ordered stage's window closes: applier.lost).
//
// Promises attacked:
//   - Indexed: "A panic in at ends the run with a *[SourceError] once the
//     items made have gone through: those of later positions whose at was
//     called too (under [Ordered] in order, without the lost one)."
//   - engine.go's Ending invariant: "a drain: a source failed, or Until's
//     stop came, and the sources take no new item, but what they made
//     before still leaves: an index a source numbered and lost is a gap
//     that an Ordered window closes".
//   - README: "An Ordered() stage takes at most 2×workers+buffer items that
//     its consumer has not yet taken."
//
// Gates decide the order: every position in panics waits in at until the
// stage's function has been given the trigger item (so at(trigger) has
// returned: that item was made), and only then panics; several positions
// panic at once when several wait. A trigger of -1 panics at once. (at
// must not wait, the doc says; here it waits only for an item that the
// other workers can make: no Apply case fills the window's parked
// outputs with workers before the trigger is made.)

// gapSource is an Indexed source of n items whose at panics at the
// positions in panics, once release is closed. It records the positions
// whose at returned (made), and checks at each return that the items made
// and not yet taken by the sink are within bound (when bound > 0).
type gapSource struct {
	n       int
	panics  map[int]bool
	trigger int // the item whose call in the stage releases the panics; -1: none
	release chan struct{}
	once    sync.Once
	bound   int // 2×workers+buffer of the Ordered stage before the sink; 0: not checked
	// counts reports whether item i, once made, is counted against bound:
	// an item with no output gives its token back without reaching the
	// sink, so it is not counted.
	counts func(i int) bool

	mu        sync.Mutex
	made      []int
	madeN     atomic.Int64
	delivered atomic.Int64 // distinct items whose first output the sink was given
	overBound atomic.Value // string: the first breach of bound
	panicked  atomic.Int64
	// panicking is closed just before the first at panics.
	panicking chan struct{}
	ponce     sync.Once
}

func newGapSource(n, trigger, bound int, panics ...int) *gapSource {
	g := &gapSource{n: n, panics: map[int]bool{}, trigger: trigger, release: make(chan struct{}), bound: bound, panicking: make(chan struct{})}
	for _, p := range panics {
		g.panics[p] = true
	}
	if trigger < 0 {
		close(g.release)
	}
	return g
}

func (g *gapSource) stream() stage.Stream[int] {
	return stage.Indexed(g.n, func(i int) int {
		if g.panics[i] {
			<-g.release
			g.panicked.Add(1)
			g.ponce.Do(func() { close(g.panicking) })
			panic(fmt.Sprintf("review58: at %d", i))
		}
		g.mu.Lock()
		g.made = append(g.made, i)
		g.mu.Unlock()
		if g.counts != nil && !g.counts(i) {
			return i
		}
		m := g.madeN.Add(1)
		if d := g.delivered.Load(); g.bound > 0 && m > d+int64(g.bound) {
			g.overBound.CompareAndSwap(nil, fmt.Sprintf("at(%d) returned the %d-th item made while the sink had been given %d items: more than 2×workers+buffer = %d ahead", i, m, d, g.bound))
		}
		return i
	})
}

// seen is called by the stage's function with each item.
func (g *gapSource) seen(v int) {
	if v == g.trigger {
		g.once.Do(func() { close(g.release) })
	}
}

// madeSorted is the positions whose at returned, in order.
func (g *gapSource) madeSorted() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := slices.Clone(g.made)
	slices.Sort(m)
	return m
}

// outputs of item v in the tests that emit several: v*1000 + j.
func outputsOf(v int) int {
	switch {
	case v%7 == 0:
		return 0 // an item with no output
	case v%5 == 2:
		return 40 // many: more than most windows park
	default:
		return 1 + v%3
	}
}

type gapCase struct {
	name    string
	n       int
	trigger int
	panics  []int
	workers int
	buffer  int
	kind    string // "Map", "FlatMap", "Apply"
	// holdHead: item 0's call waits for the release too, so that the
	// window's head stays and the gap lands far behind it (the ring grows).
	holdHead bool
	// sinkHold: the sink's call for the first output waits for the
	// release too, holding that item's token.
	sinkHold bool
}

func (c gapCase) build(g *gapSource) stage.Stream[int] {
	opts := []stage.Option{stage.Workers(c.workers), stage.Ordered(), stage.Buffer(c.buffer)}
	in := g.stream()
	hold := func(v int) {
		g.seen(v)
		if c.holdHead && v == 0 {
			<-g.release
		}
	}
	switch c.kind {
	case "Map":
		return stage.Map(in, func(_ context.Context, v int) (int, error) {
			hold(v)
			return v * 1000, nil
		}, opts...)
	case "FlatMap":
		return stage.FlatMap(in, func(_ context.Context, v int) ([]int, error) {
			hold(v)
			out := make([]int, outputsOf(v))
			for j := range out {
				out[j] = v*1000 + j
			}
			return out, nil
		}, opts...)
	case "Apply":
		return stage.Apply(in, func(_ context.Context, v int, emit func(int) bool) error {
			hold(v)
			for j := range outputsOf(v) {
				if !emit(v*1000 + j) {
					return nil
				}
			}
			return nil
		}, opts...)
	}
	panic(c.kind)
}

// want is what the sink must be given: every output of every item made,
// in input order.
func (c gapCase) want(made []int) []int {
	var out []int
	for _, v := range made {
		k := 1
		if c.kind != "Map" {
			k = outputsOf(v)
		}
		for j := range k {
			out = append(out, v*1000+j)
		}
	}
	return out
}

func TestReview58IndexedGapsOrdered(t *testing.T) {
	cases := []gapCase{
		{name: "gapAt0/Map/w2", n: 10, trigger: 1, panics: []int{0}, workers: 2, kind: "Map"},
		{name: "gapAt0/Apply/w2", n: 10, trigger: 1, panics: []int{0}, workers: 2, kind: "Apply"},
		{name: "gapBeforeLast/Map/w2", n: 10, trigger: 9, panics: []int{8}, workers: 2, kind: "Map"},
		{name: "gapAtLast/Map/w2", n: 10, trigger: -1, panics: []int{9}, workers: 2, kind: "Map"},
		{name: "threeGaps/Map/w8", n: 40, trigger: 7, panics: []int{1, 3, 5}, workers: 8, kind: "Map"},
		{name: "threeGaps/Map/w8/buf5", n: 40, trigger: 7, panics: []int{1, 3, 5}, workers: 8, buffer: 5, kind: "Map"},
		{name: "threeGaps/FlatMap/w8", n: 40, trigger: 7, panics: []int{1, 3, 5}, workers: 8, kind: "FlatMap"},
		{name: "threeGaps/Apply/w8", n: 40, trigger: 7, panics: []int{1, 3, 5}, workers: 8, kind: "Apply"},
		{name: "adjacentGaps/Apply/w8/buf3", n: 40, trigger: 6, panics: []int{2, 3, 4, 5}, workers: 8, buffer: 3, kind: "Apply"},
		{name: "gapAt0and1/Apply/w4", n: 20, trigger: 2, panics: []int{0, 1}, workers: 4, kind: "Apply"},
		{name: "lazy/Map/w100", n: 300, trigger: 80, panics: []int{70}, workers: 100, kind: "Map"},
		{name: "lazy/Apply/w100", n: 300, trigger: 80, panics: []int{70, 75}, workers: 100, kind: "Apply"},
		{name: "grow/Map/w100/headHeld", n: 300, trigger: 80, panics: []int{70}, workers: 100, kind: "Map", holdHead: true},
		{name: "grow/Apply/w100/headHeld", n: 300, trigger: 80, panics: []int{70}, workers: 100, kind: "Apply", holdHead: true},
		// Two items and eight workers: the stage starts two goroutines
		// (config.goroutines), which hold both positions at once.
		{name: "tiny/Map/w8/n2", n: 2, trigger: 1, panics: []int{0}, workers: 8, kind: "Map"},
		{name: "tiny/Apply/w8/n2", n: 2, trigger: 1, panics: []int{0}, workers: 8, kind: "Apply"},
		{name: "sevenGaps/Map/w8", n: 40, trigger: 7, panics: []int{0, 1, 2, 3, 4, 5, 6}, workers: 8, kind: "Map"},
		{name: "sevenGaps/Apply/w8/buf1", n: 40, trigger: 7, panics: []int{0, 1, 2, 3, 4, 5, 6}, workers: 8, buffer: 1, kind: "Apply"},
		{name: "grow/Map/w4/buf500/headHeld", n: 600, trigger: 300, panics: []int{200, 250}, workers: 4, buffer: 500, kind: "Map", holdHead: true},
		{name: "grow/FlatMap/w4/buf500/headHeld", n: 600, trigger: 300, panics: []int{200, 250}, workers: 4, buffer: 500, kind: "FlatMap", holdHead: true},
		// The window is full (2×workers+buffer tokens out) when the gap
		// is made: the trigger is the last position that fits.
		{name: "fullWindow/Map/w2", n: 30, trigger: 4, panics: []int{1}, workers: 2, kind: "Map"},
		{name: "fullWindow/FlatMap/w3/buf2", n: 30, trigger: 8, panics: []int{1}, workers: 3, buffer: 2, kind: "FlatMap"},
		{name: "sinkHeld/Map/w2", n: 30, trigger: 3, panics: []int{1}, workers: 2, kind: "Map", sinkHold: true},
		{name: "sinkHeld/FlatMap/w4/buf1", n: 30, trigger: 7, panics: []int{1, 2}, workers: 4, buffer: 1, kind: "FlatMap", sinkHold: true},
		{name: "grow/FlatMap/w70/headHeld", n: 300, trigger: 69, panics: []int{66}, workers: 70, kind: "FlatMap", holdHead: true},
	}
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				g := newGapSource(c.n, c.trigger, 2*c.workers+c.buffer, c.panics...)
				g.counts = func(i int) bool { return c.kind == "Map" || outputsOf(i) > 0 }
				s := c.build(g)
				var got []int
				var err error
				runcheck.Run(t, c.name, func() {
					err = stage.Run(context.Background(), s, func(_ context.Context, v int, ferr error) error {
						if ferr != nil {
							return ferr
						}
						if v%1000 == 0 || c.kind == "Map" {
							g.delivered.Add(1)
						}
						if c.sinkHold && len(got) == 0 {
							<-g.release
						}
						got = append(got, v)
						return nil
					})
				})
				var se *stage.SourceError
				if !errors.As(err, &se) {
					t.Errorf("err = %v (%T), want a *stage.SourceError", err, err)
				}
				if p := g.panicked.Load(); p == 0 {
					t.Errorf("no at panicked: the scenario did not happen")
				}
				made := g.madeSorted()
				if want := c.want(made); !slices.Equal(got, want) {
					t.Errorf("made (at returned) %v\ndelivered %v\nwant      %v", made, got, want)
				}
				if c.trigger >= 0 && !slices.Contains(made, c.trigger) {
					t.Errorf("the trigger %d was not made", c.trigger)
				}
				if b := g.overBound.Load(); b != nil {
					t.Errorf("read-ahead: %s", b)
				}
			})
		}
	})
}
