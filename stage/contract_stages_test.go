package stage_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func rvPanics(f func()) (p any) {
	defer func() { p = recover() }()
	f()
	return nil
}

// TestContractNeverWaitsPanics: NeverWaits panics unless s is a stream made by
// Source or AckSource (or a source of package source written with them).
func TestContractNeverWaitsPanics(t *testing.T) {
	src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(context.Context) (int, error) { return 0, io.EOF }, nil
	})
	ack := newRvAcks().source(ints(2))
	ch := make(chan int)
	close(ch)
	cases := []struct {
		name      string
		s         func() stage.Stream[int]
		wantPanic bool // -1 unknown is expressed by "doc" below
		doc       string
	}{
		{"Source", func() stage.Stream[int] { return src }, false, ""},
		{"AckSource", func() stage.Stream[int] { return ack }, false, ""},
		{"source.Func", func() stage.Stream[int] {
			return source.Func(func(context.Context) (int, error) { return 0, io.EOF })
		}, false, ""},
		{"source.Seq", func() stage.Stream[int] { return source.Seq(slices.Values([]int{1})) }, false, ""},
		{"source.Seq2", func() stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {})
		}, false, ""},
		{"source.Chan", func() stage.Stream[int] { return source.Chan(ch) }, false, "package source says every source is written with stage.Source"},
		{"Map", func() stage.Stream[int] { return stage.Map(src, double) }, true, ""},
		{"Merge", func() stage.Stream[int] { return stage.Merge(src) }, true, ""},
		{"Until(Source)", func() stage.Stream[int] { return stage.Until(src, context.Background()) }, true, "not made by Source"},
		{"NeverWaits(Source)", func() stage.Stream[int] { return stage.NeverWaits(src) }, false, "a NeverWaits source is still Source's stream?"},
		{"Indexed", func() stage.Stream[int] { return stage.Indexed(3, func(i int) int { return i }) }, true, "not made by Source; but it never waits"},
		{"source.Slice", func() stage.Stream[int] { return source.Slice(ints(3)) }, true, "written with Indexed; package source says with stage.Source"},
		{"zero", func() stage.Stream[int] { return stage.Stream[int]{} }, true, ""},
	}
	for _, c := range cases {
		p := rvPanics(func() { stage.NeverWaits(c.s()) })
		t.Logf("NeverWaits(%s): panic=%v %v", c.name, p != nil, p)
		if c.doc == "" && (p != nil) != c.wantPanic {
			t.Errorf("NeverWaits(%s): panicked=%v, want %v (%v)", c.name, p != nil, c.wantPanic, p)
		}
	}
}

