package sink_test

// Adversarial review of package sink, written from its documentation only.
// Every test fails when a documented promise is broken; none needs timing to
// pass: gates and channels order events, durations only detect hangs.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

const advWatchdog = runcheck.Watchdog

// TestReviewAdvCheckerSeesALeak checks the instrument: a goroutine that a
// run leaves parked, or busy, is reported; none is reported for a run that
// leaves nothing.
func TestReviewAdvCheckerSeesALeak(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	_, before := runcheck.Goroutines()
	go func() { <-release }()
	spin := make(chan struct{})
	go func() {
		for {
			select {
			case <-release:
				return
			case <-spin:
			default:
				runtime.Gosched()
			}
		}
	}()
	if leaked := runcheck.LeakedSince(before); len(leaked) != 2 {
		t.Fatalf("the checker saw %d leaked goroutines, want 2:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	}
	_, before = runcheck.Goroutines()
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
	for range 100 {
		runtime.Gosched()
	}
	if leaked := runcheck.LeakedSince(before); len(leaked) != 0 {
		t.Fatalf("the checker saw a leak where there was none:\n%s", strings.Join(leaked, "\n\n"))
	}
}

// advProbe instruments the user functions of a pipeline: how many run now,
// how many were called, how many sources were opened and stopped, and an
// optional hook run at each call (with the call's 1-based number).
type advProbe struct {
	running atomic.Int32
	calls   atomic.Int32
	opens   atomic.Int32
	stops   atomic.Int32
	seqIn   atomic.Int32 // iterator bodies entered
	seqOut  atomic.Int32 // iterator bodies left (their defer ran)
	hook    func(call int32)
}

func (p *advProbe) enter() {
	p.running.Add(1)
	c := p.calls.Add(1)
	if p.hook != nil {
		p.hook(c)
	}
}

func (p *advProbe) exit() { p.running.Add(-1) }

const advN = 40

func advInts(n int) []int {
	xs := make([]int, n)
	for i := range xs {
		xs[i] = i
	}
	return xs
}

type advPipe struct {
	name  string
	build func(p *advProbe) stage.Stream[int]
}

// advPipes are pipelines of advN items each, of several shapes, every user
// function instrumented by the probe.
func advPipes() []advPipe {
	ident := func(p *advProbe) func(context.Context, int) (int, error) {
		return func(_ context.Context, x int) (int, error) {
			p.enter()
			defer p.exit()
			if x%5 == 0 {
				runtime.Gosched()
			}
			return x, nil
		}
	}
	return []advPipe{
		{"func", func(p *advProbe) stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				p.enter()
				defer p.exit()
				if i == advN {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			})
		}},
		{"slice-map4", func(p *advProbe) stage.Stream[int] {
			return stage.Map(source.Slice(advInts(advN)), ident(p), stage.Workers(4))
		}},
		{"source-map4-ordered-buf2", func(p *advProbe) stage.Stream[int] {
			src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				p.opens.Add(1)
				i := 0
				return func(context.Context) (int, error) {
					p.enter()
					defer p.exit()
					if i == advN {
						return 0, io.EOF
					}
					i++
					return i - 1, nil
				}, func() { p.stops.Add(1) }
			})
			return stage.Map(src, ident(p), stage.Workers(4), stage.Ordered(), stage.Buffer(2))
		}},
		{"chan-filter2-mapunbounded", func(p *advProbe) stage.Stream[int] {
			ch := make(chan int, advN)
			for i := range advN {
				ch <- i
			}
			close(ch)
			f := stage.Filter(source.Chan(ch), func(_ context.Context, x int) (bool, error) {
				p.enter()
				defer p.exit()
				return true, nil
			}, stage.Workers(2))
			return stage.Map(f, ident(p), stage.Workers(-1))
		}},
		{"merge-slice-seq", func(p *advProbe) stage.Stream[int] {
			seq := func(yield func(int) bool) {
				p.seqIn.Add(1)
				defer p.seqOut.Add(1)
				for i := advN / 2; i < advN; i++ {
					if !yield(i) {
						return
					}
				}
			}
			a := stage.Map(source.Slice(advInts(advN/2)), ident(p), stage.Workers(2))
			b := stage.Map(source.Seq(seq), ident(p), stage.Workers(3))
			return stage.Merge(a, b)
		}},
		{"tee-merge", func(p *advProbe) stage.Stream[int] {
			br := stage.Tee(source.Slice(advInts(advN)), 2)
			even := stage.Filter(br[0], func(_ context.Context, x int) (bool, error) {
				p.enter()
				defer p.exit()
				return x%2 == 0, nil
			}, stage.Workers(2))
			odd := stage.Filter(br[1], func(_ context.Context, x int) (bool, error) {
				p.enter()
				defer p.exit()
				return x%2 == 1, nil
			})
			return stage.Merge(even, odd)
		}},
		{"batch-unbatch", func(p *advProbe) stage.Stream[int] {
			m := stage.Map(source.Slice(advInts(advN)), ident(p), stage.Workers(3))
			return stage.Unbatch(stage.Batch(m, 4, time.Hour))
		}},
		{"keyby", func(p *advProbe) stage.Stream[int] {
			return stage.Map(source.Slice(advInts(advN)), ident(p), stage.Workers(4), stage.KeyBy(func(x int) int { return x % 3 }))
		}},
	}
}

var (
	errAdvCb   = errors.New("adv: callback failed")
	errAdvItem = errors.New("adv: item failed")
	errAdvSrc  = errors.New("adv: source failed")
	errAdvLate = errors.New("adv: late failure after the run was cancelled")
)

type advBoom struct{ where string }

type advEnding struct {
	name string
	// run runs a sink over s (the probe's hook may be set first) and returns
	// a complaint, or "" when the result is as documented.
	run func(p *advProbe, s stage.Stream[int]) string
}

func advIsCanceled(err error) string {
	if !errors.Is(err, context.Canceled) {
		return fmt.Sprintf("err %v, want errors.Is(err, context.Canceled)", err)
	}
	return ""
}

