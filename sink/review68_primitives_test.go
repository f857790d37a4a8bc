package sink_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// README "Writing your own": "stage.Source(open): open runs once per run
// and returns next (called only when a stage is ready, never concurrently;
// io.EOF ends the stream) and an optional stop, called after the run's
// goroutines have exited".
func TestReview68SourcePrimitive(t *testing.T) {
	for _, shape := range []string{"map w8", "map w8 buffer", "ordered", "keyby", "neverwaits", "interruptible", "bare", "first", "failfast", "cancel"} {
		t.Run(shape, func(t *testing.T) {
			var opens, stops atomic.Int32
			var inNext, overlaps atomic.Int32
			var bal r68Balance
			var stopLeaks []string
			var before map[int64]string
			const n = 300
			open := func(ctx context.Context) (func(context.Context) (int, error), func()) {
				opens.Add(1)
				i := 0
				next := func(context.Context) (int, error) {
					defer bal.enter()()
					if inNext.Add(1) != 1 {
						overlaps.Add(1)
					}
					defer inNext.Add(-1)
					for range 3 {
						inNext.Load()
					}
					if i == n {
						return -1, io.EOF // the value returned with io.EOF is not delivered
					}
					i++
					return i - 1, nil
				}
				stop := func() {
					stops.Add(1)
					stopLeaks = runcheck.LeakedSince(before)
					bal.check(t, "stop")
				}
				return next, stop
			}
			var src stage.Stream[int]
			switch shape {
			case "neverwaits":
				src = stage.NeverWaits(stage.Source(open))
			case "interruptible":
				src = stage.Interruptible(stage.Source(open))
			default:
				src = stage.Source(open)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			f := func(ctx context.Context, v int) (int, error) {
				defer bal.enter()()
				if shape == "failfast" && v == 150 {
					return 0, r68ErrBoom
				}
				return v, nil
			}
			var s stage.Stream[int]
			switch shape {
			case "map w8", "neverwaits", "interruptible", "first", "failfast", "cancel":
				s = stage.Map(src, f, stage.Workers(8))
			case "map w8 buffer":
				s = stage.Map(src, f, stage.Workers(8), stage.Buffer(3))
			case "ordered":
				s = stage.Map(src, f, stage.Workers(8), stage.Ordered())
			case "keyby":
				s = stage.Map(src, f, stage.Workers(8), stage.KeyBy(func(v int) int { return v % 7 }))
			case "bare":
				s = src
			}
			for run := 1; run <= 2; run++ {
				var got []int
				var err error
				var firstOK bool
				runcheck.Run(t, shape, func() {
					_, before = runcheck.Goroutines()
					switch shape {
					case "first":
						var v int
						v, firstOK, err = sink.First(ctx, s)
						got = []int{v}
					case "cancel":
						err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
							got = append(got, v)
							if len(got) == 100 {
								cancel()
							}
							return nil
						})
					default:
						got, err = sink.Slice(ctx, s)
					}
				})
				bal.check(t, shape)
				if len(stopLeaks) > 0 {
					t.Errorf("stop was called while %d goroutine(s) of the run were alive:\n%s", len(stopLeaks), strings.Join(stopLeaks, "\n\n"))
				}
				if o, s := opens.Load(), stops.Load(); o != int32(run) || s != int32(run) {
					t.Errorf("run %d: %d opens, %d stops; want %d each", run, o, s, run)
				}
				if overlaps.Load() != 0 {
					t.Errorf("next was called concurrently %d times", overlaps.Load())
				}
				switch shape {
				case "first":
					if !firstOK || err != nil || got[0] < 0 {
						t.Errorf("First: %v, %v, %v", got, firstOK, err)
					}
				case "failfast":
					if !errors.Is(err, r68ErrBoom) {
						t.Errorf("err %v", err)
					}
				case "cancel":
					if !errors.Is(err, context.Canceled) || len(got) != 100 {
						t.Errorf("err %v after %d items", err, len(got))
					}
					ctx, cancel = context.WithCancel(context.Background())
					defer cancel()
				default:
					slices.Sort(got)
					if err != nil || !slices.Equal(got, r68Ints(n)) {
						t.Errorf("run %d: %d items (first %v), err %v; want 0..%d", run, len(got), got[:min(3, len(got))], err, n-1)
					}
				}
			}
		})
	}
}

