package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const rvWatchdog = 20 * time.Second

func rvWait(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(rvWatchdog):
		return false
	}
}

func rvInts(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

func rvDesc(v int, ok bool, err error) string {
	if err == nil {
		return fmt.Sprintf("(%d, %v, nil)", v, ok)
	}
	kind := "error"
	var se *stage.SourceError
	var ie *stage.Error
	switch {
	case errors.As(err, &se):
		kind = "SourceError"
	case errors.Is(err, context.Canceled):
		kind = "Canceled"
	case errors.As(err, &ie):
		kind = "Error@" + fmt.Sprint(ie.Index)
	}
	return fmt.Sprintf("(%d, %v, %s)", v, ok, kind)
}

// TestContractFirstIsAllFirstPair: First is always the first pair of All+break,
// in deterministic scenarios, run many times each.
func TestContractFirstIsAllFirstPair(t *testing.T) {
	errSrc := errors.New("source broke")
	errX := errors.New("x")
	failingAfter := func(n int) stage.Stream[int] {
		return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			i := 0
			return func(context.Context) (int, error) {
				if i == n {
					return 0, errSrc
				}
				i++
				return i, nil
			}, nil
		})
	}
	fails := func(bad int) func(context.Context, int) (int, error) {
		return func(_ context.Context, x int) (int, error) {
			if x == bad {
				return 0, errX
			}
			return x, nil
		}
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	type scen struct {
		name string
		ctx  context.Context
		s    func() stage.Stream[int]
	}
	bg := context.Background()
	scens := []scen{
		{"empty", bg, func() stage.Stream[int] { return source.Slice[int](nil) }},
		{"source-fails-at-once", bg, func() stage.Stream[int] { return failingAfter(0) }},
		{"source-one-then-fails", bg, func() stage.Stream[int] { return failingAfter(1) }},
		{"map4-over-one-then-fails", bg, func() stage.Stream[int] { return stage.Map(failingAfter(1), fails(-1), stage.Workers(4)) }},
		{"map4-ordered-over-two-then-fails", bg, func() stage.Stream[int] {
			return stage.Map(failingAfter(2), fails(-1), stage.Workers(4), stage.Ordered())
		}},
		{"forward-first", bg, func() stage.Stream[int] {
			return stage.Map(source.Slice(rvInts(5)), fails(0), stage.Workers(1), stage.OnError(stage.Forward))
		}},
		{"failfast-first", bg, func() stage.Stream[int] { return stage.Map(source.Slice(rvInts(5)), fails(0), stage.Workers(1)) }},
		{"cancelled-before", cancelled, func() stage.Stream[int] { return stage.Map(source.Slice(rvInts(5)), fails(-1)) }},
		{"tee-unconsumed", bg, func() stage.Stream[int] { return stage.Tee(source.Slice(rvInts(5)), 2)[0] }},
		{"item0-finishes-after-failfast-at-1", bg, func() stage.Stream[int] {
			return stage.Map(source.Slice(rvInts(3)), func(ctx context.Context, x int) (int, error) {
				switch x {
				case 0:
					<-ctx.Done()
					return 100, nil // ignores the cancellation
				case 1:
					return 0, errX
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, stage.Workers(3))
		}},
		{"filter-forward-first", bg, func() stage.Stream[int] {
			return stage.Filter(source.Slice(rvInts(5)), func(_ context.Context, x int) (bool, error) {
				if x == 0 {
					return false, errX
				}
				return true, nil
			}, stage.Workers(1), stage.OnError(stage.Forward))
		}},
	}
	for _, sc := range scens {
		t.Run(sc.name, func(t *testing.T) {
			outcomes := map[string]int{}
			for range 30 {
				var fv int
				var fok bool
				var ferr error
				hangGuard(t, func() { fv, fok, ferr = sink.First(sc.ctx, sc.s()) })
				first := rvDesc(fv, fok, ferr)
				all := "(0, false, nil)"
				hangGuard(t, func() {
					for v, err := range sink.All(sc.ctx, sc.s()) {
						all = rvDesc(v, err == nil, err)
						break
					}
				})
				outcomes["First="+first+" All="+all]++
				if first != all {
					t.Errorf("First %s, first pair of All %s", first, all)
				}
			}
			if len(outcomes) > 1 {
				t.Errorf("outcome depends on timing: %v", outcomes)
			}
			t.Logf("%v", outcomes)
		})
	}
}

// TestContractFirstTakesExactlyOne: over a bare source, First takes exactly one
// item (a Func call that returned an item, a channel receive).
func TestContractFirstTakesExactlyOne(t *testing.T) {
	for range 20 {
		var taken atomic.Int32
		src := source.Func(func(ctx context.Context) (int, error) { return int(taken.Add(1)), nil })
		var v int
		hangGuard(t, func() { v, _, _ = sink.First(context.Background(), src) })
		if taken.Load() != 1 || v != 1 {
			t.Fatalf("First over source.Func: %d items taken, v=%d", taken.Load(), v)
		}
		ch := make(chan int, 10)
		for i := range 10 {
			ch <- i
		}
		hangGuard(t, func() { v, _, _ = sink.First(context.Background(), source.Chan(ch)) })
		if len(ch) != 9 || v != 0 {
			t.Fatalf("First over source.Chan: %d values left, v=%d", len(ch), v)
		}
		var seqTaken int
		hangGuard(t, func() {
			v, _, _ = sink.First(context.Background(), source.Seq(func(yield func(int) bool) {
				for i := 0; ; i++ {
					seqTaken++
					if !yield(i) {
						return
					}
				}
			}))
		})
		if seqTaken != 1 {
			t.Fatalf("First over source.Seq: %d steps", seqTaken)
		}
	}
}

// TestContractAllBreakDropsLaterError: the run fails (FailFast at item 1)
// while the loop body holds item 0; the loop then breaks: no error pair is
// yielded and nothing is reported.
func TestContractAllBreakDropsLaterError(t *testing.T) {
	for range 20 {
		inBody := make(chan struct{})
		cancelled := make(chan struct{})
		started2 := make(chan struct{})
		s := stage.Map(source.Slice(rvInts(3)), func(ctx context.Context, x int) (int, error) {
			switch x {
			case 0:
				return 0, nil
			case 1:
				rvWait(inBody)
				rvWait(started2)
				return 0, errors.New("item 1 fails")
			}
			close(started2)
			<-ctx.Done()
			close(cancelled)
			return 0, ctx.Err()
		}, stage.Workers(3), stage.Buffer(1))
		var pairs []string
		hangGuard(t, func() {
			for v, err := range sink.All(context.Background(), s) {
				pairs = append(pairs, fmt.Sprint(v, err))
				close(inBody)
				rvWait(cancelled)
				break
			}
		})
		if !slices.Equal(pairs, []string{"0 <nil>"}) {
			t.Fatalf("pairs %v", pairs)
		}
	}
}

// TestContractAllPanicInBody: a panic in the loop body stops the run (user
// functions see their ctx end and have returned) and then continues.
func TestContractAllPanicInBody(t *testing.T) {
	var running atomic.Int32
	var stopped atomic.Int32
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) { i++; return i, nil }, func() { stopped.Add(1) }
	})
	s := stage.Map(src, func(ctx context.Context, x int) (int, error) {
		running.Add(1)
		defer running.Add(-1)
		if x > 1 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return x, nil
	}, stage.Workers(4))
	var p any
	hangGuard(t, func() {
		defer func() { p = recover() }()
		for range sink.All(context.Background(), s) {
			panic("body")
		}
	})
	if p != "body" || running.Load() != 0 || stopped.Load() != 1 {
		t.Fatalf("recovered %v, %d calls running, stop called %d times", p, running.Load(), stopped.Load())
	}
}

