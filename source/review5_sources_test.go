package source_test

// Adversarial tests written from the documentation only (README.md, the doc
// comments of package source, stage and sink, and the example_test.go files).
// Every test names the promise it attacks. Events are ordered with channels;
// durations appear only as hang watchdogs. Scenarios that could crash the
// process (panics in user code) run in a child process.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

var (
	errReview5        = errors.New("review5: source failure")
	errReview5Map     = errors.New("review5: map failure")
	errReview5Cb      = errors.New("review5: callback failure")
	errReview5Read    = errors.New("review5: read failure")
	errReview5Endless = errors.New("review5: endless reader gave up (the line cap did not hold)")
)

// ---------------------------------------------------------------------------
// helpers

const review5Hang = 30 * time.Second

func review5Stacks() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}

// review5Wait waits for ch; the duration is only a hang watchdog.
func review5Wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(review5Hang):
		t.Fatalf("%s: still waiting after %v (hang)\n%s", what, review5Hang, review5Stacks())
	}
}

// review5Do runs f in a goroutine under the hang watchdog. f must not call
// t.Fatal; it records what it saw in variables of the caller.
func review5Do(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	review5Wait(t, done, what)
}

// review5Yield gives other goroutines a chance to run (to let a broken promise
// show); no test depends on anything happening during it.
func review5Yield() {
	for range 200 {
		runtime.Gosched()
	}
}

func review5MustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: did not panic", what)
		}
	}()
	f()
}

func review5Ints(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// review5SameSet fails unless got holds exactly the values of want, each once.
func review5SameSet(t *testing.T, what string, got, want []int) {
	t.Helper()
	g, w := slices.Clone(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		t.Errorf("%s: got %d values %v, want %d values %v", what, len(g), review5Short(g), len(w), review5Short(w))
	}
}

func review5Short[T any](s []T) string {
	if len(s) > 40 {
		return fmt.Sprintf("%v ... (%d in all)", s[:40], len(s))
	}
	return fmt.Sprint(s)
}

func review5IsSourceErr(err error) bool {
	var se *stage.SourceError
	return errors.As(err, &se)
}

func review5IsPanicInSource(err error) bool {
	var se *stage.SourceError
	if !errors.As(err, &se) {
		return false
	}
	var pe *stage.PanicError
	return errors.As(se.Err, &pe)
}

// ---------------------------------------------------------------------------
// child processes: a scenario that could crash the process runs in one.

func review5Children(t *testing.T, scenarios map[string]func(t *testing.T)) {
	for _, name := range slices.Sorted(maps.Keys(scenarios)) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			runcheck.InChildTest(t, scenarios[name])
		})
	}
}

// ---------------------------------------------------------------------------
// source.Chan

// Promise: "A value is received only when a stage is ready to work on it, so
// a run that stops early ... leaves the rest in ch: Chan never closes ch and
// never drains it"; README: sink.First(ctx, source.Chan(ch)) receives exactly
// one value; "for a channel ... from wherever the previous run left it".
func TestReview5ChanFirstTakesExactlyOneEachRun(t *testing.T) {
	ch := make(chan int, 10)
	for i := range 10 {
		ch <- i
	}
	s := source.Chan(ch)
	for run := range 3 {
		var (
			v   int
			ok  bool
			err error
		)
		review5Do(t, "sink.First", func() { v, ok, err = sink.First(context.Background(), s) })
		if v != run || !ok || err != nil {
			t.Fatalf("run %d: First = %v, %v, %v; want %d, true, nil", run, v, ok, err, run)
		}
		if len(ch) != 10-run-1 {
			t.Fatalf("run %d: %d values left in ch, want %d (First over a bare Chan must receive exactly one)", run, len(ch), 10-run-1)
		}
	}
	// Neither closed nor drained: the rest are there, in order.
	for i := 3; i < 10; i++ {
		if v, ok := <-ch; !ok || v != i {
			t.Fatalf("left in ch: got %v, %v; want %d, true", v, ok, i)
		}
	}
	ch <- 42 // still open: a send on a closed channel would panic
	if v := <-ch; v != 42 {
		t.Fatal("ch does not hold what was sent")
	}
}

// Promise: a break out of sink.All stops the run; values are received only
// when the sink is ready for them, so exactly the values the loop saw left ch.
func TestReview5ChanAllBreakLeavesTheRest(t *testing.T) {
	const n = 20
	ch := make(chan int, n)
	for i := range n {
		ch <- i
	}
	var seen []int
	review5Do(t, "range sink.All", func() {
		for v, err := range sink.All(context.Background(), source.Chan(ch)) {
			if err != nil {
				t.Errorf("unexpected error %v", err)
				break
			}
			seen = append(seen, v)
			if len(seen) == 3 {
				break
			}
		}
	})
	if !slices.Equal(seen, []int{0, 1, 2}) {
		t.Fatalf("seen %v, want [0 1 2]", seen)
	}
	if len(ch) != n-3 {
		t.Fatalf("%d values left in ch after a break at the third value, want %d: the sink took values it was not ready for", len(ch), n-3)
	}
	if v := <-ch; v != 3 {
		t.Fatalf("next value in ch is %d, want 3", v)
	}
}

// Promise: "A value is received only when a stage is ready to work on it";
// "a worker takes [a token] before it takes an item"; "never after the run
// was cancelled". While every worker of the stage is inside a call that waits,
// exactly Workers(n) values have left the channel, whatever the Buffer, the
// ordering or the stage kind; cancelling the run receives none more.
func TestReview5ChanReceivesOnlyWhenAWorkerIsReady(t *testing.T) {
	type variant struct {
		name    string
		workers int
		build   func(s stage.Stream[int], entered chan<- int) stage.Stream[int]
	}
	block := func(entered chan<- int) func(ctx context.Context, v int) (int, error) {
		return func(ctx context.Context, v int) (int, error) {
			entered <- v
			<-ctx.Done()
			return 0, ctx.Err()
		}
	}
	variants := []variant{
		{"Map/Workers(2)", 2, func(s stage.Stream[int], e chan<- int) stage.Stream[int] {
			return stage.Map(s, block(e), stage.Workers(2))
		}},
		{"Map/Workers(2)/Buffer(3)", 2, func(s stage.Stream[int], e chan<- int) stage.Stream[int] {
			return stage.Map(s, block(e), stage.Workers(2), stage.Buffer(3))
		}},
		{"Map/Workers(3)/Ordered", 3, func(s stage.Stream[int], e chan<- int) stage.Stream[int] {
			return stage.Map(s, block(e), stage.Workers(3), stage.Ordered())
		}},
		{"Filter/Workers(3)", 3, func(s stage.Stream[int], e chan<- int) stage.Stream[int] {
			return stage.Filter(s, func(ctx context.Context, v int) (bool, error) {
				e <- v
				<-ctx.Done()
				return false, ctx.Err()
			}, stage.Workers(3))
		}},
		{"Map/Workers(1)->Map/Workers(2)", 3, func(s stage.Stream[int], e chan<- int) stage.Stream[int] {
			// the first stage passes items on; the second blocks. Upstream
			// stage takes at most workers+buffer = 1 ahead of its consumer,
			// and its consumer is busy: 2 (held by the second stage) + 1.
			first := stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1), stage.Buffer(0))
			return stage.Map(first, block(e), stage.Workers(2))
		}},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			const n = 50
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			entered := make(chan int, n)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			var err error
			go func() {
				defer close(done)
				_, err = sink.Slice(ctx, v.build(source.Chan(ch), entered))
			}()
			blocked := v.workers
			if v.name == "Map/Workers(1)->Map/Workers(2)" {
				blocked = 2
			}
			for i := range blocked {
				select {
				case <-entered:
				case <-time.After(review5Hang):
					t.Fatalf("only %d of %d workers got an item (hang)\n%s", i, blocked, review5Stacks())
				}
			}
			review5Yield()
			if got := n - len(ch); got > v.workers {
				t.Errorf("%d values received from ch while the stage's %d workers were all busy; at most %d may be", got, blocked, v.workers)
			} else if blocked == v.workers && got != v.workers {
				t.Errorf("%d values received, want exactly %d", got, v.workers)
			}
			before := n - len(ch)
			cancel()
			review5Wait(t, done, "sink after cancel")
			if !errors.Is(err, context.Canceled) {
				t.Errorf("err = %v, want context.Canceled", err)
			}
			got := n - len(ch)
			switch {
			case blocked == v.workers && got != before:
				// Every worker was inside a call: no receive was on its way.
				t.Errorf("%d values received in all, %d before the cancellation: received after the run was cancelled", got, before)
			case got > v.workers:
				// Over a stage of one worker, its receive of the third value
				// may have been on its way when the run was cancelled (a step
				// on its way may be taken just after: stage's Cancellation),
				// so it may come after the count above; never one more.
				t.Errorf("%d values received in all, %d before the cancellation; at most %d may be", got, before, v.workers)
			}
			for i := got; i < n; i++ {
				if x := <-ch; x != i {
					t.Fatalf("left in ch: %d, want %d (ch drained or reordered)", x, i)
				}
			}
		})
	}
}

// Promise (sink.First): "Only the items the stages were already working on
// are computed". Workers(2): item 0 finishes once item 1 is being worked on;
// item 1 waits for the run's end. First returns 0; no call may start on
// item 2, and item 2 stays in the channel.
func TestReview5ChanFirstComputesOnlyItemsInFlight(t *testing.T) {
	const n = 20
	ch := make(chan int, n)
	for i := range n {
		ch <- i
	}
	calls := make(chan int, n)
	oneEntered := make(chan struct{})
	f := func(ctx context.Context, v int) (int, error) {
		calls <- v
		switch v {
		case 0:
			select {
			case <-oneEntered:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
			return 0, nil
		case 1:
			close(oneEntered)
		}
		<-ctx.Done()
		return 0, ctx.Err()
	}
	var (
		v   int
		ok  bool
		err error
	)
	review5Do(t, "sink.First", func() {
		v, ok, err = sink.First(context.Background(), stage.Map(source.Chan(ch), f, stage.Workers(2)))
	})
	if v != 0 || !ok || err != nil {
		t.Fatalf("First = %v, %v, %v; want 0, true, nil", v, ok, err)
	}
	close(calls)
	var called []int
	for c := range calls {
		called = append(called, c)
	}
	slices.Sort(called)
	if !slices.Equal(called, []int{0, 1}) {
		t.Errorf("f was called for %v; only the items in flight when the first result arrived (0 and 1) may be computed", called)
	}
	if len(ch) != n-2 {
		t.Errorf("%d values left in ch, want %d", len(ch), n-2)
	}
}

// Promise: "A receive is abandoned when the run ends" (cancellation of the
// parent, a FailFast error, Until). After the sink returns, nobody of the run
// still receives from ch: a non-blocking send on the unbuffered channel finds
// no receiver, and no value sent after is lost to the run.
func TestReview5ChanReceiveAbandonedWhenRunEnds(t *testing.T) {
	noReceiver := func(t *testing.T, ch chan int) {
		t.Helper()
		review5Yield()
		select {
		case ch <- 999:
			t.Errorf("a receive from ch outlived the run: it took a value sent after the sink returned")
		default:
		}
	}
	t.Run("parent cancelled", func(t *testing.T) {
		ch := make(chan int)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		got := make(chan int, 1)
		done := make(chan struct{})
		var err error
		go func() {
			defer close(done)
			err = sink.ForEach(ctx, stage.Map(source.Chan(ch), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2)),
				func(_ context.Context, v int) error { got <- v; return nil })
		}()
		select {
		case ch <- 7:
		case <-time.After(review5Hang):
			t.Fatal("the run never received (hang)")
		}
		select {
		case <-got:
		case <-time.After(review5Hang):
			t.Fatal("the value never reached the sink (hang)")
		}
		cancel()
		review5Wait(t, done, "sink after cancel while the source waits on an empty channel")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		noReceiver(t, ch)
	})
	t.Run("FailFast elsewhere", func(t *testing.T) {
		ch := make(chan int)
		done := make(chan struct{})
		var err error
		go func() {
			defer close(done)
			_, err = sink.Slice(context.Background(), stage.Map(source.Chan(ch), func(_ context.Context, v int) (int, error) {
				return 0, errReview5Map
			}, stage.Workers(3)))
		}()
		select {
		case ch <- 1:
		case <-time.After(review5Hang):
			t.Fatal("the run never received (hang)")
		}
		review5Wait(t, done, "sink after a FailFast error while the source waits on an empty channel")
		if !errors.Is(err, errReview5Map) {
			t.Errorf("err = %v, want the map error", err)
		}
		noReceiver(t, ch)
	})
	t.Run("Until drains", func(t *testing.T) {
		ch := make(chan int)
		stop, drain := context.WithCancel(context.Background())
		defer drain()
		var got []int
		done := make(chan struct{})
		var err error
		go func() {
			defer close(done)
			err = sink.ForEach(context.Background(), stage.Until(source.Chan(ch), stop), func(_ context.Context, v int) error {
				got = append(got, v)
				if len(got) == 2 {
					drain()
				}
				return nil
			})
		}()
		for i := range 2 {
			select {
			case ch <- i:
			case <-time.After(review5Hang):
				t.Fatal("the run never received (hang)")
			}
		}
		review5Wait(t, done, "sink after Until's stop while the source waits on an empty channel")
		if err != nil {
			t.Errorf("err = %v, want nil: a drained Chan stops quietly", err)
		}
		if !slices.Equal(got, []int{0, 1}) {
			t.Errorf("got %v, want [0 1]", got)
		}
		noReceiver(t, ch)
	})
}