// TestContractWaitingSourceNeverHoldsBack: a waiting source (not marked
// NeverWaits) whose next, after many cheap items, waits until the sink has
// received every output produced so far. A consumer goroutine sitting in
// that next while finished outputs wait behind it would deadlock.
func TestContractWaitingSourceNeverHoldsBack(t *testing.T) {
	const k = 3000
	type mk func(next func(context.Context) (int, error)) stage.Stream[int]
	sources := map[string]mk{
		"Func": func(next func(context.Context) (int, error)) stage.Stream[int] { return source.Func(next) },
		"Source": func(next func(context.Context) (int, error)) stage.Stream[int] {
			return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) { return next, nil })
		},
		"Seq": func(next func(context.Context) (int, error)) stage.Stream[int] {
			return source.Seq(func(yield func(int) bool) {
				for {
					v, err := next(context.Background())
					if err != nil || !yield(v) {
						return
					}
				}
			})
		},
	}
	keep := func(_ context.Context, x int) (bool, error) { return true, nil }
	stages := map[string]func(stage.Stream[int]) stage.Stream[int]{
		"Map4":   func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(4)) },
		"Map1":   func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, double, stage.Workers(1)) },
		"Filter": func(s stage.Stream[int]) stage.Stream[int] { return stage.Filter(s, keep, stage.Workers(4)) },
		"FlatMap": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.FlatMap(s, func(_ context.Context, x int) ([]int, error) { return []int{x}, nil }, stage.Workers(4))
		},
		"Concurrent": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Concurrent(stage.Map(s, func(_ context.Context, x int) (func(context.Context) (int, error), error) {
				return func(context.Context) (int, error) { return x, nil }, nil
			}, stage.Workers(4)), stage.Workers(4))
		},
		"Map-Map": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(stage.Map(s, double, stage.Workers(4)), double, stage.Workers(4))
		},
		"Apply": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Apply(s, func(_ context.Context, x int, emit func(int) bool) error { emit(x); return nil }, stage.Workers(4))
		},
	}
	for sn, mkSrc := range sources {
		for stn, st := range stages {
			t.Run(sn+"/"+stn, func(t *testing.T) {
				var received atomic.Int64
				allIn := make(chan struct{})
				i := 0
				next := func(ctx context.Context) (int, error) {
					if i == k {
						select {
						case <-allIn:
						case <-ctx.Done():
							return 0, ctx.Err()
						case <-time.After(rvWatchdog):
							return 0, errors.New("HUNG: finished outputs were held back behind a waiting next")
						}
						return 0, io.EOF
					}
					i++
					return i, nil
				}
				var err error
				rvRun(t, func() {
					err = stage.Run(context.Background(), st(mkSrc(next)), func(_ context.Context, _ int, e error) error {
						if e != nil {
							return e
						}
						if received.Add(1) == k {
							close(allIn)
						}
						return nil
					})
				})
				if err != nil {
					t.Fatalf("Run = %v after %d outputs", err, received.Load())
				}
			})
		}
	}
	t.Run("Lines-over-pipe", func(t *testing.T) {
		pr, pw := io.Pipe()
		allIn := make(chan struct{})
		go func() {
			w := bufio.NewWriter(pw)
			for i := range k {
				fmt.Fprintf(w, "%d\n", i)
			}
			w.Flush()
			if !rvWait(allIn) {
				pw.CloseWithError(errors.New("HUNG: lines held back"))
				return
			}
			pw.Close()
		}()
		var n int
		var err error
		rvRun(t, func() {
			err = sink.ForEach(context.Background(), stage.Map(source.Lines(pr), func(_ context.Context, s string) (int, error) { return strconv.Atoi(s) }, stage.Workers(4)), func(context.Context, int) error {
				n++
				if n == k {
					close(allIn)
				}
				return nil
			})
		})
		if err != nil || n != k {
			t.Fatalf("err %v after %d lines", err, n)
		}
	})
}

var rvNameRE = regexp.MustCompile(`^([a-z]+)#(\d+)$`)

