package main

// Review 13: the README's code snippets and the behaviours it states about
// them, checked against the current API. Each snippet appears below with
// the minimum of scaffolding around it; the lines of the snippet itself are
// kept as the README has them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
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

// r13Watchdog fails the test if f does not return within a minute (a hang
// watchdog only: no duration is asserted).
func r13Watchdog(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("hung")
	}
}

type r13Record struct {
	Line string
	N    int
}

// The README's first snippet, as written.
func r13Intro(ctx context.Context, file io.Reader,
	parse func(context.Context, string) (r13Record, error),
	validate func(context.Context, r13Record) (bool, error),
	store func(context.Context, r13Record) error) error {
	lines := source.Lines(file) // read as the workers need lines
	records := stage.Map(lines, parse,
		stage.Workers(8),             // at most 8 calls of parse at once
		stage.Ordered(),              // results in input order; without it, as they complete
		stage.OnError(stage.Forward)) // a failed line travels on as an error
	valid := stage.Filter(records, validate)
	err := sink.ForEach(ctx, valid, store) // returns when everything has stopped
	return err
}

// Intro snippet: at most 8 parses at once; a failed line travels on as an
// error (ForEach returns a *sink.ForwardedError naming it, map#1, its index
// and input); the rest is validated and stored.
func TestReview13ReadmeIntroSnippet(t *testing.T) {
	var in strings.Builder
	for i := range 100 {
		if i == 37 {
			in.WriteString("oops\n")
			continue
		}
		fmt.Fprintf(&in, "%d\n", i)
	}
	var now, most atomic.Int64
	parse := func(_ context.Context, s string) (r13Record, error) {
		n := now.Add(1)
		defer now.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		v, err := strconv.Atoi(s)
		return r13Record{s, v}, err
	}
	validate := func(_ context.Context, r r13Record) (bool, error) { return r.N%2 == 0, nil }
	var mu sync.Mutex
	var stored []int
	store := func(_ context.Context, r r13Record) error {
		mu.Lock()
		defer mu.Unlock()
		stored = append(stored, r.N)
		return nil
	}
	var err error
	r13Watchdog(t, func() { err = r13Intro(context.Background(), strings.NewReader(in.String()), parse, validate, store) })
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 {
		t.Fatalf("err %v, want a *sink.ForwardedError of 1", err)
	}
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "map#1" || se.Index != 37 || se.Input != "oops" {
		t.Fatalf("err %#v, want *stage.Error map#1 index 37 input oops", se)
	}
	var ne *strconv.NumError
	if !errors.As(err, &ne) {
		t.Errorf("errors.As does not reach the parse error through %v", err)
	}
	slices.Sort(stored)
	var want []int
	for i := 0; i < 100; i += 2 {
		want = append(want, i)
	}
	if !slices.Equal(stored, want) {
		t.Errorf("stored %v, want the even numbers", stored)
	}
	if most.Load() > 8 {
		t.Errorf("%d parses at once, want at most 8", most.Load())
	}
}

// The README's second snippet, as written.
func r13Answers(ctx context.Context, backends []int, call func(context.Context, int) (string, error)) ([]string, error) {
	answers, err := sink.Slice(ctx, stage.Map(source.Slice(backends), call,
		stage.Workers(3), stage.Ordered()))
	return answers, err
}

// "at most 3 at a time, answers in the order of the calls": later calls
// finish first (call 0 waits for calls 1 and 2 to return), and the answers
// still come in call order.
func TestReview13ReadmeBackendsOrdered(t *testing.T) {
	var now, most atomic.Int64
	var done [3]chan struct{}
	for i := range done {
		done[i] = make(chan struct{})
	}
	call := func(ctx context.Context, b int) (string, error) {
		n := now.Add(1)
		defer now.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		switch b {
		case 0:
			<-done[1]
			<-done[2]
		case 1:
			<-done[2]
			defer close(done[1])
		case 2:
			defer close(done[2])
		}
		return fmt.Sprintf("answer %d", b), nil
	}
	backends := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
	var answers []string
	var err error
	r13Watchdog(t, func() { answers, err = r13Answers(context.Background(), backends, call) })
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range answers {
		if a != fmt.Sprintf("answer %d", i) {
			t.Fatalf("answers %q, want them in call order", answers)
		}
	}
	if len(answers) != len(backends) {
		t.Fatalf("%d answers, want %d", len(answers), len(backends))
	}
	if most.Load() > 3 {
		t.Errorf("%d calls at once, want at most 3", most.Load())
	}
}