// Promise (Until): "Once stop is done, no source upstream is asked for another
// item"; over a bare Chan stopped from the sink's callback at the first value,
// the other values stay in ch and the sink returns nil.
func TestReview5ChanUntilTakesNothingAfterStop(t *testing.T) {
	ch := make(chan int, 5)
	for i := range 5 {
		ch <- i
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	var got []int
	var err error
	review5Do(t, "ForEach", func() {
		err = sink.ForEach(context.Background(), stage.Until(source.Chan(ch), stop), func(_ context.Context, v int) error {
			got = append(got, v)
			drain()
			return nil
		})
	})
	if err != nil || !slices.Equal(got, []int{0}) {
		t.Fatalf("ForEach = %v with %v; want nil with [0]", err, got)
	}
	if len(ch) != 4 {
		t.Fatalf("%d values left in ch, want 4: a value was received after stop was done", len(ch))
	}
}

// review5Reverse returns a function under which, within each group of g
// consecutive values, value i finishes only after value i+1: completion order
// is the reverse of input order (given g concurrent workers).
func review5Reverse(g int) func(ctx context.Context, v int) error {
	var mu sync.Mutex
	done := map[int]chan struct{}{}
	get := func(i int) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		c, ok := done[i]
		if !ok {
			c = make(chan struct{})
			done[i] = c
		}
		return c
	}
	return func(ctx context.Context, v int) error {
		if v%g != g-1 {
			select {
			case <-get(v + 1):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		close(get(v))
		return nil
	}
}

// Promise: "Ordered makes the stage emit its outputs in the order of its
// input" — for a channel source, channel order — even when calls complete in
// reverse order; for Map and for Filter, buffered and unbuffered channels.
func TestReview5ChanOrderedKeepsChannelOrder(t *testing.T) {
	const n, g = 64, 4
	for _, mode := range []string{"prefilled", "producer"} {
		for _, kind := range []string{"Map", "Filter", "Map+Buffer"} {
			t.Run(mode+"/"+kind, func(t *testing.T) {
				var ch chan int
				quit := make(chan struct{})
				var wg sync.WaitGroup
				if mode == "prefilled" {
					ch = make(chan int, n)
					for i := range n {
						ch <- i
					}
					close(ch)
				} else {
					ch = make(chan int)
					wg.Go(func() {
						defer close(ch)
						for i := range n {
							select {
							case ch <- i:
							case <-quit:
								return
							}
						}
					})
				}
				rev := review5Reverse(g)
				var s stage.Stream[int]
				switch kind {
				case "Map":
					s = stage.Map(source.Chan(ch), func(ctx context.Context, v int) (int, error) { return v, rev(ctx, v) },
						stage.Workers(g), stage.Ordered())
				case "Map+Buffer":
					s = stage.Map(source.Chan(ch), func(ctx context.Context, v int) (int, error) { return v, rev(ctx, v) },
						stage.Workers(g), stage.Ordered(), stage.Buffer(5))
				case "Filter":
					s = stage.Filter(source.Chan(ch), func(ctx context.Context, v int) (bool, error) { return v%5 != 0, rev(ctx, v) },
						stage.Workers(g), stage.Ordered())
				}
				var got []int
				var err error
				review5Do(t, "sink.Slice", func() { got, err = sink.Slice(context.Background(), s) })
				close(quit)
				wg.Wait()
				var want []int
				for i := range n {
					if kind != "Filter" || i%5 != 0 {
						want = append(want, i)
					}
				}
				if err != nil || !slices.Equal(got, want) {
					t.Fatalf("got %v, %v; want channel order %v, nil", review5Short(got), err, review5Short(want))
				}
			})
		}
	}
}

// Promise (Stream): "source.Chan receives from the same channel (each value
// goes to one run)" when several sinks run one stream at the same time; a
// closed channel ends each run without error.
func TestReview5ChanConcurrentRunsShareValuesOnce(t *testing.T) {
	const n = 2000
	ch := make(chan int, n)
	for i := range n {
		ch <- i
	}
	close(ch)
	s := stage.Filter(source.Chan(ch), func(_ context.Context, v int) (bool, error) { return true, nil }, stage.Workers(3))
	var got [3][]int
	var errs [3]error
	review5Do(t, "three concurrent runs", func() {
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() { got[i], errs[i] = sink.Slice(context.Background(), s) })
		}
		wg.Wait()
	})
	var all []int
	for i := range 3 {
		if errs[i] != nil {
			t.Errorf("run %d: %v", i, errs[i])
		}
		all = append(all, got[i]...)
	}
	review5SameSet(t, "values over all runs", all, review5Ints(n))
}

// ---------------------------------------------------------------------------
// source.Lines

// review5Chunk is what one Read returns.
type review5Chunk struct {
	data string
	err  error
}

// review5Chunks returns each chunk from one Read (splitting one only when p
// is too small), then io.EOF.
type review5Chunks struct {
	chunks []review5Chunk
}

func (r *review5Chunks) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	c := &r.chunks[0]
	n := copy(p, c.data)
	c.data = c.data[n:]
	if len(c.data) > 0 {
		return n, nil
	}
	err := c.err
	r.chunks = r.chunks[1:]
	return n, err
}

func review5ScanLines(in string) []string {
	sc := bufio.NewScanner(strings.NewReader(in))
	sc.Buffer(make([]byte, 0, 64), 1<<24)
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	if sc.Err() != nil {
		panic(sc.Err())
	}
	return out
}

func review5Lines(t *testing.T, r io.Reader, opts ...source.LinesOption) ([]string, error) {
	t.Helper()
	var got []string
	var err error
	review5Do(t, "sink.Slice over Lines", func() { got, err = sink.Slice(context.Background(), source.Lines(r, opts...)) })
	return got, err
}

// review5WantTooLong checks that err is a *SourceError wrapping a
// *LineTooLongError for line, max.
func review5WantTooLong(t *testing.T, what string, err error, line, max int) {
	t.Helper()
	var se *stage.SourceError
	var tl *source.LineTooLongError
	if !errors.As(err, &se) {
		t.Errorf("%s: err = %v, want a *stage.SourceError", what, err)
		return
	}
	if !errors.As(se.Err, &tl) {
		t.Errorf("%s: the SourceError wraps %v, want a *source.LineTooLongError", what, se.Err)
		return
	}
	if tl.Line != line || tl.Max != max {
		t.Errorf("%s: LineTooLongError{Line: %d, Max: %d}, want {Line: %d, Max: %d}", what, tl.Line, tl.Max, line, max)
	}
}

// Promise: "split as bufio.ScanLines splits them: the line ending ("\n" or
// "\r\n") is dropped, and a last line without a newline is delivered."
func TestReview5LinesSplitLikeScanLines(t *testing.T) {
	cases := []string{
		"", "\n", "\r\n", "\n\n", "\r\n\r\n", "a", "a\n", "a\r\n", "a\nb", "a\r\nb\r\n",
		"\na", "a\n\nb", "a\r\n\r\nb", "a\rb\n", "a\r\r\n", "\r\r\n", "a\n\r\nb\n", "x\r\ny", "a\n\n\n",
	}
	for _, in := range cases {
		got, err := review5Lines(t, strings.NewReader(in))
		want := review5ScanLines(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("Lines(%q) = %q, %v; want %q, nil (as bufio.ScanLines)", in, got, err, want)
		}
	}
}

// Promise: bufio.ScanLines splitting, and MaxLineLength "sets the longest
// line, in bytes without its line ending": random inputs over {a, b, \r, \n},
// random Read boundaries (including reads of 0 bytes with a nil error and data
// returned together with io.EOF), random maxima; the lines before a too-long
// one are delivered and the error names its 1-based number.
func TestReview5LinesRandomAgainstScanLines(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	alphabet := "ab\r"
	for iter := range 2500 {
		var b strings.Builder
		for range rng.IntN(6) {
			for range rng.IntN(10) {
				b.WriteByte(alphabet[rng.IntN(len(alphabet))])
			}
			if rng.IntN(2) == 0 {
				b.WriteString("\n")
			} else {
				b.WriteString("\r\n")
			}
		}
		if rng.IntN(2) == 0 { // a last line without newline, not ending in \r
			for range rng.IntN(6) {
				b.WriteByte(alphabet[rng.IntN(len(alphabet))])
			}
			if s := b.String(); strings.HasSuffix(s, "\r") {
				b.WriteByte('a')
			}
		}
		in := b.String()
		var chunks []review5Chunk
		for rest := in; len(rest) > 0; {
			if rng.IntN(4) == 0 {
				chunks = append(chunks, review5Chunk{}) // (0, nil)
			}
			k := min(len(rest), 1+rng.IntN(7))
			chunks = append(chunks, review5Chunk{data: rest[:k]})
			rest = rest[k:]
		}
		if len(chunks) > 0 && rng.IntN(2) == 0 {
			chunks[len(chunks)-1].err = io.EOF // data together with io.EOF
		}
		maxLen := []int{1, 2, 3, 5, 8, 100}[rng.IntN(6)]

		all := review5ScanLines(in)
		want, wantLine := all, 0
		for i, l := range all {
			if len(l) > maxLen {
				want, wantLine = all[:i], i+1
				break
			}
		}
		got, err := review5Lines(t, &review5Chunks{chunks: chunks}, source.MaxLineLength(maxLen))
		what := fmt.Sprintf("iteration %d: Lines(%q, MaxLineLength(%d)) in reads %v", iter, in, maxLen, chunks)
		if !slices.Equal(got, want) {
			t.Fatalf("%s = %q, want %q", what, got, want)
		}
		if wantLine == 0 {
			if err != nil {
				t.Fatalf("%s: err = %v, want nil", what, err)
			}
		} else {
			review5WantTooLong(t, what, err, wantLine, maxLen)
			if t.Failed() {
				t.FailNow()
			}
		}
	}
}