// TestContractDefaultNames: unnamed stages are "kind#position", numbered from
// 1 upstream first, distinct, the same in every run; *Error carries the name.
func TestContractDefaultNames(t *testing.T) {
	build := func() stage.Stream[int] {
		s := stage.Map(source.Slice(ints(20)), double, stage.Workers(2))
		s = stage.Filter(s, func(_ context.Context, x int) (bool, error) { return true, nil })
		s = stage.FlatMap(s, func(_ context.Context, x int) ([]int, error) { return []int{x}, nil })
		s = stage.Apply(s, func(_ context.Context, x int, emit func(int) bool) error { emit(x); return nil })
		s = stage.Unbatch(stage.Batch(s, 3, 0))
		b := stage.Tee(s, 2)
		l := stage.Map(b[0], double)
		r := stage.Map(b[1], double, stage.Name("right"))
		m := stage.Merge(l, r)
		return stage.Map(m, func(_ context.Context, x int) (int, error) {
			if x == 8 {
				return 0, errors.New("eight")
			}
			return x, nil
		}, stage.OnError(stage.Forward), stage.Workers(1))
	}
	s := build()
	var runs [][]string
	var kinds []string
	for r := range 3 {
		o := &rvObserver{}
		var errStages []string
		ctx := stage.Observe(context.Background(), o)
		rvRun(t, func() {
			for _, err := range sink.All(ctx, s) {
				var ie *stage.Error
				if errors.As(err, &ie) {
					errStages = append(errStages, ie.Stage)
				}
			}
		})
		names := o.names()
		runs = append(runs, names)
		if r == 0 {
			for _, i := range o.infos {
				kinds = append(kinds, i.Kind)
			}
			t.Logf("names: %v kinds: %v; *Error.Stage: %v", names, kinds, errStages)
		}
		// The failing stage is the last one opened? find it by the error.
		if len(errStages) != 2 {
			t.Errorf("forwarded errors from stages %v, want 2 (both branches' 8)", errStages)
		}
		for _, es := range errStages {
			if !slices.Contains(names, es) {
				t.Errorf("*Error.Stage %q is not a name observers saw (%v)", es, names)
			}
		}
	}
	seen := map[string]bool{}
	last := 0
	for i, n := range runs[0] {
		if seen[n] {
			t.Errorf("name %q given twice: %v", n, runs[0])
		}
		seen[n] = true
		if n == "right" {
			continue
		}
		m := rvNameRE.FindStringSubmatch(n)
		if m == nil {
			t.Errorf("unnamed stage called %q", n)
			continue
		}
		if m[1] != kinds[i] {
			t.Errorf("name %q, kind %q", n, kinds[i])
		}
		pos, _ := strconv.Atoi(m[2])
		if pos <= last {
			t.Errorf("positions not increasing in opening order: %v", runs[0])
		}
		last = pos
	}
	for r := 1; r < len(runs); r++ {
		if !slices.Equal(runs[r], runs[0]) {
			t.Errorf("run %d names %v, run 0 %v", r, runs[r], runs[0])
		}
	}
	// Names are the same in runs at the same time too.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conc [][]string
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &rvObserver{}
			_, _ = sink.Count(stage.Observe(context.Background(), o), s)
			mu.Lock()
			conc = append(conc, o.names())
			mu.Unlock()
		}()
	}
	rvRun(t, wg.Wait)
	for _, ns := range conc {
		if !slices.Equal(ns, runs[0]) {
			t.Errorf("concurrent run names %v, want %v", ns, runs[0])
		}
	}
}

// TestContractStatsRowsNeverMerge: two unnamed stages of the same kind get rows
// of their own in Stats; a user name equal to a default name is documented
// nowhere (recorded).
func TestContractStatsRowsNeverMerge(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	b := stage.Tee(source.Slice(ints(10)), 2)
	s := stage.Merge(stage.Map(b[0], double), stage.Map(b[1], double))
	s = stage.Map(s, double)
	rvRun(t, func() { _, _ = sink.Count(ctx, s) })
	snap := st.Snapshot()
	var maps []stage.Counts
	for _, c := range snap {
		if c.Kind == "map" {
			maps = append(maps, c)
		}
	}
	if len(maps) != 3 {
		t.Fatalf("Stats rows for map stages: %d (%v), want 3", len(maps), snap)
	}
	for _, c := range maps[:2] {
		if c.Received != 10 {
			t.Errorf("row %s: Received %d, want 10 (rows merged?)", c.Name, c.Received)
		}
	}
	// A user name that equals a default name.
	var st2 stage.Stats
	s2 := stage.Map(stage.Map(source.Slice(ints(10)), double), double, stage.Name("map#1"))
	rvRun(t, func() { _, _ = sink.Count(stage.Observe(context.Background(), &st2), s2) })
	t.Logf("user name equal to a default name: rows %d: %+v", len(st2.Snapshot()), st2.Snapshot())
}

// TestContractRetryAndPanics: RetryIf sees a panic as a *PanicError and may
// retry it; Retry never retries a panic, whatever its value.
func TestContractRetryAndPanics(t *testing.T) {
	var mu sync.Mutex
	var seen []error
	calls := 0
	s := stage.Map(source.Slice([]int{7}), func(_ context.Context, x int) (int, error) {
		mu.Lock()
		calls++
		c := calls
		mu.Unlock()
		if c == 1 {
			panic("first attempt")
		}
		return x, nil
	}, stage.RetryIf(3, 0, func(err error) bool {
		mu.Lock()
		seen = append(seen, err)
		mu.Unlock()
		var pe *stage.PanicError
		return errors.As(err, &pe)
	}))
	var got []int
	var err error
	rvRun(t, func() { got, err = sink.Slice(context.Background(), s) })
	var pe *stage.PanicError
	if err != nil || !slices.Equal(got, []int{7}) || len(seen) != 1 || !errors.As(seen[0], &pe) {
		t.Errorf("RetryIf: got %v, %v; predicate saw %v", got, err, seen)
	}

	for _, v := range []any{"plain", context.DeadlineExceeded, errors.New("err value")} {
		var n atomic.Int32
		s := stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
			n.Add(1)
			panic(v)
		}, stage.Retry(5, 0))
		rvRun(t, func() { _, err = sink.Count(context.Background(), s) })
		var ie *stage.Error
		if n.Load() != 1 || !errors.As(err, &ie) || ie.Attempts != 1 || !errors.As(err, &pe) {
			t.Errorf("Retry with panic(%v): %d calls, err %v", v, n.Load(), err)
		}
	}
}