func advEndings() []advEnding {
	bg := context.Background()
	return []advEnding{
		{"Slice-success", func(p *advProbe, s stage.Stream[int]) string {
			got, err := sink.Slice(bg, s)
			slices.Sort(got)
			if err != nil || !slices.Equal(got, advInts(advN)) {
				return fmt.Sprintf("got %v, %v", got, err)
			}
			return ""
		}},
		{"Count-success", func(p *advProbe, s stage.Stream[int]) string {
			n, err := sink.Count(bg, s)
			if err != nil || n != advN {
				return fmt.Sprintf("got %d, %v", n, err)
			}
			return ""
		}},
		{"First", func(p *advProbe, s stage.Stream[int]) string {
			_, ok, err := sink.First(bg, s)
			if !ok || err != nil {
				return fmt.Sprintf("got ok=%v, %v", ok, err)
			}
			return ""
		}},
		{"All-break@0", func(p *advProbe, s stage.Stream[int]) string { return advAllBreak(s, 0) }},
		{"All-break@7", func(p *advProbe, s stage.Stream[int]) string { return advAllBreak(s, 7) }},
		{"All-full", func(p *advProbe, s stage.Stream[int]) string { return advAllBreak(s, advN+1) }},
		{"All-panic@3", func(p *advProbe, s stage.Stream[int]) (msg string) {
			boom := &advBoom{"body"}
			defer func() {
				if r := recover(); r != boom {
					msg = fmt.Sprintf("recovered %#v, want the body's own panic value", r)
				}
			}()
			i := 0
			for range sink.All(bg, s) {
				if i == 3 {
					panic(boom)
				}
				i++
			}
			return "the loop ended without the body's panic"
		}},
		{"ForEach-error@5", func(p *advProbe, s stage.Stream[int]) string {
			i := 0
			err := sink.ForEach(bg, s, func(context.Context, int) error {
				if i++; i == 6 {
					return errAdvCb
				}
				return nil
			})
			var ie *stage.Error
			if !errors.Is(err, errAdvCb) || !errors.As(err, &ie) || ie.Stage != "foreach" {
				return fmt.Sprintf("err %v, want the callback's error in a *stage.Error of stage foreach", err)
			}
			return ""
		}},
		{"ForEach-panic@5", func(p *advProbe, s stage.Stream[int]) string {
			i := 0
			err := sink.ForEach(bg, s, func(context.Context, int) error {
				if i++; i == 6 {
					panic("callback")
				}
				return nil
			})
			var pe *stage.PanicError
			if !errors.As(err, &pe) || pe.Value != "callback" {
				return fmt.Sprintf("err %v, want the callback's panic as a *stage.PanicError", err)
			}
			return ""
		}},
		{"ForEach-cancel-in-callback@5", func(p *advProbe, s stage.Stream[int]) string {
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			i := 0
			err := sink.ForEach(ctx, s, func(context.Context, int) error {
				if i++; i == 6 {
					cancel()
				}
				return nil
			})
			return advIsCanceled(err)
		}},
		{"Reduce-panic@5", func(p *advProbe, s stage.Stream[int]) string {
			i := 0
			_, err := sink.Reduce(bg, s, 0, func(acc, v int) int {
				if i++; i == 6 {
					panic("reduce")
				}
				return acc + v
			})
			var pe *stage.PanicError
			if !errors.As(err, &pe) {
				return fmt.Sprintf("err %v, want a *stage.PanicError", err)
			}
			return ""
		}},
		{"Run-ErrStop@5", func(p *advProbe, s stage.Stream[int]) string {
			i := 0
			err := stage.Run(bg, s, func(context.Context, int, error) error {
				if i++; i == 6 {
					return stage.ErrStop
				}
				return nil
			})
			if err != nil {
				return fmt.Sprintf("err %v, want nil after ErrStop", err)
			}
			return ""
		}},
		{"Chan-full-out-cancel-in-user-fn@2", func(p *advProbe, s stage.Stream[int]) string {
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			p.hook = func(c int32) {
				if c == 2 {
					cancel()
				}
			}
			out := make(chan int, 1) // nobody reads: Chan blocks once it is full
			err := sink.Chan(ctx, s, out)
			return advIsCanceled(err)
		}},
		{"Slice-cancel-in-user-fn@3", func(p *advProbe, s stage.Stream[int]) string {
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			p.hook = func(c int32) {
				if c == 3 {
					cancel()
				}
			}
			_, err := sink.Slice(ctx, s)
			return advIsCanceled(err)
		}},
		{"Count-precancelled", func(p *advProbe, s stage.Stream[int]) string {
			ctx, cancel := context.WithCancel(bg)
			cancel()
			n, err := sink.Count(ctx, s)
			if n != 0 {
				return fmt.Sprintf("counted %d in a cancelled run", n)
			}
			return advIsCanceled(err)
		}},
		{"Slice-failfast-downstream", func(p *advProbe, s stage.Stream[int]) string {
			i := atomic.Int32{}
			m := stage.Map(s, func(_ context.Context, x int) (int, error) {
				if i.Add(1) == 4 {
					return 0, errAdvItem
				}
				return x, nil
			}, stage.Workers(2))
			_, err := sink.Slice(bg, m)
			if !errors.Is(err, errAdvItem) {
				return fmt.Sprintf("err %v, want the FailFast error", err)
			}
			return ""
		}},
	}
}

func advAllBreak(s stage.Stream[int], at int) string {
	i := 0
	for _, err := range sink.All(context.Background(), s) {
		if err != nil {
			return fmt.Sprintf("pair %d: unexpected error %v", i, err)
		}
		if i == at {
			break
		}
		i++
	}
	if at > advN && i != advN {
		return fmt.Sprintf("%d values, want %d", i, advN)
	}
	return ""
}

// TestReviewAdvSinksLeaveNothingRunning attacks the package promise "returns
// only when every goroutine of the run has exited: on success, on error, on
// an early exit, on cancellation of ctx, and when a user callback panics".
// Every sink and way of ending runs over pipelines of several shapes; right
// after the sink returns (no retry) no goroutine started by the run may be
// alive, no instrumented user function may be running, every source opened
// must be stopped, and every iterator body entered must have been left.
func TestReviewAdvSinksLeaveNothingRunning(t *testing.T) {
	reps := 4
	if testing.Short() {
		reps = 1
	}
	exited := runcheck.Exited.Load()
	defer func() {
		t.Logf("%d goroutines were not parked yet still alive when a sink returned, and exited soon after", runcheck.Exited.Load()-exited)
	}()
	for _, pipe := range advPipes() {
		for _, end := range advEndings() {
			label := pipe.name + "/" + end.name
			for range reps {
				p := &advProbe{}
				s := pipe.build(p)
				var msg string
				runcheck.Run(t, label, func() { msg = end.run(p, s) })
				if msg != "" {
					t.Errorf("%s: %s", label, msg)
				}
				if r := p.running.Load(); r != 0 {
					t.Errorf("%s: %d user functions still running when the sink returned", label, r)
				}
				if p.opens.Load() != p.stops.Load() {
					t.Errorf("%s: %d sources opened, %d stopped when the sink returned", label, p.opens.Load(), p.stops.Load())
				}
				if p.seqIn.Load() != p.seqOut.Load() {
					t.Errorf("%s: %d iterators entered, %d left when the sink returned", label, p.seqIn.Load(), p.seqOut.Load())
				}
				if t.Failed() {
					return
				}
			}
		}
	}
}

// TestReviewAdvSinkWaitsForCallsThatOutliveTheCancellation attacks "no user
// function is running" when a sink returns early: stage calls that see the
// cancellation but take a while to return (here: they yield the processor
// many times after ctx.Done) must all have returned before First, a break
// out of All, a ForEach error or a cancelled Count return.
func TestReviewAdvSinkWaitsForCallsThatOutliveTheCancellation(t *testing.T) {
	build := func(running *atomic.Int32) stage.Stream[int] {
		return stage.Map(source.Slice(advInts(20)), func(ctx context.Context, x int) (int, error) {
			running.Add(1)
			defer running.Add(-1)
			if x == 0 {
				return 0, nil
			}
			<-ctx.Done()
			for range 2000 {
				runtime.Gosched()
			}
			return x, nil
		}, stage.Workers(4), stage.Buffer(1))
	}
	ends := map[string]func(s stage.Stream[int]){
		"First": func(s stage.Stream[int]) { _, _, _ = sink.First(context.Background(), s) },
		"All-break": func(s stage.Stream[int]) {
			for range sink.All(context.Background(), s) {
				break
			}
		},
		"ForEach-error": func(s stage.Stream[int]) {
			_ = sink.ForEach(context.Background(), s, func(context.Context, int) error { return errAdvCb })
		},
		"Count-cancel": func(s stage.Stream[int]) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			_ = stage.Run(ctx, s, func(context.Context, int, error) error { cancel(); return nil })
		},
	}
	for name, end := range ends {
		for range 10 {
			var running atomic.Int32
			s := build(&running)
			runcheck.Run(t, name, func() { end(s) })
			if r := running.Load(); r != 0 {
				t.Fatalf("%s: %d stage calls still running when the sink returned", name, r)
			}
		}
	}
}