var rvSentinels = func() []error {
	var es []error
	for i := range 20 {
		es = append(es, fmt.Errorf("sentinel %d", i))
	}
	return es
}()

func rvForwarding(n int) stage.Stream[int] {
	return stage.Map(source.Slice(rvInts(n)), func(_ context.Context, x int) (int, error) {
		if x%2 == 1 {
			return 0, rvSentinels[x/2]
		}
		return x, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
}

// TestContractForwardedError: Count, Sample of SampleSize in arrival order,
// errors.Is/As see through to each kept error; every sink but All and First
// returns it.
func TestContractForwardedError(t *testing.T) {
	checkFE := func(t *testing.T, name string, err error, count int) {
		t.Helper()
		var fe *sink.ForwardedError
		if !errors.As(err, &fe) {
			t.Fatalf("%s: %v is no *ForwardedError", name, err)
		}
		if fe.Count != count || len(fe.Sample) != min(count, sink.SampleSize) {
			t.Errorf("%s: Count %d Sample %d, want %d, %d", name, fe.Count, len(fe.Sample), count, min(count, sink.SampleSize))
		}
		for i, e := range fe.Sample {
			if !errors.Is(e, rvSentinels[i]) {
				t.Errorf("%s: Sample[%d] = %v, want sentinel %d (arrival order)", name, i, e, i)
			}
		}
		for i := range count {
			kept := i < sink.SampleSize
			if errors.Is(err, rvSentinels[i]) != kept {
				t.Errorf("%s: errors.Is(err, sentinel %d) = %v, kept=%v", name, i, !kept, kept)
			}
		}
		var ie *stage.Error
		if !errors.As(err, &ie) || ie.Index != 1 {
			t.Errorf("%s: errors.As *stage.Error: %v", name, ie)
		}
		if !strings.Contains(fe.Error(), fmt.Sprint(count)) || !strings.Contains(fe.Error(), "sentinel 0") {
			t.Errorf("%s: Error() = %q: should report the count and the first error", name, fe.Error())
		}
	}
	for _, count := range []int{1, sink.SampleSize, 20} {
		n := 2 * count
		ctx := context.Background()
		var err error
		var nv int
		hangGuard(t, func() { nv, err = sink.Count(ctx, rvForwarding(n)) })
		checkFE(t, "Count", err, count)
		if nv != count {
			t.Errorf("Count = %d, want %d", nv, count)
		}
		var got []int
		hangGuard(t, func() { got, err = sink.Slice(ctx, rvForwarding(n)) })
		checkFE(t, "Slice", err, count)
		if len(got) != count {
			t.Errorf("Slice: %d values", len(got))
		}
		var calls int
		hangGuard(t, func() {
			err = sink.ForEach(ctx, rvForwarding(n), func(context.Context, int) error { calls++; return nil })
		})
		checkFE(t, "ForEach", err, count)
		var acc int
		hangGuard(t, func() { acc, err = sink.Reduce(ctx, rvForwarding(n), 0, func(a, v int) int { return a + 1 }) })
		checkFE(t, "Reduce", err, count)
		if acc != count || calls != count {
			t.Errorf("Reduce acc %d, ForEach calls %d", acc, calls)
		}
		out := make(chan int, n)
		hangGuard(t, func() { err = sink.Chan(ctx, rvForwarding(n), out) })
		checkFE(t, "Chan", err, count)
		if len(out) != count {
			t.Errorf("Chan sent %d", len(out))
		}
	}
	// No forwarded errors: nil, not an empty ForwardedError.
	if _, err := sink.Count(context.Background(), source.Slice(rvInts(3))); err != nil {
		t.Errorf("Count without forwarded errors: %v", err)
	}
}

// TestContractForwardedJoinedWithFailure: forwarded errors, then a FailFast
// failure: the sink returns the values before it, and both errors are found.
func TestContractForwardedJoinedWithFailure(t *testing.T) {
	errEnd := errors.New("the end")
	s := stage.Map(rvForwarding(10), func(_ context.Context, x int) (int, error) {
		if x == 8 {
			return 0, errEnd
		}
		return x, nil
	}, stage.Workers(1))
	// Items 0..7 come in order (one worker each: 0, error 1, 2, error 3,
	// ...). The sink returns what it received before item 8 ended the run:
	// a prefix of them. How long a prefix depends on how far the sink got
	// when the run was cancelled (outputs still queued then are dropped),
	// which no event of the test decides.
	prefix := func(values, errs int) bool {
		return errs == values || errs == values-1 // 0, e1, 2, e3, ...: errors trail values by at most one
	}
	var got []int
	var err error
	hangGuard(t, func() { got, err = sink.Slice(context.Background(), s) })
	var fe *sink.ForwardedError
	count := 0
	if errors.As(err, &fe) {
		count = fe.Count
	}
	if !errors.Is(err, errEnd) || len(got) > 4 || !slices.Equal(got, []int{0, 2, 4, 6}[:min(len(got), 4)]) || !prefix(len(got), count) {
		t.Errorf("Slice: %v, %v (forwarded %d): want the end, joined with the forwarded errors received, after a prefix of 0, 2, 4, 6", got, err, count)
	}
	var acc int
	hangGuard(t, func() { acc, err = sink.Reduce(context.Background(), s, 0, func(a, v int) int { return a + v }) })
	if !errors.Is(err, errEnd) || !slices.Contains([]int{0, 2, 6, 12}, acc) {
		t.Errorf("Reduce: %d, %v: want the end after the sum of a prefix of 0, 2, 4, 6", acc, err)
	}
}

// TestContractChanStopsWaitingOnFailure: Chan blocked on an out nobody reads
// returns the error that ended the run.
func TestContractChanStopsWaitingOnFailure(t *testing.T) {
	errX := errors.New("x")
	blocked := make(chan struct{})
	s := stage.Map(source.Slice(rvInts(3)), func(ctx context.Context, x int) (int, error) {
		if x == 1 {
			// fails once Chan holds item 0 for an out nobody reads; no event
			// says so, so it fails after item 0 has been produced.
			<-blocked
			return 0, errX
		}
		if x == 0 {
			close(blocked)
		}
		return x, nil
	}, stage.Workers(2))
	out := make(chan int)
	var err error
	hangGuard(t, func() { err = sink.Chan(context.Background(), s, out) })
	if !errors.Is(err, errX) {
		t.Fatalf("Chan = %v", err)
	}
}

// TestContractSinkCallbackErrorNames: the *stage.Error of a failing ForEach
// callback names stage "foreach"; a panic in Reduce's f names "reduce".
func TestContractSinkCallbackErrorNames(t *testing.T) {
	errF := errors.New("f")
	err := sink.ForEach(context.Background(), source.Slice(rvInts(3)), func(_ context.Context, x int) error {
		if x == 1 {
			return errF
		}
		return nil
	})
	var ie *stage.Error
	if !errors.As(err, &ie) || ie.Stage != "foreach" || !errors.Is(err, errF) || ie.Input != 1 {
		t.Errorf("ForEach error %v (%+v)", err, ie)
	}
	err = sink.ForEach(context.Background(), source.Slice(rvInts(3)), func(_ context.Context, x int) error { panic("p") })
	var pe *stage.PanicError
	if !errors.As(err, &ie) || ie.Stage != "foreach" || !errors.As(err, &pe) {
		t.Errorf("ForEach panic %v", err)
	}
	_, err = sink.Reduce(context.Background(), source.Slice(rvInts(3)), 0, func(a, v int) int { panic("r") })
	if !errors.As(err, &ie) || ie.Stage != "reduce" || !errors.As(err, &pe) {
		t.Errorf("Reduce panic %v", err)
	}
}

// TestContractAllRangesAnew: each range over All's iterator runs s anew.
func TestContractAllRangesAnew(t *testing.T) {
	var opens atomic.Int32
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		opens.Add(1)
		i := 0
		return func(context.Context) (int, error) {
			if i == 3 {
				return 0, io.EOF
			}
			i++
			return i, nil
		}, nil
	})
	it := sink.All(context.Background(), src)
	for range 3 {
		var got []int
		for v, err := range it {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
		}
		if !slices.Equal(got, []int{1, 2, 3}) {
			t.Fatalf("got %v", got)
		}
	}
	if opens.Load() != 3 {
		t.Fatalf("opens %d", opens.Load())
	}
}