// TestContractTimeoutIgnoringFunction: Timeout with a function that ignores its
// ctx: the stage waits for it to return, then fails or retries the item; the
// run goes on (other items are not affected).
func TestContractTimeoutIgnoringFunction(t *testing.T) {
	errLate := errors.New("late")
	for _, ret := range []string{"ctx.Err", "own-error", "success"} {
		t.Run(ret, func(t *testing.T) {
			expired := make(chan struct{})
			release := make(chan struct{})
			var calls atomic.Int32
			s := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, x int) (int, error) {
				if x == 1 {
					// item 1 runs while item 0's context has expired.
					if !rvWait(expired) {
						return 0, errors.New("HUNG")
					}
					return 1, nil
				}
				if calls.Add(1) > 1 {
					return 100, nil // a retry succeeds at once
				}
				<-ctx.Done() // the per-call timeout expired
				close(expired)
				// ignores it: goes on until released by the sink
				if !rvWait(release) {
					return 0, errors.New("HUNG")
				}
				switch ret {
				case "ctx.Err":
					return 0, ctx.Err()
				case "own-error":
					return 0, errLate
				}
				return 0, nil
			}, stage.Workers(2), stage.Timeout(time.Millisecond), stage.OnError(stage.Forward))
			var got []string
			var err error
			rvRun(t, func() {
				err = stage.Run(context.Background(), s, func(ctx context.Context, v int, e error) error {
					if ctx.Err() != nil {
						t.Errorf("the run's context ended: only the call's should")
					}
					if e != nil {
						got = append(got, "err:"+e.Error())
					} else {
						got = append(got, strconv.Itoa(v))
					}
					if v == 1 {
						close(release)
					}
					return nil
				})
			})
			t.Logf("%s: err %v, sink saw %v, calls of item 0: %d", ret, err, got, calls.Load())
			if err != nil || len(got) != 2 || got[0] != "1" {
				t.Errorf("err %v, got %v", err, got)
			}
		})
	}
	// With Retry: an attempt cut by its Timeout (ctx.Err) is retried.
	var calls atomic.Int32
	s := stage.Map(source.Slice([]int{0}), func(ctx context.Context, x int) (int, error) {
		if calls.Add(1) < 3 {
			<-ctx.Done()
			return 0, ctx.Err()
		}
		return 42, nil
	}, stage.Timeout(time.Millisecond), stage.Retry(3, 0))
	var got []int
	var err error
	rvRun(t, func() { got, err = sink.Slice(context.Background(), s) })
	if err != nil || !slices.Equal(got, []int{42}) || calls.Load() != 3 {
		t.Errorf("Timeout+Retry: %v %v after %d calls", got, err, calls.Load())
	}
}

// TestContractRateLimitIgnoresDeadline: a token that would come long after the
// run's deadline is still waited for; the item does not fail early with a
// "would exceed deadline" error; only the end of the run ends the wait.
func TestContractRateLimitIgnoresDeadline(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	s := stage.Map(source.Slice(ints(3)), double, stage.Workers(1), stage.RateLimit(1e-6, 1), stage.OnError(stage.Forward))
	var got []string
	var err error
	rvRun(t, func() {
		err = stage.Run(ctx, s, func(_ context.Context, v int, e error) error {
			if e != nil {
				got = append(got, "err:"+e.Error())
				return nil
			}
			got = append(got, strconv.Itoa(v))
			// give a wrong implementation the chance to fail item 1 early,
			// then end the run ourselves.
			time.AfterFunc(300*time.Millisecond, cancel)
			return nil
		})
	})
	if !errors.Is(err, context.Canceled) || !slices.Equal(got, []string{"0"}) {
		t.Errorf("err %v, sink saw %v; want [0] then the cancellation", err, got)
	}
}