// advOrdered is 0..n-1 through an ordered 4-worker Map that forwards an error
// for x%4 == 3 (a value of 42 returned with it, which must not be seen),
// then an ordered 3-worker Map that multiplies by 10: its items, in order, are
// known exactly.
func advOrdered(n int, running *atomic.Int32) stage.Stream[int] {
	m1 := stage.Map(source.Slice(advInts(n)), func(_ context.Context, x int) (int, error) {
		running.Add(1)
		defer running.Add(-1)
		if x%3 == 0 {
			runtime.Gosched()
		}
		if x%4 == 3 {
			return 42, fmt.Errorf("item %d: %w", x, errAdvItem)
		}
		return x, nil
	}, stage.Workers(4), stage.Ordered(), stage.OnError(stage.Forward))
	return stage.Map(m1, func(_ context.Context, x int) (int, error) {
		running.Add(1)
		defer running.Add(-1)
		return x * 10, nil
	}, stage.Workers(3), stage.Ordered())
}

// TestReviewAdvAllBreakAtEveryPosition attacks All: forwarded errors yielded
// in their place as (zero, err), breaking at every position stops the run and
// the loop statement ends only once every goroutine has exited, with no user
// function running, and the loop saw exactly the expected prefix.
func TestReviewAdvAllBreakAtEveryPosition(t *testing.T) {
	const n = 24
	type pair struct {
		v   int
		bad bool
	}
	var want []pair
	for x := range n {
		if x%4 == 3 {
			want = append(want, pair{0, true})
		} else {
			want = append(want, pair{x * 10, false})
		}
	}
	for k := 0; k <= n; k++ {
		for range 3 {
			var running atomic.Int32
			s := advOrdered(n, &running)
			var got []pair
			var msg string
			runcheck.Run(t, fmt.Sprintf("break@%d", k), func() {
				for v, err := range sink.All(context.Background(), s) {
					if err != nil {
						var ie *stage.Error
						if !errors.Is(err, errAdvItem) || !errors.As(err, &ie) || ie.Index != len(got) {
							msg = fmt.Sprintf("pair %d: error %v is not the forwarded error of item %d", len(got), err, len(got))
						}
					}
					got = append(got, pair{v, err != nil})
					if len(got) == k+1 {
						break
					}
				}
			})
			if msg != "" {
				t.Fatal(msg)
			}
			if r := running.Load(); r != 0 {
				t.Fatalf("break@%d: %d user functions running after the loop", k, r)
			}
			if wantK := want[:min(k+1, n)]; !slices.Equal(got, wantK) {
				t.Fatalf("break@%d: pairs %v, want %v", k, got, wantK)
			}
		}
	}
}

// TestReviewAdvZeroValueWithErrors attacks "(zero, err) for a forwarded
// error", "the last pair is (zero, err)", "(zero, false, err)" for First and
// "f(ctx, zero, err)" for Run: a stage or source that returns a non-zero value
// together with its error must not leak that value to the consumer.
func TestReviewAdvZeroValueWithErrors(t *testing.T) {
	type big struct {
		p *int
		s string
	}
	forty2 := 42
	leaky := big{&forty2, "leaked"}
	failing := func(policy stage.ErrorPolicy) stage.Stream[big] {
		return stage.Map(source.Slice(advInts(3)), func(_ context.Context, x int) (big, error) {
			if x == 1 {
				return leaky, errAdvItem
			}
			return big{nil, fmt.Sprint(x)}, nil
		}, stage.Workers(1), stage.OnError(policy))
	}
	srcFails := func() stage.Stream[big] {
		i := 0
		return source.Func(func(context.Context) (big, error) {
			if i == 1 {
				return leaky, errAdvSrc
			}
			i++
			return big{nil, "0"}, nil
		})
	}
	seq2Fails := func() stage.Stream[big] {
		return source.Seq2(func(yield func(big, error) bool) {
			if yield(big{nil, "0"}, nil) {
				yield(leaky, errAdvSrc)
			}
		})
	}
	streams := map[string]func() stage.Stream[big]{
		"forward":  func() stage.Stream[big] { return failing(stage.Forward) },
		"failfast": func() stage.Stream[big] { return failing(stage.FailFast) },
		"func":     srcFails,
		"seq2":     seq2Fails,
	}
	for name, mk := range streams {
		for v, err := range sink.All(context.Background(), mk()) {
			if err != nil && v != (big{}) {
				t.Errorf("%s: All yielded (%+v, %v): the value with an error must be zero", name, v, err)
			}
		}
		err := stage.Run(context.Background(), mk(), func(_ context.Context, v big, err error) error {
			if err != nil && v != (big{}) {
				t.Errorf("%s: Run's f got (%+v, %v): the value with an error must be zero", name, v, err)
			}
			return nil
		})
		_ = err
		// First over the failing item alone: skip item 0.
		skipped := stage.Filter(mk(), func(_ context.Context, v big) (bool, error) { return v.s != "0", nil }, stage.Workers(1))
		if v, ok, err := sink.First(context.Background(), skipped); ok || err == nil || v != (big{}) {
			t.Errorf("%s: First = (%+v, %v, %v), want (zero, false, err)", name, v, ok, err)
		}
	}
}

// TestReviewAdvAllPanicInBody attacks "A panic in the loop body stops the
// run the same way and then continues": the very value panicked with must
// reach the caller (not a runtime error about a recovered loop body panic,
// not a wrapper), wherever the body panics (first value, a forwarded error
// pair, the ending error pair, the last value of a finished run), with
// nothing of the run left and the source stopped.
func TestReviewAdvAllPanicInBody(t *testing.T) {
	type scen struct {
		name  string
		build func(p *advProbe) stage.Stream[int]
		when  func(i int, v int, err error) bool
	}
	withStop := func(p *advProbe, n int, failAt int) stage.Stream[int] {
		return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			p.opens.Add(1)
			i := 0
			return func(context.Context) (int, error) {
				p.enter()
				defer p.exit()
				if i == failAt {
					return 0, errAdvSrc
				}
				if i == n {
					return 0, io.EOF
				}
				i++
				return i - 1, nil
			}, func() { p.stops.Add(1) }
		})
	}
	fwd := func(p *advProbe, src stage.Stream[int]) stage.Stream[int] {
		return stage.Map(src, func(_ context.Context, x int) (int, error) {
			p.enter()
			defer p.exit()
			if x == 2 {
				return 0, errAdvItem
			}
			return x, nil
		}, stage.Workers(3), stage.Ordered(), stage.OnError(stage.Forward))
	}
	scens := []scen{
		{"first-value", func(p *advProbe) stage.Stream[int] { return fwd(p, withStop(p, 10, -1)) },
			func(i, v int, err error) bool { return i == 0 }},
		{"forwarded-error-pair", func(p *advProbe) stage.Stream[int] { return fwd(p, withStop(p, 10, -1)) },
			func(i, v int, err error) bool { return err != nil }},
		{"ending-error-pair", func(p *advProbe) stage.Stream[int] { return fwd(p, withStop(p, 10, 5)) },
			func(i, v int, err error) bool { return errors.Is(err, errAdvSrc) }},
		{"last-value", func(p *advProbe) stage.Stream[int] { return fwd(p, withStop(p, 6, -1)) },
			func(i, v int, err error) bool { return i == 5 }},
		{"bare-source", func(p *advProbe) stage.Stream[int] { return withStop(p, 10, -1) },
			func(i, v int, err error) bool { return i == 1 }},
	}
	values := map[string]func() any{
		"pointer": func() any { return &advBoom{"body"} },
		"error":   func() any { return fmt.Errorf("an error value") },
		"string":  func() any { return "a string" },
	}
	for _, sc := range scens {
		for vname, mkv := range values {
			for range 3 {
				label := sc.name + "/" + vname
				p := &advProbe{}
				s := sc.build(p)
				boom := mkv()
				var got any
				panicked := false
				runcheck.Run(t, label, func() {
					defer func() {
						got = recover()
					}()
					i := 0
					for v, err := range sink.All(context.Background(), s) {
						if sc.when(i, v, err) {
							panicked = true
							panic(boom)
						}
						i++
					}
				})
				if !panicked {
					t.Fatalf("%s: the body never reached its panic", label)
				}
				if got != boom {
					t.Fatalf("%s: recovered %T %v, want the body's own panic value %T %v", label, got, got, boom, boom)
				}
				if p.running.Load() != 0 || p.opens.Load() != 1 || p.stops.Load() != 1 {
					t.Fatalf("%s: after the panic: %d user calls running, %d opened, %d stopped", label,
						p.running.Load(), p.opens.Load(), p.stops.Load())
				}
			}
		}
	}
}