// Promise: MaxLineLength counts bytes "without its line ending": a line of
// exactly the maximum passes with "\n", with "\r\n" (also when the "\r" ends
// one read and the "\n" starts the next) and at EOF; one byte over fails,
// naming the line (empty lines count) — around and beyond the 4 KiB that a
// read buffer is likely to hold.
func TestReview5LinesMaxBoundary(t *testing.T) {
	for _, maxLen := range []int{1, 5, 4095, 4096, 4097, 5000, 9000} {
		for _, l := range []int{maxLen - 1, maxLen, maxLen + 1} {
			if l < 0 {
				continue
			}
			line := strings.Repeat("x", l)
			for _, end := range []string{"\n", "\r\n", ""} {
				in := "p\n\n" + line + end + func() string {
					if end == "" {
						return ""
					}
					return "z\n"
				}()
				// read boundaries: one read; 4095/4096/4097-byte reads; a split
				// right after the line's "\r"; one byte at a time (small ones).
				splits := map[string][]review5Chunk{"whole": {{data: in}}}
				for _, size := range []int{4095, 4096, 4097} {
					var cs []review5Chunk
					for rest := in; len(rest) > 0; {
						k := min(size, len(rest))
						cs = append(cs, review5Chunk{data: rest[:k]})
						rest = rest[k:]
					}
					splits[fmt.Sprintf("reads of %d", size)] = cs
				}
				if end == "\r\n" {
					cut := len("p\n\n") + l + 1
					splits["cut after CR"] = []review5Chunk{{data: in[:cut]}, {data: in[cut:]}}
				}
				if len(in) < 64 {
					var cs []review5Chunk
					for i := range len(in) {
						cs = append(cs, review5Chunk{data: in[i : i+1]})
					}
					splits["one byte"] = cs
				}
				for name, cs := range splits {
					what := fmt.Sprintf("max %d, line of %d + %q, %s", maxLen, l, end, name)
					got, err := review5Lines(t, &review5Chunks{chunks: cs}, source.MaxLineLength(maxLen))
					if l <= maxLen {
						want := review5ScanLines(in) // p, "", the line (if any), z
						if err != nil || !slices.Equal(got, want) {
							t.Errorf("%s: got %d lines %v, want %d lines, nil", what, len(got), err, len(want))
						}
					} else {
						if !slices.Equal(got, []string{"p", ""}) {
							t.Errorf("%s: got %d lines %q..., want the two before the long line", what, len(got), review5Short(got))
						}
						review5WantTooLong(t, what, err, 3, maxLen)
					}
				}
			}
		}
	}
}

// Ambiguous corner, kept apart: bufio.ScanLines drops a "\r" that ends the
// input ("a last line without a newline is delivered" + "as bufio.ScanLines
// splits them"). Is that "\r" a line ending for MaxLineLength? We take
// ScanLines' view: the line is "abc".
func TestReview5LinesCRAtEOF(t *testing.T) {
	got, err := review5Lines(t, strings.NewReader("x\nabc\r"))
	if err != nil || !slices.Equal(got, []string{"x", "abc"}) {
		t.Errorf(`Lines("x\nabc\r") = %q, %v; want ["x" "abc"], nil as bufio.ScanLines`, got, err)
	}
	got, err = review5Lines(t, strings.NewReader("x\nabc\r"), source.MaxLineLength(3))
	if err != nil || !slices.Equal(got, []string{"x", "abc"}) {
		t.Errorf(`Lines("x\nabc\r", MaxLineLength(3)) = %q, %v; want ["x" "abc"], nil`, got, err)
	}
}

// review5Endless serves one byte value for ever (until limit bytes, so that a
// broken cap cannot exhaust the test's memory).
type review5Endless struct {
	b     byte
	read  int64
	limit int64
}

func (r *review5Endless) Read(p []byte) (int, error) {
	if r.read >= r.limit {
		return 0, errReview5Endless
	}
	p = p[:min(int64(len(p)), r.limit-r.read)]
	for i := range p {
		p[i] = r.b
	}
	r.read += int64(len(p))
	return len(p), nil
}

// Promise: "Hostile input cannot exhaust memory: a line longer than the
// maximum ... ends the run with a *stage.SourceError wrapping a
// *LineTooLongError that names the line; at most the maximum plus 4 KiB is
// read into memory for it." An endless line (of 'x', or of '\r' which is not
// a line ending without '\n') must end the run having read at most max+4 KiB
// of it.
func TestReview5LinesHostileLineMemoryBound(t *testing.T) {
	for _, maxLen := range []int{1, 100, 4096, 5000, 70000, source.DefaultMaxLineLength} {
		for _, b := range []byte{'x', '\r'} {
			t.Run(fmt.Sprintf("max %d/%q", maxLen, b), func(t *testing.T) {
				hostile := &review5Endless{b: b, limit: 64 << 20}
				r := io.MultiReader(strings.NewReader("k\n"), hostile)
				var opts []source.LinesOption
				if maxLen != source.DefaultMaxLineLength {
					opts = append(opts, source.MaxLineLength(maxLen))
				}
				got, err := review5Lines(t, r, opts...)
				if errors.Is(err, errReview5Endless) {
					t.Fatalf("read %d bytes of one hostile line with a maximum of %d: no cap", hostile.read, maxLen)
				}
				if !slices.Equal(got, []string{"k"}) {
					t.Errorf("got %q, want [k]", review5Short(got))
				}
				review5WantTooLong(t, "hostile line", err, 2, maxLen)
				if limit := int64(maxLen) + 4096; hostile.read > limit {
					t.Errorf("read %d bytes of the hostile line; the documented bound is max+4 KiB = %d", hostile.read, limit)
				}
			})
		}
	}
}

// Promise: the hostile-line bound holds on the fast path too: "Over an
// in-memory reader (*bytes.Reader, *strings.Reader, *bytes.Buffer) or a
// regular file, Lines is a source that never waits" — still "at most the
// maximum plus 4 KiB is read into memory for it". How far the reader was
// consumed shows what was read. Lines before it reach a concurrent stage.
func TestReview5LinesHostileLineInMemoryAndFile(t *testing.T) {
	const prefix = "k\nk2\n"
	const hostile = 8 << 20
	content := prefix + strings.Repeat("x", hostile) + "\nnever\n"
	for _, maxLen := range []int{100, source.DefaultMaxLineLength} {
		type rd struct {
			name string
			r    io.Reader
			left func() int64
		}
		sr := strings.NewReader(content)
		br := bytes.NewReader([]byte(content))
		bb := bytes.NewBufferString(content)
		f, err := os.CreateTemp(t.TempDir(), "hostile")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(content); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		readers := []rd{
			{"*strings.Reader", sr, func() int64 { return int64(sr.Len()) }},
			{"*bytes.Reader", br, func() int64 { return int64(br.Len()) }},
			{"*bytes.Buffer", bb, func() int64 { return int64(bb.Len()) }},
			{"*os.File", f, func() int64 {
				off, err := f.Seek(0, io.SeekCurrent)
				if err != nil {
					t.Fatal(err)
				}
				return int64(len(content)) - off
			}},
		}
		for _, r := range readers {
			var opts []source.LinesOption
			if maxLen != source.DefaultMaxLineLength {
				opts = append(opts, source.MaxLineLength(maxLen))
			}
			s := stage.Map(source.Lines(r.r, opts...), func(_ context.Context, l string) (string, error) { return l, nil }, stage.Workers(4))
			var got []string
			var err error
			review5Do(t, "Slice", func() { got, err = sink.Slice(context.Background(), s) })
			what := fmt.Sprintf("%s, max %d", r.name, maxLen)
			slices.Sort(got)
			if !slices.Equal(got, []string{"k", "k2"}) {
				t.Errorf("%s: got %q, want the two lines before the hostile one", what, review5Short(got))
			}
			review5WantTooLong(t, what, err, 3, maxLen)
			read := int64(len(content)) - r.left()
			if limit := int64(len(prefix) + maxLen + 4096); read > limit {
				t.Errorf("%s: %d bytes consumed from the reader for a hostile line of %d; the documented bound is %d (prefix + max + 4 KiB)", what, read, hostile, limit)
			}
		}
		f.Close()
	}
}

// Promise: "A read error ends the run with a *stage.SourceError after the
// complete lines before it went through (a partial line before the error is
// dropped)" — for errors alone or with data in the same Read; data returned
// with io.EOF is data; a reader returning (0, nil) is asked again; a
// wrapped io.EOF is an error, not the end (as for Func: a truncated input is
// never taken for a complete one).
func TestReview5LinesReadErrors(t *testing.T) {
	type tc struct {
		name    string
		r       func() io.Reader
		want    []string
		wantErr error // nil: no error
	}
	cases := []tc{
		{"partial line then error", func() io.Reader {
			return &review5Chunks{chunks: []review5Chunk{{data: "a\nb\npar"}, {data: "t", err: errReview5Read}}}
		}, []string{"a", "b"}, errReview5Read},
		{"error right after a newline", func() io.Reader {
			return &review5Chunks{chunks: []review5Chunk{{data: "a\nb\n"}, {err: errReview5Read}}}
		}, []string{"a", "b"}, errReview5Read},
		{"data and error in one Read", func() io.Reader {
			return &review5Chunks{chunks: []review5Chunk{{data: "a\nb\nc", err: errReview5Read}}}
		}, []string{"a", "b"}, errReview5Read},
		{"complete lines and error in one Read", func() io.Reader {
			return &review5Chunks{chunks: []review5Chunk{{data: "a\r\nb\r\n", err: errReview5Read}}}
		}, []string{"a", "b"}, errReview5Read},
		{"error first", func() io.Reader { return iotest.ErrReader(errReview5Read) }, nil, errReview5Read},
		{"data with io.EOF", func() io.Reader {
			return &review5Chunks{chunks: []review5Chunk{{data: "a\nb", err: io.EOF}}}
		}, []string{"a", "b"}, nil},
		{"DataErrReader", func() io.Reader { return iotest.DataErrReader(strings.NewReader("x\r\ny\n\nz")) }, []string{"x", "y", "", "z"}, nil},
		{"OneByteReader", func() io.Reader { return iotest.OneByteReader(strings.NewReader("x\r\ny\n\nz")) }, []string{"x", "y", "", "z"}, nil},
		{"HalfReader", func() io.Reader { return iotest.HalfReader(strings.NewReader("x\r\ny\n\nz")) }, []string{"x", "y", "", "z"}, nil},
		{"TimeoutReader", func() io.Reader { return iotest.TimeoutReader(strings.NewReader("a\nb\n")) }, []string{"a", "b"}, iotest.ErrTimeout},
		{"reads of 0, nil between data", func() io.Reader {
			var cs []review5Chunk
			for _, part := range []string{"a", "\r", "\nb", "\n", "c"} {
				for range 20 {
					cs = append(cs, review5Chunk{})
				}
				cs = append(cs, review5Chunk{data: part})
			}
			return &review5Chunks{chunks: cs}
		}, []string{"a", "b", "c"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := review5Lines(t, c.r())
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
			if c.wantErr == nil {
				if err != nil {
					t.Errorf("err = %v, want nil", err)
				}
				return
			}
			if !review5IsSourceErr(err) || !errors.Is(err, c.wantErr) {
				t.Errorf("err = %v, want a *stage.SourceError wrapping %v", err, c.wantErr)
			}
		})
	}
}

// Promise: "A read error ends the run with a *stage.SourceError ... (a
// partial line before the error is dropped)". A Read that returns an error
// wrapping io.EOF returned an error that is not io.EOF: io's convention (and
// bufio.Scanner, io.ReadAll) and this package's own rule for Func ("io.EOF
// itself ...: an error that wraps it is a failure, so that a truncated input
// is never taken for a complete one") make it a read error. The Lines doc does
// not say it in so many words: see the report.
func TestReview5LinesWrappedEOFIsAReadError(t *testing.T) {
	truncated := fmt.Errorf("truncated: %w", io.EOF)
	for _, cs := range [][]review5Chunk{
		{{data: "a\nb", err: truncated}},
		{{data: "a\nb"}, {err: truncated}},
	} {
		got, err := review5Lines(t, &review5Chunks{chunks: cs})
		if !review5IsSourceErr(err) || !errors.Is(err, io.EOF) || !slices.Equal(got, []string{"a"}) {
			t.Errorf("reader returning %q then the error %q (wraps io.EOF) in %d Read(s): got %q, err %v; want [a] and a *stage.SourceError wrapping the error (the partial line b dropped)", "a\nb", truncated, len(cs), got, err)
		}
	}
}

// Promise: the complete lines before a read error all go through a
// concurrent stage ("the items produced before it still go through").
func TestReview5LinesErrorAfterManyLinesThroughWorkers(t *testing.T) {
	const n = 1000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d\n", i)
	}
	b.WriteString("12345") // partial, dropped
	for _, waiting := range []bool{false, true} {
		var r io.Reader = &review5Chunks{chunks: []review5Chunk{{data: b.String()}, {err: errReview5Read}}}
		if waiting {
			r = struct{ io.Reader }{r}
		}
		s := stage.Map(source.Lines(r), func(_ context.Context, l string) (int, error) { return strconv.Atoi(l) }, stage.Workers(4))
		s = stage.Filter(s, func(_ context.Context, v int) (bool, error) { return true, nil }, stage.Workers(3))
		var got []int
		var err error
		review5Do(t, "sink.Slice", func() { got, err = sink.Slice(context.Background(), s) })
		if !review5IsSourceErr(err) || !errors.Is(err, errReview5Read) {
			t.Errorf("waiting=%v: err = %v, want a SourceError wrapping the read error", waiting, err)
		}
		review5SameSet(t, fmt.Sprintf("waiting=%v: lines before the read error", waiting), got, review5Ints(n))
	}
}