// TestContractKeyByKeyOncePerItem: key is called exactly once per item, under
// every mode, with Retry, with Forward errors upstream.
func TestContractKeyByKeyOncePerItem(t *testing.T) {
	const n = 200
	for _, m := range modes {
		for _, retry := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/retry=%v", m, retry), func(t *testing.T) {
				var mu sync.Mutex
				keyCalls := map[int]int{}
				tries := map[int]int{}
				up := stage.Map(source.Slice(ints(n)), func(_ context.Context, x int) (int, error) {
					if x%50 == 3 {
						return 0, errors.New("upstream")
					}
					return x, nil
				}, stage.OnError(stage.Forward))
				opts := m.opts(stage.KeyBy(func(x int) int {
					mu.Lock()
					keyCalls[x]++
					mu.Unlock()
					return x % 7
				}), stage.OnError(stage.Forward))
				if retry {
					opts = append(opts, stage.Retry(3, 0))
				}
				s := stage.Map(up, func(_ context.Context, x int) (int, error) {
					mu.Lock()
					tries[x]++
					c := tries[x]
					mu.Unlock()
					if retry && x%3 == 0 && c < 3 {
						return 0, errors.New("again")
					}
					return x, nil
				}, opts...)
				rvRun(t, func() { _, _ = sink.Count(context.Background(), s) })
				for x := range n {
					want := 1
					if x%50 == 3 {
						want = 0 // forwarded errors pass through without a key
					}
					if keyCalls[x] != want {
						t.Errorf("item %d: key called %d times, want %d", x, keyCalls[x], want)
					}
				}
			})
		}
	}
}

// TestContractKeyByKeyPanicUnderPolicy: a panic in key is an item error under
// the stage's policy: Forward delivers it, Handle sees it, the function is not
// called for that item, the run goes on.
func TestContractKeyByKeyPanicUnderPolicy(t *testing.T) {
	key := func(x int) int {
		if x == 3 {
			panic("bad key")
		}
		return x % 2
	}
	for _, ordered := range []bool{false, true} {
		t.Run(fmt.Sprintf("ordered=%v", ordered), func(t *testing.T) {
			var called atomic.Int32
			f := func(_ context.Context, x int) (int, error) {
				if x == 3 {
					called.Add(1)
				}
				return x, nil
			}
			opts := []stage.Option{stage.Workers(3), stage.KeyBy(key)}
			if ordered {
				opts = append(opts, stage.Ordered())
			}
			var got []int
			var errs []error
			rvRun(t, func() {
				for v, err := range sink.All(context.Background(), stage.Map(source.Slice(ints(8)), f, append(opts, stage.OnError(stage.Forward))...)) {
					if err != nil {
						errs = append(errs, err)
					} else {
						got = append(got, v)
					}
				}
			})
			var ie *stage.Error
			var pe *stage.PanicError
			if len(errs) != 1 || !errors.As(errs[0], &ie) || ie.Input != 3 || !errors.As(errs[0], &pe) || len(got) != 7 {
				t.Errorf("Forward: got %v, errs %v", got, errs)
			}
			if ordered && !slices.IsSorted(got) {
				t.Errorf("Ordered: %v", got)
			}
			var handled []*stage.Error
			var err error
			rvRun(t, func() {
				_, err = sink.Count(context.Background(), stage.Map(source.Slice(ints(8)), f, append(opts, stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
					handled = append(handled, e)
					return nil
				})))...))
			})
			if err != nil || len(handled) != 1 || !errors.As(handled[0], &pe) {
				t.Errorf("Handle: err %v, handled %v", err, handled)
			}
			if called.Load() != 0 {
				t.Errorf("the function was called for the item whose key panicked")
			}
		})
	}
	// RetryIf that retries everything: what happens to a key panic? (recorded)
	var keyCalls atomic.Int32
	s := stage.Map(source.Slice([]int{3}), double, stage.KeyBy(func(x int) int { keyCalls.Add(1); panic("k") }),
		stage.RetryIf(3, 0, func(error) bool { return true }), stage.OnError(stage.Forward))
	var errs []error
	rvRun(t, func() {
		for _, err := range sink.All(context.Background(), s) {
			errs = append(errs, err)
		}
	})
	var ie *stage.Error
	if len(errs) == 1 && errors.As(errs[0], &ie) {
		t.Logf("key panic under RetryIf(always): key calls %d, Attempts %d", keyCalls.Load(), ie.Attempts)
	}
	if keyCalls.Load() != 1 {
		t.Errorf("key called %d times for one item", keyCalls.Load())
	}
}