// "the first error cancels the calls still running and is what err says".
func TestReview13ReadmeBackendsFirstErrorCancels(t *testing.T) {
	boom := errors.New("backend 2 is down")
	started1 := make(chan struct{})
	cause1 := make(chan error, 1)
	call := func(ctx context.Context, b int) (string, error) {
		switch b {
		case 1:
			close(started1)
			<-ctx.Done() // still running when call 2 fails
			cause1 <- context.Cause(ctx)
			return "", ctx.Err()
		case 2:
			<-started1
			return "", boom
		}
		return "ok", nil
	}
	var err error
	r13Watchdog(t, func() { _, err = r13Answers(context.Background(), []int{0, 1, 2, 3, 4, 5}, call) })
	var se *stage.Error
	if !errors.Is(err, boom) || !errors.As(err, &se) || se.Index != 2 {
		t.Fatalf("err %v, want the *stage.Error of backend 2", err)
	}
	if c := <-cause1; !errors.Is(c, boom) {
		t.Errorf("call 1 was cancelled with cause %v, want backend 2's error", c)
	}
}

// The README's "By hand" column, as written (it compiles and runs; its
// questions are rhetorical).
func r13ByHand(ctx context.Context, lines []string) ([]int, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	in, out := make(chan string), make(chan int)
	go func() {
		defer close(in)
		for _, s := range lines {
			select {
			case in <- s:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range in {
				n, err := strconv.Atoi(s)
				if err != nil {
					cancel(err)
					return
				}
				select {
				case out <- n:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); close(out) }()
	var nums []int
	for n := range out {
		nums = append(nums, n)
	}
	// Which item failed? A panic in Atoi? Order?
	// Did the source goroutine exit?
	err := context.Cause(ctx)
	return nums, err
}

// The README's "with sluice" column, as written, with f in place of the
// literal function so that a test can make it panic.
func r13WithSluice(ctx context.Context, lines []string, opts ...stage.Option) ([]int, error) {
	nums, err := sink.Slice(ctx, stage.Map(
		source.Slice(lines),
		func(_ context.Context, s string) (int, error) {
			if s == "panic" {
				panic("boom")
			}
			return strconv.Atoi(s)
		},
		append([]stage.Option{stage.Workers(4)}, opts...)...,
	))
	return nums, err
}

func TestReview13ReadmeByHandVsSluice(t *testing.T) {
	lines := []string{"1", "2", "x", "4"}
	// By hand: compiles, and err is the Atoi error.
	r13Watchdog(t, func() {
		if _, err := r13ByHand(context.Background(), lines); err == nil {
			t.Error("by hand: no error")
		}
	})
	// With sluice: err is a *stage.Error with the stage, index and input.
	r13Watchdog(t, func() {
		_, err := r13WithSluice(context.Background(), lines)
		var se *stage.Error
		if !errors.As(err, &se) || se.Stage != "map#1" || se.Index != 2 || se.Input != "x" {
			t.Errorf("err %v (%#v), want *stage.Error map#1, index 2, input x", err, se)
		}
	})
	// A panic is a *stage.PanicError (inside the *stage.Error).
	r13Watchdog(t, func() {
		_, err := r13WithSluice(context.Background(), []string{"1", "panic", "3"})
		var se *stage.Error
		var pe *stage.PanicError
		if !errors.As(err, &se) || !errors.As(se.Err, &pe) || pe.Value != "boom" || len(pe.Stack) == 0 {
			t.Errorf("err %v, want a *stage.PanicError inside a *stage.Error", err)
		}
	})
	// stage.Ordered() for input order.
	r13Watchdog(t, func() {
		var in []string
		var want []int
		for i := range 2000 {
			in = append(in, strconv.Itoa(i))
			want = append(want, i)
		}
		nums, err := r13WithSluice(context.Background(), in, stage.Ordered())
		if err != nil || !slices.Equal(nums, want) {
			t.Errorf("Ordered: err %v, order kept %v", err, slices.Equal(nums, want))
		}
	})
}

// "Building a pipeline runs no user code. Each sink call runs it anew."
func TestReview13ReadmeLazyAndRepeatable(t *testing.T) {
	var calls atomic.Int64
	i := 0
	var mu sync.Mutex
	src := source.Func(func(context.Context) (int, error) {
		calls.Add(1)
		mu.Lock()
		defer mu.Unlock()
		if i == 5 {
			i = 0
			return 0, io.EOF
		}
		i++
		return i, nil
	})
	s := stage.Filter(stage.Map(src, func(_ context.Context, v int) (int, error) { calls.Add(1); return v * 2, nil }),
		func(_ context.Context, v int) (bool, error) { calls.Add(1); return true, nil })
	if calls.Load() != 0 {
		t.Fatalf("building the pipeline made %d calls of user code", calls.Load())
	}
	for run := range 2 {
		n, err := sink.Count(context.Background(), s)
		if err != nil || n != 5 {
			t.Fatalf("run %d: %d, %v; want 5 items each run", run, n, err)
		}
	}
}

// "stage.Merge of a stream with itself (or with a stage built on it)
// panics when the pipeline is built."
func TestReview13ReadmeMergeWithItselfPanics(t *testing.T) {
	s := source.Slice([]int{1, 2, 3})
	for name, build := range map[string]func(){
		"itself": func() { stage.Merge(s, s) },
		"a stage on it": func() {
			stage.Merge(s, stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }))
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Merge with %s did not panic when built", name)
				}
			}()
			build()
		}()
	}
}