// Promise: Ordered over Lines emits lines in input order even when calls
// complete in reverse; over an in-memory reader (never waits) and behind a
// wrapper (a waiting source).
func TestReview5LinesOrderedThroughWorkers(t *testing.T) {
	const n, g = 400, 4
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d\r\n", i)
	}
	for _, waiting := range []bool{false, true} {
		var r io.Reader = strings.NewReader(b.String())
		if waiting {
			r = struct{ io.Reader }{r}
		}
		rev := review5Reverse(g)
		s := stage.Map(source.Lines(r), func(ctx context.Context, l string) (int, error) {
			v, err := strconv.Atoi(l)
			if err != nil {
				return 0, err
			}
			return v, rev(ctx, v)
		}, stage.Workers(g), stage.Ordered())
		var got []int
		var err error
		review5Do(t, "sink.Slice", func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil || !slices.Equal(got, review5Ints(n)) {
			t.Errorf("waiting=%v: got %v, %v; want 0..%d in order", waiting, review5Short(got), err, n-1)
		}
	}
}

// Promise: cheap stages over Lines of an in-memory reader (a source that
// never waits, whose stages may run in their consumer's goroutines) deliver
// every line exactly once.
func TestReview5LinesCheapStagesDeliverEveryLine(t *testing.T) {
	const n = 20000
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d\n", i)
	}
	for range 3 {
		s := stage.Map(source.Lines(strings.NewReader(b.String())), func(_ context.Context, l string) (int, error) {
			return strconv.Atoi(l)
		}, stage.Workers(4))
		s = stage.Filter(s, func(_ context.Context, v int) (bool, error) { return v%7 != 3, nil }, stage.Workers(2))
		var got []int
		var err error
		review5Do(t, "sink.Slice", func() { got, err = sink.Slice(context.Background(), s) })
		if err != nil {
			t.Fatal(err)
		}
		var want []int
		for i := range n {
			if i%7 != 3 {
				want = append(want, i)
			}
		}
		review5SameSet(t, "lines through cheap stages", got, want)
	}
}

// Promise: "a second run reads on from where the first run's buffer had read,
// and a run that stops early may have read past the last line it delivered":
// the second run yields a suffix of the lines after the first run's last, in
// order, and a run after the end yields nothing and no error.
func TestReview5LinesSecondRunReadsOn(t *testing.T) {
	const n = 5000
	var lines []string
	var b strings.Builder
	for i := range n {
		lines = append(lines, "L"+strconv.Itoa(i))
		fmt.Fprintf(&b, "L%d\n", i)
	}
	for _, waiting := range []bool{false, true} {
		var r io.Reader = strings.NewReader(b.String())
		if waiting {
			r = struct{ io.Reader }{r}
		}
		s := source.Lines(r)
		var (
			first string
			ok    bool
			err   error
			rest  []string
			again []string
			err2  error
			err3  error
		)
		review5Do(t, "three runs", func() {
			first, ok, err = sink.First(context.Background(), s)
			rest, err2 = sink.Slice(context.Background(), s)
			again, err3 = sink.Slice(context.Background(), s)
		})
		if first != "L0" || !ok || err != nil {
			t.Fatalf("waiting=%v: First = %q, %v, %v; want L0, true, nil", waiting, first, ok, err)
		}
		// The first run's buffer may have stopped mid-line: the second run
		// then starts with the rest of that line, then whole lines to the end.
		k := n - len(rest)
		if err2 != nil || len(rest) == 0 || k < 0 || !strings.HasSuffix(lines[k], rest[0]) || rest[0] == "L0" ||
			!slices.Equal(rest[1:], lines[k+1:]) {
			t.Errorf("waiting=%v: second run = %d lines %v, %v; want the rest of the input after what the first run read", waiting, len(rest), review5Short(rest), err2)
		}
		if len(again) != 0 || err3 != nil {
			t.Errorf("waiting=%v: third run = %v, %v; want nothing, nil", waiting, review5Short(again), err3)
		}
	}
}

// review5GateReader returns first on its first Read; its second Read reports
// that it started and blocks until release is closed, then fails.
type review5GateReader struct {
	calls    int
	first    string
	entered  chan struct{}
	release  chan struct{}
	returned atomic.Bool
}

func (r *review5GateReader) Read(p []byte) (int, error) {
	r.calls++
	if r.calls == 1 {
		return copy(p, r.first), nil
	}
	close(r.entered)
	<-r.release
	r.returned.Store(true)
	return 0, io.ErrClosedPipe
}

// Promise: over a reader that may block, "A blocked Read cannot be abandoned:
// when the run is cancelled, the sink waits for it to return" — the sink must
// not return (leaving the Read's goroutine behind) before the Read did, and
// reports the cancellation, not the read error that follows it.
func TestReview5LinesBlockedReadSinkWaits(t *testing.T) {
	for _, withMap := range []bool{false, true} {
		r := &review5GateReader{first: "a\n", entered: make(chan struct{}), release: make(chan struct{})}
		ctx, cancel := context.WithCancel(context.Background())
		var s stage.Stream[string] = source.Lines(r)
		if withMap {
			s = stage.Map(s, func(_ context.Context, l string) (string, error) { return l, nil }, stage.Workers(2))
		}
		done := make(chan struct{})
		var err error
		var readReturnedAtReturn bool
		var got []string
		go func() {
			defer close(done)
			err = sink.ForEach(ctx, s, func(_ context.Context, l string) error { got = append(got, l); return nil })
			readReturnedAtReturn = r.returned.Load()
		}()
		review5Wait(t, r.entered, "the second Read")
		cancel()
		review5Yield()
		select {
		case <-done:
			t.Errorf("withMap=%v: the sink returned while a Read was still blocked", withMap)
		default:
		}
		close(r.release)
		review5Wait(t, done, "sink after the Read returned")
		if !readReturnedAtReturn {
			t.Errorf("withMap=%v: the sink returned before the blocked Read", withMap)
		}
		if !errors.Is(err, context.Canceled) {
			t.Errorf("withMap=%v: err = %v, want context.Canceled (the run was cancelled before the read failed)", withMap, err)
		}
		if !withMap && !slices.Equal(got, []string{"a"}) || len(got) > 1 {
			t.Errorf("withMap=%v: got %q, want [a]", withMap, got)
		}
	}
}

// Promise: cancelling the parent at every line: the sink returns an error
// for which errors.Is(err, context.Canceled) holds and delivers nothing after
// the line whose callback cancelled.
func TestReview5LinesCancelAtEveryLine(t *testing.T) {
	const n = 6
	in := "0\n1\r\n2\n3\n4\n5"
	for k := range n {
		for _, withMap := range []bool{false, true} {
			ctx, cancel := context.WithCancel(context.Background())
			var s stage.Stream[string] = source.Lines(strings.NewReader(in))
			if withMap {
				s = stage.Map(s, func(_ context.Context, l string) (string, error) { return l, nil }, stage.Workers(3), stage.Ordered())
			}
			var got []string
			var err error
			review5Do(t, "ForEach", func() {
				err = sink.ForEach(ctx, s, func(_ context.Context, l string) error {
					got = append(got, l)
					if l == strconv.Itoa(k) {
						cancel()
					}
					return nil
				})
			})
			cancel()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("cancel at line %d (map=%v): err = %v, want context.Canceled", k, withMap, err)
			}
			want := strings.Split("0 1 2 3 4 5", " ")[:k+1]
			if !slices.Equal(got, want) {
				t.Errorf("cancel at line %d (map=%v): got %q, want %q", k, withMap, got, want)
			}
		}
	}
}

// Promise: "A nil r panics", "MaxLineLength ... panics if n < 1", and the
// other constructors' nil checks, at construction ("Options are checked when
// they are made").
func TestReview5ConstructorsPanic(t *testing.T) {
	review5MustPanic(t, "Lines(nil)", func() { source.Lines(nil) })
	review5MustPanic(t, "MaxLineLength(0)", func() { source.MaxLineLength(0) })
	review5MustPanic(t, "MaxLineLength(-1)", func() { source.MaxLineLength(-1) })
	review5MustPanic(t, "Chan(nil)", func() { source.Chan[int](nil) })
	review5MustPanic(t, "Func(nil)", func() { source.Func[int](nil) })
	review5MustPanic(t, "Seq(nil)", func() { source.Seq[int](nil) })
	review5MustPanic(t, "Seq2(nil)", func() { source.Seq2[int](nil) })
	mapped := stage.Map(source.Slice([]int{1}), func(_ context.Context, v int) (int, error) { return v, nil })
	review5MustPanic(t, "NeverWaits(Map)", func() { stage.NeverWaits(mapped) })
	review5MustPanic(t, "Interruptible(Map)", func() { stage.Interruptible(mapped) })
	// Lines and Func are written with stage.Source: marking them is allowed.
	stage.NeverWaits(source.Lines(strings.NewReader("")))
	stage.NeverWaits(source.Func(func(context.Context) (int, error) { return 0, io.EOF }))
	stage.Interruptible(source.Func(func(context.Context) (int, error) { return 0, io.EOF }))
}

// ---------------------------------------------------------------------------
// source.Func

// Promise: "next returns io.EOF to end the stream (io.EOF itself ...: an
// error that wraps it is a failure ...); any other error ends the run with a
// *stage.SourceError after the items produced before it went through."
func TestReview5FuncEOFAndErrors(t *testing.T) {
	gen := func(n int, end error, endValue int) func(context.Context) (int, error) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return endValue, end
			}
			i++
			return i - 1, nil
		}
	}
	type tc struct {
		name   string
		end    error
		wantIs error // nil: success
	}
	cases := []tc{
		{"io.EOF", io.EOF, nil},
		{"wrapped io.EOF", fmt.Errorf("truncated: %w", io.EOF), io.EOF},
		{"an error", errReview5, errReview5},
		{"context.Canceled from next, parent alive", context.Canceled, context.Canceled},
	}
	for _, c := range cases {
		for _, pipe := range []string{"bare", "Map/Workers(4)", "NeverWaits+Map/Workers(4)"} {
			t.Run(c.name+"/"+pipe, func(t *testing.T) {
				var s stage.Stream[int]
				switch pipe {
				case "bare":
					s = source.Func(gen(50, c.end, 999))
				case "Map/Workers(4)":
					s = stage.Map(source.Func(gen(50, c.end, 999)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4))
				default:
					s = stage.Map(stage.NeverWaits(source.Func(gen(50, c.end, 999))), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4))
				}
				var got []int
				var err error
				review5Do(t, "sink.Slice", func() { got, err = sink.Slice(context.Background(), s) })
				if pipe == "bare" && c.wantIs != nil {
					if !slices.Equal(got, review5Ints(50)) {
						t.Errorf("got %v, want 0..49 in order (the value returned with the error is no item)", review5Short(got))
					}
				} else {
					review5SameSet(t, "items", got, review5Ints(50))
				}
				if c.wantIs == nil {
					if err != nil {
						t.Errorf("err = %v, want nil", err)
					}
					return
				}
				if !review5IsSourceErr(err) || !errors.Is(err, c.wantIs) {
					t.Errorf("err = %v, want a *stage.SourceError wrapping %v", err, c.wantIs)
				}
			})
		}
	}
}