// TestContractBatchCapacityAndAliasing: a batch's capacity follows its size,
// and each batch is a new slice the consumer may keep (appending to one never
// changes another).
func TestContractBatchCapacityAndAliasing(t *testing.T) {
	for _, size := range []int{1 << 40, 1 << 20} {
		got, err := sink.Slice(context.Background(), stage.Batch(source.Slice(ints(3000)), size, 0))
		if err != nil || len(got) != 1 || len(got[0]) != 3000 {
			t.Fatalf("size %d: %v %v", size, len(got), err)
		}
		t.Logf("size %d: batch of 3000 has cap %d", size, cap(got[0]))
		if cap(got[0]) > 2*3000 {
			t.Errorf("size %d: a batch of 3000 has capacity %d", size, cap(got[0]))
		}
	}
	for _, size := range []int{7, 1000} {
		got, err := sink.Slice(context.Background(), stage.Batch(source.Slice(ints(100)), size, 0))
		if err != nil {
			t.Fatal(err)
		}
		for i := range got {
			got[i] = append(got[i], -1, -1, -1)
		}
		var flat []int
		for _, b := range got {
			flat = append(flat, b[:len(b)-3]...)
		}
		if !slices.Equal(flat, ints(100)) {
			t.Errorf("size %d: appending to a batch changed another: %v", size, got)
		}
	}
}

// TestContractInfoTotals: Info.Total through the shapes the doc lists.
func TestContractInfoTotals(t *testing.T) {
	keep := func(_ context.Context, x int) (bool, error) { return true, nil }
	fm := func(_ context.Context, x int) ([]int, error) { return []int{x}, nil }
	cases := []struct {
		name  string
		s     stage.Stream[int]
		total int // of the last stage
	}{
		{"slice-map", stage.Map(source.Slice(ints(10)), double), 10},
		{"indexed-map", stage.Map(stage.Indexed(7, func(i int) int { return i }), double), 7},
		{"slice-map-until-map", stage.Map(stage.Until(stage.Map(source.Slice(ints(10)), double), context.Background()), double), 10},
		{"slice-forward-map", stage.Map(stage.Map(source.Slice(ints(10)), double, stage.OnError(stage.Forward)), double), 10},
		{"slice-batch-map", stage.Map(stage.Unbatch(stage.Batch(source.Slice(ints(10)), 3, 0)), double), -1},
		{"slice-filter-map", stage.Map(stage.Filter(source.Slice(ints(10)), keep), double), -1},
		{"slice-flatmap-map", stage.Map(stage.FlatMap(source.Slice(ints(10)), fm), double), -1},
		{"slice-merge-map", stage.Map(stage.Merge(source.Slice(ints(10))), double), -1},
		{"func-map", stage.Map(source.Func(func(context.Context) (int, error) { return 0, io.EOF }), double), -1},
	}
	for _, c := range cases {
		o := &rvObserver{}
		rvRun(t, func() { _, _ = sink.Count(stage.Observe(context.Background(), o), c.s) })
		o.mu.Lock()
		infos := append([]stage.Info(nil), o.infos...)
		o.mu.Unlock()
		var desc []string
		for _, i := range infos {
			desc = append(desc, fmt.Sprintf("%s:%d", i.Name, i.Total))
		}
		t.Logf("%s: %v", c.name, desc)
		if len(infos) == 0 || infos[len(infos)-1].Total != c.total {
			t.Errorf("%s: totals %v, want the last stage's Total %d", c.name, desc, c.total)
		}
	}
	// The Map right after a Batch (over []int).
	o := &rvObserver{}
	s := stage.Map(stage.Batch(source.Slice(ints(10)), 3, 0), func(_ context.Context, b []int) (int, error) { return len(b), nil })
	rvRun(t, func() { _, _ = sink.Count(stage.Observe(context.Background(), o), s) })
	last := o.infos[len(o.infos)-1]
	var desc []string
	for _, i := range o.infos {
		desc = append(desc, fmt.Sprintf("%s:%d", i.Name, i.Total))
	}
	t.Logf("slice-batch-map(batches): %v", desc)
	if last.Total != -1 {
		t.Errorf("Map after Batch: Total %d, want -1", last.Total)
	}
}