// "sink.First(ctx, source.Chan(ch)) receives exactly one value and leaves
// the rest in ch."
func TestReview13ReadmeFirstTakesOne(t *testing.T) {
	ch := make(chan int, 5)
	for i := range 5 {
		ch <- i
	}
	v, ok, err := sink.First(context.Background(), source.Chan(ch))
	if err != nil || !ok || v != 0 {
		t.Fatalf("First: %v %v %v", v, ok, err)
	}
	if len(ch) != 4 {
		t.Fatalf("%d values left in ch, want 4", len(ch))
	}
}

// The errors table and the policies: SourceError after the items before
// it, whatever the policy; Forward keeps eight; Handle calls never overlap
// and nil drops; Budget wraps ErrBudget at the (n+1)th failure; Retry's
// Attempts; ctx cancelled is context.Canceled; ErrStop wins.
func TestReview13ReadmeErrors(t *testing.T) {
	ctx := context.Background()
	t.Run("SourceError after the items before it", func(t *testing.T) {
		bad := errors.New("source broke")
		i := 0
		src := source.Func(func(context.Context) (int, error) {
			if i == 50 {
				return 0, bad
			}
			i++
			return i, nil
		})
		var got atomic.Int64
		err := sink.ForEach(ctx, stage.Map(src, func(_ context.Context, v int) (int, error) { return v, nil },
			stage.Workers(4), stage.OnError(stage.Forward)), func(context.Context, int) error { got.Add(1); return nil })
		var se *stage.SourceError
		if !errors.As(err, &se) || !errors.Is(err, bad) || got.Load() != 50 {
			t.Fatalf("err %v, %d items; want the *stage.SourceError after all 50", err, got.Load())
		}
	})
	t.Run("Forward", func(t *testing.T) {
		in := make([]int, 100)
		for i := range in {
			in[i] = i
		}
		got, err := sink.Slice(ctx, stage.Map(source.Slice(in), func(_ context.Context, v int) (int, error) {
			if v%5 == 0 {
				return 0, fmt.Errorf("item %d", v)
			}
			return v, nil
		}, stage.OnError(stage.Forward)))
		var fe *sink.ForwardedError
		if !errors.As(err, &fe) || fe.Count != 20 || len(fe.Sample) != 8 || len(got) != 80 {
			t.Fatalf("err %v, %d results; want 80 results and a ForwardedError of 20 keeping 8", err, len(got))
		}
		var seen int
		for _, err := range sink.All(ctx, stage.Map(source.Slice(in), func(_ context.Context, v int) (int, error) {
			if v%5 == 0 {
				return 0, fmt.Errorf("item %d", v)
			}
			return v, nil
		}, stage.OnError(stage.Forward))) {
			var se *stage.Error
			if err != nil && errors.As(err, &se) {
				seen++
			}
		}
		if seen != 20 {
			t.Fatalf("sink.All yielded %d *stage.Error, want 20", seen)
		}
	})
	t.Run("Handle", func(t *testing.T) {
		var now, most, handled atomic.Int64
		h := func(_ context.Context, e *stage.Error) error {
			n := now.Add(1)
			defer now.Add(-1)
			most.Store(max(most.Load(), n))
			handled.Add(1)
			runtime.Gosched()
			return nil
		}
		in := make([]int, 200)
		n, err := sink.Count(ctx, stage.Map(source.Slice(in), func(context.Context, int) (int, error) { return 0, errors.New("no") },
			stage.Workers(8), stage.OnError(stage.Handle(h))))
		if err != nil || n != 0 || handled.Load() != 200 || most.Load() != 1 {
			t.Fatalf("n %d err %v handled %d overlap %d; want 0, nil, 200, 1", n, err, handled.Load(), most.Load())
		}
		stop := errors.New("stop here")
		_, err = sink.Count(ctx, stage.Map(source.Slice(in), func(context.Context, int) (int, error) { return 0, errors.New("no") },
			stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return stop }))))
		if !errors.Is(err, stop) {
			t.Fatalf("err %v, want the handler's error", err)
		}
	})
	t.Run("Budget", func(t *testing.T) {
		var handled atomic.Int64
		in := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		_, err := sink.Count(ctx, stage.Map(source.Slice(in), func(_ context.Context, v int) (int, error) {
			return 0, fmt.Errorf("bad %d", v)
		}, stage.Workers(1), stage.OnError(stage.Budget(3, func(context.Context, *stage.Error) error { handled.Add(1); return nil }))))
		var se *stage.Error
		if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || se.Index != 3 || handled.Load() != 3 {
			t.Fatalf("err %v, handled %d; want ErrBudget at the 4th failure (index 3), 3 handled", err, handled.Load())
		}
	})
	t.Run("Retry attempts", func(t *testing.T) {
		var calls atomic.Int64
		_, err := sink.Count(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) {
			return 0, fmt.Errorf("attempt %d", calls.Add(1))
		}, stage.Retry(3, time.Millisecond)))
		var se *stage.Error
		if !errors.As(err, &se) || se.Attempts != 3 || se.Err.Error() != "attempt 3" {
			t.Fatalf("err %v, want Attempts 3 and the last attempt's error", err)
		}
	})
	t.Run("cancelled ctx", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		entered := make(chan struct{})
		var once sync.Once
		var err error
		r13Watchdog(t, func() {
			go func() { <-entered; cancel() }()
			err = sink.ForEach(cctx, source.Func(func(ctx context.Context) (int, error) {
				once.Do(func() { close(entered) })
				<-ctx.Done()
				return 0, ctx.Err()
			}), func(context.Context, int) error { return nil })
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	})
	t.Run("ErrStop wins over a cancellation during the callback", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		err := sink.ForEach(cctx, source.Slice([]int{1, 2, 3}), func(context.Context, int) error {
			cancel()
			return stage.ErrStop
		})
		if err != nil {
			t.Fatalf("err %v, want nil", err)
		}
	})
	t.Run("First is the first pair of All", func(t *testing.T) {
		s := stage.Map(source.Slice([]int{7, 8, 9}), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1))
		v, ok, err := sink.First(ctx, s)
		for w, werr := range sink.All(ctx, s) {
			if !ok || v != w || err != werr {
				t.Fatalf("First %v %v %v, All's first %v %v", v, ok, err, w, werr)
			}
			break
		}
	})
	t.Run("Tee branch not consumed", func(t *testing.T) {
		var taken atomic.Int64
		branches := stage.Tee(source.Func(func(context.Context) (int, error) { taken.Add(1); return 1, nil }), 2)
		_, err := sink.Count(ctx, branches[0])
		if !errors.Is(err, stage.ErrUnconsumedBranch) || taken.Load() != 0 {
			t.Fatalf("err %v, %d taken; want ErrUnconsumedBranch with nothing taken", err, taken.Load())
		}
		in := []int{1, 2, 3}
		branches = stage.Tee(source.Slice(in), 2)
		n, err := sink.Count(ctx, stage.Merge(branches...))
		if err != nil || n != 6 {
			t.Fatalf("Tee then Merge: %d, %v; want every item on each branch", n, err)
		}
	})
}