// Promise: "The run calls next only when a stage is ready for an item, never
// concurrently" and (Source) "never once ... its input has ended": many
// workers over one next — plain, NeverWaits (next called from consumer
// goroutines) and Interruptible — never overlap calls, and no call follows the
// io.EOF or the error that ended the input.
func TestReview5FuncNextSerialAndNeverAfterEnd(t *testing.T) {
	const n = 3000
	for _, mark := range []string{"plain", "NeverWaits", "Interruptible"} {
		for _, end := range []error{io.EOF, errReview5} {
			for _, pipe := range []string{"Map8+Filter8", "Map8/Ordered", "Filter2/Buffer2"} {
				t.Run(fmt.Sprintf("%s/%v/%s", mark, end, pipe), func(t *testing.T) {
					var inNext, overlaps, afterEnd atomic.Int32
					var ended atomic.Bool
					i := 0
					next := func(context.Context) (int, error) {
						if inNext.Add(1) != 1 {
							overlaps.Add(1)
						}
						defer inNext.Add(-1)
						if ended.Load() {
							afterEnd.Add(1)
						}
						if i%64 == 0 {
							runtime.Gosched()
						}
						if i == n {
							ended.Store(true)
							return 0, end
						}
						i++
						return i - 1, nil
					}
					var s stage.Stream[int]
					switch mark {
					case "plain":
						s = source.Func(next)
					case "NeverWaits":
						s = stage.NeverWaits(source.Func(next))
					default:
						s = stage.Interruptible(source.Func(next))
					}
					id := func(_ context.Context, v int) (int, error) { return v, nil }
					keep := func(_ context.Context, v int) (bool, error) { return true, nil }
					switch pipe {
					case "Map8+Filter8":
						s = stage.Filter(stage.Map(s, id, stage.Workers(8)), keep, stage.Workers(8))
					case "Map8/Ordered":
						s = stage.Map(s, id, stage.Workers(8), stage.Ordered())
					default:
						s = stage.Filter(s, keep, stage.Workers(2), stage.Buffer(2))
					}
					var got []int
					var err error
					review5Do(t, "sink.Slice", func() { got, err = sink.Slice(context.Background(), s) })
					if k := overlaps.Load(); k != 0 {
						t.Errorf("next was called concurrently %d times", k)
					}
					if k := afterEnd.Load(); k != 0 {
						t.Errorf("next was called %d times after it had ended the input with %v", k, end)
					}
					if pipe == "Map8/Ordered" {
						if !slices.Equal(got, review5Ints(n)) {
							t.Errorf("Ordered: got %v, want 0..%d in order", review5Short(got), n-1)
						}
					} else {
						review5SameSet(t, "items", got, review5Ints(n))
					}
					if end == io.EOF && err != nil {
						t.Errorf("err = %v, want nil", err)
					}
					if end != io.EOF && (!review5IsSourceErr(err) || !errors.Is(err, end)) {
						t.Errorf("err = %v, want a SourceError wrapping %v", err, end)
					}
				})
			}
		}
	}
}

// Promise (README): sink.First over a bare source takes exactly one item:
// next is called once (plain and NeverWaits).
func TestReview5FuncFirstCallsNextOnce(t *testing.T) {
	for _, nw := range []bool{false, true} {
		var calls atomic.Int32
		s := source.Func(func(context.Context) (int, error) { return int(calls.Add(1)), nil })
		if nw {
			s = stage.NeverWaits(s)
		}
		var v int
		var ok bool
		var err error
		review5Do(t, "First", func() { v, ok, err = sink.First(context.Background(), s) })
		if v != 1 || !ok || err != nil || calls.Load() != 1 {
			t.Errorf("NeverWaits=%v: First = %v, %v, %v after %d calls of next; want 1, true, nil after 1", nw, v, ok, err, calls.Load())
		}
	}
}

// Promise: "never after the run was cancelled": with a parent context
// already cancelled, next is never called and the sink reports the
// cancellation; open and stop still pair up.
func TestReview5FuncPreCancelledCallsNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, mark := range []string{"plain", "NeverWaits", "Interruptible"} {
		for _, withMap := range []bool{false, true} {
			var calls atomic.Int32
			s := source.Func(func(context.Context) (int, error) { calls.Add(1); return 0, nil })
			switch mark {
			case "NeverWaits":
				s = stage.NeverWaits(s)
			case "Interruptible":
				s = stage.Interruptible(s)
			}
			if withMap {
				s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4))
			}
			var err, err2 error
			var ok bool
			review5Do(t, "sinks", func() {
				_, err = sink.Slice(ctx, s)
				_, ok, err2 = sink.First(ctx, s)
			})
			if !errors.Is(err, context.Canceled) || !errors.Is(err2, context.Canceled) || ok {
				t.Errorf("%s map=%v: Slice err %v, First ok=%v err %v; want context.Canceled", mark, withMap, err, ok, err2)
			}
			if k := calls.Load(); k != 0 {
				t.Errorf("%s map=%v: next called %d times under a cancelled context", mark, withMap, k)
			}
		}
	}
}

// review5Probe watches a stage.Source and the user functions of a run.
type review5Probe struct {
	opens, stops, nexts, inNext, inUser atomic.Int32
	cancelled                           atomic.Bool
	nextAfterCancel                     atomic.Int32
	returned                            atomic.Bool
	mu                                  sync.Mutex
	bad                                 []string
}

func (p *review5Probe) badf(format string, args ...any) {
	p.mu.Lock()
	p.bad = append(p.bad, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

func (p *review5Probe) user() func() {
	p.inUser.Add(1)
	return func() { p.inUser.Add(-1) }
}

// source returns n items 0..n-1, then end (io.EOF or an error); onNext runs in
// each call of next with the item's index (n for the end).
func (p *review5Probe) source(n int, end error, onNext func(i int)) stage.Stream[int] {
	return stage.Source(func(ctx context.Context) (func(context.Context) (int, error), func()) {
		p.opens.Add(1)
		i := 0
		next := func(context.Context) (int, error) {
			if p.inNext.Add(1) != 1 {
				p.badf("next called concurrently")
			}
			defer p.inNext.Add(-1)
			if p.cancelled.Load() {
				p.nextAfterCancel.Add(1)
			}
			p.nexts.Add(1)
			if onNext != nil {
				onNext(i)
			}
			if i == n {
				return 0, end
			}
			i++
			return i - 1, nil
		}
		stop := func() {
			if p.stops.Add(1) > p.opens.Load() {
				p.badf("stop called %d times for %d opens", p.stops.Load(), p.opens.Load())
			}
			if k := p.inUser.Load(); k != 0 {
				p.badf("stop called while %d user function calls were still running", k)
			}
			if p.inNext.Load() != 0 {
				p.badf("stop called while next was running")
			}
			if p.returned.Load() {
				p.badf("stop called after the sink returned")
			}
		}
		return next, stop
	})
}

func (p *review5Probe) check(t *testing.T, wantOpens int) {
	t.Helper()
	p.returned.Store(true)
	if k := p.inUser.Load(); k != 0 {
		t.Errorf("%d user function calls still running when the sink returned", k)
	}
	if p.inNext.Load() != 0 {
		t.Errorf("next still running when the sink returned")
	}
	if o, s := p.opens.Load(), p.stops.Load(); o != int32(wantOpens) || s != int32(wantOpens) {
		t.Errorf("open called %d times, stop %d times; want %d and %d (stop once per run, before the sink returns)", o, s, wantOpens, wantOpens)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, b := range p.bad {
		t.Error(b)
	}
}

// Promise: "stop is called once every goroutine of the run has exited,
// whether the run succeeded, failed or stopped early"; "no user function is
// running" when a sink returns; open is called once per run.
func TestReview5SourceStopOnceAfterEverything(t *testing.T) {
	type scenario struct {
		name string
		run  func(p *review5Probe) error
		want func(err error) bool
		runs int
	}
	idMap := func(p *review5Probe) func(context.Context, int) (int, error) {
		return func(_ context.Context, v int) (int, error) { defer p.user()(); return v, nil }
	}
	scenarios := []scenario{
		{"complete", func(p *review5Probe) error {
			got, err := sink.Slice(context.Background(), stage.Map(p.source(20, io.EOF, nil), idMap(p), stage.Workers(4)))
			if len(got) != 20 {
				return fmt.Errorf("got %d items", len(got))
			}
			return err
		}, func(err error) bool { return err == nil }, 1},
		{"FailFast", func(p *review5Probe) error {
			_, err := sink.Slice(context.Background(), stage.Map(p.source(20, io.EOF, nil), func(ctx context.Context, v int) (int, error) {
				defer p.user()()
				if v == 3 {
					return 0, errReview5Map
				}
				<-ctx.Done() // the others wait for the run's end, then run on a little ignoring it
				review5Yield()
				return v, nil
			}, stage.Workers(4)))
			return err
		}, func(err error) bool { return errors.Is(err, errReview5Map) }, 1},
		{"First with a call that outlives the cancellation", func(p *review5Probe) error {
			v, ok, err := sink.First(context.Background(), stage.Map(p.source(20, io.EOF, nil), func(ctx context.Context, v int) (int, error) {
				defer p.user()()
				if v != 0 {
					<-ctx.Done()
					review5Yield()
				}
				return v, nil
			}, stage.Workers(3)))
			if v != 0 || !ok {
				return fmt.Errorf("First = %v, %v", v, ok)
			}
			return err
		}, func(err error) bool { return err == nil }, 1},
		{"cancel in callback", func(p *review5Probe) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			return sink.ForEach(ctx, stage.Map(p.source(20, io.EOF, nil), idMap(p), stage.Workers(2)), func(_ context.Context, v int) error {
				defer p.user()()
				if v == 2 {
					cancel()
				}
				return nil
			})
		}, func(err error) bool { return errors.Is(err, context.Canceled) }, 1},
		{"source error", func(p *review5Probe) error {
			got, err := sink.Slice(context.Background(), stage.Map(p.source(5, errReview5, nil), idMap(p), stage.Workers(4)))
			if len(got) != 5 {
				return fmt.Errorf("got %v, want the 5 items before the failure", got)
			}
			return err
		}, func(err error) bool { return review5IsSourceErr(err) && errors.Is(err, errReview5) }, 1},
		{"break out of All", func(p *review5Probe) error {
			k := 0
			for _, err := range sink.All(context.Background(), stage.Map(p.source(20, io.EOF, nil), idMap(p), stage.Workers(4))) {
				if err != nil {
					return err
				}
				if k++; k == 2 {
					break
				}
			}
			return nil
		}, func(err error) bool { return err == nil }, 1},
		{"ErrStop", func(p *review5Probe) error {
			return sink.ForEach(context.Background(), p.source(20, io.EOF, nil), func(_ context.Context, v int) error {
				if v == 1 {
					return stage.ErrStop
				}
				return nil
			})
		}, func(err error) bool { return err == nil }, 1},
		{"two runs", func(p *review5Probe) error {
			s := stage.Map(p.source(3, io.EOF, nil), idMap(p), stage.Workers(2))
			if _, err := sink.Slice(context.Background(), s); err != nil {
				return err
			}
			_, err := sink.Slice(context.Background(), s)
			return err
		}, func(err error) bool { return err == nil }, 2},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			p := new(review5Probe)
			var err error
			review5Do(t, sc.name, func() { err = sc.run(p) })
			if !sc.want(err) {
				t.Errorf("err = %v", err)
			}
			p.check(t, sc.runs)
		})
	}
}