// TestContractUntilNoNextAfterStop: stop is done inside the function of item 5
// (one worker, no buffer: the source cannot be asked for item 6 before that
// call returns). After that, no source upstream is asked for another item,
// items taken are delivered, and the sink returns nil.
func TestContractUntilNoNextAfterStop(t *testing.T) {
	type mk func(count *atomic.Int32, stopped *atomic.Bool, bad *atomic.Int32) stage.Stream[int]
	counting := func(count *atomic.Int32, stopped *atomic.Bool, bad *atomic.Int32) func(context.Context) (int, error) {
		i := 0
		return func(context.Context) (int, error) {
			count.Add(1)
			if stopped.Load() {
				bad.Add(1)
			}
			i++
			return i - 1, nil
		}
	}
	sources := map[string]mk{
		"Func": func(c *atomic.Int32, s *atomic.Bool, b *atomic.Int32) stage.Stream[int] {
			return source.Func(counting(c, s, b))
		},
		"NeverWaits(Source)": func(c *atomic.Int32, s *atomic.Bool, b *atomic.Int32) stage.Stream[int] {
			return stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
				return counting(c, s, b), nil
			}))
		},
		"Indexed": func(c *atomic.Int32, s *atomic.Bool, b *atomic.Int32) stage.Stream[int] {
			return stage.Indexed(1000, func(i int) int {
				c.Add(1)
				if s.Load() {
					b.Add(1)
				}
				return i
			})
		},
	}
	for name, mkSrc := range sources {
		for _, batch := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/batch=%v", name, batch), func(t *testing.T) {
				var count, bad atomic.Int32
				var stopped atomic.Bool
				stopCtx, stop := context.WithCancel(context.Background())
				defer stop()
				s := stage.Map(stage.Until(mkSrc(&count, &stopped, &bad), stopCtx), func(_ context.Context, x int) (int, error) {
					if x == 5 {
						stop()
						stopped.Store(true)
					}
					return x, nil
				}, stage.Workers(1))
				var got []int
				var err error
				rvRun(t, func() {
					if batch {
						var bs [][]int
						bs, err = sink.Slice(context.Background(), stage.Batch(s, 4, 0))
						for _, b := range bs {
							got = append(got, b...)
						}
						return
					}
					got, err = sink.Slice(context.Background(), s)
				})
				if err != nil || !slices.Equal(got, ints(6)) {
					t.Errorf("got %v, %v; want 0..5 and nil", got, err)
				}
				if bad.Load() != 0 {
					t.Errorf("the source was asked for %d item(s) after stop was done (%d asks in all)", bad.Load(), count.Load())
				}
			})
		}
	}
}

func rvGoid() string {
	b := make([]byte, 64)
	b = b[:runtime.Stack(b, false)]
	f := strings.Fields(string(b))
	return f[1]
}