// Python table: a nil task is a *stage.Error wrapping ErrNilTask, a panic a
// *stage.Error wrapping a *stage.PanicError; Workers(-1) is unlimited;
// DefaultWorkers is min(NumCPU+4, 32).
func TestReview13ReadmeConcurrentTasks(t *testing.T) {
	ctx := context.Background()
	tasks := []func(context.Context) (int, error){
		func(context.Context) (int, error) { return 1, nil },
		nil,
	}
	_, err := sink.Slice(ctx, stage.Concurrent(source.Slice(tasks), stage.Workers(3)))
	var se *stage.Error
	if !errors.Is(err, stage.ErrNilTask) || !errors.As(err, &se) {
		t.Fatalf("nil task: %v, want a *stage.Error wrapping ErrNilTask", err)
	}
	tasks[1] = func(context.Context) (int, error) { panic("task") }
	_, err = sink.Slice(ctx, stage.Concurrent(source.Slice(tasks), stage.Workers(3)))
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) {
		t.Fatalf("panicking task: %v, want a *stage.Error wrapping a *stage.PanicError", err)
	}
	// Workers(-1): 50 tasks that each wait for all 50 to have started.
	const n = 50
	var started sync.WaitGroup
	started.Add(n)
	many := make([]func(context.Context) (int, error), n)
	for i := range many {
		many[i] = func(context.Context) (int, error) { started.Done(); started.Wait(); return i, nil }
	}
	r13Watchdog(t, func() {
		got, err := sink.Slice(ctx, stage.Concurrent(source.Slice(many), stage.Workers(-1)))
		if err != nil || len(got) != n {
			t.Errorf("Workers(-1): %d, %v", len(got), err)
		}
	})
	if want := min(runtime.NumCPU()+4, 32); stage.DefaultWorkers() != want {
		t.Errorf("DefaultWorkers %d, want min(NumCPU+4, 32) = %d", stage.DefaultWorkers(), want)
	}
}