// Promise: a run that fails the check (an unconsumed Tee branch) fails
// "before any item is taken" — next is never called — and whatever open took
// is released (open and stop pair up). A pre-cancelled run and one whose
// Until stop is already done take nothing either.
func TestReview5SourceNothingTakenRunsStillPairOpenStop(t *testing.T) {
	t.Run("Tee unconsumed", func(t *testing.T) {
		p := new(review5Probe)
		var err error
		review5Do(t, "Slice", func() { _, err = sink.Slice(context.Background(), stage.Tee(p.source(5, io.EOF, nil), 2)[0]) })
		if !errors.Is(err, stage.ErrUnconsumedBranch) {
			t.Errorf("err = %v, want ErrUnconsumedBranch", err)
		}
		if p.nexts.Load() != 0 {
			t.Errorf("next called %d times by a run that failed its check", p.nexts.Load())
		}
		if p.opens.Load() != p.stops.Load() {
			t.Errorf("open called %d times, stop %d times", p.opens.Load(), p.stops.Load())
		}
	})
	t.Run("pre-cancelled", func(t *testing.T) {
		p := new(review5Probe)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		var err error
		review5Do(t, "Slice", func() {
			_, err = sink.Slice(ctx, stage.Map(p.source(5, io.EOF, nil), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2)))
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		if p.nexts.Load() != 0 {
			t.Errorf("next called %d times under a cancelled context", p.nexts.Load())
		}
		p.check(t, 1)
	})
	t.Run("Until already stopped", func(t *testing.T) {
		p := new(review5Probe)
		stop, drain := context.WithCancel(context.Background())
		drain()
		var got []int
		var err error
		review5Do(t, "Slice", func() { got, err = sink.Slice(context.Background(), stage.Until(p.source(5, io.EOF, nil), stop)) })
		if err != nil || len(got) != 0 {
			t.Errorf("got %v, %v; want nothing, nil", got, err)
		}
		if p.nexts.Load() != 0 {
			t.Errorf("next called %d times although stop was done", p.nexts.Load())
		}
		p.check(t, 1)
	})
}

// Promise: cancellation of the parent context at every point — inside the
// k-th call of next, inside the k-th call of the stage's function, inside the
// sink's callback at the k-th item — ends the run with context.Canceled; next
// is never called once the run is cancelled (checked where the order is
// certain: after a cancel made inside next); stop runs once, after every
// user call; no user call outlives the sink.
func TestReview5FuncCancelAtEveryPoint(t *testing.T) {
	const n = 8
	for _, mark := range []string{"plain", "NeverWaits", "Interruptible"} {
		for _, where := range []string{"next", "map", "callback"} {
			for k := range n {
				for _, workers := range []int{1, 3} {
					name := fmt.Sprintf("%s/%s/at %d/workers %d", mark, where, k, workers)
					ctx, cancel := context.WithCancel(context.Background())
					p := new(review5Probe)
					onNext := func(i int) {
						if where == "next" && i == k {
							cancel()
							p.cancelled.Store(true)
						}
					}
					var s stage.Stream[int] = p.source(n, io.EOF, onNext)
					switch mark {
					case "NeverWaits":
						s = stage.NeverWaits(s)
					case "Interruptible":
						s = stage.Interruptible(s)
					}
					s = stage.Map(s, func(ctx context.Context, v int) (int, error) {
						defer p.user()()
						if where == "map" && v == k {
							cancel()
						}
						return v, nil
					}, stage.Workers(workers))
					var err error
					var got []int
					review5Do(t, name, func() {
						err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
							defer p.user()()
							got = append(got, v)
							if where == "callback" && v == k {
								cancel()
							}
							return nil
						})
					})
					cancel()
					if !errors.Is(err, context.Canceled) {
						t.Errorf("%s: err = %v, want context.Canceled", name, err)
					}
					if c := p.nextAfterCancel.Load(); c != 0 {
						t.Errorf("%s: next called %d times after the run was cancelled", name, c)
					}
					if where == "callback" && workers == 1 && !slices.Equal(got, review5Ints(k+1)) {
						t.Errorf("%s: delivered %v, want %v", name, got, review5Ints(k+1))
					}
					p.check(t, 1)
				}
			}
		}
	}
}

// Promise (Source): "it also ends when another source of the run fails ...:
// an error next then returns ends the stream quietly" — the run reports the
// failing source's *SourceError, not the cancellation the other source saw.
func TestReview5SourceQuietEndWhenAnotherSourceFails(t *testing.T) {
	for _, pos := range []string{"first", "second"} {
		blocked := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(ctx context.Context) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			}, nil
		})
		i := 100
		failing := source.Func(func(context.Context) (int, error) {
			if i == 103 {
				return 0, errReview5
			}
			i++
			return i - 1, nil
		})
		ins := []stage.Stream[int]{blocked, failing}
		if pos == "second" {
			ins = []stage.Stream[int]{failing, blocked}
		}
		var got []int
		var err error
		review5Do(t, "Slice over Merge", func() { got, err = sink.Slice(context.Background(), stage.Merge(ins...)) })
		if !review5IsSourceErr(err) || !errors.Is(err, errReview5) {
			t.Errorf("%s: err = %v, want the failing source's SourceError", pos, err)
		}
		if errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v also reports the other source's context error, which should end its stream quietly", pos, err)
		}
		review5SameSet(t, pos+": items", got, []int{100, 101, 102})
	}
}

// Promise (Until, README service): a Func that waits on a queue and honours
// ctx is drained quietly: the sink returns nil with every item taken.
func TestReview5FuncUntilDrainsWaitingNext(t *testing.T) {
	queue := make(chan int, 10)
	for i := range 5 {
		queue <- i
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	jobs := stage.Until(source.Func(func(ctx context.Context) (int, error) {
		select {
		case j := <-queue:
			return j, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}), stop)
	var got []int
	var err error
	review5Do(t, "ForEach", func() {
		err = sink.ForEach(context.Background(), stage.Map(jobs, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3)),
			func(_ context.Context, v int) error {
				got = append(got, v)
				if len(got) == 5 {
					drain()
				}
				return nil
			})
	})
	if err != nil {
		t.Errorf("err = %v, want nil (drain is not abort)", err)
	}
	review5SameSet(t, "items", got, review5Ints(5))
}

// ---------------------------------------------------------------------------
// Interruptible

// Promise (Interruptible): "a consumer goroutine asks next for an item that is
// ready, and leaves the waiting to the stage's own workers": next, called with
// a context that is already done, returns the context's error when nothing is
// ready; that answer must be neither the end of the stream nor a failure. A
// producer that hands out items in lock step with the sink makes "nothing
// ready" common. source.Chan is Interruptible too.
func TestReview5InterruptibleProbeIsNotAFailure(t *testing.T) {
	const n = 3000
	for _, kind := range []string{"source.Chan", "Interruptible(Source)"} {
		for _, pipe := range []string{"Map4", "Map4+Filter2", "Filter1"} {
			t.Run(kind+"/"+pipe, func(t *testing.T) {
				q := make(chan int, 4)
				var s stage.Stream[int]
				if kind == "source.Chan" {
					s = source.Chan(q)
				} else {
					s = stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
						recv := func(v int, ok bool) (int, error) {
							if !ok {
								return 0, io.EOF
							}
							return v, nil
						}
						return func(ctx context.Context) (int, error) {
							select {
							case v, ok := <-q:
								return recv(v, ok)
							default:
							}
							select {
							case v, ok := <-q:
								return recv(v, ok)
							case <-ctx.Done():
								return 0, ctx.Err()
							}
						}, nil
					}))
				}
				id := func(_ context.Context, v int) (int, error) { return v, nil }
				keep := func(_ context.Context, v int) (bool, error) { return true, nil }
				switch pipe {
				case "Map4":
					s = stage.Map(s, id, stage.Workers(4))
				case "Map4+Filter2":
					s = stage.Filter(stage.Map(s, id, stage.Workers(4)), keep, stage.Workers(2))
				default:
					s = stage.Filter(s, keep, stage.Workers(1))
				}
				progress := make(chan int, n)
				quit := make(chan struct{})
				var wg sync.WaitGroup
				wg.Go(func() {
					defer close(q)
					seen := 0
					for i := 0; i < n; {
						for range 1 + i%3 {
							if i == n {
								break
							}
							select {
							case q <- i:
							case <-quit:
								return
							}
							i++
						}
						for seen < i {
							select {
							case <-progress:
								seen++
							case <-quit:
								return
							}
						}
					}
				})
				var got []int
				var err error
				review5Do(t, "ForEach", func() {
					err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
						got = append(got, v)
						progress <- v
						return nil
					})
				})
				close(quit)
				wg.Wait()
				if err != nil {
					t.Errorf("err = %v, want nil", err)
				}
				review5SameSet(t, "items", got, review5Ints(n))
			})
		}
	}
}

// ---------------------------------------------------------------------------
// source.Seq / Seq2

type review5SeqProbe struct {
	steps           atomic.Int32
	deferred        atomic.Bool
	cancelled       atomic.Bool
	stepAfterCancel atomic.Int32
}

func (p *review5SeqProbe) seq(n int, onStep func(i int)) iter.Seq[int] {
	return func(yield func(int) bool) {
		defer p.deferred.Store(true)
		for i := range n {
			if p.cancelled.Load() {
				p.stepAfterCancel.Add(1)
			}
			p.steps.Add(1)
			if onStep != nil {
				onStep(i)
			}
			if !yield(i) {
				return
			}
		}
	}
}

// Promise (Seq): "The iterator advances one step each time a stage is ready
// for an item; when the run ends, early or not, the iterator is stopped (its
// deferred calls run) before the sink returns. Each run ranges over seq
// again." And "never after the run was cancelled": no step follows a cancel
// made inside a step.
func TestReview5SeqStepsAndStops(t *testing.T) {
	t.Run("First steps once", func(t *testing.T) {
		for _, nw := range []bool{false, true} {
			p := new(review5SeqProbe)
			s := source.Seq(p.seq(10, nil))
			if nw {
				s = stage.NeverWaits(s)
			}
			var v int
			var ok bool
			var err error
			var deferredAtReturn bool
			review5Do(t, "First", func() {
				v, ok, err = sink.First(context.Background(), s)
				deferredAtReturn = p.deferred.Load()
			})
			if v != 0 || !ok || err != nil {
				t.Errorf("NeverWaits=%v: First = %v, %v, %v", nw, v, ok, err)
			}
			if p.steps.Load() != 1 {
				t.Errorf("NeverWaits=%v: the iterator made %d steps for First over a bare Seq, want 1", nw, p.steps.Load())
			}
			if !deferredAtReturn {
				t.Errorf("NeverWaits=%v: the iterator's deferred calls had not run when First returned", nw)
			}
		}
	})
	t.Run("stopped before return", func(t *testing.T) {
		type sc struct {
			name string
			run  func(s stage.Stream[int]) error
			want func(error) bool
		}
		scs := []sc{
			{"complete", func(s stage.Stream[int]) error {
				got, err := sink.Slice(context.Background(), stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(3)))
				if len(got) != 10 {
					return fmt.Errorf("got %v", got)
				}
				return err
			}, func(err error) bool { return err == nil }},
			{"FailFast downstream", func(s stage.Stream[int]) error {
				_, err := sink.Slice(context.Background(), stage.Map(s, func(_ context.Context, v int) (int, error) {
					if v == 2 {
						return 0, errReview5Map
					}
					return v, nil
				}, stage.Workers(2)))
				return err
			}, func(err error) bool { return errors.Is(err, errReview5Map) }},
			{"cancel in callback", func(s stage.Stream[int]) error {
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				return sink.ForEach(ctx, s, func(_ context.Context, v int) error {
					if v == 3 {
						cancel()
					}
					return nil
				})
			}, func(err error) bool { return errors.Is(err, context.Canceled) }},
			{"break out of All", func(s stage.Stream[int]) error {
				for v, err := range sink.All(context.Background(), s) {
					if err != nil {
						return err
					}
					if v == 4 {
						break
					}
				}
				return nil
			}, func(err error) bool { return err == nil }},
		}
		for _, c := range scs {
			for _, nw := range []bool{false, true} {
				p := new(review5SeqProbe)
				s := source.Seq(p.seq(10, nil))
				if nw {
					s = stage.NeverWaits(s)
				}
				var err error
				var deferredAtReturn bool
				review5Do(t, c.name, func() {
					err = c.run(s)
					deferredAtReturn = p.deferred.Load()
				})
				if !c.want(err) {
					t.Errorf("%s NeverWaits=%v: err = %v", c.name, nw, err)
				}
				if !deferredAtReturn {
					t.Errorf("%s NeverWaits=%v: the iterator was not stopped (deferred calls not run) when the sink returned", c.name, nw)
				}
			}
		}
	})
	t.Run("cancel inside a step", func(t *testing.T) {
		for k := range 6 {
			for _, workers := range []int{0, 1, 3} {
				p := new(review5SeqProbe)
				ctx, cancel := context.WithCancel(context.Background())
				s := source.Seq(p.seq(10, func(i int) {
					if i == k {
						cancel()
						p.cancelled.Store(true)
					}
				}))
				if workers > 0 {
					s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
				}
				var err error
				review5Do(t, "Slice", func() { _, err = sink.Slice(ctx, s) })
				cancel()
				if !errors.Is(err, context.Canceled) {
					t.Errorf("cancel at step %d, workers %d: err = %v", k, workers, err)
				}
				if c := p.stepAfterCancel.Load(); c != 0 {
					t.Errorf("cancel at step %d, workers %d: the iterator advanced %d steps after the run was cancelled", k, workers, c)
				}
				if !p.deferred.Load() {
					t.Errorf("cancel at step %d, workers %d: iterator not stopped", k, workers)
				}
			}
		}
	})
	t.Run("each run ranges again", func(t *testing.T) {
		p := new(review5SeqProbe)
		s := source.Seq(p.seq(4, nil))
		for run := range 3 {
			var got []int
			var err error
			review5Do(t, "Slice", func() { got, err = sink.Slice(context.Background(), s) })
			if err != nil || !slices.Equal(got, []int{0, 1, 2, 3}) {
				t.Errorf("run %d: %v, %v", run, got, err)
			}
		}
	})
}