// TestContractObserverBeforeAnything: Observer.Stage is called once per stage
// per run, from the sink's goroutine, upstream first, before any goroutine of
// the run starts and before any item is taken; every stage kind is seen.
func TestContractObserverBeforeAnything(t *testing.T) {
	var nexts, calls atomic.Int32
	src := source.Func(func(context.Context) (int, error) {
		if nexts.Add(1) > 20 {
			return 0, io.EOF
		}
		return int(nexts.Load()), nil
	})
	f := func(_ context.Context, x int) (int, error) { calls.Add(1); return x, nil }
	s := stage.Map(src, f, stage.Workers(3))
	s = stage.Unbatch(stage.Batch(s, 4, 0))
	b := stage.Tee(s, 2)
	s = stage.Merge(stage.Map(b[0], f), stage.Filter(b[1], func(_ context.Context, x int) (bool, error) { calls.Add(1); return true, nil }))
	s = stage.Apply(s, func(_ context.Context, x int, emit func(int) bool) error { calls.Add(1); emit(x); return nil }, stage.KeyBy(func(x int) int { return x }))

	var problems []string
	var mu sync.Mutex
	var sinkG string
	var base int
	o := &rvObserver{}
	o.hook = func(i stage.Info) {
		mu.Lock()
		defer mu.Unlock()
		if nexts.Load() != 0 || calls.Load() != 0 {
			problems = append(problems, fmt.Sprintf("Stage(%s) after %d next calls and %d function calls", i.Name, nexts.Load(), calls.Load()))
		}
		if g := rvGoid(); g != sinkG {
			problems = append(problems, fmt.Sprintf("Stage(%s) from goroutine %s, the sink's is %s", i.Name, g, sinkG))
		}
		// More goroutines than before the run: one of the run's started.
		// (Fewer is no sign of anything: a goroutine of an earlier test may
		// still have been on its way out when base was taken.)
		if n := runtime.NumGoroutine(); n > base {
			problems = append(problems, fmt.Sprintf("Stage(%s): %d goroutines, %d before the run", i.Name, n, base))
		}
	}
	var err error
	var n int
	rvRun(t, func() {
		sinkG = rvGoid()
		base = runtime.NumGoroutine()
		n, err = sink.Count(stage.Observe(context.Background(), o), s)
	})
	if err != nil || n != 40 {
		t.Fatalf("Count %d, %v", n, err)
	}
	var kinds []string
	for _, i := range o.infos {
		kinds = append(kinds, i.Kind)
	}
	t.Logf("stages observed: %v", kinds)
	for _, k := range []string{"map", "unbatch", "filter", "apply"} {
		if !slices.Contains(kinds, k) {
			t.Errorf("no Stage call for a %s stage (%v)", k, kinds)
		}
	}
	if len(problems) > 0 {
		t.Errorf("%d problems, e.g. %v", len(problems), problems[0])
	}
}

// TestContractTeeUnconsumedWithObserver: the run fails with
// ErrUnconsumedBranch; no item is taken; recorded: whether observers met the
// stages and were closed.
func TestContractTeeUnconsumedWithObserver(t *testing.T) {
	var nexts atomic.Int32
	src := source.Func(func(context.Context) (int, error) { nexts.Add(1); return 1, nil })
	b := stage.Tee(stage.Map(src, double), 2)
	o := &rvObserver{}
	_, err := sink.Count(stage.Observe(context.Background(), o), stage.Map(b[1], double))
	if !errors.Is(err, stage.ErrUnconsumedBranch) || nexts.Load() != 0 {
		t.Errorf("err %v after %d next calls", err, nexts.Load())
	}
	t.Logf("observer saw %d stages: %v; err %q", len(o.infos), o.names(), err)
}

// TestContractUntilChanBlocked: a source.Chan blocked on an empty channel sees
// stop and ends quietly; the values already taken are delivered, sink nil,
// the channel is neither closed nor drained.
func TestContractUntilChanBlocked(t *testing.T) {
	ch := make(chan int, 10)
	ch <- 1
	ch <- 2
	stopCtx, stop := context.WithCancel(context.Background())
	defer stop()
	var got []int
	var err error
	rvRun(t, func() {
		err = sink.ForEach(context.Background(), stage.Map(stage.Until(source.Chan(ch), stopCtx), double, stage.Workers(2)), func(_ context.Context, v int) error {
			got = append(got, v)
			if len(got) == 2 {
				stop()
			}
			return nil
		})
	})
	ch <- 3 // not closed
	if err != nil || len(got) != 2 || len(ch) != 1 {
		t.Fatalf("err %v got %v, %d left", err, got, len(ch))
	}
}