// TestReviewAdvAllGoexitInBody attacks the same promise with runtime.Goexit
// in the loop body (what t.FailNow does inside a range over All): the run
// must stop and every goroutine of it must have exited when the goroutine's
// deferred calls run, which come after the iterator's.
func TestReviewAdvAllGoexitInBody(t *testing.T) {
	for _, at := range []int{0, 3} {
		for range 5 {
			p := &advProbe{}
			s := advPipes()[2].build(p) // stage.Source with stop, ordered Map
			var leaked []string
			var running, opens, stops int32
			done := make(chan struct{})
			go func() {
				_, before := runcheck.Goroutines()
				defer close(done)
				defer func() {
					leaked = runcheck.LeakedSince(before)
					running, opens, stops = p.running.Load(), p.opens.Load(), p.stops.Load()
				}()
				i := 0
				for range sink.All(context.Background(), s) {
					if i == at {
						runtime.Goexit()
					}
					i++
				}
			}()
			select {
			case <-done:
			case <-time.After(advWatchdog):
				t.Fatal("hung after runtime.Goexit in the loop body")
			}
			if len(leaked) > 0 || running != 0 || opens != stops {
				t.Fatalf("Goexit@%d: %d goroutines left, %d calls running, %d opened, %d stopped:\n%s",
					at, len(leaked), running, opens, stops, strings.Join(leaked, "\n\n"))
			}
		}
	}
}

// TestReviewAdvAllNestedAndConcurrentRanges attacks "Each range over the
// iterator runs s anew" with ranges that overlap: a range nested in a range
// over the same iterator (with breaks), and two goroutines ranging at once.
func TestReviewAdvAllNestedAndConcurrentRanges(t *testing.T) {
	s := stage.Map(source.Slice(advInts(6)), func(_ context.Context, x int) (int, error) { return x, nil },
		stage.Workers(2), stage.Ordered())
	it := sink.All(context.Background(), s)
	runcheck.Run(t, "nested", func() {
		var outer []int
		for v, err := range it {
			if err != nil {
				t.Errorf("outer: %v", err)
				return
			}
			outer = append(outer, v)
			var inner []int
			for w, err := range it {
				if err != nil {
					t.Errorf("inner: %v", err)
					return
				}
				inner = append(inner, w)
				if w == v {
					break
				}
			}
			if !slices.Equal(inner, advInts(v+1)) {
				t.Errorf("inner range at outer %d: %v", v, inner)
			}
		}
		if !slices.Equal(outer, advInts(6)) {
			t.Errorf("outer %v", outer)
		}
	})
	runcheck.NoHang(t, "concurrent", func() {
		var wg sync.WaitGroup
		results := make([][]int, 4)
		for g := range results {
			wg.Go(func() {
				for v, err := range it {
					if err != nil {
						return
					}
					results[g] = append(results[g], v)
				}
			})
		}
		wg.Wait()
		for g, r := range results {
			if !slices.Equal(r, advInts(6)) {
				t.Errorf("goroutine %d saw %v", g, r)
			}
		}
	})
}

// advLateFailures is a pipeline whose first item reaches the sink while item
// 1 is in a worker, and in which everything still running fails once the
// run's context is done: item 1's call returns a FailFast error, the next
// call of the source returns a source error. hold, if not nil, is called by
// item 0's call once item 1's call has started. A sink that ends the run at
// its first item must not let these later failures change its result.
func advLateFailures(hold func()) stage.Stream[int] {
	item1 := make(chan struct{})
	calls := 0
	src := source.Func(func(ctx context.Context) (int, error) {
		calls++
		switch calls {
		case 1, 2:
			return calls - 1, nil
		}
		<-ctx.Done()
		return 0, errAdvSrc
	})
	return stage.Map(src, func(ctx context.Context, x int) (int, error) {
		if x == 0 {
			<-item1
			if hold != nil {
				hold()
			}
			return 0, nil
		}
		close(item1)
		<-ctx.Done()
		return 0, errAdvLate
	}, stage.Workers(4))
}