// Promise (Seq2): "The first error ends the run with a *stage.SourceError
// after the items before it went through; the iterator is not advanced after
// it" — the yield that carried the error answers false — and it is stopped
// before the sink returns.
func TestReview5Seq2ErrorStopsTheIterator(t *testing.T) {
	for _, workers := range []int{0, 1, 4} {
		var advanced, deferred atomic.Bool
		seq := func(yield func(int, error) bool) {
			defer deferred.Store(true)
			for i := range 30 {
				if !yield(i, nil) {
					return
				}
			}
			if yield(-1, errReview5) {
				advanced.Store(true)
				yield(30, nil)
			}
		}
		var s stage.Stream[int] = source.Seq2(seq)
		if workers > 0 {
			s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
		}
		var got []int
		var err error
		var deferredAtReturn bool
		review5Do(t, "Slice", func() {
			got, err = sink.Slice(context.Background(), s)
			deferredAtReturn = deferred.Load()
		})
		if !review5IsSourceErr(err) || !errors.Is(err, errReview5) {
			t.Errorf("workers %d: err = %v, want a SourceError wrapping the iterator's error", workers, err)
		}
		review5SameSet(t, fmt.Sprintf("workers %d: items before the error", workers), got, review5Ints(30))
		if advanced.Load() {
			t.Errorf("workers %d: the iterator was advanced after its error (yield returned true)", workers)
		}
		if !deferredAtReturn {
			t.Errorf("workers %d: the iterator was not stopped before the sink returned", workers)
		}
	}
}

// ---------------------------------------------------------------------------
// stage.AckSource

type review5AckRec struct {
	mu        sync.Mutex
	handed    int
	doneCount map[int]int
	doneErr   map[int]error
	committed map[int]bool
	dropped   map[int]bool
	cbFailed  map[int]bool
	strictNil bool
	stops     int
	returned  bool
	cancelled bool
	bad       []string
}

func newReview5AckRec(strict bool) *review5AckRec {
	return &review5AckRec{
		doneCount: map[int]int{}, doneErr: map[int]error{}, committed: map[int]bool{},
		dropped: map[int]bool{}, cbFailed: map[int]bool{}, strictNil: strict,
	}
}

func (r *review5AckRec) badf(format string, args ...any) {
	r.bad = append(r.bad, fmt.Sprintf(format, args...))
}

func (r *review5AckRec) mark(m map[int]bool, id int) {
	r.mu.Lock()
	m[id] = true
	r.mu.Unlock()
}

type review5Ack struct {
	r  *review5AckRec
	id int
}

func (a review5Ack) Done(err error) {
	r := a.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.id < 0 {
		r.badf("Done(%v) called on the acknowledgement returned together with the end of the stream (no item was handed out)", err)
		return
	}
	r.doneCount[a.id]++
	if r.doneCount[a.id] > 1 {
		r.badf("item %d: Done called %d times (this time with %v)", a.id, r.doneCount[a.id], err)
	} else {
		r.doneErr[a.id] = err
	}
	if err == nil && r.strictNil && !r.committed[a.id] && !r.dropped[a.id] {
		r.badf("item %d: Done(nil) before the sink committed it (and no Filter dropped it)", a.id)
	}
	if r.stops > 0 {
		r.badf("item %d: Done(%v) after the source's stop", a.id, err)
	}
	if r.returned {
		r.badf("item %d: Done(%v) after the sink returned", a.id, err)
	}
}

// review5AckSource hands out n items 0..n-1 with acknowledgements; the end
// (io.EOF or endErr) comes with an acknowledgement that must never be used.
func review5AckSource(r *review5AckRec, n int, endErr error, onNext func(i int)) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		next := func(context.Context) (int, stage.Ack, error) {
			r.mu.Lock()
			if r.cancelled {
				r.badf("next called (item %d) after the run was cancelled inside next", i)
			}
			r.mu.Unlock()
			if onNext != nil {
				onNext(i)
			}
			if i == n {
				return -1, review5Ack{r, -1}, endErr
			}
			r.mu.Lock()
			r.handed++
			r.mu.Unlock()
			i++
			return i - 1, review5Ack{r, i - 1}, nil
		}
		stop := func() {
			r.mu.Lock()
			r.stops++
			if r.stops > 1 {
				r.badf("stop called %d times", r.stops)
			}
			r.mu.Unlock()
		}
		return next, stop
	})
}

type review5AckCase struct {
	n                        int
	filterWorkers            int // 0: no Filter
	mapWorkers               int
	ordered                  bool
	buffer                   int
	forward                  bool
	mapFail                  int
	sinkKind                 int // 0 ForEach, 1 First, 2 All, 3 Slice
	cbFail, cbStop, cbCancel int
	breakAfter               int
	nextCancel               int
}

func (c review5AckCase) String() string {
	return fmt.Sprintf("%+v", struct {
		N, FilterW, MapW int
		Ordered          bool
		Buffer           int
		Forward          bool
		MapFail          int
		Sink             string
		CbFail, CbStop   int
		CbCancel, Break  int
		NextCancel       int
	}{c.n, c.filterWorkers, c.mapWorkers, c.ordered, c.buffer, c.forward, c.mapFail,
		[]string{"ForEach", "First", "All", "Slice"}[c.sinkKind], c.cbFail, c.cbStop, c.cbCancel, c.breakAfter, c.nextCancel})
}

// runReview5AckCase runs one pipeline over an AckSource and checks every
// acknowledgement against the documented fates (see Ack).
func runReview5AckCase(t *testing.T, c review5AckCase) {
	t.Helper()
	r := newReview5AckRec(c.sinkKind == 0 || c.sinkKind == 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stopHit, cancelHit atomic.Bool
	onNext := func(i int) {
		if i == c.nextCancel {
			cancel()
			cancelHit.Store(true)
			r.mu.Lock()
			r.cancelled = true
			r.mu.Unlock()
		}
	}
	var s stage.Stream[int] = review5AckSource(r, c.n, io.EOF, onNext)
	if c.filterWorkers > 0 {
		s = stage.Filter(s, func(_ context.Context, v int) (bool, error) {
			if v%3 == 1 {
				r.mark(r.dropped, v)
				return false, nil
			}
			return true, nil
		}, stage.Workers(c.filterWorkers))
	}
	opts := []stage.Option{stage.Workers(c.mapWorkers)}
	if c.ordered {
		opts = append(opts, stage.Ordered())
	}
	if c.buffer > 0 {
		opts = append(opts, stage.Buffer(c.buffer))
	}
	if c.forward {
		opts = append(opts, stage.OnError(stage.Forward))
	}
	s = stage.Map(s, func(_ context.Context, v int) (int, error) {
		if v == c.mapFail {
			return 0, errReview5Map
		}
		if v%4 == 0 {
			runtime.Gosched()
		}
		return v, nil
	}, opts...)

	var err error
	var seenErrs []error
	review5Do(t, c.String(), func() {
		switch c.sinkKind {
		case 0:
			err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				switch v {
				case c.cbFail:
					r.mark(r.cbFailed, v)
					return errReview5Cb
				case c.cbStop:
					r.mark(r.committed, v)
					stopHit.Store(true)
					return stage.ErrStop
				case c.cbCancel:
					cancel()
					cancelHit.Store(true)
				}
				r.mark(r.committed, v)
				return nil
			})
		case 1:
			var v int
			var ok bool
			v, ok, err = sink.First(ctx, s)
			if ok {
				r.mark(r.committed, v)
			}
			stopHit.Store(true)
		case 2:
			k := 0
			for v, e := range sink.All(ctx, s) {
				k++
				if e == nil {
					r.mark(r.committed, v)
				} else {
					seenErrs = append(seenErrs, e)
				}
				if k == c.breakAfter {
					stopHit.Store(true)
					break
				}
			}
			err = errors.Join(seenErrs...)
		case 3:
			var got []int
			got, err = sink.Slice(ctx, s)
			for _, v := range got {
				r.mark(r.committed, v)
			}
		}
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.returned = true
	fail := func(format string, args ...any) {
		t.Errorf("%v (sink err %v): %s", c, err, fmt.Sprintf(format, args...))
	}
	for _, b := range r.bad {
		fail("%s", b)
	}
	if r.stops != 1 {
		fail("stop called %d times by the time the sink returned, want 1", r.stops)
	}
	for id := range r.handed {
		cnt, derr := r.doneCount[id], r.doneErr[id]
		switch {
		case r.committed[id]:
			if cnt != 1 || derr != nil {
				fail("item %d was committed by the sink but got Done %d times (err %v); want Done(nil) once", id, cnt, derr)
			}
		case r.cbFailed[id]:
			if cnt != 1 || !errors.Is(derr, errReview5Cb) {
				fail("item %d: the sink callback failed but Done called %d times with %v; want Done(the callback's error)", id, cnt, derr)
			}
		case r.dropped[id]:
			if cnt > 0 && derr != nil {
				fail("item %d was dropped by Filter but told %v", id, derr)
			}
		case id == c.mapFail:
			if errors.Is(err, errReview5Map) && (cnt != 1 || !errors.Is(derr, errReview5Map)) {
				fail("item %d failed in Map and its error reached the sink, but Done called %d times with %v", id, cnt, derr)
			}
			if cnt > 0 && !errors.Is(derr, errReview5Map) {
				fail("item %d failed in Map but was told %v", id, derr)
			}
		default:
			if cnt > 0 {
				fail("item %d was never committed but got Done(%v)", id, derr)
			}
		}
	}
	// A run that went to the end settles every item handed out.
	var fe *sink.ForwardedError
	complete := (c.sinkKind == 0 || c.sinkKind == 3) && !stopHit.Load() && !cancelHit.Load() &&
		(err == nil || (errors.As(err, &fe) && !errors.Is(err, errReview5Cb) && !errors.Is(err, context.Canceled)))
	if complete {
		for id := range r.handed {
			if r.doneCount[id] != 1 {
				fail("the run went to the end but item %d got Done %d times", id, r.doneCount[id])
			}
		}
	}
}

// Promise (Ack, AckSource): Done(nil) only after the sink committed the item
// (or a Filter dropped it), Done(err) with the first error when its way
// failed (a failed commit, a FailFast error at it, a forwarded error reaching
// the sink), never for items not committed when the run ended early
// (First, break, ErrStop, cancellation, an error elsewhere), at most once,
// before stop and before the sink returns; an item whose outputs were all
// committed is told nil whatever ends the run. Randomised pipelines: Filter
// and Map with Workers(n), Ordered, Buffer, FailFast/Forward; sinks ForEach,
// First, All, Slice; cancellation inside next or the callback.
func TestReview5AckSourceRandomFates(t *testing.T) {
	for seed := range 400 {
		rng := rand.New(rand.NewPCG(uint64(seed), 55))
		pick := func(p int, n int) int { // -1 with probability 1-1/p
			if rng.IntN(p) != 0 {
				return -1
			}
			return rng.IntN(n + 1)
		}
		n := rng.IntN(14)
		c := review5AckCase{
			n:             n,
			filterWorkers: []int{0, 0, 1, 3}[rng.IntN(4)],
			mapWorkers:    []int{1, 2, 4}[rng.IntN(3)],
			ordered:       rng.IntN(2) == 0,
			buffer:        []int{0, 0, 1, 3}[rng.IntN(4)],
			forward:       rng.IntN(3) == 0,
			mapFail:       pick(3, n),
			sinkKind:      rng.IntN(4),
			cbFail:        pick(4, n),
			cbStop:        pick(4, n),
			cbCancel:      pick(4, n),
			breakAfter:    1 + rng.IntN(n+1),
			nextCancel:    pick(6, n),
		}
		runReview5AckCase(t, c)
		if t.Failed() {
			t.Fatalf("stopped at seed %d", seed)
		}
	}
}

// Promise: "never for items not handed out" — an acknowledgement returned
// together with io.EOF or with a failure is no item's: Done is never called
// on it, and the items before the end are settled as usual.
func TestReview5AckNeverForItemsNotHandedOut(t *testing.T) {
	for _, end := range []error{io.EOF, errReview5} {
		for _, workers := range []int{1, 4} {
			r := newReview5AckRec(true)
			s := stage.Map(review5AckSource(r, 6, end, nil), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(workers))
			var err error
			review5Do(t, "ForEach", func() {
				err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error { r.mark(r.committed, v); return nil })
			})
			if end == io.EOF && err != nil || end != io.EOF && !errors.Is(err, end) {
				t.Errorf("end %v: err = %v", end, err)
			}
			r.mu.Lock()
			for _, b := range r.bad {
				t.Errorf("end %v, workers %d: %s", end, workers, b)
			}
			for id := range 6 {
				if r.doneCount[id] != 1 || r.doneErr[id] != nil {
					t.Errorf("end %v, workers %d: committed item %d got Done %d times (%v)", end, workers, id, r.doneCount[id], r.doneErr[id])
				}
			}
			r.mu.Unlock()
		}
	}
}