type r13Infos struct {
	mu    sync.Mutex
	infos []stage.Info
}

func (o *r13Infos) Stage(i stage.Info) stage.Watcher {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.infos = append(o.infos, i)
	return nil
}

// Options: unnamed stages are map#1, filter#2, ... by kind and position;
// Workers(0) is DefaultWorkers, -1 unlimited; the slice source's total.
func TestReview13ReadmeOptionsNames(t *testing.T) {
	in := []int{1, 2, 3, 4}
	s := stage.Filter(stage.Map(source.Slice(in), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(0)),
		func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(-1))
	s = stage.Map(s, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("named"))
	var o r13Infos
	if _, err := sink.Count(stage.Observe(context.Background(), &o), s); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprint(o.infos)
	want := fmt.Sprint([]stage.Info{
		{Name: "map#1", Kind: "map", Workers: stage.DefaultWorkers(), Total: 4},
		{Name: "filter#2", Kind: "filter", Workers: -1, Total: 4},
		{Name: "named", Kind: "map", Workers: stage.DefaultWorkers(), Total: -1},
	})
	if got != want {
		t.Fatalf("infos %s, want %s", got, want)
	}
}

// Drain: once stop is done no source is asked for another item, what was
// taken finishes, Batch flushes its partial batch, the sink returns nil.
// Abort: cancelling ctx makes calls in flight see ctx.Done and the sink
// return the cancellation.
func TestReview13ReadmeDrainAndAbort(t *testing.T) {
	for range 20 {
		stop, drain := context.WithCancel(context.Background())
		var asked, afterStop atomic.Int64
		src := source.Func(func(context.Context) (int, error) {
			if stop.Err() != nil {
				afterStop.Add(1)
			}
			n := asked.Add(1)
			if n == 37 {
				drain()
			}
			return int(n), nil
		})
		out := stage.Map(stage.Until(src, stop), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(4))
		var got []int
		var batches int
		var err error
		r13Watchdog(t, func() {
			err = sink.ForEach(context.Background(), stage.Batch(out, 10, time.Hour), func(_ context.Context, b []int) error {
				batches++
				got = append(got, b...)
				return nil
			})
		})
		slices.Sort(got)
		if err != nil || afterStop.Load() != 0 || len(got) != 37 || got[36] != 37 || batches != 4 {
			t.Fatalf("err %v, asked after stop %d, stored %d in %d batches; want nil, 0, 37 in 4 (the last partial)", err, afterStop.Load(), len(got), batches)
		}
	}
	ctx, abort := context.WithCancel(context.Background())
	inFlight := make(chan struct{}, 4)
	sawDone := make(chan struct{}, 4)
	var err error
	r13Watchdog(t, func() {
		go func() { <-inFlight; abort() }()
		err = sink.ForEach(ctx, stage.Map(source.Slice(make([]int, 4)), func(ctx context.Context, _ int) (int, error) {
			inFlight <- struct{}{}
			<-ctx.Done()
			sawDone <- struct{}{}
			return 0, ctx.Err()
		}, stage.Workers(4)), func(context.Context, int) error { return nil })
	})
	if !errors.Is(err, context.Canceled) || len(sawDone) == 0 {
		t.Fatalf("abort: err %v, calls that saw ctx.Done %d", err, len(sawDone))
	}
}