// TestReviewAdvResultIgnoresFailuresAfterTheEnd attacks "its result is a
// function of the items and errors it saw, never of timing": the run ends at
// the first item (First, a break, ErrStop, a callback error or panic, a
// cancellation of ctx), and everything still running then fails; the result
// must be, every time, what the first item decided.
func TestReviewAdvResultIgnoresFailuresAfterTheEnd(t *testing.T) {
	bg := context.Background()
	late := func(err error) bool { return errors.Is(err, errAdvLate) || errors.Is(err, errAdvSrc) }
	scens := map[string]func() string{
		"First": func() string {
			v, ok, err := sink.First(bg, advLateFailures(nil))
			if v != 0 || !ok || err != nil {
				return fmt.Sprintf("First = (%d, %v, %v), want (0, true, nil)", v, ok, err)
			}
			return ""
		},
		"All-break": func() string {
			var pairs []string
			for v, err := range sink.All(bg, advLateFailures(nil)) {
				pairs = append(pairs, fmt.Sprint(v, err))
				break
			}
			if !slices.Equal(pairs, []string{"0 <nil>"}) {
				return fmt.Sprintf("pairs %v", pairs)
			}
			return ""
		},
		"Run-ErrStop": func() string {
			err := stage.Run(bg, advLateFailures(nil), func(context.Context, int, error) error { return stage.ErrStop })
			if err != nil {
				return fmt.Sprintf("Run = %v, want nil after ErrStop", err)
			}
			return ""
		},
		"ForEach-error": func() string {
			err := sink.ForEach(bg, advLateFailures(nil), func(context.Context, int) error { return errAdvCb })
			var ie *stage.Error
			if !errors.Is(err, errAdvCb) || late(err) || !errors.As(err, &ie) || ie.Stage != "foreach" {
				return fmt.Sprintf("ForEach = %v, want the callback's error alone", err)
			}
			return ""
		},
		"ForEach-panic": func() string {
			err := sink.ForEach(bg, advLateFailures(nil), func(context.Context, int) error { panic("cb") })
			var pe *stage.PanicError
			if !errors.As(err, &pe) || pe.Value != "cb" || late(err) {
				return fmt.Sprintf("ForEach = %v, want the callback's panic alone", err)
			}
			return ""
		},
		"Reduce-panic": func() string {
			acc, err := sink.Reduce(bg, advLateFailures(nil), 7, func(int, int) int { panic("f") })
			var pe *stage.PanicError
			var ie *stage.Error
			if acc != 7 || !errors.As(err, &pe) || !errors.As(err, &ie) || ie.Stage != "reduce" || late(err) {
				return fmt.Sprintf("Reduce = %d, %v, want 7 and f's panic alone", acc, err)
			}
			return ""
		},
		"ForEach-cancel": func() string {
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			err := sink.ForEach(ctx, advLateFailures(nil), func(context.Context, int) error { cancel(); return nil })
			return advIsCanceled(err)
		},
	}
	// The caller's ctx is cancelled by item 0's call, before any item reached
	// the sink; what fails afterwards fails because of it: every sink must
	// report the cancellation.
	for name, run := range map[string]func(ctx context.Context, s stage.Stream[int]) error{
		"Slice": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err },
		"Count": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Count(ctx, s); return err },
		"Chan":  func(ctx context.Context, s stage.Stream[int]) error { return sink.Chan(ctx, s, make(chan int, 10)) },
		"Reduce": func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a })
			return err
		},
		"ForEach": func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		},
		"All": func(ctx context.Context, s stage.Stream[int]) error {
			var last error
			for _, err := range sink.All(ctx, s) {
				last = err
			}
			return last
		},
	} {
		scens["cancel-in-stage/"+name] = func() string {
			ctx, cancel := context.WithCancel(bg)
			defer cancel()
			return advIsCanceled(run(ctx, advLateFailures(cancel)))
		}
	}
	for name, sc := range scens {
		outcomes := map[string]int{}
		for range 30 {
			var msg string
			runcheck.Run(t, name, func() { msg = sc() })
			outcomes[msg]++
		}
		for msg, n := range outcomes {
			if msg != "" {
				t.Errorf("%s: %d of 30 runs: %s", name, n, msg)
			}
		}
	}
}

// TestReviewAdvForEachCauseIsItsError attacks "the run's context is
// cancelled with a *stage.Error (Stage "foreach") as its cause, and ForEach
// returns that error": a call in flight records context.Cause when its ctx
// ends; it must be the error ForEach returns, for an error and for a panic
// of f.
func TestReviewAdvForEachCauseIsItsError(t *testing.T) {
	for _, panics := range []bool{false, true} {
		for range 10 {
			started := make(chan struct{})
			var cause error
			s := stage.Map(source.Slice(advInts(5)), func(ctx context.Context, x int) (int, error) {
				if x == 1 {
					close(started)
					<-ctx.Done()
					cause = context.Cause(ctx)
					return 0, ctx.Err()
				}
				if x > 1 {
					<-ctx.Done()
					return 0, ctx.Err()
				}
				return x, nil
			}, stage.Workers(2), stage.Buffer(1))
			var err error
			runcheck.Run(t, "foreach-cause", func() {
				err = sink.ForEach(context.Background(), s, func(context.Context, int) error {
					<-started
					if panics {
						panic("f")
					}
					return errAdvCb
				})
			})
			var ie *stage.Error
			if !errors.As(cause, &ie) || ie.Stage != "foreach" {
				t.Fatalf("panics=%v: the run's cause is %v, want a *stage.Error of stage foreach", panics, cause)
			}
			if !errors.Is(err, ie) {
				t.Fatalf("panics=%v: ForEach returned %v, not the cause %v", panics, err, cause)
			}
			var pe *stage.PanicError
			if panics != errors.As(cause, &pe) || !panics && !errors.Is(cause, errAdvCb) {
				t.Fatalf("panics=%v: cause %v", panics, cause)
			}
		}
	}
}