// Source doc: "next returns io.EOF (itself, not an error wrapping it) to
// end the stream, and the item returned with an error is not delivered";
// a panic in open, next or stop becomes a *SourceError; "A source that
// finds a failure after its last item ... reports it by panicking in stop
// with a *SourceError: the run fails with that error as it is, unless its
// result was decided first".
func TestReview68SourcePrimitiveFailures(t *testing.T) {
	ctx := context.Background()
	late := &stage.SourceError{Err: errors.New("r68: acks failed during the drain")}
	mk := func(openPanic, nextPanic bool, stopPanic any, nextErr error) stage.Stream[int] {
		return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			if openPanic {
				panic("r68 open")
			}
			i := 0
			return func(context.Context) (int, error) {
					i++
					switch {
					case i <= 3:
						return i, nil
					case nextPanic:
						panic("r68 next")
					case nextErr != nil:
						return 99, nextErr
					}
					return 99, io.EOF
				}, func() {
					if stopPanic != nil {
						panic(stopPanic)
					}
				}
		})
	}
	check := func(name string, s stage.Stream[int], wantVals []int, want func(error) bool) {
		t.Helper()
		var vals []int
		var err error
		runcheck.Run(t, name, func() {
			vals, err = sink.Slice(ctx, stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2)))
		})
		slices.Sort(vals)
		if !slices.Equal(vals, wantVals) || !want(err) {
			t.Errorf("%s: vals %v, err %v", name, vals, err)
		}
	}
	isSrcPanic := func(err error) bool {
		var se *stage.SourceError
		var pe *stage.PanicError
		return errors.As(err, &se) && errors.As(err, &pe)
	}
	check("io.EOF", mk(false, false, nil, nil), []int{1, 2, 3}, func(err error) bool { return err == nil })
	check("wrapped EOF", mk(false, false, nil, fmt.Errorf("short: %w", io.EOF)), []int{1, 2, 3}, func(err error) bool {
		var se *stage.SourceError
		return errors.As(err, &se) && errors.Is(err, io.EOF)
	})
	check("error", mk(false, false, nil, r68ErrBoom), []int{1, 2, 3}, func(err error) bool {
		var se *stage.SourceError
		return errors.As(err, &se) && errors.Is(err, r68ErrBoom)
	})
	check("open panic", mk(true, false, nil, nil), nil, isSrcPanic)
	check("next panic", mk(false, true, nil, nil), []int{1, 2, 3}, isSrcPanic)
	check("stop panic", mk(false, false, "r68 stop", nil), []int{1, 2, 3}, isSrcPanic)
	check("stop panic SourceError", mk(false, false, late, nil), []int{1, 2, 3}, func(err error) bool {
		var se *stage.SourceError
		return errors.As(err, &se) && se == late
	})
	// Decided first: a FailFast error stays the result.
	var err error
	runcheck.Run(t, "stop panic after failfast", func() {
		_, err = sink.Slice(ctx, stage.Map(mk(false, false, late, nil), func(_ context.Context, v int) (int, error) {
			if v == 2 {
				return 0, r68ErrBoom
			}
			return v, nil
		}, stage.Workers(1)))
	})
	var se *stage.Error
	if !errors.As(err, &se) || !errors.Is(err, r68ErrBoom) {
		t.Errorf("stop's SourceError after a FailFast error: err %v, want the FailFast *stage.Error", err)
	}
	// Decided first: ErrStop.
	runcheck.Run(t, "stop panic after errstop", func() {
		err = sink.ForEach(ctx, mk(false, false, late, nil), func(context.Context, int) error { return stage.ErrStop })
	})
	if err != nil {
		t.Errorf("stop's SourceError after ErrStop: err %v, want nil", err)
	}
}