// Ordering: Workers(1) keeps input order; KeyBy runs one key's items one at
// a time in input order; Batch keeps input order and a forwarded error is
// a batch boundary.
func TestReview13ReadmeOrdering(t *testing.T) {
	ctx := context.Background()
	in := make([]int, 500)
	for i := range in {
		in[i] = i
	}
	got, err := sink.Slice(ctx, stage.Map(source.Slice(in), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(1)))
	if err != nil || !slices.Equal(got, in) {
		t.Fatalf("Workers(1): order not kept (%v)", err)
	}
	var mu sync.Mutex
	running := map[int]bool{}
	last := map[int]int{}
	var bad []string
	_, err = sink.Count(ctx, stage.Map(source.Slice(in), func(_ context.Context, v int) (int, error) {
		k := v % 3
		mu.Lock()
		if running[k] {
			bad = append(bad, fmt.Sprintf("key %d overlaps at %d", k, v))
		}
		if l, ok := last[k]; ok && l > v {
			bad = append(bad, fmt.Sprintf("key %d: %d after %d", k, v, l))
		}
		running[k], last[k] = true, v
		mu.Unlock()
		runtime.Gosched()
		mu.Lock()
		running[k] = false
		mu.Unlock()
		return v, nil
	}, stage.Workers(8), stage.KeyBy(func(v int) int { return v % 3 })))
	if err != nil || len(bad) > 0 {
		t.Fatalf("KeyBy: %v %v", err, bad)
	}
	// Batch: input order, and a forwarded error ends a batch.
	vals := []int{1, 2, 3, -1, 4, 5, 6, 7, 8}
	var batches [][]int
	var errs int
	err = stage.Run(ctx, stage.Batch(stage.Map(source.Slice(vals), func(_ context.Context, v int) (int, error) {
		if v < 0 {
			return 0, errors.New("negative")
		}
		return v, nil
	}, stage.Workers(1), stage.OnError(stage.Forward)), 4, time.Hour), func(_ context.Context, b []int, err error) error {
		if err != nil {
			errs++
			batches = append(batches, nil)
			return nil
		}
		batches = append(batches, b)
		return nil
	})
	if want := "[[1 2 3] [] [4 5 6 7] [8]]"; err != nil || fmt.Sprint(batches) != want || errs != 1 {
		t.Fatalf("Batch: %v, %v; want %s", batches, err, want)
	}
}

// source.Lines: the default maximum is 1 MiB; a longer line ends the run
// with a *stage.SourceError caused by *source.LineTooLongError.
func TestReview13ReadmeLinesMax(t *testing.T) {
	if source.DefaultMaxLineLength != 1<<20 {
		t.Fatalf("DefaultMaxLineLength %d", source.DefaultMaxLineLength)
	}
	ok := strings.Repeat("a", 1<<20) + "\nb\n"
	if n, err := sink.Count(context.Background(), source.Lines(strings.NewReader(ok))); err != nil || n != 2 {
		t.Fatalf("a line of 1 MiB: %d, %v", n, err)
	}
	long := "a\n" + strings.Repeat("a", 1<<20+1) + "\n"
	n, err := sink.Count(context.Background(), source.Lines(strings.NewReader(long)))
	var se *stage.SourceError
	var le *source.LineTooLongError
	if !errors.As(err, &se) || !errors.As(err, &le) || le.Line != 2 || n != 1 {
		t.Fatalf("a line over 1 MiB: %d, %v", n, err)
	}
	_, err = sink.Count(context.Background(), source.Lines(strings.NewReader("abcdef\n"), source.MaxLineLength(3)))
	if !errors.As(err, &le) || le.Max != 3 {
		t.Fatalf("MaxLineLength(3): %v", err)
	}
}