// TestReviewAdvReduceAccumulatorAtTheEnd attacks "Reduce returns the
// accumulator as it stands when the run ends": f panics at value 5 of a bare
// slice (arrival order is input order): the accumulator holds 0+...+4; a
// cancelled ctx leaves init; forwarded errors and a source error leave the
// fold of every value, with both errors joined.
func TestReviewAdvReduceAccumulatorAtTheEnd(t *testing.T) {
	acc, err := sink.Reduce(context.Background(), source.Slice(advInts(10)), 0, func(a, v int) int {
		if v == 5 {
			panic("five")
		}
		return a + v
	})
	var pe *stage.PanicError
	if acc != 10 || !errors.As(err, &pe) || pe.Value != "five" {
		t.Errorf("panic at 5: Reduce = %d, %v, want 10 and the panic", acc, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	acc, err = sink.Reduce(ctx, source.Slice(advInts(10)), -1, func(a, v int) int { calls++; return a + v })
	if acc != -1 || calls != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: Reduce = %d, %v after %d calls, want -1, Canceled, 0 calls", acc, err, calls)
	}
	for range 20 {
		acc, err = sink.Reduce(context.Background(), advForwardThenSourceError(30), 0, func(a, v int) int { return a + v })
		want := 0
		for x := 0; x < 30; x += 2 {
			want += x
		}
		var fe *sink.ForwardedError
		var se *stage.SourceError
		if acc != want || !errors.As(err, &fe) || fe.Count != 15 || !errors.As(err, &se) || !errors.Is(err, errAdvSrc) {
			t.Fatalf("forward+source error: Reduce = %d, %v, want %d with 15 forwarded and the source error", acc, err, want)
		}
	}
}

// advForwardThenSourceError: a source of n items then an error, through an
// unordered 4-worker Map that forwards an error for every odd item.
func advForwardThenSourceError(n int) stage.Stream[int] {
	i := 0
	src := source.Func(func(context.Context) (int, error) {
		if i == n {
			return 0, errAdvSrc
		}
		i++
		return i - 1, nil
	})
	return stage.Map(src, func(_ context.Context, x int) (int, error) {
		if x%3 == 0 {
			runtime.Gosched()
		}
		if x%2 == 1 {
			return 0, fmt.Errorf("odd %d: %w", x, errAdvItem)
		}
		return x, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
}

// TestReviewAdvSourceErrorResultIsDeterministic attacks "once everything a
// failed source produced was delivered, the *stage.SourceError" and the
// ForwardedError count: with a source that fails after 30 items, half of them
// forwarded errors, through 4 unordered workers, every sink must see exactly
// the 15 values, 15 forwarded errors (a sample of SampleSize) and the source
// error, every run.
func TestReviewAdvSourceErrorResultIsDeterministic(t *testing.T) {
	var evens []int
	for x := 0; x < 30; x += 2 {
		evens = append(evens, x)
	}
	check := func(name string, got []int, err error) {
		t.Helper()
		slices.Sort(got)
		var fe *sink.ForwardedError
		var se *stage.SourceError
		if !slices.Equal(got, evens) || !errors.As(err, &fe) || !errors.As(err, &se) || !errors.Is(err, errAdvSrc) || !errors.Is(err, errAdvItem) {
			t.Fatalf("%s: %v, %v: want the 15 even values, the forwarded errors and the source error", name, got, err)
		}
		if fe.Count != 15 || len(fe.Sample) != sink.SampleSize {
			t.Fatalf("%s: ForwardedError Count %d Sample %d, want 15, %d", name, fe.Count, len(fe.Sample), sink.SampleSize)
		}
		for _, e := range fe.Sample {
			var ie *stage.Error
			if !errors.As(e, &ie) || ie.Index%2 != 1 {
				t.Fatalf("%s: sampled error %v is not a forwarded item error", name, e)
			}
		}
	}
	bg := context.Background()
	for range 20 {
		got, err := sink.Slice(bg, advForwardThenSourceError(30))
		check("Slice", got, err)
		n, err := sink.Count(bg, advForwardThenSourceError(30))
		check("Count", evens[:min(n, len(evens))], err)
		if n != 15 {
			t.Fatalf("Count = %d", n)
		}
		got = nil
		err = sink.ForEach(bg, advForwardThenSourceError(30), func(_ context.Context, v int) error { got = append(got, v); return nil })
		check("ForEach", got, err)
		out := make(chan int, 30)
		err = sink.Chan(bg, advForwardThenSourceError(30), out)
		got = nil
		for len(out) > 0 {
			got = append(got, <-out)
		}
		check("Chan", got, err)
		got = nil
		var last error
		fwd := 0
		for v, err := range sink.All(bg, advForwardThenSourceError(30)) {
			if last != nil {
				t.Fatalf("All: a pair after the ending error %v", last)
			}
			switch {
			case errors.Is(err, errAdvItem):
				fwd++
			case err != nil:
				last = err
			default:
				got = append(got, v)
			}
		}
		slices.Sort(got)
		var se *stage.SourceError
		if fwd != 15 || !slices.Equal(got, evens) || !errors.As(last, &se) {
			t.Fatalf("All: %d forwarded, values %v, last %v", fwd, got, last)
		}
	}
}

// TestReviewAdvChanSinkNeverClosesOut attacks "It never closes out": after
// every kind of ending, out is still open, holds only values of the run in
// arrival order, and nothing is sent on it once Chan returned.
func TestReviewAdvChanSinkNeverClosesOut(t *testing.T) {
	bg := context.Background()
	cancelled, cancel := context.WithCancel(bg)
	cancel()
	type scen struct {
		name string
		ctx  context.Context
		s    func() stage.Stream[int]
		want func(err error) bool
	}
	scens := []scen{
		{"success", bg, func() stage.Stream[int] { var r atomic.Int32; return advOrdered(12, &r) },
			func(err error) bool { var fe *sink.ForwardedError; return errors.As(err, &fe) && fe.Count == 3 }},
		{"empty", bg, func() stage.Stream[int] { return source.Slice[int](nil) }, func(err error) bool { return err == nil }},
		{"failfast", bg, func() stage.Stream[int] {
			return stage.Map(source.Slice(advInts(12)), func(_ context.Context, x int) (int, error) {
				if x == 6 {
					return 0, errAdvItem
				}
				return x * 10, nil
			}, stage.Workers(1))
		}, func(err error) bool { return errors.Is(err, errAdvItem) }},
		{"precancelled", cancelled, func() stage.Stream[int] { return source.Slice(advInts(12)) },
			func(err error) bool { return errors.Is(err, context.Canceled) }},
	}
	for _, sc := range scens {
		for range 5 {
			out := make(chan int, 100)
			var err error
			runcheck.Run(t, sc.name, func() { err = sink.Chan(sc.ctx, sc.s(), out) })
			if !sc.want(err) {
				t.Fatalf("%s: Chan = %v", sc.name, err)
			}
			var got []int
			for len(out) > 0 {
				got = append(got, <-out)
			}
			select {
			case v, ok := <-out:
				t.Fatalf("%s: out received (%d, %v) after Chan returned: closed or sent to late", sc.name, v, ok)
			default:
			}
			want := []int{0, 10, 20, 30, 40, 50}
			switch sc.name {
			case "success":
				want = []int{0, 10, 20, 40, 50, 60, 80, 90, 100}
			case "empty", "precancelled":
				want = nil
			}
			if !slices.Equal(got, want[:min(len(got), len(want))]) || sc.name == "success" && len(got) != len(want) {
				t.Fatalf("%s: out holds %v, want (a prefix of) %v in order", sc.name, got, want)
			}
			out <- 1 // would panic if Chan had closed it
		}
	}
	// A full out nobody reads, and ctx cancelled while Chan waits on it.
	for range 10 {
		out := make(chan int)
		ctx, cancel := context.WithCancel(bg)
		calls := 0
		src := stage.Map(source.Func(func(context.Context) (int, error) {
			if calls++; calls == 3 {
				cancel() // the Map reads ahead of Chan, which waits on out
			}
			return calls, nil
		}), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(2), stage.Buffer(2))
		var err error
		runcheck.Run(t, "full-out", func() { err = sink.Chan(ctx, src, out) })
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("full out, cancelled: Chan = %v", err)
		}
		select {
		case v, ok := <-out:
			t.Fatalf("full out: received (%d, %v) after Chan returned", v, ok)
		default:
		}
	}
}

// TestReviewAdvSliceHostileLength attacks "When s knows its length, the slice
// is made with room for that many values before the run (at most 4096 values
// and 64 KiB)": streams that claim math.MaxInt items, or 4096 items of 1 MiB
// each, must not make the sink allocate more than that bound (nor crash).
// Run in a child process: a violation may exhaust memory.
func TestReviewAdvSliceHostileLength(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		var res []string
		measure := func(f func()) uint64 {
			var a, b runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&a)
			f()
			runtime.ReadMemStats(&b)
			return b.TotalAlloc - a.TotalAlloc
		}
		// math.MaxInt items; the run is cancelled at the third call.
		alloc := measure(func() {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s := stage.Map(stage.Indexed(math.MaxInt, func(i int) int { return i }), func(_ context.Context, x int) (int, error) {
				if x == 2 {
					cancel()
				}
				return x, nil
			}, stage.Workers(1))
			got, err := sink.Slice(ctx, s)
			res = append(res, fmt.Sprintf("maxint: len<=3 %v canceled %v", len(got) <= 3, errors.Is(err, context.Canceled)))
		})
		res = append(res, fmt.Sprintf("maxint-alloc<16MiB %v", alloc < 16<<20))
		// 4096 items of 1 MiB each in a cancelled run: no value is delivered.
		alloc = measure(func() {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			got, err := sink.Slice(ctx, stage.Indexed(4096, func(int) [1 << 20]byte { return [1 << 20]byte{} }))
			res = append(res, fmt.Sprintf("huge-elem: nil %v canceled %v", got == nil, errors.Is(err, context.Canceled)))
		})
		res = append(res, fmt.Sprintf("huge-elem-alloc<16MiB %v", alloc < 16<<20))
		// 3 items of 1 MiB each: all delivered, intact.
		got, err := sink.Slice(context.Background(), stage.Indexed(3, func(i int) [1 << 20]byte {
			var b [1 << 20]byte
			b[0], b[len(b)-1] = byte(i+1), byte(i+1)
			return b
		}))
		ok := len(got) == 3 && err == nil
		for i := range got {
			ok = ok && got[i][0] == byte(i+1) && got[i][len(got[i])-1] == byte(i+1)
		}
		res = append(res, fmt.Sprintf("three-1MiB-ok %v", ok))
		return strings.Join(res, "; ")
	})
	if !parent {
		return
	}
	want := "maxint: len<=3 true canceled true; maxint-alloc<16MiB true; huge-elem: nil true canceled true; huge-elem-alloc<16MiB true; three-1MiB-ok true"
	if out != want {
		t.Fatalf("child outcome\n %q\nwant\n %q", out, want)
	}
}