// README: "stage.AckSource(open) is the same for items that carry an Ack";
// natsjs/Ack docs: the sink "settles it only after its callback returned".
func TestReview68AckSourceSettlesAfterCallback(t *testing.T) {
	type ev struct {
		item int
		what string
		err  error
	}
	var mu sync.Mutex
	var evs []ev
	add := func(e ev) { mu.Lock(); evs = append(evs, e); mu.Unlock() }
	cbErr := errors.New("r68: commit failed")
	src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == 12 {
				return 0, nil, io.EOF
			}
			i++
			item := i - 1
			return item, r68AckFunc(func(err error) { add(ev{item, "done", err}) }), nil
		}, nil
	})
	s := stage.Filter(src, func(_ context.Context, v int) (bool, error) { return v != 5, nil }, stage.Workers(1))
	s = stage.Map(s, func(_ context.Context, v int) (int, error) {
		if v == 7 {
			return 0, r68ErrBoom
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward))
	var err error
	runcheck.Run(t, "ack", func() {
		err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
			add(ev{v, "callback", nil})
			r68Settle() // a Done racing the callback would come in here
			add(ev{v, "returned", nil})
			if v == 10 {
				return cbErr
			}
			return nil
		})
	})
	if !errors.Is(err, cbErr) {
		t.Errorf("err %v, want the callback's error", err)
	}
	dones := map[int][]error{}
	returned := map[int]int{}
	for k, e := range evs {
		switch e.what {
		case "returned":
			returned[e.item] = k
		case "done":
			dones[e.item] = append(dones[e.item], e.err)
			if r, ok := returned[e.item]; e.item != 5 && e.item != 7 && (!ok || r > k) {
				t.Errorf("item %d acknowledged before its callback returned", e.item)
			}
		}
	}
	for item := range 11 {
		d := dones[item]
		switch {
		case len(d) != 1:
			t.Errorf("item %d: Done called %d times, want once", item, len(d))
		case item == 7:
			var se *stage.Error
			if !errors.As(d[0], &se) || !errors.Is(d[0], r68ErrBoom) {
				t.Errorf("item 7 (forwarded error): Done(%v), want its *stage.Error", d[0])
			}
		case item == 10:
			if !errors.Is(d[0], cbErr) {
				t.Errorf("item 10 (failed commit): Done(%v), want the callback's error", d[0])
			}
		default:
			if d[0] != nil {
				t.Errorf("item %d: Done(%v), want nil (committed, or dropped by the Filter)", item, d[0])
			}
		}
	}
	if len(dones[11]) != 0 && dones[11][0] == nil {
		t.Errorf("item 11, never committed, was acknowledged")
	}
}

type r68AckFunc func(error)

func (f r68AckFunc) Done(err error) { f(err) }

// README: "stage.Indexed(n, at): a source of n items known by position,
// taken with one atomic add each and no lock"; its doc: "at is called
// ... once per position"; "Positions are claimed in order, and only when a
// stage is ready for an item".
func TestReview68Indexed(t *testing.T) {
	const n = 500
	calls := make([]atomic.Int32, n)
	at := func(i int) int { calls[i].Add(1); return i * 2 }
	var vals []int
	var err error
	runcheck.Run(t, "indexed", func() {
		vals, err = sink.Slice(context.Background(), stage.Map(stage.Indexed(n, at), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(6)))
	})
	slices.Sort(vals)
	want := make([]int, n)
	for i := range want {
		want[i] = i * 2
	}
	if err != nil || !slices.Equal(vals, want) {
		t.Errorf("%d vals, err %v", len(vals), err)
	}
	for i := range calls {
		if c := calls[i].Load(); c != 1 {
			t.Errorf("at(%d) called %d times", i, c)
		}
	}
	// First over a bare Indexed takes exactly one: position 0.
	var taken []int
	v, ok, err := sink.First(context.Background(), stage.Indexed(1<<40, func(i int) int { taken = append(taken, i); return i }))
	if v != 0 || !ok || err != nil || !slices.Equal(taken, []int{0}) {
		t.Errorf("First(Indexed) = %d, %v, %v, positions taken %v; want 0 and [0]", v, ok, err, taken)
	}
	// With one worker, positions in order.
	var order []int
	_, err = sink.Count(context.Background(), stage.Map(stage.Indexed(50, func(i int) int { order = append(order, i); return i }),
		func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1), stage.Buffer(1)))
	if err != nil || !slices.Equal(order, r68Ints(50)) {
		t.Errorf("positions taken %v, want in order", order)
	}
}

// README: "stage.Apply(in, f, opts...): f(ctx, item, emit) emits zero or
// more outputs per item, under the usual options (workers, ordering,
// policy)"; Apply doc: "Outputs emitted before an error still go
// downstream"; with Ordered "all outputs of one item leave before those of
// the next".
func TestReview68Apply(t *testing.T) {
	f := func(_ context.Context, v int, emit func(string) bool) error {
		for k := range v % 4 {
			emit(fmt.Sprintf("%d.%d", v, k))
		}
		if v%5 == 4 {
			return r68ErrBoom
		}
		return nil
	}
	var got []string
	var err error
	runcheck.Run(t, "apply", func() {
		for v, e := range sink.All(context.Background(), stage.Apply(source.Slice(r68Ints(40)), f,
			stage.Workers(4), stage.Ordered(), stage.OnError(stage.Forward))) {
			if e != nil {
				var se *stage.Error
				if !errors.As(e, &se) || se.Stage != "apply#1" {
					err = e
				}
				got = append(got, fmt.Sprintf("err%d", se.Index))
				continue
			}
			got = append(got, v)
		}
	})
	var want []string
	for v := range 40 {
		for k := range v % 4 {
			want = append(want, fmt.Sprintf("%d.%d", v, k))
		}
		if v%5 == 4 {
			want = append(want, fmt.Sprintf("err%d", v))
		}
	}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("got %v\nwant %v\nerr %v", got, want, err)
	}
	// Ordered: an item may emit without end once its turn has come.
	var n int
	runcheck.Run(t, "apply long", func() {
		n, err = sink.Count(context.Background(), stage.Apply(source.Slice(r68Ints(3)), func(_ context.Context, v int, emit func(int) bool) error {
			for k := range 20000 {
				if !emit(k) {
					return nil
				}
			}
			return nil
		}, stage.Workers(2), stage.Ordered()))
	})
	if err != nil || n != 60000 {
		t.Errorf("%d outputs, err %v; want 60000", n, err)
	}
}