// stage.Logger: lifecycle and failures, never per-item success: the log of
// a run does not grow with its successful items.
func TestReview13ReadmeLoggerNotPerItem(t *testing.T) {
	records := func(n int) int {
		var buf bytes.Buffer
		l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
		if _, err := sink.Count(stage.Observe(context.Background(), stage.Logger(l)),
			stage.Map(source.Slice(make([]int, n)), func(_ context.Context, v int) (int, error) { return v, nil })); err != nil {
			t.Fatal(err)
		}
		return strings.Count(buf.String(), "\n")
	}
	if a, b := records(1), records(1000); a != b {
		t.Fatalf("log lines: %d for 1 item, %d for 1000", a, b)
	}
	var st stage.Stats
	if _, err := sink.Count(stage.Observe(context.Background(), &st),
		stage.Map(source.Slice(make([]int, 10)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("m"))); err != nil {
		t.Fatal(err)
	}
	if c, ok := st.Get("m"); !ok || c.Received != 10 || c.Finished != 10 || c.Failed != 0 {
		t.Fatalf("Stats: %+v", c)
	}
}

// "A panic in your code never crashes the process": stage function, KeyBy
// key, source, sink callback, Ack, observer. Run in a child process.
func TestReview13ReadmePanicsNeverCrash(t *testing.T) {
	if os.Getenv("R13_PANIC_CHILD") == "1" {
		r13PanicScenarios(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang watchdog
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReview13ReadmePanicsNeverCrash$", "-test.v")
	cmd.Env = append(os.Environ(), "R13_PANIC_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "r13 panics: all 6 became errors") {
		t.Fatalf("child output:\n%s", out)
	}
}

type r13Ack struct{}

func (r13Ack) Done(error) { panic("ack") }

type r13PanicObserver struct{}

func (r13PanicObserver) Stage(stage.Info) stage.Watcher { panic("observer") }

func r13PanicScenarios(t *testing.T) {
	ctx := context.Background()
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	var pe *stage.PanicError
	var se *stage.Error
	var sre *stage.SourceError
	n := 0
	check := func(name string, err error, ok bool) {
		if !ok {
			t.Errorf("%s: %v", name, err)
			return
		}
		n++
	}
	_, err := sink.Count(ctx, stage.Map(source.Slice([]int{1}), func(context.Context, int) (int, error) { panic("f") }))
	check("stage function", err, errors.As(err, &se) && errors.As(err, &pe))
	_, err = sink.Count(ctx, stage.Map(source.Slice([]int{1, 2}), id, stage.KeyBy(func(int) int { panic("key") })))
	check("KeyBy key", err, errors.As(err, &pe))
	_, err = sink.Count(ctx, source.Func(func(context.Context) (int, error) { panic("source") }))
	check("source", err, errors.As(err, &sre) && errors.As(err, &pe))
	err = sink.ForEach(ctx, source.Slice([]int{1}), func(context.Context, int) error { panic("callback") })
	check("sink callback", err, errors.As(err, &pe))
	done := false
	_, err = sink.Count(ctx, stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		return func(context.Context) (int, stage.Ack, error) {
			if done {
				return 0, nil, io.EOF
			}
			done = true
			return 1, r13Ack{}, nil
		}, nil
	}))
	check("Ack", err, errors.As(err, &sre) && errors.As(err, &pe))
	_, err = sink.Count(stage.Observe(ctx, r13PanicObserver{}), stage.Map(source.Slice([]int{1}), id))
	check("observer", err, errors.As(err, &pe))
	if !t.Failed() {
		fmt.Printf("r13 panics: all %d became errors\n", n)
	}
}