// TestReviewAdvNilArgumentsPanicInTheCaller attacks "A nil out panics" (Chan)
// and "A nil f panics" (ForEach, Reduce): also over an empty stream and with
// a cancelled ctx, where a lazy check would never trip; and Stream.Len's "a
// sink that is given [the zero Stream] panics when it runs it". Each must be
// a panic of the caller's goroutine (a panic in a goroutine of the run would crash the
// process: the scenario runs in a child process).
func TestReviewAdvNilArgumentsPanicInTheCaller(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		try := func(f func() error) (r string) {
			defer func() {
				if p := recover(); p != nil {
					r = "panic"
				}
			}()
			return fmt.Sprintf("returned %v", f())
		}
		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		var res []string
		for _, ctx := range []context.Context{context.Background(), cancelled} {
			for _, s := range []stage.Stream[int]{source.Slice[int](nil), source.Slice(advInts(3))} {
				res = append(res,
					try(func() error { return sink.Chan(ctx, s, nil) }),
					try(func() error { return sink.ForEach(ctx, s, nil) }),
					try(func() error { _, err := sink.Reduce[int, int](ctx, s, 0, nil); return err }))
			}
		}
		// The zero Stream: "a sink that is given it panics when it runs it".
		var zero stage.Stream[int]
		res = append(res,
			try(func() error { _, err := sink.Count(context.Background(), zero); return err }),
			try(func() error { _, err := sink.Slice(context.Background(), zero); return err }),
			try(func() error { _, _, err := sink.First(context.Background(), zero); return err }),
			try(func() error {
				for _, err := range sink.All(context.Background(), zero) {
					return err
				}
				return nil
			}))
		return strings.Join(res, ",")
	})
	if !parent {
		return
	}
	want := strings.TrimSuffix(strings.Repeat("panic,", 16), ",")
	if out != want {
		t.Fatalf("outcomes (Chan, ForEach, Reduce) × (empty, 3 items) × (ctx, cancelled ctx), then Count, Slice, First, All of the zero Stream:\n %s\nwant every one a panic", out)
	}
}

// TestReviewAdvCallbacksGetTheRunsContext attacks "calls f ... with the
// run's context" (ForEach) and "derived from the caller's" (package doc): f's
// ctx carries the caller's values, and it ends when a FailFast stage fails
// while f is running (f waits for that, so a ctx that is not the run's hangs
// the test).
func TestReviewAdvCallbacksGetTheRunsContext(t *testing.T) {
	type key struct{}
	for range 10 {
		inF := make(chan struct{})
		s := stage.Map(source.Slice(advInts(5)), func(_ context.Context, x int) (int, error) {
			if x == 1 {
				<-inF
				return 0, errAdvItem
			}
			return x, nil
		}, stage.Workers(2), stage.Buffer(1))
		ctx := context.WithValue(context.Background(), key{}, "caller")
		var err error
		var val any
		var cause error
		runcheck.Run(t, "foreach-ctx", func() {
			calls := 0
			err = sink.ForEach(ctx, s, func(fctx context.Context, v int) error {
				if calls++; calls > 1 {
					return nil
				}
				val = fctx.Value(key{})
				close(inF)
				<-fctx.Done()
				cause = context.Cause(fctx)
				return nil
			})
		})
		if val != "caller" || !errors.Is(err, errAdvItem) || !errors.Is(cause, errAdvItem) {
			t.Fatalf("f's ctx value %v, cause %v; ForEach = %v", val, cause, err)
		}
	}
}

// TestReviewAdvCancellationWithACause attacks "when ctx was cancelled, an
// error for which errors.Is(err, context.Canceled) (or
// context.DeadlineExceeded) holds" with contexts cancelled with a cause of
// their own (context.WithCancelCause, WithDeadlineCause), before the run and
// during it: the cause may be reported, but the cancellation must be
// recognisable.
func TestReviewAdvCancellationWithACause(t *testing.T) {
	myCause := errors.New("adv: shutting down")
	type mk func() (context.Context, func(), error) // ctx, trigger (during the run), the error kind
	before := map[string]mk{
		"cancel-cause": func() (context.Context, func(), error) {
			ctx, cancel := context.WithCancelCause(context.Background())
			cancel(myCause)
			return ctx, func() {}, context.Canceled
		},
		"deadline-cause": func() (context.Context, func(), error) {
			ctx, cancel := context.WithDeadlineCause(context.Background(), time.Unix(0, 0), myCause)
			_ = cancel
			return ctx, cancel, context.DeadlineExceeded
		},
		"deadline": func() (context.Context, func(), error) {
			ctx, cancel := context.WithDeadline(context.Background(), time.Unix(0, 0))
			_ = cancel
			return ctx, cancel, context.DeadlineExceeded
		},
	}
	during := map[string]mk{
		"cancel-cause-during": func() (context.Context, func(), error) {
			ctx, cancel := context.WithCancelCause(context.Background())
			return ctx, func() { cancel(myCause) }, context.Canceled
		},
	}
	sinks := map[string]func(ctx context.Context, s stage.Stream[int]) error{
		"Slice": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Slice(ctx, s); return err },
		"Count": func(ctx context.Context, s stage.Stream[int]) error { _, err := sink.Count(ctx, s); return err },
		"Chan":  func(ctx context.Context, s stage.Stream[int]) error { return sink.Chan(ctx, s, make(chan int, 100)) },
		"Reduce": func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Reduce(ctx, s, 0, func(a, v int) int { return a })
			return err
		},
		"ForEach": func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		},
		"First": func(ctx context.Context, s stage.Stream[int]) error { _, _, err := sink.First(ctx, s); return err },
		"All": func(ctx context.Context, s stage.Stream[int]) error {
			var last error
			for _, err := range sink.All(ctx, s) {
				last = err
			}
			return last
		},
	}
	for sname, run := range sinks {
		for cname, c := range before {
			ctx, cancel, kind := c()
			taken := 0
			src := source.Func(func(context.Context) (int, error) { taken++; return taken, nil })
			var err error
			runcheck.Run(t, sname+"/"+cname, func() { err = run(ctx, src) })
			cancel()
			if !errors.Is(err, kind) || taken != 0 {
				t.Errorf("%s/%s: err %v after %d items taken, want errors.Is(err, %v) and none taken", sname, cname, err, taken, kind)
			}
		}
		if sname == "First" {
			continue // First ends at the first item, before the trigger
		}
		for cname, c := range during {
			ctx, trigger, kind := c()
			taken := 0
			src := stage.Map(source.Func(func(context.Context) (int, error) {
				if taken++; taken == 3 {
					trigger()
				}
				return taken, nil
			}), func(_ context.Context, x int) (int, error) { return x, nil }, stage.Workers(2))
			var err error
			runcheck.Run(t, sname+"/"+cname, func() { err = run(ctx, src) })
			if !errors.Is(err, kind) {
				t.Errorf("%s/%s: err %v, want errors.Is(err, %v)", sname, cname, err, kind)
			}
		}
	}
}