// README: "stage.Run(ctx, s, f): f(ctx, value, forwardedErr) is called for
// each item that reaches the end, one at a time; return stage.ErrStop to
// stop early. Every sink is written with it."
func TestReview68RunPrimitive(t *testing.T) {
	ctx := context.Background()
	s := stage.Map(source.Slice(r68Ints(30)), r68FailEvery3, stage.Workers(4), stage.OnError(stage.Forward))
	caller, _ := runcheck.Goroutines()
	var inF atomic.Int32
	vals, errs := 0, 0
	var err error
	runcheck.Run(t, "run", func() {
		caller, _ = runcheck.Goroutines()
		err = stage.Run(ctx, s, func(_ context.Context, v int, e error) error {
			if inF.Add(1) != 1 {
				t.Errorf("f called concurrently")
			}
			defer inF.Add(-1)
			if id, _ := runcheck.Goroutines(); id != caller {
				t.Errorf("f called on goroutine %d, not the caller's %d", id, caller)
			}
			if e != nil {
				errs++
			} else {
				vals++
			}
			return nil
		})
	})
	if err != nil || vals != 20 || errs != 10 {
		t.Errorf("Run: err %v (forwarded errors are f's, not returned), %d values, %d errors", err, vals, errs)
	}
	// f's own error is returned as it is.
	mine := errors.New("r68: mine")
	runcheck.Run(t, "run error", func() {
		err = stage.Run(ctx, source.Slice(r68Ints(5)), func(context.Context, int, error) error { return mine })
	})
	if err != mine {
		t.Errorf("Run returned %v, want f's error itself", err)
	}
	// ErrStop and an error wrapping it stop without an error.
	for _, stop := range []error{stage.ErrStop, fmt.Errorf("had enough: %w", stage.ErrStop), errors.Join(errors.New("x"), stage.ErrStop)} {
		calls := 0
		runcheck.Run(t, "run stop", func() {
			err = stage.Run(ctx, source.Slice(r68Ints(5)), func(context.Context, int, error) error { calls++; return stop })
		})
		if err != nil || calls != 1 {
			t.Errorf("Run with %v: err %v after %d calls, want nil after 1", stop, err, calls)
		}
	}
	// A panic in f is not recovered: Run cancels, waits, and lets it go on.
	var rec any
	runcheck.Run(t, "run panic", func() {
		defer func() { rec = recover() }()
		_ = stage.Run(ctx, stage.Map(source.Slice(r68Ints(100)), func(ctx context.Context, v int) (int, error) {
			if v > 0 {
				<-ctx.Done()
			}
			return v, nil
		}, stage.Workers(4), stage.Buffer(1)), func(context.Context, int, error) error { panic("r68 in f") })
	})
	if rec != "r68 in f" {
		t.Errorf("recovered %v, want the panic of f", rec)
	}
	// Programmer errors panic before the run.
	for name, call := range map[string]func(){
		"nil ctx": func() {
			//lint:ignore SA1012 a nil ctx is the programmer error under test
			_ = stage.Run(nil, source.Slice([]int{1}), func(context.Context, int, error) error { return nil })
		},
		"nil f": func() { _ = stage.Run(ctx, source.Slice([]int{1}), nil) },
		"zero s": func() {
			_ = stage.Run(ctx, stage.Stream[int]{}, func(context.Context, int, error) error { return nil })
		},
		"nil ForEach": func() { _ = sink.ForEach[int](ctx, source.Slice([]int{1}), nil) },
	} {
		func() {
			defer func() {
				r := recover()
				if r == nil || !strings.HasPrefix(fmt.Sprint(r), "sluice:") {
					t.Errorf("%s: recovered %v, want a panic starting with sluice:", name, r)
				}
			}()
			call()
		}()
	}
}