// Promise: Done(nil) "only after the sink committed it": while the sink's
// callback for an item runs (the Map worker having finished it long before),
// the item is not acknowledged.
func TestReview5AckNotBeforeCallbackReturns(t *testing.T) {
	r := newReview5AckRec(false)
	inCallback := make(chan struct{})
	release := make(chan struct{})
	s := stage.Map(review5AckSource(r, 4, io.EOF, nil), func(_ context.Context, v int) (int, error) { return v, nil },
		stage.Workers(4), stage.Buffer(4))
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		var once sync.Once
		err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
			once.Do(func() { close(inCallback); <-release }) // the first callback waits
			return nil
		})
	}()
	review5Wait(t, inCallback, "the first callback")
	review5Yield()
	r.mu.Lock()
	var early []int
	for id, cnt := range r.doneCount {
		if cnt > 0 {
			early = append(early, id)
		}
	}
	r.mu.Unlock()
	close(release)
	review5Wait(t, done, "ForEach")
	if err != nil {
		t.Fatal(err)
	}
	if len(early) > 0 {
		t.Errorf("items %v acknowledged while the sink's first callback was still running (at most the ones it already committed may be; none was)", early)
	}
}

// ---------------------------------------------------------------------------
// panics: never crash the process (child processes)

func TestReview5PanicsNeverCrash(t *testing.T) {
	panicky := func(n int, v any) func(context.Context) (int, error) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				panic(v)
			}
			i++
			return i - 1, nil
		}
	}
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	slice := func(t *testing.T, s stage.Stream[int]) ([]int, error) {
		var got []int
		var err error
		review5Do(t, "sink.Slice", func() { got, err = sink.Slice(context.Background(), s) })
		return got, err
	}
	wantPanicSourceErr := func(t *testing.T, err error) {
		t.Helper()
		if !review5IsPanicInSource(err) {
			t.Errorf("err = %v (%T), want a *stage.SourceError wrapping a *stage.PanicError", err, err)
		}
	}
	scenarios := map[string]func(t *testing.T){
		"func next panics": func(t *testing.T) {
			got, err := slice(t, source.Func(panicky(3, "boom")))
			wantPanicSourceErr(t, err)
			if !slices.Equal(got, []int{0, 1, 2}) {
				t.Errorf("got %v, want [0 1 2]", got)
			}
		},
		"func next panics with an error": func(t *testing.T) {
			got, err := slice(t, stage.Map(source.Func(panicky(3, errReview5)), id, stage.Workers(4)))
			wantPanicSourceErr(t, err)
			if !errors.Is(err, errReview5) {
				t.Errorf("err = %v: errors.Is does not see the panic's error value", err)
			}
			review5SameSet(t, "items", got, []int{0, 1, 2})
		},
		"NeverWaits next panics under cheap stages (consumer goroutines)": func(t *testing.T) {
			s := stage.Map(stage.NeverWaits(source.Func(panicky(2000, "boom"))), id, stage.Workers(4))
			s = stage.Filter(s, func(_ context.Context, v int) (bool, error) { return true, nil }, stage.Workers(4))
			got, err := slice(t, s)
			wantPanicSourceErr(t, err)
			review5SameSet(t, "items", got, review5Ints(2000))
		},
		"Interruptible next panics under cheap stages": func(t *testing.T) {
			s := stage.Map(stage.Interruptible(source.Func(panicky(2000, "boom"))), id, stage.Workers(4))
			got, err := slice(t, s)
			wantPanicSourceErr(t, err)
			review5SameSet(t, "items", got, review5Ints(2000))
		},
		"open panics": func(t *testing.T) {
			p := new(review5Probe)
			bad := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) { panic("open boom") })
			_, err := slice(t, stage.Merge(p.source(3, io.EOF, nil), bad))
			wantPanicSourceErr(t, err)
			if p.opens.Load() != p.stops.Load() {
				t.Errorf("the other source: open %d, stop %d", p.opens.Load(), p.stops.Load())
			}
		},
		"seq panics": func(t *testing.T) {
			got, err := slice(t, source.Seq(func(yield func(int) bool) {
				for i := range 3 {
					if !yield(i) {
						return
					}
				}
				panic("seq boom")
			}))
			wantPanicSourceErr(t, err)
			if !slices.Equal(got, []int{0, 1, 2}) {
				t.Errorf("got %v", got)
			}
		},
		"seq deferred panic in a complete run": func(t *testing.T) {
			got, err := slice(t, source.Seq(func(yield func(int) bool) {
				defer func() { panic("deferred boom") }()
				for i := range 3 {
					if !yield(i) {
						return
					}
				}
			}))
			wantPanicSourceErr(t, err)
			if !slices.Equal(got, []int{0, 1, 2}) {
				t.Errorf("got %v", got)
			}
		},
		"seq deferred panic after First": func(t *testing.T) {
			var v int
			var ok bool
			var err error
			review5Do(t, "First", func() {
				v, ok, err = sink.First(context.Background(), source.Seq(func(yield func(int) bool) {
					defer func() { panic("deferred boom") }()
					for i := range 3 {
						if !yield(i) {
							return
						}
					}
				}))
			})
			if v != 0 || !ok || err != nil {
				t.Errorf("First = %v, %v, %v; want 0, true, nil (what happens after the first item never changes it)", v, ok, err)
			}
		},
		"seq2 panics": func(t *testing.T) {
			got, err := slice(t, stage.Map(source.Seq2(func(yield func(int, error) bool) {
				for i := range 3 {
					if !yield(i, nil) {
						return
					}
				}
				panic(errReview5)
			}), id, stage.Workers(2)))
			wantPanicSourceErr(t, err)
			review5SameSet(t, "items", got, []int{0, 1, 2})
		},
		"lines reader panics": func(t *testing.T) {
			r := &review5PanicReader{first: "a\nb\npart"}
			var got []string
			var err error
			review5Do(t, "Slice", func() { got, err = sink.Slice(context.Background(), source.Lines(r)) })
			wantPanicSourceErr(t, err)
			if !slices.Equal(got, []string{"a", "b"}) {
				t.Errorf("got %q, want [a b]", got)
			}
		},
		"ack Done panics": func(t *testing.T) {
			s := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
				i := 0
				return func(context.Context) (int, stage.Ack, error) {
					if i == 5 {
						return 0, nil, io.EOF
					}
					i++
					return i - 1, review5PanicAck(i - 1), nil
				}, nil
			})
			_, err := slice(t, stage.Map(s, id, stage.Workers(2)))
			wantPanicSourceErr(t, err)
		},
		"ack Done panics for First's item": func(t *testing.T) {
			s := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
				return func(context.Context) (int, stage.Ack, error) { return 2, review5PanicAck(2), nil }, nil
			})
			var v int
			var ok bool
			var err error
			review5Do(t, "First", func() { v, ok, err = sink.First(context.Background(), s) })
			if v != 2 || !ok || err != nil {
				t.Errorf("First = %v, %v, %v; want 2, true, nil (its result was decided first)", v, ok, err)
			}
		},
		"map function panics": func(t *testing.T) {
			p := new(review5Probe)
			_, err := slice(t, stage.Map(p.source(10, io.EOF, nil), func(_ context.Context, v int) (int, error) {
				defer p.user()()
				if v == 2 {
					var a []int
					return a[v], nil
				}
				return v, nil
			}, stage.Workers(3)))
			var se *stage.Error
			var pe *stage.PanicError
			var re runtime.Error
			if !errors.As(err, &se) || !errors.As(err, &pe) || !errors.As(err, &re) {
				t.Errorf("err = %v, want a *stage.Error wrapping a *stage.PanicError of a runtime.Error", err)
			}
			p.check(t, 1)
		},
	}
	// stop panics: "reported by panicking in stop with a *SourceError: the
	// run fails with that error as it is, unless its result was decided first
	// (a failure, a cancellation, an early stop)"; any other panic in stop
	// "becomes a *SourceError".
	stopPanics := func(v any) stage.Stream[int] {
		return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			i := 0
			return func(context.Context) (int, error) {
				if i == 5 {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			}, func() { panic(v) }
		})
	}
	scenarios["stop panics with a value"] = func(t *testing.T) {
		got, err := slice(t, stage.Map(stopPanics("stop boom"), id, stage.Workers(2)))
		wantPanicSourceErr(t, err)
		review5SameSet(t, "items", got, review5Ints(5))
	}
	scenarios["stop panics with a *SourceError"] = func(t *testing.T) {
		mine := &stage.SourceError{Err: errReview5}
		got, err := slice(t, stopPanics(mine))
		var se *stage.SourceError
		if !errors.As(err, &se) || se != mine || !errors.Is(err, errReview5) {
			t.Errorf("err = %v (%T), want the *SourceError stop panicked with, as it is", err, err)
		}
		var pe *stage.PanicError
		if errors.As(err, &pe) {
			t.Errorf("err = %v wraps a *PanicError; the *SourceError should be reported as it is", err)
		}
		if !slices.Equal(got, review5Ints(5)) {
			t.Errorf("got %v", got)
		}
	}
	scenarios["stop panics after First"] = func(t *testing.T) {
		var v int
		var ok bool
		var err error
		review5Do(t, "First", func() { v, ok, err = sink.First(context.Background(), stopPanics(&stage.SourceError{Err: errReview5})) })
		if v != 0 || !ok || err != nil {
			t.Errorf("First = %v, %v, %v; want 0, true, nil (an early stop decided the result first)", v, ok, err)
		}
	}
	scenarios["stop panics after ErrStop"] = func(t *testing.T) {
		var err error
		review5Do(t, "ForEach", func() {
			err = sink.ForEach(context.Background(), stopPanics("boom"), func(context.Context, int) error { return stage.ErrStop })
		})
		if err != nil {
			t.Errorf("err = %v, want nil (ErrStop decided the result first)", err)
		}
	}
	scenarios["stop panics after cancellation"] = func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var err error
		review5Do(t, "ForEach", func() {
			err = sink.ForEach(ctx, stopPanics(&stage.SourceError{Err: errReview5}), func(context.Context, int) error { cancel(); return nil })
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled (the cancellation decided the result first)", err)
		}
	}
	scenarios["stop panics after FailFast"] = func(t *testing.T) {
		_, err := slice(t, stage.Map(stopPanics(&stage.SourceError{Err: errReview5}), func(_ context.Context, v int) (int, error) {
			if v == 1 {
				return 0, errReview5Map
			}
			return v, nil
		}, stage.Workers(1)))
		var se *stage.Error
		if !errors.Is(err, errReview5Map) || !errors.As(err, &se) {
			t.Errorf("err = %v, want the FailFast *stage.Error (decided first)", err)
		}
	}
	review5Children(t, scenarios)
}

type review5PanicReader struct {
	first string
	calls int
}

func (r *review5PanicReader) Read(p []byte) (int, error) {
	r.calls++
	if r.calls == 1 {
		return copy(p, r.first), nil
	}
	panic("read boom")
}

type review5PanicAck int

func (a review5PanicAck) Done(error) {
	if a == 2 {
		panic("done boom")
	}
}