// TestReviewAdvEOFFromUserCodeIsAnError attacks "An error returned by f (or
// a panic in f) ends the run as a FailFast error does ... ForEach returns
// that error" and Reduce's "A panic in f ends the run with a *stage.Error
// (Stage "reduce") wrapping a *stage.PanicError" with io.EOF, the value that
// ends a source: from a sink callback, or from a FailFast stage, it is an
// error like any other and must not end the run quietly.
func TestReviewAdvEOFFromUserCodeIsAnError(t *testing.T) {
	bg := context.Background()
	wrapped := fmt.Errorf("decode: %w", io.EOF)
	cases := map[string]func() (string, error){
		"ForEach-returns-EOF": func() (string, error) {
			return "foreach", sink.ForEach(bg, source.Slice(advInts(5)), func(_ context.Context, v int) error {
				if v == 2 {
					return io.EOF
				}
				return nil
			})
		},
		"ForEach-panics-EOF": func() (string, error) {
			return "foreach", sink.ForEach(bg, source.Slice(advInts(5)), func(_ context.Context, v int) error {
				if v == 2 {
					panic(wrapped)
				}
				return nil
			})
		},
		"Reduce-panics-EOF": func() (string, error) {
			_, err := sink.Reduce(bg, source.Slice(advInts(5)), 0, func(a, v int) int {
				if v == 2 {
					panic(io.EOF)
				}
				return a + v
			})
			return "reduce", err
		},
		"Map-returns-EOF": func() (string, error) {
			_, err := sink.Slice(bg, stage.Map(source.Slice(advInts(5)), func(_ context.Context, x int) (int, error) {
				if x == 2 {
					return 0, wrapped
				}
				return x, nil
			}, stage.Workers(1), stage.Name("m")))
			return "m", err
		},
	}
	for name, c := range cases {
		var err error
		var stageName string
		runcheck.Run(t, name, func() { stageName, err = c() })
		var ie *stage.Error
		if !errors.As(err, &ie) || ie.Stage != stageName || !errors.Is(err, io.EOF) {
			t.Errorf("%s: %v; want a *stage.Error of stage %q wrapping io.EOF", name, err, stageName)
		}
	}
}

// TestReviewAdvContextErrorFromUserCodeIsAnItemError attacks the error
// policies as the sinks report them with item errors that look like a
// cancellation (a call's own timeout) while the run is live: FailFast ends
// the run with the *stage.Error, Forward hands it to the sink in the item's
// place (a *ForwardedError), a ForEach callback's is a *stage.Error of stage
// foreach. None may be taken for the run's cancellation and dropped.
func TestReviewAdvContextErrorFromUserCodeIsAnItemError(t *testing.T) {
	bg := context.Background()
	for _, cause := range []error{context.Canceled, fmt.Errorf("call: %w", context.DeadlineExceeded)} {
		mapped := func(p stage.ErrorPolicy) stage.Stream[int] {
			return stage.Map(source.Slice(advInts(5)), func(_ context.Context, x int) (int, error) {
				if x == 2 {
					return 0, cause
				}
				return x, nil
			}, stage.Workers(1), stage.OnError(p), stage.Name("m"))
		}
		for range 5 {
			got, err := sink.Slice(bg, mapped(stage.FailFast))
			var ie *stage.Error
			if !errors.As(err, &ie) || ie.Stage != "m" || ie.Index != 2 || !errors.Is(err, cause) || len(got) > 2 {
				t.Fatalf("FailFast %v: Slice = %v, %v; want at most [0 1] and the *stage.Error of item 2", cause, got, err)
			}
			got, err = sink.Slice(bg, mapped(stage.Forward))
			var fe *sink.ForwardedError
			if !slices.Equal(got, []int{0, 1, 3, 4}) || !errors.As(err, &fe) || fe.Count != 1 || !errors.Is(err, cause) {
				t.Fatalf("Forward %v: Slice = %v, %v; want [0 1 3 4] and one forwarded error", cause, got, err)
			}
			n := 0
			for v, err := range sink.All(bg, mapped(stage.Forward)) {
				if n == 2 && (err == nil || v != 0) || n != 2 && err != nil {
					t.Fatalf("Forward %v: All pair %d = (%d, %v)", cause, n, v, err)
				}
				n++
			}
			if n != 5 {
				t.Fatalf("Forward %v: All yielded %d pairs, want 5", cause, n)
			}
			err = sink.ForEach(bg, source.Slice(advInts(5)), func(_ context.Context, v int) error {
				if v == 2 {
					return cause
				}
				return nil
			})
			if !errors.As(err, &ie) || ie.Stage != "foreach" || !errors.Is(err, cause) {
				t.Fatalf("ForEach %v: %v; want a *stage.Error of stage foreach", cause, err)
			}
		}
	}
}

// advGoid returns the calling goroutine's id.
func advGoid() int64 {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	var id int64
	_, _ = fmt.Sscanf(string(buf), "goroutine %d ", &id)
	return id
}

// TestReviewAdvCallbacksRunInTheCallersGoroutine attacks Run's "calls f, one
// call at a time and in the caller's goroutine" (every sink is written with
// it; ForEach and Reduce promise one call at a time) and All's loop body,
// over pipelines whose consumer goroutines may run stage calls themselves
// (never-waiting sources under cheap unordered stages), a Merge of four
// inputs and one goroutine per item.
func TestReviewAdvCallbacksRunInTheCallersGoroutine(t *testing.T) {
	id := func(_ context.Context, x int) (int, error) { return x, nil }
	pipes := map[string]func() stage.Stream[int]{
		"fused": func() stage.Stream[int] {
			return stage.Map(stage.Map(source.Slice(advInts(300)), id, stage.Workers(4)), id, stage.Workers(3))
		},
		"merge": func() stage.Stream[int] {
			var ins []stage.Stream[int]
			for range 4 {
				ins = append(ins, stage.Map(source.Slice(advInts(75)), id, stage.Workers(-1)))
			}
			return stage.Merge(ins...)
		},
		"neverwaits-func": func() stage.Stream[int] {
			i := 0
			return stage.Map(stage.NeverWaits(source.Func(func(context.Context) (int, error) {
				if i == 300 {
					return 0, io.EOF
				}
				i++
				return i, nil
			})), id, stage.Workers(4))
		},
	}
	for name, mk := range pipes {
		var mu sync.Mutex // only to let the race detector see overlapping calls
		var inFlight atomic.Int32
		var bad []string
		check := func(kind string, caller int64) {
			if n := inFlight.Add(1); n != 1 {
				bad = append(bad, fmt.Sprintf("%s: %d calls at once", kind, n))
			}
			mu.Lock()
			if g := advGoid(); g != caller {
				bad = append(bad, fmt.Sprintf("%s: called in goroutine %d, not the caller's %d", kind, g, caller))
			}
			mu.Unlock()
			inFlight.Add(-1)
		}
		runcheck.NoHang(t, name, func() {
			caller := advGoid()
			_ = stage.Run(context.Background(), mk(), func(context.Context, int, error) error { check("Run", caller); return nil })
			_ = sink.ForEach(context.Background(), mk(), func(context.Context, int) error { check("ForEach", caller); return nil })
			_, _ = sink.Reduce(context.Background(), mk(), 0, func(a, v int) int { check("Reduce", caller); return a })
			for range sink.All(context.Background(), mk()) {
				check("All", caller)
			}
		})
		if len(bad) > 0 {
			t.Errorf("%s: %d bad calls; first: %s", name, len(bad), bad[0])
		}
	}
}
