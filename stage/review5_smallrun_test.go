package stage_test

// Review 5: adversarial tests of the per-request fan-out path, written from
// the documentation only (README, doc comments, examples). Small runs (1 to
// 20 items) of Map / Filter / FlatMap / Concurrent over source.Slice, run by
// the sinks, many at once, several of them runs of one Stream value. The
// engine recycles per-run state between runs, so most tests look for state of
// one run (a value, an error, a count, a cancellation, a name) showing up in
// another.
//
// Every run carries its own *r5Spec in its context (the run's context is
// derived from the caller's, so ctx.Value reaches the user functions): the
// functions read their behaviour for that run from it and stamp their outputs
// with its id, so an output, an error or a cancellation that crosses from one
// run into another is seen.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// ---------------------------------------------------------------------------
// Per-run specification and the user functions driven by it.

type r5Out struct{ Run, Item, Sub int }

type r5ItemErr struct{ Run, Item int }

func (e *r5ItemErr) Error() string { return fmt.Sprintf("r5: run %d item %d failed", e.Run, e.Item) }

type r5PanicVal struct{ Run, Item int }

type r5Key struct{}

var (
	errR5NoSpec = errors.New("r5: no spec in ctx")
	errR5Dup    = errors.New("r5: item called twice")
	errR5Late   = errors.New("r5: late failure")
	r5RunIDs    atomic.Int64
)

// r5RuntimePanic in r5Spec.panics makes the item panic with a runtime error.
const r5RuntimePanic = "runtime-panic"

type r5Spec struct {
	id      int
	n       int
	fail    map[int]bool // return *r5ItemErr at once
	panics  map[int]any  // panic with this value
	waitEnd map[int]bool // wait for ctx.Done, then return ctx.Err()
	lateErr map[int]bool // wait for ctx.Done, then return errR5Late (a real error, after the end)
	chain   int          // >1: item x waits for item x+1 of its block of chain items
	strict  bool         // ctx must not be done when a call starts
	started chan int     // if not nil, every call sends its item (buffered n)

	done     []chan struct{}
	perItem  []atomic.Int32
	inflight atomic.Int32
	maxIn    atomic.Int32
	calls    atomic.Int32
	closed   atomic.Bool

	mu     sync.Mutex
	bad    []string
	causes []error // context.Cause seen by waitEnd / lateErr items
}

func r5NewSpec(n int) *r5Spec {
	sp := &r5Spec{
		id: int(r5RunIDs.Add(1)), n: n,
		fail: map[int]bool{}, panics: map[int]any{}, waitEnd: map[int]bool{}, lateErr: map[int]bool{},
		done: make([]chan struct{}, n), perItem: make([]atomic.Int32, n),
	}
	for i := range sp.done {
		sp.done[i] = make(chan struct{})
	}
	return sp
}

func (sp *r5Spec) ctx(parent context.Context) context.Context {
	return context.WithValue(parent, r5Key{}, sp)
}

func (sp *r5Spec) badf(format string, a ...any) {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	if len(sp.bad) < 10 {
		sp.bad = append(sp.bad, fmt.Sprintf(format, a...))
	}
}

func (sp *r5Spec) problems() []string {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	return slices.Clone(sp.bad)
}

func (sp *r5Spec) enter(ctx context.Context, x int) bool {
	if sp.closed.Load() {
		sp.badf("run %d item %d: call started after the sink returned", sp.id, x)
	}
	if x < 0 || x >= sp.n {
		sp.badf("run %d: item %d out of range [0,%d)", sp.id, x, sp.n)
		return false
	}
	if c := sp.perItem[x].Add(1); c > 1 {
		sp.badf("run %d item %d: called %d times in one run", sp.id, x, c)
		return false
	}
	if sp.strict && ctx.Err() != nil {
		sp.badf("run %d item %d: ctx already done at call start in a run nothing cancels (cause %v)", sp.id, x, context.Cause(ctx))
	}
	sp.calls.Add(1)
	in := sp.inflight.Add(1)
	for {
		m := sp.maxIn.Load()
		if in <= m || sp.maxIn.CompareAndSwap(m, in) {
			break
		}
	}
	if sp.started != nil {
		sp.started <- x
	}
	return true
}

func (sp *r5Spec) exit(x int) {
	if sp.closed.Load() {
		sp.badf("run %d item %d: call still running after the sink returned", sp.id, x)
	}
	sp.inflight.Add(-1)
	close(sp.done[x])
}

func (sp *r5Spec) recordCause(ctx context.Context) {
	sp.mu.Lock()
	sp.causes = append(sp.causes, context.Cause(ctx))
	sp.mu.Unlock()
}

// finish is called right after the sink returned.
func (sp *r5Spec) finish() []string {
	sp.closed.Store(true)
	if in := sp.inflight.Load(); in != 0 {
		sp.badf("run %d: %d calls still running when the sink returned", sp.id, in)
	}
	return sp.problems()
}

var r5Sink any // defeats dead-code elimination of the runtime panic

// r5Body is the user function of every stage: it reads its run's spec.
func r5Body(ctx context.Context, x int) (r5Out, error) {
	sp, _ := ctx.Value(r5Key{}).(*r5Spec)
	if sp == nil {
		return r5Out{}, errR5NoSpec
	}
	if !sp.enter(ctx, x) {
		return r5Out{}, errR5Dup
	}
	defer sp.exit(x)
	if sp.chain > 1 && x+1 < sp.n && x/sp.chain == (x+1)/sp.chain {
		select {
		case <-sp.done[x+1]:
		case <-ctx.Done():
			return r5Out{}, ctx.Err()
		}
	}
	if v, ok := sp.panics[x]; ok {
		if v == r5RuntimePanic {
			var a []int
			r5Sink = a[x+1] // index out of range: a runtime.Error
		}
		panic(v)
	}
	if sp.fail[x] {
		return r5Out{}, &r5ItemErr{Run: sp.id, Item: x}
	}
	if sp.waitEnd[x] || sp.lateErr[x] {
		<-ctx.Done()
		sp.recordCause(ctx)
		if sp.lateErr[x] {
			return r5Out{}, errR5Late
		}
		return r5Out{}, ctx.Err()
	}
	for range (x + sp.id) % 3 {
		runtime.Gosched()
	}
	return r5Out{Run: sp.id, Item: x}, nil
}

// ---------------------------------------------------------------------------
// Pipelines.

type r5Pipe struct {
	kind    string // "map", "filter", "flatmap", "concurrent"
	n       int
	workers int
	ordered bool
	buffer  bool
	forward bool
	s       stage.Stream[r5Out]
}

func (p *r5Pipe) String() string {
	return fmt.Sprintf("%s/n=%d/w=%d/ordered=%v/buffer=%v/forward=%v", p.kind, p.n, p.workers, p.ordered, p.buffer, p.forward)
}

// inOrder: outputs are promised in input order (Ordered, or one worker).
func (p *r5Pipe) inOrder() bool { return p.ordered || p.workers == 1 }

// chain: the reverse-completion chains are safe when every worker is a
// goroutine of the stage's own (Ordered, or Buffer: see Workers).
func (p *r5Pipe) chain() int {
	if p.workers == 1 || !(p.ordered || p.buffer) {
		return 0
	}
	if p.workers == -1 {
		return p.n
	}
	return p.workers
}

func (p *r5Pipe) opts() []stage.Option {
	o := []stage.Option{stage.Workers(p.workers)}
	if p.ordered {
		o = append(o, stage.Ordered())
	}
	if p.buffer {
		o = append(o, stage.Buffer(1))
	}
	if p.forward {
		o = append(o, stage.OnError(stage.Forward))
	}
	return o
}

func r5Keep(run, x int) bool { return (x+run)%3 != 0 }
func r5Fan(run, x int) int   { return (x + run) % 3 }

func r5FilterBody(ctx context.Context, o r5Out) (bool, error) {
	out, err := r5Body(ctx, o.Item)
	if err != nil {
		return false, err
	}
	return r5Keep(out.Run, o.Item), nil
}

func r5FlatBody(ctx context.Context, x int) ([]r5Out, error) {
	out, err := r5Body(ctx, x)
	if err != nil {
		return nil, err
	}
	var res []r5Out
	for s := range r5Fan(out.Run, x) {
		res = append(res, r5Out{Run: out.Run, Item: x, Sub: s})
	}
	return res, nil
}

type r5Task = func(context.Context) (r5Out, error)

func r5Tasks(n int) []r5Task {
	tasks := make([]r5Task, n)
	for i := range tasks {
		tasks[i] = func(ctx context.Context) (r5Out, error) { return r5Body(ctx, i) }
	}
	return tasks
}

func r5FilterItems(n int) []r5Out {
	items := make([]r5Out, n)
	for i := range items {
		items[i] = r5Out{Run: -1, Item: i}
	}
	return items
}

func r5Build(p *r5Pipe) *r5Pipe {
	switch p.kind {
	case "map":
		p.s = stage.Map(source.Slice(ints(p.n)), r5Body, p.opts()...)
	case "filter":
		p.s = stage.Filter(source.Slice(r5FilterItems(p.n)), r5FilterBody, p.opts()...)
	case "flatmap":
		p.s = stage.FlatMap(source.Slice(ints(p.n)), r5FlatBody, p.opts()...)
	case "concurrent":
		p.s = stage.Concurrent(source.Slice(r5Tasks(p.n)), p.opts()...)
	default:
		panic(p.kind)
	}
	return p
}

// expected outputs of a run with this spec, in input order.
func (p *r5Pipe) expect(sp *r5Spec) []r5Out {
	var e []r5Out
	for x := range p.n {
		if sp.fail[x] || sp.panics[x] != nil || sp.waitEnd[x] || sp.lateErr[x] {
			continue
		}
		switch p.kind {
		case "map", "concurrent":
			e = append(e, r5Out{Run: sp.id, Item: x})
		case "filter":
			if r5Keep(sp.id, x) {
				e = append(e, r5Out{Run: -1, Item: x})
			}
		case "flatmap":
			for s := range r5Fan(sp.id, x) {
				e = append(e, r5Out{Run: sp.id, Item: x, Sub: s})
			}
		}
	}
	return e
}

func (p *r5Pipe) failed(sp *r5Spec) []int {
	var f []int
	for x := range p.n {
		if sp.fail[x] || sp.panics[x] != nil {
			f = append(f, x)
		}
	}
	return f
}

// ---------------------------------------------------------------------------
// Sinks.

const (
	r5SSlice    = "slice"
	r5SFirst    = "first"
	r5SAll      = "all"
	r5SAllBreak = "allbreak"
	r5SForEach  = "foreach"
	r5SReduce   = "reduce"
	r5SCount    = "count"
)

var r5Sinks = []string{r5SSlice, r5SFirst, r5SAll, r5SAllBreak, r5SForEach, r5SReduce, r5SCount}

type r5Got struct {
	vals  []r5Out
	errs  []error // All: the errors yielded, in order
	seq   []int   // All: the item of each pair (an error's Index), in order
	err   error
	ok    bool
	count int
	bad   []string
}

func r5Run(ctx context.Context, sk string, s stage.Stream[r5Out], m int) (g r5Got) {
	switch sk {
	case r5SSlice:
		g.vals, g.err = sink.Slice(ctx, s)
	case r5SFirst:
		var v r5Out
		v, g.ok, g.err = sink.First(ctx, s)
		if g.ok {
			g.vals = []r5Out{v}
			if g.err != nil {
				g.bad = append(g.bad, fmt.Sprintf("First returned ok=true with error %v", g.err))
			}
		} else if v != (r5Out{}) {
			g.bad = append(g.bad, fmt.Sprintf("First returned a non-zero value %+v with ok=false", v))
		}
	case r5SAll, r5SAllBreak:
		for v, err := range sink.All(ctx, s) {
			if err != nil {
				if v != (r5Out{}) {
					g.bad = append(g.bad, fmt.Sprintf("All yielded a non-zero value %+v with error %v", v, err))
				}
				g.errs = append(g.errs, err)
				idx := -1
				var se *stage.Error
				if errors.As(err, &se) {
					idx = se.Index
				}
				g.seq = append(g.seq, idx)
			} else {
				g.vals = append(g.vals, v)
				g.seq = append(g.seq, v.Item)
			}
			if sk == r5SAllBreak && len(g.seq) >= m {
				break
			}
		}
	case r5SForEach:
		var busy atomic.Bool
		var mu sync.Mutex
		g.err = sink.ForEach(ctx, s, func(cctx context.Context, v r5Out) error {
			if cctx.Value(r5Key{}) != ctx.Value(r5Key{}) {
				mu.Lock()
				g.bad = append(g.bad, "ForEach: f's ctx is not derived from the ctx of its own run")
				mu.Unlock()
			}
			if !busy.CompareAndSwap(false, true) {
				mu.Lock()
				g.bad = append(g.bad, "ForEach: two calls of f at once")
				mu.Unlock()
			}
			defer busy.Store(false)
			mu.Lock()
			g.vals = append(g.vals, v)
			mu.Unlock()
			return nil
		})
	case r5SReduce:
		var busy atomic.Bool
		var mu sync.Mutex
		g.vals, g.err = sink.Reduce(ctx, s, []r5Out(nil), func(acc []r5Out, v r5Out) []r5Out {
			if !busy.CompareAndSwap(false, true) {
				mu.Lock()
				g.bad = append(g.bad, "Reduce: two calls of f at once")
				mu.Unlock()
			}
			defer busy.Store(false)
			return append(acc, v)
		})
	case r5SCount:
		g.count, g.err = sink.Count(ctx, s)
	default:
		panic(sk)
	}
	return g
}

// ---------------------------------------------------------------------------
// Checks.

func r5SortOuts(v []r5Out) []r5Out {
	c := slices.Clone(v)
	sort.Slice(c, func(i, j int) bool {
		if c[i].Run != c[j].Run {
			return c[i].Run < c[j].Run
		}
		if c[i].Item != c[j].Item {
			return c[i].Item < c[j].Item
		}
		return c[i].Sub < c[j].Sub
	})
	return c
}

// r5SubMultiset: every element of a is in b, with multiplicity.
func r5SubMultiset(a, b []r5Out) bool {
	left := map[r5Out]int{}
	for _, v := range b {
		left[v]++
	}
	for _, v := range a {
		if left[v] == 0 {
			return false
		}
		left[v]--
	}
	return true
}

func r5SameMultiset(a, b []r5Out) bool { return len(a) == len(b) && r5SubMultiset(a, b) }

func r5IsPrefix(a, b []r5Out) bool { return len(a) <= len(b) && slices.Equal(a, b[:len(a)]) }

// r5CheckItemErr checks that err is (or holds, first) the *stage.Error of an
// item of this run of p, failing at one of the allowed indices, with the
// r5ItemErr of this run as its cause.
func r5CheckItemErr(p *r5Pipe, sp *r5Spec, err error, allowed []int) string {
	var se *stage.Error
	if !errors.As(err, &se) {
		return fmt.Sprintf("error %v (%T) holds no *stage.Error", err, err)
	}
	if want := p.kind + "#1"; se.Stage != want {
		return fmt.Sprintf("Error.Stage = %q, want %q (%v)", se.Stage, want, err)
	}
	if !slices.Contains(allowed, se.Index) {
		return fmt.Sprintf("Error.Index = %d, want one of %v (%v)", se.Index, allowed, err)
	}
	if se.Attempts != 1 {
		return fmt.Sprintf("Error.Attempts = %d, want 1", se.Attempts)
	}
	switch p.kind {
	case "map", "flatmap":
		if in, ok := se.Input.(int); !ok || in != se.Index {
			return fmt.Sprintf("Error.Input = %#v, want %d", se.Input, se.Index)
		}
	case "filter":
		if in, ok := se.Input.(r5Out); !ok || in != (r5Out{Run: -1, Item: se.Index}) {
			return fmt.Sprintf("Error.Input = %#v, want item %d", se.Input, se.Index)
		}
	case "concurrent":
		if _, ok := se.Input.(r5Task); !ok {
			return fmt.Sprintf("Error.Input = %T, want the task", se.Input)
		}
	}
	var ie *r5ItemErr
	if !errors.As(se, &ie) {
		return fmt.Sprintf("*stage.Error %v does not wrap the function's *r5ItemErr", se)
	}
	if ie.Run != sp.id || ie.Item != se.Index {
		return fmt.Sprintf("the error is of run %d item %d, but this is run %d and Index is %d (an error leaked between runs?)", ie.Run, ie.Item, sp.id, se.Index)
	}
	if errors.Is(err, context.Canceled) {
		return fmt.Sprintf("item error %v also matches context.Canceled", err)
	}
	return ""
}

func r5CheckForwarded(p *r5Pipe, sp *r5Spec, err error, F []int) []string {
	var bad []string
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) {
		return []string{fmt.Sprintf("error %v (%T): want a *sink.ForwardedError of %d errors", err, err, len(F))}
	}
	if fe.Count != len(F) {
		bad = append(bad, fmt.Sprintf("ForwardedError.Count = %d, want %d (failed items %v)", fe.Count, len(F), F))
	}
	if want := min(len(F), sink.SampleSize); len(fe.Sample) != want {
		bad = append(bad, fmt.Sprintf("len(ForwardedError.Sample) = %d, want %d", len(fe.Sample), want))
	}
	var idx []int
	for _, e := range fe.Sample {
		if msg := r5CheckItemErr(p, sp, e, F); msg != "" {
			bad = append(bad, "sample: "+msg)
		}
		var se *stage.Error
		if errors.As(e, &se) {
			idx = append(idx, se.Index)
		}
	}
	if p.inOrder() {
		if want := F[:min(len(F), sink.SampleSize)]; !slices.Equal(idx, want) {
			bad = append(bad, fmt.Sprintf("Sample indices %v, want %v (arrival order of an ordered stage)", idx, want))
		}
	} else {
		s := slices.Clone(idx)
		slices.Sort(s)
		if len(slices.Compact(s)) != len(idx) {
			bad = append(bad, fmt.Sprintf("Sample indices %v repeat an error", idx))
		}
	}
	if errors.Is(err, context.Canceled) {
		bad = append(bad, fmt.Sprintf("a run with forwarded errors only returned a cancellation: %v", err))
	}
	return bad
}

func r5Check(p *r5Pipe, sp *r5Spec, sk string, m int, g r5Got) []string {
	bad := slices.Clone(g.bad)
	add := func(s string) {
		if s != "" {
			bad = append(bad, s)
		}
	}
	E := p.expect(sp)
	F := p.failed(sp)
	for _, v := range g.vals {
		if v.Run != sp.id && !(p.kind == "filter" && v.Run == -1) {
			add(fmt.Sprintf("value %+v belongs to run %d, not to this run %d", v, v.Run, sp.id))
		}
	}
	ordered := p.inOrder()
	// values: exact for complete sinks, prefix or sub-multiset otherwise
	valsOK := func(complete bool) {
		switch {
		case complete && ordered && !slices.Equal(g.vals, E):
			add(fmt.Sprintf("values %v, want %v in input order", g.vals, E))
		case complete && !ordered && !r5SameMultiset(g.vals, E):
			add(fmt.Sprintf("values %v, want (in any order) %v", r5SortOuts(g.vals), E))
		case !complete && ordered && !r5IsPrefix(g.vals, E):
			add(fmt.Sprintf("values %v are not a prefix of %v", g.vals, E))
		case !complete && !ordered && !r5SubMultiset(g.vals, E):
			add(fmt.Sprintf("values %v are not among %v", r5SortOuts(g.vals), E))
		}
	}
	seqOrdered := func() {
		if ordered && !slices.IsSorted(g.seq) {
			add(fmt.Sprintf("All pairs came in item order %v, not in input order", g.seq))
		}
	}
	switch {
	case len(F) == 0:
		switch sk {
		case r5SFirst:
			add(errString("First", g.err))
			if len(E) == 0 && g.ok {
				add(fmt.Sprintf("First on an empty result returned %+v, true", g.vals))
			}
			if len(E) > 0 && !g.ok {
				add("First returned no value for a non-empty stream")
			}
			if g.ok && ordered && g.vals[0] != E[0] {
				add(fmt.Sprintf("First returned %+v, want %+v", g.vals[0], E[0]))
			}
			valsOK(false)
		case r5SAllBreak:
			if len(g.errs) > 0 {
				add(fmt.Sprintf("All yielded errors %v in a run without failure", g.errs))
			}
			if len(g.vals) != min(m, len(E)) {
				add(fmt.Sprintf("All gave %d values before the break, want %d", len(g.vals), min(m, len(E))))
			}
			valsOK(false)
		case r5SCount:
			add(errString("Count", g.err))
			if g.count != len(E) {
				add(fmt.Sprintf("Count = %d, want %d", g.count, len(E)))
			}
		case r5SAll:
			if len(g.errs) > 0 {
				add(fmt.Sprintf("All yielded errors %v in a run without failure", g.errs))
			}
			valsOK(true)
		default:
			add(errString(sk, g.err))
			valsOK(true)
		}
	case !p.forward: // FailFast, exactly one failing item
		j := F[0]
		switch sk {
		case r5SFirst:
			if g.ok {
				if ordered && (g.vals[0] != E[0] || E[0].Item > j) {
					add(fmt.Sprintf("First returned %+v; the first pair of All is the error at %d or %+v", g.vals[0], j, E))
				}
				valsOK(false)
			} else {
				add(r5CheckItemErr(p, sp, g.err, F))
			}
		case r5SAllBreak, r5SAll:
			valsOK(false)
			if sk == r5SAll && len(g.errs) != 1 {
				add(fmt.Sprintf("All yielded %d errors %v in a FailFast run, want the one that ended it", len(g.errs), g.errs))
			}
			if len(g.errs) > 1 {
				add(fmt.Sprintf("All yielded %d errors in a FailFast run: %v", len(g.errs), g.errs))
			}
			if len(g.errs) >= 1 {
				if g.seq[len(g.seq)-1] != j || g.errs[len(g.errs)-1] == nil {
					add(fmt.Sprintf("the run's error is not the last pair of All: %v", g.seq))
				}
				add(r5CheckItemErr(p, sp, g.errs[0], F))
			}
		case r5SCount:
			add(r5CheckItemErr(p, sp, g.err, F))
			if g.count > len(E) {
				add(fmt.Sprintf("Count = %d > %d", g.count, len(E)))
			}
		default:
			add(r5CheckItemErr(p, sp, g.err, F))
			valsOK(false)
		}
		if ordered {
			for _, v := range g.vals {
				if v.Item > j {
					add(fmt.Sprintf("ordered stage delivered item %d after the failing item %d", v.Item, j))
				}
			}
		}
	default: // Forward
		switch sk {
		case r5SFirst:
			if ordered {
				firstVal := p.n
				if len(E) > 0 {
					firstVal = E[0].Item
				}
				if F[0] < firstVal {
					if g.ok {
						add(fmt.Sprintf("First returned %+v but the first pair is the error of item %d", g.vals[0], F[0]))
					} else {
						add(r5CheckItemErr(p, sp, g.err, F[:1]))
					}
				} else if !g.ok || g.vals[0] != E[0] {
					add(fmt.Sprintf("First returned (%v, %v, %v), want %+v", g.vals, g.ok, g.err, E[0]))
				}
			} else if !g.ok {
				add(r5CheckItemErr(p, sp, g.err, F))
			}
			valsOK(false)
		case r5SAll, r5SAllBreak:
			complete := sk == r5SAll
			valsOK(complete)
			seqOrdered()
			var idx []int
			for _, e := range g.errs {
				add(r5CheckItemErr(p, sp, e, F))
				var se *stage.Error
				if errors.As(e, &se) {
					idx = append(idx, se.Index)
				}
			}
			slices.Sort(idx)
			if complete && !slices.Equal(idx, F) {
				add(fmt.Sprintf("All yielded errors of items %v, want %v", idx, F))
			}
			if !complete && len(g.seq) != min(m, len(E)+len(F)) {
				add(fmt.Sprintf("All gave %d pairs before the break, want %d", len(g.seq), min(m, len(E)+len(F))))
			}
		case r5SCount:
			bad = append(bad, r5CheckForwarded(p, sp, g.err, F)...)
			if g.count != len(E) {
				add(fmt.Sprintf("Count = %d, want %d", g.count, len(E)))
			}
		default:
			bad = append(bad, r5CheckForwarded(p, sp, g.err, F)...)
			valsOK(true)
		}
	}
	return bad
}

func errString(what string, err error) string {
	if err != nil {
		return fmt.Sprintf("%s returned error %v (%T), want nil", what, err, err)
	}
	return ""
}

// r5Reporter limits how many failures a test prints.
type r5Reporter struct {
	t *testing.T
	n atomic.Int32
}

func (r *r5Reporter) report(where string, bad []string) bool {
	if len(bad) == 0 {
		return true
	}
	if r.n.Add(1) <= 12 {
		r.t.Errorf("%s:\n\t%s", where, strings.Join(bad, "\n\t"))
	}
	return false
}

// r5Wait waits for wg; after d it cancels (through cancel) and fails the test:
// a hang watchdog, not a timing assertion.
func r5Wait(t *testing.T, wg *sync.WaitGroup, cancel context.CancelFunc, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		cancel()
		t.Errorf("runs hung for %v; cancelled them", d)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("runs still hung after cancellation")
		}
	}
}

var r5Configs = []struct {
	workers         int
	ordered, buffer bool
}{
	{1, false, false}, {1, true, false},
	{2, false, false}, {2, true, false}, {2, false, true},
	{3, true, false},
	{4, false, false}, {4, true, false}, {4, false, true},
	{8, false, false}, {8, true, false},
	{-1, false, false}, {-1, true, false},
}

func r5AllPipes(ns []int) []*r5Pipe {
	var pipes []*r5Pipe
	for _, kind := range []string{"map", "filter", "flatmap", "concurrent"} {
		for _, c := range r5Configs {
			for _, fwd := range []bool{false, true} {
				for _, n := range ns {
					pipes = append(pipes, r5Build(&r5Pipe{kind: kind, n: n, workers: c.workers, ordered: c.ordered, buffer: c.buffer, forward: fwd}))
				}
			}
		}
	}
	return pipes
}

// r5OneRun runs p once with a random spec and sink, and checks everything.
func r5OneRun(ctx context.Context, rep *r5Reporter, p *r5Pipe, sk string, rng *rand.Rand) {
	sp := r5NewSpec(p.n)
	sp.chain = p.chain()
	failing := rng.IntN(10) < 4
	if failing {
		if p.forward {
			for x := range p.n {
				if rng.IntN(3) == 0 {
					sp.fail[x] = true
				}
			}
		} else {
			sp.fail[rng.IntN(p.n)] = true
		}
	}
	early := sk == r5SFirst || sk == r5SAllBreak
	sp.strict = !early && (p.forward || len(sp.fail) == 0)
	m := 1 + sp.id%3
	g := r5Run(sp.ctx(ctx), sk, p.s, m)
	bad := sp.finish()
	bad = append(bad, r5Check(p, sp, sk, m, g)...)
	if p.workers > 0 && int(sp.maxIn.Load()) > p.workers {
		bad = append(bad, fmt.Sprintf("%d calls at once with Workers(%d)", sp.maxIn.Load(), p.workers))
	}
	if !early && (p.forward || len(sp.fail) == 0) {
		for x := range p.n {
			if c := sp.perItem[x].Load(); c != 1 {
				bad = append(bad, fmt.Sprintf("item %d called %d times in a complete run", x, c))
			}
		}
	}
	rep.report(fmt.Sprintf("%v run %d sink %s fail=%v", p, sp.id, sk, p.failed(sp)), bad)
}

// ---------------------------------------------------------------------------
// Tests.

// Promise: several sinks may run one Stream at the same time, each run with
// its own state; values, errors (FailFast and Forward), counts, order
// (Ordered, Workers(1)), Workers bounds and "no call after the sink returns"
// hold for every run, whatever the other runs of the same Stream do.
func TestReview5_OneStreamManyRunsAtOnce(t *testing.T) {
	pipes := r5AllPipes([]int{1, 2, 5, 13, 20})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep := &r5Reporter{t: t}
	const G, R = 6, 4
	for pi, p := range pipes {
		var wg sync.WaitGroup
		for g := range G {
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(pi), uint64(g)))
				for r := range R {
					r5OneRun(ctx, rep, p, r5Sinks[(g+r*G+pi)%len(r5Sinks)], rng)
				}
			})
		}
		r5Wait(t, &wg, cancel, 30*time.Second)
		if t.Failed() && rep.n.Load() > 12 {
			break
		}
	}
}

// Promise: same as above, with runs of many different pipelines (Map,
// Filter, FlatMap, Concurrent of every configuration) interleaved from many
// goroutines, so that recycled per-run state moves between streams.
func TestReview5_MixedPipelinesAtOnce(t *testing.T) {
	pipes := r5AllPipes([]int{1, 3, 7, 20})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rep := &r5Reporter{t: t}
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(99, uint64(g)))
			for range 250 {
				p := pipes[rng.IntN(len(pipes))]
				r5OneRun(ctx, rep, p, r5Sinks[rng.IntN(len(r5Sinks))], rng)
			}
		})
	}
	r5Wait(t, &wg, cancel, 30*time.Second)
}

// Promise: the slice sink.Slice returns is the caller's: no two runs
// (concurrent or not, of one Stream or not) return slices that share memory,
// and a later run never writes into a slice returned before. Also: "When s
// knows its length, the slice is made with room for that many values".
func TestReview5_ResultSlicesNotShared(t *testing.T) {
	ctx := context.Background()
	type kept struct {
		vals []r5Out
		sp   *r5Spec
		p    *r5Pipe
	}
	var pipes []*r5Pipe
	for n := 1; n <= 20; n++ {
		pipes = append(pipes,
			r5Build(&r5Pipe{kind: "map", n: n, workers: 4, ordered: true}),
			r5Build(&r5Pipe{kind: "map", n: n, workers: 4}),
			r5Build(&r5Pipe{kind: "concurrent", n: n, workers: 2}))
	}
	round := func() []kept {
		var mu sync.Mutex
		var all []kept
		var wg sync.WaitGroup
		for g := range 16 {
			wg.Go(func() {
				for i := range 3 * len(pipes) / 16 {
					p := pipes[(g*7+i)%len(pipes)]
					sp := r5NewSpec(p.n)
					vals, err := sink.Slice(sp.ctx(ctx), p.s)
					if err != nil {
						t.Errorf("%v: %v", p, err)
					}
					mu.Lock()
					all = append(all, kept{vals, sp, p})
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return all
	}
	first := round()
	check := func(ks []kept) {
		for _, k := range ks {
			if e := k.p.expect(k.sp); !r5SameMultiset(k.vals, e) {
				t.Errorf("%v run %d: kept result changed or wrong: %v, want %v", k.p, k.sp.id, k.vals, e)
				return
			}
			if k.p.s.Len() == k.p.n && cap(k.vals) < k.p.n {
				t.Errorf("%v: cap of result %d < known length %d", k.p, cap(k.vals), k.p.n)
				return
			}
		}
	}
	check(first)
	// no two kept results overlap in memory
	type span struct{ lo, hi uintptr }
	var spans []span
	sz := unsafe.Sizeof(r5Out{})
	for _, k := range first {
		if cap(k.vals) == 0 {
			continue
		}
		lo := uintptr(unsafe.Pointer(unsafe.SliceData(k.vals)))
		spans = append(spans, span{lo, lo + uintptr(cap(k.vals))*sz})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].lo < spans[j].lo })
	for i := 1; i < len(spans); i++ {
		if spans[i].lo < spans[i-1].hi {
			t.Fatalf("two results of sink.Slice share a backing array: [%#x,%#x) and [%#x,%#x)", spans[i-1].lo, spans[i-1].hi, spans[i].lo, spans[i].hi)
		}
	}
	// The caller owns them: scribble over all of their capacity, run again,
	// and check that neither side sees the other.
	marker := r5Out{Run: -7, Item: -7, Sub: -7}
	for _, k := range first {
		full := k.vals[:cap(k.vals)]
		for i := range full {
			full[i] = marker
		}
	}
	second := round()
	check(second)
	for _, k := range first {
		for i, v := range k.vals[:cap(k.vals)] {
			if v != marker {
				t.Fatalf("run %d: a later run wrote %+v into position %d of a slice returned earlier", k.sp.id, v, i)
			}
		}
	}
}

// Promise (sink.Slice): "Without any value it returns a nil slice", also when
// the stream knows its length (the slice would be made before the run).
func TestReview5_SliceNilWithoutValues(t *testing.T) {
	ctx := context.Background()
	for n := 1; n <= 20; n += 3 {
		// Filter keeping nothing.
		none := stage.Filter(source.Slice(ints(n)), func(context.Context, int) (bool, error) { return false, nil }, stage.Workers(4))
		for range 3 {
			got, err := sink.Slice(ctx, none)
			if err != nil || got != nil {
				t.Fatalf("n=%d filter of nothing: got %#v (nil? %v), %v; want nil slice, nil", n, got, got == nil, err)
			}
		}
		// Map (known length) whose first item fails at once: FailFast, no value.
		for _, o := range [][]stage.Option{{stage.Workers(1)}, {stage.Workers(4), stage.Ordered()}} {
			s := stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) {
				if x == 0 {
					return 0, &r5ItemErr{Item: 0}
				}
				<-ctx.Done()
				return 0, ctx.Err()
			}, o...)
			got, err := sink.Slice(ctx, s)
			var ie *r5ItemErr
			if got != nil || !errors.As(err, &ie) {
				t.Fatalf("n=%d failing map: got %#v (nil? %v), %v; want nil slice and the item error", n, got, got == nil, err)
			}
		}
		// Map (known length) over a cancelled ctx.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		got, err := sink.Slice(cctx, stage.Map(source.Slice(ints(n)), double, stage.Workers(2)))
		if got != nil || !errors.Is(err, context.Canceled) {
			t.Fatalf("n=%d cancelled: got %#v (nil? %v), %v; want nil slice and context.Canceled", n, got, got == nil, err)
		}
	}
}

// r5Counted builds pipelines over an Indexed source that counts how many
// positions were taken, for the promises about what a run takes.
type r5Counted struct {
	name    string
	taken   *atomic.Int32
	s       stage.Stream[r5Out]
	n       int
	kind    string
	w       int
	ordered bool
}

func r5CountedPipes(n int) []r5Counted {
	var res []r5Counted
	for _, kind := range []string{"map", "filter", "flatmap", "concurrent"} {
		for _, c := range []struct {
			w       int
			ordered bool
		}{{1, false}, {3, false}, {3, true}, {-1, false}} {
			taken := new(atomic.Int32)
			o := []stage.Option{stage.Workers(c.w)}
			if c.ordered {
				o = append(o, stage.Ordered())
			}
			var s stage.Stream[r5Out]
			switch kind {
			case "map":
				s = stage.Map(stage.Indexed(n, func(i int) int { taken.Add(1); return i }), r5Body, o...)
			case "filter":
				s = stage.Filter(stage.Indexed(n, func(i int) r5Out { taken.Add(1); return r5Out{Run: -1, Item: i} }), r5FilterBody, o...)
			case "flatmap":
				s = stage.FlatMap(stage.Indexed(n, func(i int) int { taken.Add(1); return i }), r5FlatBody, o...)
			case "concurrent":
				tasks := r5Tasks(n)
				s = stage.Concurrent(stage.Indexed(n, func(i int) r5Task { taken.Add(1); return tasks[i] }), o...)
			}
			res = append(res, r5Counted{fmt.Sprintf("%s/n=%d/w=%d/ordered=%v", kind, n, c.w, c.ordered), taken, s, n, kind, c.w, c.ordered})
		}
	}
	return res
}

// Promise: a sink given a ctx that is already cancelled (or past its
// deadline) takes no item ("never after the run was cancelled"), calls no
// function, and returns an error for which errors.Is(err, context.Canceled)
// (or DeadlineExceeded) holds, with nothing else: Slice a nil slice, First
// (zero, false, err), All one pair, ForEach no callback, Reduce init, Count 0.
// The run after it, on the same Stream, is complete.
func TestReview5_CancelledBeforeTheRun(t *testing.T) {
	bg := context.Background()
	type dead struct {
		name string
		ctx  func() context.Context
		want error
	}
	causeErr := errors.New("r5: caller's cause")
	deads := []dead{
		{"cancelled", func() context.Context { c, cancel := context.WithCancel(bg); cancel(); return c }, context.Canceled},
		{"cancelled-with-cause", func() context.Context {
			c, cancel := context.WithCancelCause(bg)
			cancel(causeErr)
			return c
		}, context.Canceled},
		{"deadline", func() context.Context {
			c, cancel := context.WithDeadline(bg, time.Unix(1, 0))
			cancel() // the deadline has passed already: Err stays DeadlineExceeded
			return c
		}, context.DeadlineExceeded},
	}
	for _, n := range []int{1, 2, 7, 20} {
		for _, cp := range r5CountedPipes(n) {
			for _, d := range deads {
				for _, sk := range r5Sinks {
					sp := r5NewSpec(n)
					before := cp.taken.Load()
					var g r5Got
					if sk == r5SForEach {
						called := false
						g.err = sink.ForEach(sp.ctx(d.ctx()), cp.s, func(context.Context, r5Out) error { called = true; return nil })
						if called {
							g.bad = append(g.bad, "ForEach called f")
						}
					} else if sk == r5SReduce {
						init := []r5Out{{Run: -3}}
						g.vals, g.err = sink.Reduce(sp.ctx(d.ctx()), cp.s, init, func(acc []r5Out, v r5Out) []r5Out { return append(acc, v) })
						if !slices.Equal(g.vals, init) {
							g.bad = append(g.bad, fmt.Sprintf("Reduce returned %v, want init", g.vals))
						}
						g.vals = nil
					} else {
						g = r5Run(sp.ctx(d.ctx()), sk, cp.s, 100)
					}
					bad := append(sp.finish(), g.bad...)
					if tk := cp.taken.Load() - before; tk != 0 {
						bad = append(bad, fmt.Sprintf("%d items taken from the source of a cancelled run", tk))
					}
					if c := sp.calls.Load(); c != 0 {
						bad = append(bad, fmt.Sprintf("%d calls of the function in a cancelled run", c))
					}
					err := g.err
					if sk == r5SAll || sk == r5SAllBreak {
						if len(g.errs) != 1 || len(g.vals) != 0 {
							bad = append(bad, fmt.Sprintf("All yielded values %v and errors %v, want one error pair", g.vals, g.errs))
						}
						if len(g.errs) > 0 {
							err = g.errs[len(g.errs)-1]
						}
					}
					if !errors.Is(err, d.want) {
						bad = append(bad, fmt.Sprintf("error %v (%T), want errors.Is %v", err, err, d.want))
					}
					var se *stage.Error
					var src *stage.SourceError
					if errors.As(err, &se) || errors.As(err, &src) {
						bad = append(bad, fmt.Sprintf("error %v holds an item or source error in a run that took nothing", err))
					}
					if sk == r5SSlice && g.vals != nil {
						bad = append(bad, fmt.Sprintf("Slice returned %#v, want a nil slice", g.vals))
					}
					if (sk == r5SFirst && g.ok) || len(g.vals) != 0 || g.count != 0 {
						bad = append(bad, fmt.Sprintf("values in a cancelled run: %v ok=%v count=%d", g.vals, g.ok, g.count))
					}
					if len(bad) > 0 {
						t.Errorf("%s %s sink %s:\n\t%s", cp.name, d.name, sk, strings.Join(bad, "\n\t"))
					}
				}
			}
			// the next run of the same stream is whole and takes each item once
			before := cp.taken.Load()
			sp := r5NewSpec(n)
			sp.strict = true
			got, err := sink.Slice(sp.ctx(bg), cp.s)
			p := &r5Pipe{kind: cp.kind, n: n}
			bad := sp.finish()
			if err != nil || !r5SameMultiset(got, p.expect(sp)) {
				bad = append(bad, fmt.Sprintf("got %v, %v; want %v", got, err, p.expect(sp)))
			}
			if tk := cp.taken.Load() - before; int(tk) != n {
				bad = append(bad, fmt.Sprintf("a complete run took %d items of %d", tk, n))
			}
			if len(bad) > 0 {
				t.Errorf("%s: run after cancelled runs:\n\t%s", cp.name, strings.Join(bad, "\n\t"))
			}
		}
	}
}

// Promise: cancelling the caller's ctx during the run: calls in flight see
// ctx.Done(), nothing more is delivered, and the sink returns an error for
// which errors.Is(err, context.Canceled) holds (a cut-short call is not an
// item failure, so no *stage.Error). Then the next run of the same Stream,
// running at the same time as other cancelled ones, is complete.
func TestReview5_CancelledDuringTheRun(t *testing.T) {
	bg, stopAll := context.WithCancel(context.Background())
	defer stopAll()
	var pipes []*r5Pipe
	for _, kind := range []string{"map", "filter", "flatmap", "concurrent"} {
		for _, c := range r5Configs {
			for _, n := range []int{1, 4, 20} {
				pipes = append(pipes, r5Build(&r5Pipe{kind: kind, n: n, workers: c.workers, ordered: c.ordered, buffer: c.buffer}))
			}
		}
	}
	rep := &r5Reporter{t: t}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i, p := range pipes {
				if (i+g)%2 == 0 {
					continue
				}
				sk := r5Sinks[(i+g)%len(r5Sinks)]
				// a run cancelled once a call is in flight
				sp := r5NewSpec(p.n)
				sp.started = make(chan int, p.n)
				for x := range p.n {
					sp.waitEnd[x] = true
				}
				ctx, cancel := context.WithCancel(bg)
				go func() {
					select {
					case <-sp.started:
					case <-bg.Done():
					}
					cancel()
				}()
				gg := r5Run(sp.ctx(ctx), sk, p.s, 100)
				cancel()
				bad := append(sp.finish(), gg.bad...)
				err := gg.err
				if sk == r5SAll || sk == r5SAllBreak {
					if len(gg.errs) != 1 {
						bad = append(bad, fmt.Sprintf("All yielded errors %v, want one", gg.errs))
					}
					if len(gg.errs) > 0 {
						err = gg.errs[len(gg.errs)-1]
					}
				}
				if !errors.Is(err, context.Canceled) {
					bad = append(bad, fmt.Sprintf("error %v (%T), want context.Canceled", err, err))
				}
				var se *stage.Error
				if errors.As(err, &se) {
					bad = append(bad, fmt.Sprintf("a call cut short by the cancellation was reported as an item failure: %v", err))
				}
				if len(gg.vals) != 0 || gg.ok || gg.count != 0 || (sk == r5SSlice && gg.vals != nil) {
					bad = append(bad, fmt.Sprintf("values from a run where no call succeeded: %#v ok=%v count=%d", gg.vals, gg.ok, gg.count))
				}
				for _, c := range sp.causes {
					if !errors.Is(c, context.Canceled) {
						bad = append(bad, fmt.Sprintf("context.Cause seen by a call: %v, want context.Canceled", c))
					}
				}
				rep.report(fmt.Sprintf("%v cancelled run %d sink %s", p, sp.id, sk), bad)

				// then a whole run of the same stream
				sp2 := r5NewSpec(p.n)
				sp2.chain = p.chain()
				sp2.strict = true
				got, err2 := sink.Slice(sp2.ctx(bg), p.s)
				bad = sp2.finish()
				bad = append(bad, r5Check(p, sp2, r5SSlice, 0, r5Got{vals: got, err: err2})...)
				rep.report(fmt.Sprintf("%v run %d after a cancelled run", p, sp2.id), bad)
			}
		})
	}
	r5Wait(t, &wg, stopAll, 30*time.Second)
}

// Promise (FailFast): the first item error cancels the run's context with the
// *stage.Error as its cause (context.Cause), calls in flight see ctx.Done(),
// and every sink returns that error: not a cancellation, not the error of a
// call cut short, not the error a call returned after the end (the first
// error wins). First returns it (no value precedes it), All yields it as its
// only pair. Runs of one Stream at once, each failing at another item.
func TestReview5_FailFastFirstErrorWins(t *testing.T) {
	bg, stopAll := context.WithCancel(context.Background())
	defer stopAll()
	var pipes []*r5Pipe
	for _, kind := range []string{"map", "filter", "flatmap", "concurrent"} {
		for _, c := range r5Configs {
			if c.workers == 1 {
				continue // a failing item must be taken while the others wait
			}
			for _, n := range []int{1, 3, 8, 20} {
				pipes = append(pipes, r5Build(&r5Pipe{kind: kind, n: n, workers: c.workers, ordered: c.ordered, buffer: c.buffer}))
			}
		}
	}
	pipes = append(pipes, r5Build(&r5Pipe{kind: "map", n: 1, workers: 1}), r5Build(&r5Pipe{kind: "map", n: 1, workers: 1, ordered: true}))
	rep := &r5Reporter{t: t}
	for _, p := range pipes {
		var wg sync.WaitGroup
		for g := range 6 {
			wg.Go(func() {
				for r := range 3 {
					sk := r5Sinks[(g*3+r)%len(r5Sinks)]
					if sk == r5SAllBreak {
						sk = r5SAll
					}
					sp := r5NewSpec(p.n)
					bound := p.n
					if p.workers > 0 {
						bound = min(p.n, p.workers)
					}
					j := (g + r + sp.id) % bound // taken while the items before it wait
					for x := range p.n {
						switch {
						case x == j:
							sp.fail[x] = true
						case x == (j+1)%p.n && p.n > 1:
							sp.lateErr[x] = true
						default:
							sp.waitEnd[x] = true
						}
					}
					F := []int{j}
					gg := r5Run(sp.ctx(bg), sk, p.s, 100)
					bad := append(sp.finish(), gg.bad...)
					err := gg.err
					switch sk {
					case r5SAll:
						if len(gg.errs) != 1 || len(gg.vals) != 0 {
							bad = append(bad, fmt.Sprintf("All yielded values %v errors %v, want the one error", gg.vals, gg.errs))
						}
						if len(gg.errs) > 0 {
							err = gg.errs[0]
						}
					case r5SFirst:
						if gg.ok {
							bad = append(bad, fmt.Sprintf("First returned a value %v in a run with none", gg.vals))
						}
					}
					if msg := r5CheckItemErr(p, sp, err, F); msg != "" {
						bad = append(bad, msg)
					}
					if errors.Is(err, errR5Late) {
						bad = append(bad, fmt.Sprintf("the error a call returned after the end was reported: %v", err))
					}
					if len(gg.vals) != 0 || gg.count != 0 || (sk == r5SSlice && gg.vals != nil) {
						bad = append(bad, fmt.Sprintf("values %#v count %d from a run without success", gg.vals, gg.count))
					}
					for _, c := range sp.causes {
						var se *stage.Error
						var ie *r5ItemErr
						if !errors.As(c, &se) || !errors.As(c, &ie) || se.Index != j || ie.Run != sp.id {
							bad = append(bad, fmt.Sprintf("context.Cause seen by a call cut short = %v, want the *stage.Error of run %d item %d", c, sp.id, j))
						}
					}
					// every call but j's waits for the end: only the items the
					// workers held can have started ("no new item starts")
					if int(sp.calls.Load()) > bound {
						bad = append(bad, fmt.Sprintf("%d calls started, but at most %d items can be held when item %d fails", sp.calls.Load(), bound, j))
					}
					rep.report(fmt.Sprintf("%v run %d sink %s fail at %d", p, sp.id, sk, j), bad)
				}
			})
		}
		r5Wait(t, &wg, stopAll, 30*time.Second)
	}
}

// Promise: sink.First "over a bare source, exactly one item is taken"; over a
// stage, no stage is more than workers (+buffer) ahead of its consumer, an
// Ordered one at most 2×workers: so a First takes at most workers+1 (2w+1)
// items. First returns once no function runs, and the next run of the same
// Stream sees none of the outputs the stopped run had computed.
func TestReview5_FirstTakesLittle(t *testing.T) {
	ctx := context.Background()
	for _, n := range []int{1, 2, 20} {
		var taken atomic.Int32
		bare := stage.Indexed(n, func(i int) int { taken.Add(1); return i * 10 })
		for range 5 {
			taken.Store(0)
			v, ok, err := sink.First(ctx, bare)
			if v != 0 || !ok || err != nil || taken.Load() != 1 {
				t.Fatalf("bare Indexed(%d): First = %v, %v, %v with %d items taken; want 0, true, nil, 1", n, v, ok, err, taken.Load())
			}
		}
	}
	for _, n := range []int{1, 5, 20} {
		for _, cp := range r5CountedPipes(n) {
			if cp.kind != "map" && cp.kind != "concurrent" {
				continue
			}
			w, ordered := cp.w, cp.ordered
			for range 20 {
				sp := r5NewSpec(n)
				before := cp.taken.Load()
				v, ok, err := sink.First(sp.ctx(ctx), cp.s)
				bad := sp.finish()
				tk := int(cp.taken.Load() - before)
				if err != nil || !ok || v.Run != sp.id {
					bad = append(bad, fmt.Sprintf("First = %+v, %v, %v; want a value of run %d", v, ok, err, sp.id))
				}
				if (ordered || w == 1) && v.Item != 0 {
					bad = append(bad, fmt.Sprintf("First of an in-order stage returned item %d, want 0", v.Item))
				}
				limit := n
				if w > 0 {
					limit = w + 1
					if ordered {
						limit = 2*w + 1
					}
				}
				if tk > limit {
					bad = append(bad, fmt.Sprintf("First took %d items, more than %d allowed by the read-ahead bound", tk, limit))
				}
				if int(sp.calls.Load()) > tk {
					bad = append(bad, fmt.Sprintf("%d calls but %d items taken", sp.calls.Load(), tk))
				}
				if len(bad) > 0 {
					t.Fatalf("%s run %d:\n\t%s", cp.name, sp.id, strings.Join(bad, "\n\t"))
				}
			}
		}
	}
}

// Promise (sink.All): breaking out of the loop stops the run; the loop ends
// only once every goroutine of the run has exited, so a call that was
// waiting for the end has seen ctx.Done() and returned; each range over the
// iterator runs the stream anew, with nothing of the stopped run in it.
func TestReview5_AllBreakThenRangeAgain(t *testing.T) {
	bg := context.Background()
	for _, p := range []*r5Pipe{
		r5Build(&r5Pipe{kind: "map", n: 6, workers: 3, ordered: true}),
		r5Build(&r5Pipe{kind: "concurrent", n: 6, workers: 3, ordered: true}),
		r5Build(&r5Pipe{kind: "map", n: 6, workers: 3, buffer: true}),
		r5Build(&r5Pipe{kind: "concurrent", n: 6, workers: -1}),
		r5Build(&r5Pipe{kind: "flatmap", n: 6, workers: -1, ordered: true}),
	} {
		for range 20 {
			sp := r5NewSpec(p.n)
			if p.kind == "flatmap" && r5Fan(sp.id, 0) == 0 {
				continue // item 0 would emit nothing
			}
			// item 0 returns at once; every other item waits for the end of the run
			for x := 1; x < p.n; x++ {
				sp.waitEnd[x] = true
			}
			ctx, cancel := context.WithCancel(sp.ctx(bg))
			var timedOut atomic.Bool
			watchdog := time.AfterFunc(30*time.Second, func() { timedOut.Store(true); cancel() })
			pairs := 0
			for v, err := range sink.All(ctx, p.s) {
				pairs++
				if err != nil || v.Item != 0 || v.Run != sp.id || v.Sub != 0 {
					t.Errorf("%v: first pair (%+v, %v), want item 0 of run %d", p, v, err, sp.id)
				}
				break
			}
			watchdog.Stop()
			cancel()
			bad := sp.finish()
			if timedOut.Load() {
				t.Fatalf("%v: the range over All hung", p)
			}
			if pairs != 1 {
				bad = append(bad, fmt.Sprintf("%d pairs", pairs))
			}
			sp.mu.Lock()
			seen := len(sp.causes)
			sp.mu.Unlock()
			if seen != int(sp.calls.Load())-1 {
				bad = append(bad, fmt.Sprintf("after the break, %d of the %d waiting calls had seen the end and returned", seen, sp.calls.Load()-1))
			}
			if len(bad) > 0 {
				t.Fatalf("%v run %d:\n\t%s", p, sp.id, strings.Join(bad, "\n\t"))
			}
			// the same stream, ranged again: a whole, fresh run
			sp2 := r5NewSpec(p.n)
			sp2.chain = p.chain()
			sp2.strict = true
			var vals []r5Out
			for v, err := range sink.All(sp2.ctx(bg), p.s) {
				if err != nil {
					t.Fatalf("%v: %v", p, err)
				}
				vals = append(vals, v)
			}
			bad = sp2.finish()
			bad = append(bad, r5Check(p, sp2, r5SAll, 0, r5Got{vals: vals})...)
			if len(bad) > 0 {
				t.Fatalf("%v run %d after a break:\n\t%s", p, sp2.id, strings.Join(bad, "\n\t"))
			}
		}
	}
	// "Each range over the iterator runs s anew": one iterator value, ranged
	// several times, broken out of or not.
	s := stage.Map(source.Slice(ints(7)), double, stage.Workers(3), stage.Ordered())
	it := sink.All(bg, s)
	for r := range 6 {
		var got []int
		for v, err := range it {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
			if r%2 == 0 && len(got) == 2 {
				break
			}
		}
		want := []int{0, 2, 4, 6, 8, 10, 12}
		if r%2 == 0 {
			want = want[:2]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("range %d over one All iterator: %v, want %v", r, got, want)
		}
	}
}

// Promise (Forward + sinks): the sinks other than All and First return every
// value that succeeded and a *ForwardedError whose Count is exact and whose
// Sample keeps the first SampleSize errors in arrival order; per run, even
// when many runs of one Stream fail at once with different counts. The errors
// a sink returned stay as they were while later runs go on (no recycling of
// *stage.Error or *ForwardedError values).
func TestReview5_ForwardedAndFailFastErrorsStayPut(t *testing.T) {
	bg := context.Background()
	type keptErr struct {
		p   *r5Pipe
		sp  *r5Spec
		err error
		F   []int
		msg string
	}
	var pipes []*r5Pipe
	for _, kind := range []string{"map", "filter", "flatmap", "concurrent"} {
		for _, fwd := range []bool{true, false} {
			pipes = append(pipes,
				r5Build(&r5Pipe{kind: kind, n: 20, workers: 4, ordered: true, forward: fwd}),
				r5Build(&r5Pipe{kind: kind, n: 20, workers: 1, forward: fwd}),
				r5Build(&r5Pipe{kind: kind, n: 13, workers: 3, forward: fwd}))
		}
	}
	var mu sync.Mutex
	var kept []keptErr
	rep := &r5Reporter{t: t}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(5, uint64(g)))
			for i := range 60 {
				p := pipes[(g+i)%len(pipes)]
				sp := r5NewSpec(p.n)
				sp.chain = p.chain()
				if p.forward {
					k := rng.IntN(p.n + 1) // 0..n failures, often more than SampleSize
					for _, x := range rng.Perm(p.n)[:k] {
						sp.fail[x] = true
					}
					sp.strict = true
				} else {
					sp.fail[rng.IntN(p.n)] = true
				}
				sk := []string{r5SSlice, r5SForEach, r5SReduce, r5SCount}[i%4]
				gg := r5Run(sp.ctx(bg), sk, p.s, 0)
				bad := sp.finish()
				bad = append(bad, r5Check(p, sp, sk, 0, gg)...)
				if !rep.report(fmt.Sprintf("%v run %d sink %s", p, sp.id, sk), bad) {
					continue
				}
				if gg.err != nil {
					mu.Lock()
					kept = append(kept, keptErr{p, sp, gg.err, p.failed(sp), gg.err.Error()})
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	// More runs of the same streams, then look at the kept errors again.
	for i := range 200 {
		p := pipes[i%len(pipes)]
		sp := r5NewSpec(p.n)
		sp.fail[i%p.n] = true
		gg := r5Run(sp.ctx(bg), r5SSlice, p.s, 0)
		sp.finish()
		_ = gg
	}
	seen := map[*stage.Error]int{}
	for _, k := range kept {
		if k.err.Error() != k.msg {
			t.Errorf("%v run %d: the returned error changed after later runs: %q, was %q", k.p, k.sp.id, k.err.Error(), k.msg)
			continue
		}
		var bad []string
		if k.p.forward {
			bad = r5CheckForwarded(k.p, k.sp, k.err, k.F)
		} else if msg := r5CheckItemErr(k.p, k.sp, k.err, k.F); msg != "" {
			bad = []string{msg}
		}
		var se *stage.Error
		if errors.As(k.err, &se) {
			if other, dup := seen[se]; dup {
				bad = append(bad, fmt.Sprintf("the same *stage.Error value was returned by run %d", other))
			}
			seen[se] = k.sp.id
		}
		rep.report(fmt.Sprintf("%v run %d, kept error re-checked after later runs", k.p, k.sp.id), bad)
	}
}

// Promise (Name): unnamed stages are named by kind and position, numbered
// from 1 named or not, in the order a run opens them, so "the same pipeline
// gets the same names in every run"; runs at once of one Stream and of
// other pipelines do not disturb the numbering. A forwarded error keeps the
// name and index of the stage where it failed through later stages.
func TestReview5_StageNamesPerRun(t *testing.T) {
	bg := context.Background()
	type failAt struct {
		Stage int
		Item  int
	}
	type fkey struct{}
	mk := func(stageNo int) func(ctx context.Context, x int) (int, error) {
		return func(ctx context.Context, x int) (int, error) {
			if f, _ := ctx.Value(fkey{}).(failAt); f.Stage == stageNo && f.Item == x {
				return 0, &r5ItemErr{Run: stageNo, Item: x}
			}
			return x, nil
		}
	}
	keep := func(ctx context.Context, x int) (bool, error) {
		_, err := mk(2)(ctx, x)
		return true, err
	}
	build := func(n int, named bool, fwd bool) stage.Stream[int] {
		o := []stage.Option{stage.Workers(3), stage.Ordered()}
		if fwd {
			o = append(o, stage.OnError(stage.Forward))
		}
		a := stage.Map(source.Slice(ints(n)), mk(1), o...)
		fo := slices.Clone(o)
		if named {
			fo = append(fo, stage.Name("keep"))
		}
		b := stage.Filter(a, keep, fo...)
		return stage.Map(b, mk(3), o...)
	}
	flat := func(n int) stage.Stream[int] {
		a := stage.FlatMap(source.Slice(ints(n)), func(ctx context.Context, x int) ([]int, error) {
			v, err := mk(1)(ctx, x)
			return []int{v}, err
		}, stage.Workers(2), stage.Ordered())
		return stage.Map(a, mk(2), stage.Workers(2), stage.Ordered())
	}
	type pl struct {
		s     stage.Stream[int]
		names []string
		fwd   bool
		n     int
	}
	var pls []pl
	for _, n := range []int{1, 4, 20} {
		pls = append(pls,
			pl{build(n, false, false), []string{"map#1", "filter#2", "map#3"}, false, n},
			pl{build(n, true, false), []string{"map#1", "keep", "map#3"}, false, n},
			pl{build(n, false, true), []string{"map#1", "filter#2", "map#3"}, true, n},
			pl{flat(n), []string{"flatmap#1", "map#2"}, false, n})
	}
	rep := &r5Reporter{t: t}
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			for i := range 120 {
				p := pls[(g+i)%len(pls)]
				f := failAt{Stage: 1 + (g+i)%len(p.names), Item: (g * i) % p.n}
				ctx := context.WithValue(bg, fkey{}, f)
				got, err := sink.Slice(ctx, p.s)
				var se *stage.Error
				var ie *r5ItemErr
				var bad []string
				if !errors.As(err, &se) || !errors.As(err, &ie) {
					bad = append(bad, fmt.Sprintf("error %v, want an item error", err))
				} else {
					if want := p.names[f.Stage-1]; se.Stage != want {
						bad = append(bad, fmt.Sprintf("Error.Stage = %q, want %q", se.Stage, want))
					}
					if se.Index != f.Item || ie.Run != f.Stage || ie.Item != f.Item {
						bad = append(bad, fmt.Sprintf("Error.Index = %d cause %+v, want item %d of stage %d", se.Index, ie, f.Item, f.Stage))
					}
				}
				if p.fwd {
					var fe *sink.ForwardedError
					if !errors.As(err, &fe) || fe.Count != 1 {
						bad = append(bad, fmt.Sprintf("forward: error %v, want a ForwardedError of 1", err))
					}
					want := slices.DeleteFunc(ints(p.n), func(x int) bool { return x == f.Item })
					if len(want) == 0 {
						want = nil
					}
					if !slices.Equal(got, want) {
						bad = append(bad, fmt.Sprintf("forward: values %v, want %v", got, want))
					}
				}
				rep.report(fmt.Sprintf("pipeline %v n=%d fail %+v", p.names, p.n, f), bad)
			}
		})
	}
	wg.Wait()
}

// Promise (Budget, Handle): "The count is per stage and per run: each run
// starts with a full budget"; calls of h never overlap within one stage of
// one run; Budget fails the run at the (n+1)th failure with an error wrapping
// ErrBudget and that item's *Error.
func TestReview5_BudgetPerRun(t *testing.T) {
	bg := context.Background()
	type hstate struct {
		busy  atomic.Bool
		calls atomic.Int32
		bad   atomic.Bool
	}
	type hkey struct{}
	h := func(ctx context.Context, e *stage.Error) error {
		st := ctx.Value(hkey{}).(*hstate)
		if !st.busy.CompareAndSwap(false, true) {
			st.bad.Store(true)
		}
		st.calls.Add(1)
		runtime.Gosched()
		st.busy.Store(false)
		return nil
	}
	for _, w := range []int{1, 4, -1} {
		for _, n := range []int{3, 10, 20} {
			budget := r5Build(&r5Pipe{kind: "map", n: n, workers: w})
			budget.s = stage.Map(source.Slice(ints(n)), r5Body, stage.Workers(w), stage.OnError(stage.Budget(2, h)))
			handle := stage.Map(source.Slice(ints(n)), r5Body, stage.Workers(w), stage.OnError(stage.Handle(h)))
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 10 {
						sp := r5NewSpec(n)
						failures := 2
						if (g+i)%3 == 0 {
							failures = 3
						}
						if i%4 == 1 {
							failures = 0
						}
						var F []int
						for x := range failures {
							f := (x*5 + sp.id) % n
							for sp.fail[f] {
								f = (f + 1) % n
							}
							sp.fail[f] = true
							F = append(F, f)
						}
						slices.Sort(F)
						st := &hstate{}
						ctx := context.WithValue(sp.ctx(bg), hkey{}, st)
						s := budget.s
						if i%2 == 1 {
							s = handle
						}
						got, err := sink.Slice(ctx, s)
						bad := sp.finish()
						if st.bad.Load() {
							bad = append(bad, "calls of h overlapped within one stage of one run")
						}
						if i%2 == 1 || failures <= 2 {
							if err != nil {
								bad = append(bad, fmt.Sprintf("error %v, want nil (%d failures, budget 2)", err, failures))
							}
							if int(st.calls.Load()) != failures {
								bad = append(bad, fmt.Sprintf("h called %d times, want %d", st.calls.Load(), failures))
							}
							if e := budget.expect(sp); !r5SameMultiset(got, e) {
								bad = append(bad, fmt.Sprintf("values %v, want %v", got, e))
							}
						} else {
							var se *stage.Error
							var ie *r5ItemErr
							if !errors.Is(err, stage.ErrBudget) || !errors.As(err, &se) || !errors.As(err, &ie) || ie.Run != sp.id {
								bad = append(bad, fmt.Sprintf("error %v, want ErrBudget and this run's item error", err))
							} else if w == 1 && se.Index != F[2] {
								bad = append(bad, fmt.Sprintf("Budget failed at item %d, want the third failure %d", se.Index, F[2]))
							}
							if st.calls.Load() > 2 {
								bad = append(bad, fmt.Sprintf("h saw %d failures with a budget of 2", st.calls.Load()))
							}
						}
						if len(bad) > 0 {
							t.Errorf("w=%d n=%d run %d handle=%v failures %v:\n\t%s", w, n, sp.id, i%2 == 1, F, strings.Join(bad, "\n\t"))
						}
					}
				})
			}
			wg.Wait()
		}
	}
}

// Promise (Workers): "n >= 1: at most n, and with enough input and a
// consumer that keeps up exactly n"; "a stage whose input holds k items
// starts at most k". Each call here waits until as many calls as promised
// are in flight at once; a stage that never gets there hangs and the
// watchdog fails the test. The bound is per run: many runs of one Stream at
// once each reach it and never pass it.
func TestReview5_WorkersReachedPerRun(t *testing.T) {
	type gate struct {
		want int32
		in   atomic.Int32
		max  atomic.Int32
		once sync.Once
		open chan struct{}
	}
	type gkey struct{}
	f := func(ctx context.Context, x int) (int, error) {
		gt := ctx.Value(gkey{}).(*gate)
		in := gt.in.Add(1)
		defer gt.in.Add(-1)
		for {
			m := gt.max.Load()
			if in <= m || gt.max.CompareAndSwap(m, in) {
				break
			}
		}
		if in == gt.want {
			gt.once.Do(func() { close(gt.open) })
		}
		select {
		case <-gt.open:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		return x, nil
	}
	bg, stopAll := context.WithCancel(context.Background())
	defer stopAll()
	for _, c := range []struct {
		w, n            int
		ordered, buffer bool
		prime           bool
	}{
		{2, 2, true, false, false}, {4, 20, true, false, false}, {8, 5, true, false, false},
		{3, 20, false, true, false}, {4, 4, false, false, false}, {4, 20, false, false, true},
		{-1, 12, false, false, false}, {-1, 12, true, false, false},
	} {
		o := []stage.Option{stage.Workers(c.w)}
		if c.ordered {
			o = append(o, stage.Ordered())
		}
		if c.buffer {
			o = append(o, stage.Buffer(1))
		}
		s := stage.Map(source.Slice(ints(c.n)), f, o...)
		if c.prime {
			// cheap runs first, so that a consumer may have taken a worker's place
			cheap := stage.Map(source.Slice(ints(c.n)), double, o...)
			for range 50 {
				if _, err := sink.Slice(bg, cheap); err != nil {
					t.Fatal(err)
				}
			}
		}
		want := c.n
		if c.w > 0 {
			want = min(c.w, c.n)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 5 {
					gt := &gate{want: int32(want), open: make(chan struct{})}
					got, err := sink.Slice(context.WithValue(bg, gkey{}, gt), s)
					if err != nil || len(got) != c.n {
						t.Errorf("%+v: %d values, %v", c, len(got), err)
					}
					if int(gt.max.Load()) > want {
						t.Errorf("%+v: %d calls at once in one run, at most %d allowed", c, gt.max.Load(), want)
					}
				}
			})
		}
		r5Wait(t, &wg, stopAll, 30*time.Second)
		if t.Failed() {
			t.Fatalf("config %+v failed", c)
		}
	}
}

// Promise (ForEach): f is called one call at a time, in arrival order (input
// order after an Ordered stage); an error from f ends the run with a
// *stage.Error (Stage "foreach", Index the value's position, Input the value)
// and no further call of f; stage.ErrStop ends it with nil and no further
// call. Next runs of the same Stream are whole.
func TestReview5_ForEachStopsAndFails(t *testing.T) {
	bg := context.Background()
	errCB := errors.New("r5: callback failed")
	for _, n := range []int{1, 2, 9, 20} {
		for _, c := range r5Configs {
			p := r5Build(&r5Pipe{kind: "map", n: n, workers: c.workers, ordered: c.ordered, buffer: c.buffer})
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for r := range 6 {
						sp := r5NewSpec(n)
						sp.chain = p.chain()
						at := (g + r) % n
						mode := r % 3 // 0: whole, 1: ErrStop at position at, 2: error at position at
						var seen []r5Out
						var busy atomic.Bool
						var afterEnd atomic.Int32
						ended := false
						err := sink.ForEach(sp.ctx(bg), p.s, func(ctx context.Context, v r5Out) error {
							if !busy.CompareAndSwap(false, true) {
								sp.badf("ForEach: overlapping calls")
							}
							defer busy.Store(false)
							if ended {
								afterEnd.Add(1)
							}
							seen = append(seen, v)
							if mode != 0 && len(seen)-1 == at {
								ended = true
								if mode == 1 {
									return fmt.Errorf("r5: stopping: %w", stage.ErrStop)
								}
								return errCB
							}
							return nil
						})
						bad := sp.finish()
						if afterEnd.Load() > 0 {
							bad = append(bad, fmt.Sprintf("f called %d times after it ended the run", afterEnd.Load()))
						}
						E := p.expect(sp)
						switch mode {
						case 0:
							if err != nil {
								bad = append(bad, fmt.Sprintf("error %v", err))
							}
							if !r5SameMultiset(seen, E) || (p.inOrder() && !slices.Equal(seen, E)) {
								bad = append(bad, fmt.Sprintf("f saw %v, want %v", seen, E))
							}
						case 1:
							if err != nil {
								bad = append(bad, fmt.Sprintf("ErrStop: error %v, want nil", err))
							}
							if len(seen) != at+1 {
								bad = append(bad, fmt.Sprintf("ErrStop at position %d: f saw %d values", at, len(seen)))
							}
						case 2:
							var se *stage.Error
							if !errors.As(err, &se) || !errors.Is(err, errCB) || se.Stage != "foreach" || se.Index != at || len(seen) <= at || se.Input != any(seen[at]) {
								bad = append(bad, fmt.Sprintf("callback error at position %d: sink returned %v (%+v)", at, err, se))
							}
						}
						if mode != 0 && p.inOrder() && !r5IsPrefix(seen, E) {
							bad = append(bad, fmt.Sprintf("f saw %v, not a prefix of %v", seen, E))
						}
						if !r5SubMultiset(seen, E) {
							bad = append(bad, fmt.Sprintf("f saw %v, not values of this run %v", seen, E))
						}
						if len(bad) > 0 {
							t.Errorf("%v run %d mode %d at %d:\n\t%s", p, sp.id, mode, at, strings.Join(bad, "\n\t"))
						}
					}
				})
			}
			wg.Wait()
		}
	}
}

// Promise (Reduce): f folds values one at a time from init, per run: runs of
// one Stream at once, each with its own init, each get init + their own sum.
func TestReview5_ReducePerRun(t *testing.T) {
	bg := context.Background()
	for _, c := range r5Configs {
		for _, n := range []int{1, 6, 20} {
			p := r5Build(&r5Pipe{kind: "concurrent", n: n, workers: c.workers, ordered: c.ordered, buffer: c.buffer})
			var wg sync.WaitGroup
			for range 6 {
				wg.Go(func() {
					for range 5 {
						sp := r5NewSpec(n)
						sp.chain = p.chain()
						sp.strict = true
						init := sp.id * 1000
						var busy atomic.Bool
						sum, err := sink.Reduce(sp.ctx(bg), p.s, init, func(acc int, v r5Out) int {
							if !busy.CompareAndSwap(false, true) {
								sp.badf("Reduce: overlapping calls")
							}
							defer busy.Store(false)
							if v.Run != sp.id {
								sp.badf("value of run %d in run %d", v.Run, sp.id)
							}
							return acc + v.Item + 1
						})
						bad := sp.finish()
						if want := init + n*(n+1)/2; err != nil || sum != want {
							bad = append(bad, fmt.Sprintf("Reduce = %d, %v; want %d", sum, err, want))
						}
						if len(bad) > 0 {
							t.Errorf("%v run %d:\n\t%s", p, sp.id, strings.Join(bad, "\n\t"))
						}
					}
				})
			}
			wg.Wait()
		}
	}
}

// Promise (Concurrent): a nil task is an item error wrapping ErrNilTask, at
// its index, under FailFast and Forward; the other tasks' results arrive.
func TestReview5_ConcurrentNilTask(t *testing.T) {
	bg := context.Background()
	for _, n := range []int{1, 5, 20} {
		for nilAt := range n {
			if n == 20 && nilAt%5 != 0 {
				continue
			}
			tasks := r5Tasks(n)
			tasks[nilAt] = nil
			for _, fwd := range []bool{false, true} {
				o := []stage.Option{stage.Workers(3), stage.Ordered()}
				if fwd {
					o = append(o, stage.OnError(stage.Forward))
				}
				s := stage.Concurrent(source.Slice(tasks), o...)
				sp := r5NewSpec(n)
				got, err := sink.Slice(sp.ctx(bg), s)
				bad := sp.finish()
				var se *stage.Error
				if !errors.Is(err, stage.ErrNilTask) || !errors.As(err, &se) || se.Index != nilAt || se.Stage != "concurrent#1" {
					bad = append(bad, fmt.Sprintf("error %v (%+v), want ErrNilTask at %d", err, se, nilAt))
				}
				if fwd {
					var want []r5Out
					for x := range n {
						if x != nilAt {
							want = append(want, r5Out{Run: sp.id, Item: x})
						}
					}
					var fe *sink.ForwardedError
					if !slices.Equal(got, want) || !errors.As(err, &fe) || fe.Count != 1 {
						bad = append(bad, fmt.Sprintf("forward: %v, %v; want %v and one forwarded error", got, err, want))
					}
				} else {
					for _, v := range got {
						if v.Item >= nilAt {
							bad = append(bad, fmt.Sprintf("ordered: item %d delivered after the failing task %d", v.Item, nilAt))
						}
					}
				}
				if len(bad) > 0 {
					t.Errorf("n=%d nil at %d forward=%v:\n\t%s", n, nilAt, fwd, strings.Join(bad, "\n\t"))
				}
			}
		}
	}
}

// ---------------------------------------------------------------------------
// Panics: in a child process, since a panic that escapes would crash it.

// r5InChild runs body in a child process (the test binary, re-executed for
// this test only) and fails the test with the child's output if the child
// fails, crashes or hangs.
func r5InChild(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	runcheck.InChildTest(t, body)
}

// r5CheckPanicErr: err holds a *stage.Error at item j of this run's stage,
// wrapping a *stage.PanicError with the panic's value and a stack.
func r5CheckPanicErr(p *r5Pipe, sp *r5Spec, err error, allowed []int) string {
	var se *stage.Error
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) {
		return fmt.Sprintf("error %v (%T): want a *stage.Error wrapping a *stage.PanicError", err, err)
	}
	if se.Stage != p.kind+"#1" || !slices.Contains(allowed, se.Index) || se.Attempts != 1 {
		return fmt.Sprintf("*stage.Error %+v: want stage %s#1, index in %v, 1 attempt", se, p.kind, allowed)
	}
	var pe2 *stage.PanicError
	if !errors.As(se, &pe2) {
		return fmt.Sprintf("the PanicError is not inside the *stage.Error: %v", err)
	}
	if len(pe.Stack) == 0 {
		return "PanicError.Stack is empty"
	}
	switch want := sp.panics[se.Index]; want {
	case r5RuntimePanic:
		var re runtime.Error
		if !errors.As(err, &re) {
			return fmt.Sprintf("a runtime panic: errors.As(err, *runtime.Error) fails: %v", err)
		}
	default:
		if pe.Value != want {
			return fmt.Sprintf("PanicError.Value = %#v, want %#v (a panic of another run?)", pe.Value, want)
		}
	}
	return ""
}

// Promise: a panic in a stage function (also when it runs in the consumer's
// goroutine: a single-item input, or cheap calls that the consumer took
// over), in a ForEach callback, in Reduce's f, never crashes the process: it
// becomes a *stage.Error wrapping a *stage.PanicError (value, stack; a
// runtime error seen by errors.As), FailFast or Forward, and the next runs of
// the same Stream are whole. A panic in the body of a range over sink.All
// stops the run and continues out of the loop.
func TestReview5_PanicsBecomeErrors(t *testing.T) {
	r5InChild(t, func(t *testing.T) {
		bg := context.Background()
		var pipes []*r5Pipe
		for _, kind := range []string{"map", "filter", "flatmap", "concurrent"} {
			for _, c := range r5Configs {
				for _, fwd := range []bool{false, true} {
					for _, n := range []int{1, 3, 20} {
						pipes = append(pipes, r5Build(&r5Pipe{kind: kind, n: n, workers: c.workers, ordered: c.ordered, buffer: c.buffer, forward: fwd}))
					}
				}
			}
		}
		rep := &r5Reporter{t: t}
		for _, p := range pipes {
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for r := range 4 {
						sk := []string{r5SSlice, r5SAll, r5SForEach, r5SReduce, r5SCount, r5SFirst}[(g+r)%6]
						clean := (g+r)%2 == 1
						// cheap clean runs before, so that calls prove cheap
						sp := r5NewSpec(p.n)
						sp.chain = p.chain()
						var F []int
						if !clean {
							j := (sp.id + r) % p.n
							if r%3 == 0 {
								sp.panics[j] = r5RuntimePanic
							} else {
								sp.panics[j] = r5PanicVal{Run: sp.id, Item: j}
							}
							F = append(F, j)
							if p.forward && p.n > 2 {
								k := (j + 2) % p.n
								sp.panics[k] = r5PanicVal{Run: sp.id, Item: k}
								F = append(F, k)
								slices.Sort(F)
							}
						}
						sp.strict = (clean || p.forward) && sk != r5SFirst
						gg := r5Run(sp.ctx(bg), sk, p.s, 0)
						bad := append(sp.finish(), gg.bad...)
						E := p.expect(sp)
						if clean {
							bad = append(bad, r5Check(p, sp, sk, 0, gg)...)
						} else {
							var errs []error
							switch {
							case sk == r5SAll:
								errs = gg.errs
							case sk == r5SFirst && gg.ok:
							case p.forward && sk != r5SFirst:
								var fe *sink.ForwardedError
								if !errors.As(gg.err, &fe) || fe.Count != len(F) {
									bad = append(bad, fmt.Sprintf("error %v: want a ForwardedError of %d", gg.err, len(F)))
								} else {
									errs = fe.Sample
								}
							default:
								errs = []error{gg.err}
							}
							for _, e := range errs {
								if msg := r5CheckPanicErr(p, sp, e, F); msg != "" {
									bad = append(bad, msg)
								}
							}
							if p.forward && (sk == r5SSlice || sk == r5SAll || sk == r5SForEach || sk == r5SReduce) && !r5SameMultiset(gg.vals, E) {
								bad = append(bad, fmt.Sprintf("forward: values %v, want %v", gg.vals, E))
							}
							if !r5SubMultiset(gg.vals, E) {
								bad = append(bad, fmt.Sprintf("values %v not among %v", gg.vals, E))
							}
						}
						rep.report(fmt.Sprintf("%v run %d sink %s panics %v", p, sp.id, sk, F), bad)
					}
				})
			}
			wg.Wait()
		}

		// the sink callbacks
		for _, n := range []int{1, 2, 20} {
			for r := range 20 {
				p := r5Build(&r5Pipe{kind: "map", n: n, workers: 4, ordered: r%2 == 0})
				at := r % n
				sp := r5NewSpec(n)
				count := 0
				err := sink.ForEach(sp.ctx(bg), p.s, func(_ context.Context, v r5Out) error {
					count++
					if count-1 == at {
						panic(r5PanicVal{Run: sp.id, Item: -1})
					}
					return nil
				})
				sp.finish()
				var se *stage.Error
				var pe *stage.PanicError
				if !errors.As(err, &se) || !errors.As(err, &pe) || se.Stage != "foreach" || se.Index != at || pe.Value != (r5PanicVal{Run: sp.id, Item: -1}) || count != at+1 {
					t.Errorf("ForEach panic at %d (run %d): %v (%+v) after %d calls", at, sp.id, err, se, count)
				}
				sp = r5NewSpec(n)
				count = 0
				acc, err := sink.Reduce(sp.ctx(bg), p.s, 0, func(acc int, v r5Out) int {
					count++
					if count-1 == at {
						panic(r5PanicVal{Run: sp.id, Item: -2})
					}
					return acc + 1
				})
				sp.finish()
				se, pe = nil, nil
				if !errors.As(err, &se) || !errors.As(err, &pe) || se.Stage != "reduce" || pe.Value != (r5PanicVal{Run: sp.id, Item: -2}) || acc != at {
					t.Errorf("Reduce panic at %d (run %d): acc %d, %v (%+v)", at, sp.id, acc, err, se)
				}
				// the body of a range over All
				sp = r5NewSpec(n)
				var recovered any
				func() {
					defer func() { recovered = recover() }()
					i := 0
					for v, err := range sink.All(sp.ctx(bg), p.s) {
						if err != nil {
							t.Errorf("All: %v", err)
						}
						_ = v
						if i == at {
							panic(r5PanicVal{Run: sp.id, Item: -3})
						}
						i++
					}
				}()
				if bad := sp.finish(); len(bad) > 0 || recovered != (r5PanicVal{Run: sp.id, Item: -3}) {
					t.Errorf("All body panic at %d (run %d): recovered %#v; %v", at, sp.id, recovered, bad)
				}
				// and then the stream is whole
				sp = r5NewSpec(n)
				sp.strict = true
				got, err := sink.Slice(sp.ctx(bg), p.s)
				if bad := append(sp.finish(), r5Check(p, sp, r5SSlice, 0, r5Got{vals: got, err: err})...); len(bad) > 0 {
					t.Errorf("run %d after panics: %v", sp.id, bad)
				}
			}
		}

		// a panic in a Handle policy's h
		hp := stage.Map(source.Slice(ints(8)), r5Body, stage.Workers(3), stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
			panic("r5: handler panic")
		})))
		for range 5 {
			sp := r5NewSpec(8)
			sp.fail[5] = true
			_, err := sink.Slice(sp.ctx(bg), hp)
			sp.finish()
			var pe *stage.PanicError
			var se *stage.Error
			if !errors.As(err, &pe) || !errors.As(err, &se) || pe.Value != "r5: handler panic" {
				t.Errorf("panic in Handle's h: %v", err)
			}
		}
	})
}

// ---------------------------------------------------------------------------
// Nested runs, ErrStop after a failure, single-item runs.

type r5DepthKey struct{}

// Promise: several sinks may run one Stream at the same time, each with its
// own goroutines, queues and stage state, also when a run of it is started
// from inside a call of its own function or a sink callback of a run of it
// (the per-request fan-out inside a per-request fan-out).
func TestReview5_NestedRunsOfOneStream(t *testing.T) {
	bg, stopAll := context.WithCancel(context.Background())
	defer stopAll()
	for _, c := range r5Configs {
		for _, n := range []int{1, 3, 6} {
			o := []stage.Option{stage.Workers(c.workers)}
			if c.ordered {
				o = append(o, stage.Ordered())
			}
			if c.buffer {
				o = append(o, stage.Buffer(1))
			}
			var s stage.Stream[int]
			s = stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) {
				d, _ := ctx.Value(r5DepthKey{}).(int)
				if d >= 2 {
					return x, nil
				}
				inner := context.WithValue(ctx, r5DepthKey{}, d+1)
				sum := 0
				var err error
				switch x % 3 {
				case 0:
					var vals []int
					vals, err = sink.Slice(inner, s)
					for _, v := range vals {
						sum += v
					}
				case 1:
					sum, err = sink.Reduce(inner, s, 0, func(a, v int) int { return a + v })
				case 2:
					err = sink.ForEach(inner, s, func(_ context.Context, v int) error { sum += v; return nil })
				}
				return x*1000 + sum, err
			}, o...)
			tri := n * (n - 1) / 2
			want := func(x int) int { return x*1000 + (tri*1000 + n*tri) }
			var wantAll []int
			for x := range n {
				wantAll = append(wantAll, want(x))
			}
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					for r := range 3 {
						var got []int
						var err error
						if (g+r)%2 == 0 {
							got, err = sink.Slice(bg, s)
						} else {
							// a sink callback that runs the same stream again
							err = sink.ForEach(bg, s, func(ctx context.Context, v int) error {
								vals, err := sink.Slice(context.WithValue(ctx, r5DepthKey{}, 0), s)
								if err != nil {
									return err
								}
								if !r5SameInts(vals, wantAll) {
									return fmt.Errorf("nested run in a callback: %v, want %v", vals, wantAll)
								}
								got = append(got, v)
								return nil
							})
						}
						ok := r5SameInts(got, wantAll)
						if ok && (c.ordered || c.workers == 1) {
							ok = slices.Equal(got, wantAll)
						}
						if err != nil || !ok {
							t.Errorf("%+v n=%d: %v, %v; want %v", c, n, got, err, wantAll)
						}
					}
				})
			}
			r5Wait(t, &wg, stopAll, 30*time.Second)
		}
	}
}

func r5SameInts(a, b []int) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

// Promise (stage.Run, README): "A callback that returns stage.ErrStop ends the
// run with nil, whatever happened meanwhile": here a FailFast failure of
// another item (or the caller's cancellation) cancels the run while the
// callback holds the first value, and the callback then returns ErrStop.
func TestReview5_ErrStopAfterFailureIsNil(t *testing.T) {
	bg := context.Background()
	errLater := errors.New("r5: item 1 failed while the callback held item 0")
	for _, cancelByCaller := range []bool{false, true} {
		for _, o := range [][]stage.Option{
			{stage.Workers(2), stage.Ordered()},
			{stage.Workers(2), stage.Buffer(1)},
			{stage.Workers(-1), stage.Ordered()},
		} {
			for range 20 {
				release := make(chan struct{})
				s := stage.Map(source.Slice(ints(2)), func(ctx context.Context, x int) (int, error) {
					if x == 0 {
						return 0, nil
					}
					select {
					case <-release:
					case <-ctx.Done():
						return 0, ctx.Err()
					}
					if cancelByCaller {
						<-ctx.Done()
						return 0, ctx.Err()
					}
					return 0, errLater
				}, o...)
				ctx, cancel := context.WithCancel(bg)
				watchdog := time.AfterFunc(30*time.Second, cancel)
				calls := 0
				sawEnd := false
				err := sink.ForEach(ctx, s, func(rctx context.Context, v int) error {
					calls++
					close(release)
					if cancelByCaller {
						cancel()
					}
					<-rctx.Done() // the run is cut short meanwhile
					sawEnd = true
					return stage.ErrStop
				})
				watchdog.Stop()
				cancel()
				if calls != 1 || !sawEnd || err != nil {
					t.Fatalf("cancelByCaller=%v: ForEach returned %v after %d calls (ErrStop returned after the run was cut short); want nil", cancelByCaller, err, calls)
				}
			}
		}
	}
}

func r5GoID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	f := strings.Fields(string(buf))
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// Promise (Workers): "A stage whose input is known to hold a single item (its
// Stream.Len is 1) calls the function in its consumer's goroutine from the
// start, whatever the call costs, and starts no goroutine of its own"; Run
// calls its callback in the caller's goroutine. So a one-item run of
// Map/Concurrent (ordered or not, any Workers) calls every function in the
// caller's goroutine, also across two such stages.
func TestReview5_SingleItemRunsInCallerGoroutine(t *testing.T) {
	bg := context.Background()
	for oi, o := range [][]stage.Option{
		{stage.Workers(1)}, {stage.Workers(4)}, {stage.Workers(1), stage.Ordered()}, {},
	} {
		label := []string{"Workers(1)", "Workers(4)", "Workers(1)+Ordered", "default"}[oi]
		var ids sync.Map
		rec := func(where string) { ids.Store(where+"@"+r5GoID(), true) }
		a := stage.Map(source.Slice([]int{7}), func(_ context.Context, x int) (int, error) {
			rec("map1")
			time.Sleep(0) // not a wait: a call of any cost
			return x + 1, nil
		}, o...)
		b := stage.Map(a, func(_ context.Context, x int) (int, error) { rec("map2"); return x * 2, nil }, o...)
		if b.Len() != 1 {
			t.Fatalf("Len of a Map over a Map over a 1-item slice = %d, want 1", b.Len())
		}
		tasks := stage.Concurrent(source.Slice([]func(context.Context) (int, error){
			func(context.Context) (int, error) { rec("task"); return 3, nil },
		}), o...)
		for range 5 {
			me := r5GoID()
			got, err := sink.Slice(bg, b)
			if err != nil || !slices.Equal(got, []int{16}) {
				t.Fatalf("got %v, %v", got, err)
			}
			v, ok, err := sink.First(bg, tasks)
			if err != nil || !ok || v != 3 {
				t.Fatalf("got %v %v %v", v, ok, err)
			}
			ids.Range(func(k, _ any) bool {
				if !strings.HasSuffix(k.(string), "@"+me) {
					t.Errorf("%s: a function of a one-item run ran in goroutine %s, not the caller's %s", label, k, me)
				}
				return true
			})
			ids.Clear()
		}
	}
}

// Promise (FailFast): "no new item starts" once an item failed: with one
// worker, the items after the failing one are never called.
func TestReview5_FailFastStartsNothingNew(t *testing.T) {
	bg := context.Background()
	for _, kind := range []string{"map", "filter", "flatmap", "concurrent"} {
		for _, ordered := range []bool{false, true} {
			for _, n := range []int{1, 2, 7, 20} {
				p := r5Build(&r5Pipe{kind: kind, n: n, workers: 1, ordered: ordered})
				var wg sync.WaitGroup
				for g := range 4 {
					wg.Go(func() {
						for r := range 6 {
							sk := []string{r5SSlice, r5SAll, r5SForEach, r5SReduce, r5SCount, r5SSlice}[r]
							sp := r5NewSpec(n)
							j := (sp.id + g) % n
							sp.fail[j] = true
							gg := r5Run(sp.ctx(bg), sk, p.s, 0)
							bad := append(sp.finish(), r5Check(p, sp, sk, 0, gg)...)
							for x := j + 1; x < n; x++ {
								if sp.perItem[x].Load() != 0 {
									bad = append(bad, fmt.Sprintf("item %d was called after item %d failed (one worker)", x, j))
									break
								}
							}
							if len(bad) > 0 {
								t.Errorf("%v run %d sink %s fail at %d:\n\t%s", p, sp.id, sk, j, strings.Join(bad, "\n\t"))
							}
						}
					})
				}
				wg.Wait()
			}
		}
	}
}

// Promise: a run's context is derived from the ctx given to its sink, and
// from nothing else: cancelling the ctx of a run that has returned (as a
// deferred cancel does) must not reach a later run of the same Stream that
// reuses the recycled state, whatever the earlier run did (completed, failed,
// stopped early).
func TestReview5_OldRunsCtxDoesNotReachNewRuns(t *testing.T) {
	bg, stopAll := context.WithCancel(context.Background())
	defer stopAll()
	for _, c := range r5Configs {
		for _, n := range []int{1, 4, 20} {
			p := r5Build(&r5Pipe{kind: "map", n: n, workers: c.workers, ordered: c.ordered, buffer: c.buffer})
			// earlier runs, each with a ctx of its own, still live
			var cancels []context.CancelFunc
			for i := range 12 {
				ctx, cancel := context.WithCancel(bg)
				cancels = append(cancels, cancel)
				sp := r5NewSpec(n)
				if i%3 == 1 {
					sp.fail[i%n] = true
				}
				r5Run(sp.ctx(ctx), r5Sinks[i%len(r5Sinks)], p.s, 1)
				sp.finish()
			}
			// later runs, held in flight by a gate
			const B = 4
			gate := make(chan struct{})
			type later struct {
				sp  *r5Spec
				got []r5Out
				err error
			}
			runs := make([]*later, B)
			var wg sync.WaitGroup
			started := make(chan int, B*n)
			for b := range B {
				l := &later{sp: r5NewSpec(n)}
				l.sp.strict = true
				l.sp.started = started
				runs[b] = l
				wg.Go(func() {
					ctx := context.WithValue(l.sp.ctx(bg), r5GateKey{}, gate)
					l.got, l.err = sink.Slice(ctx, stage.Map(p.s, r5Gated, stage.Workers(-1)))
				})
			}
			// each later run is in flight: a call of it has started, and it
			// cannot end before the gate opens
			watchdog := time.AfterFunc(30*time.Second, stopAll)
			for range B * n {
				<-started
			}
			for _, cancel := range cancels {
				cancel()
			}
			for range 100 {
				runtime.Gosched() // give a leaked AfterFunc a chance to run
			}
			close(gate)
			wg.Wait()
			watchdog.Stop()
			for _, l := range runs {
				bad := l.sp.finish()
				if l.err != nil || !r5SameMultiset(l.got, p.expect(l.sp)) {
					bad = append(bad, fmt.Sprintf("got %v, %v; want %v, nil", l.got, l.err, p.expect(l.sp)))
				}
				if len(bad) > 0 {
					t.Errorf("%v: a later run, after the ctxs of earlier runs were cancelled:\n\t%s", p, strings.Join(bad, "\n\t"))
				}
			}
			if t.Failed() {
				return
			}
		}
	}
}

type r5GateKey struct{}

// r5Gated passes its item on once the gate in ctx opens; a run cancelled
// meanwhile is reported through the spec.
func r5Gated(ctx context.Context, v r5Out) (r5Out, error) {
	gate := ctx.Value(r5GateKey{}).(chan struct{})
	select {
	case <-gate:
	case <-ctx.Done():
		if sp, _ := ctx.Value(r5Key{}).(*r5Spec); sp != nil {
			sp.badf("run %d: cancelled while nothing cancels it: %v", sp.id, context.Cause(ctx))
		}
		return v, ctx.Err()
	}
	if ctx.Err() != nil {
		if sp, _ := ctx.Value(r5Key{}).(*r5Spec); sp != nil {
			sp.badf("run %d: ctx done although nothing cancels it: %v", sp.id, context.Cause(ctx))
		}
	}
	return v, nil
}

// Promise (Observe): an observer is attached to the runs started with its
// ctx, and to those only: runs of the same Stream without it (recycled state)
// report nothing to it.
func TestReview5_ObserverStaysWithItsRun(t *testing.T) {
	bg := context.Background()
	for _, c := range r5Configs {
		p := r5Build(&r5Pipe{kind: "map", n: 5, workers: c.workers, ordered: c.ordered, buffer: c.buffer})
		var st stage.Stats
		sp := r5NewSpec(5)
		if _, err := sink.Slice(stage.Observe(sp.ctx(bg), &st), p.s); err != nil {
			t.Fatal(err)
		}
		sp.finish()
		before, ok := st.Get("map#1")
		if !ok || before.Received != 5 || before.Finished != 5 || before.Running != 0 {
			t.Fatalf("%v: Stats after one observed run: %+v, %v", p, before, ok)
		}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for i := range 10 {
					sp := r5NewSpec(5)
					if i%3 == 0 {
						sp.fail[i%5] = true
					}
					r5Run(sp.ctx(bg), r5Sinks[i%len(r5Sinks)], p.s, 2)
					sp.finish()
				}
			})
		}
		wg.Wait()
		after, _ := st.Get("map#1")
		if after != before {
			t.Errorf("%v: unobserved runs reached the observer of an earlier run: %+v, was %+v", p, after, before)
		}
	}
}

// Promise (ErrStop, IsStop): a stage's function that returns stage.ErrStop
// fails its item like any error (the ErrStop is inside an *Error): FailFast
// fails the run with it, Forward forwards it; a sink callback that returns
// such an *Error (from a run of its own) fails its run with it, while one
// that returns ErrStop itself stops the run with nil.
func TestReview5_ErrStopInsideItemErrorFails(t *testing.T) {
	bg := context.Background()
	for _, n := range []int{1, 3, 20} {
		for _, w := range []int{1, 4} {
			stopAt := n / 2
			f := func(_ context.Context, x int) (int, error) {
				if x == stopAt {
					return 0, stage.ErrStop
				}
				return x, nil
			}
			ff := stage.Map(source.Slice(ints(n)), f, stage.Workers(w))
			fw := stage.Map(source.Slice(ints(n)), f, stage.Workers(w), stage.OnError(stage.Forward))
			for range 5 {
				got, err := sink.Slice(bg, ff)
				var se *stage.Error
				if err == nil || !errors.As(err, &se) || !errors.Is(err, stage.ErrStop) || se.Index != stopAt || stage.IsStop(err) {
					t.Fatalf("n=%d w=%d FailFast: a function returning ErrStop: sink.Slice = %v, %v; want the item's *stage.Error", n, w, got, err)
				}
				got, err = sink.Slice(bg, fw)
				var fe *sink.ForwardedError
				if !errors.As(err, &fe) || fe.Count != 1 || len(got) != n-1 {
					t.Fatalf("n=%d w=%d Forward: a function returning ErrStop: sink.Slice = %v, %v; want n-1 values and one forwarded error", n, w, got, err)
				}
				for v, err := range sink.All(bg, fw) {
					if err != nil && !errors.As(err, &se) {
						t.Fatalf("All yielded %v", err)
					}
					_ = v
				}
				// a callback passing on a failure of a run of its own
				calls := 0
				err = sink.ForEach(bg, source.Slice(ints(3)), func(ctx context.Context, v int) error {
					calls++
					_, inner := sink.Slice(ctx, ff)
					return inner
				})
				if err == nil || calls != 1 || !errors.Is(err, stage.ErrStop) {
					t.Fatalf("a callback returning another run's *stage.Error (wrapping ErrStop) ended its run with %v after %d calls; want that failure", err, calls)
				}
				calls = 0
				err = sink.ForEach(bg, ff, func(ctx context.Context, v int) error { calls++; return stage.ErrStop })
				// the failure may cut the run short before the first value is
				// delivered (a worker runs ahead); once f returned ErrStop, nil
				if calls > 1 || (calls == 1 && err != nil) || (calls == 0 && !errors.As(err, &se)) {
					t.Fatalf("ForEach returning ErrStop at the first value: %v after %d calls; want nil after 1 (or the item error after 0)", err, calls)
				}
			}
		}
	}
}

// Promise (Forward): a forwarded *stage.Error passes through later stages
// without a call, whatever their policy (a FailFast stage after a Forward
// one does not fail on it), keeps its stage name and index, and the sink
// returns the values with a *ForwardedError; if a later FailFast stage then
// fails, the sink returns its error joined with the ForwardedError.
func TestReview5_ForwardThroughFailFastStages(t *testing.T) {
	bg := context.Background()
	type fk struct{}
	type plan struct {
		first map[int]bool
		third int
	}
	for _, n := range []int{1, 5, 20} {
		for _, ordered := range []bool{false, true} {
			o := []stage.Option{stage.Workers(3)}
			if ordered {
				o = append(o, stage.Ordered())
			}
			a := stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) {
				if ctx.Value(fk{}).(*plan).first[x] {
					return 0, &r5ItemErr{Run: 1, Item: x}
				}
				return x, nil
			}, append(slices.Clone(o), stage.OnError(stage.Forward))...)
			b := stage.Filter(a, func(context.Context, int) (bool, error) { return true, nil }, o...)
			c := stage.Map(b, func(ctx context.Context, x int) (int, error) {
				if ctx.Value(fk{}).(*plan).third == x {
					return 0, &r5ItemErr{Run: 3, Item: x}
				}
				return x, nil
			}, o...)
			var wg sync.WaitGroup
			for g := range 6 {
				wg.Go(func() {
					for r := range 8 {
						pl := &plan{first: map[int]bool{}, third: -1}
						var F []int
						for x := range n {
							if (x+g+r)%3 == 0 {
								pl.first[x] = true
								F = append(F, x)
							}
						}
						var want []int
						for x := range n {
							if !pl.first[x] {
								want = append(want, x)
							}
						}
						failThird := r%2 == 1 && len(want) > 0
						if failThird {
							pl.third = want[len(want)-1]
						}
						got, err := sink.Slice(context.WithValue(bg, fk{}, pl), c)
						var fe *sink.ForwardedError
						var bad []string
						// after a later failure, only the forwarded errors the sink
						// received before it are reported (maybe none)
						if len(F) > 0 && (!failThird || errors.As(err, &fe)) {
							if !errors.As(err, &fe) {
								bad = append(bad, fmt.Sprintf("no ForwardedError in %v", err))
							} else {
								if fe.Count > len(F) || (!failThird && fe.Count != len(F)) {
									bad = append(bad, fmt.Sprintf("ForwardedError.Count %d, want %d", fe.Count, len(F)))
								}
								for _, e := range fe.Sample {
									var se *stage.Error
									var ie *r5ItemErr
									if !errors.As(e, &se) || !errors.As(e, &ie) || se.Stage != "map#1" || ie.Run != 1 || !slices.Contains(F, se.Index) || se.Index != ie.Item {
										bad = append(bad, fmt.Sprintf("forwarded error %v is not map#1's", e))
									}
								}
							}
						}
						if failThird {
							// the FailFast error of map#3 must be there
							found := false
							var walk func(error)
							walk = func(e error) {
								var se *stage.Error
								var ie *r5ItemErr
								if errors.As(e, &se) && se.Stage == "map#3" && errors.As(se, &ie) && ie.Run == 3 && ie.Item == pl.third {
									found = true
								}
								if j, ok := e.(interface{ Unwrap() []error }); ok {
									for _, x := range j.Unwrap() {
										walk(x)
									}
								}
							}
							walk(err)
							if !found {
								bad = append(bad, fmt.Sprintf("the FailFast error of map#3 at %d is not in %v", pl.third, err))
							}
							if !r5IsPrefixInts(got, want, ordered) {
								bad = append(bad, fmt.Sprintf("values %v not from %v", got, want))
							}
						} else {
							if len(F) == 0 && err != nil {
								bad = append(bad, fmt.Sprintf("error %v", err))
							}
							if !r5SameInts(got, want) || (ordered && !slices.Equal(got, want)) {
								bad = append(bad, fmt.Sprintf("values %v, want %v", got, want))
							}
						}
						if len(bad) > 0 {
							t.Errorf("n=%d ordered=%v forwarded %v third %d:\n\t%s", n, ordered, F, pl.third, strings.Join(bad, "\n\t"))
						}
					}
				})
			}
			wg.Wait()
		}
	}
}

func r5IsPrefixInts(got, want []int, ordered bool) bool {
	if ordered {
		return len(got) <= len(want) && slices.Equal(got, want[:len(got)])
	}
	left := map[int]int{}
	for _, v := range want {
		left[v]++
	}
	for _, v := range got {
		if left[v] == 0 {
			return false
		}
		left[v]--
	}
	return true
}

// Promise: "many such runs at once" (README: 1,000 runs at once): a burst
// of runs of one Stream, released together, each whole and its own.
func TestReview5_BurstOfRuns(t *testing.T) {
	bg, stopAll := context.WithCancel(context.Background())
	defer stopAll()
	for _, p := range []*r5Pipe{
		r5Build(&r5Pipe{kind: "map", n: 10, workers: 4}),
		r5Build(&r5Pipe{kind: "map", n: 10, workers: 4, ordered: true}),
		r5Build(&r5Pipe{kind: "concurrent", n: 3, workers: 3}),
		r5Build(&r5Pipe{kind: "flatmap", n: 7, workers: -1, forward: true}),
		r5Build(&r5Pipe{kind: "filter", n: 1, workers: 2}),
	} {
		start := make(chan struct{})
		rep := &r5Reporter{t: t}
		var wg sync.WaitGroup
		for g := range 400 {
			wg.Go(func() {
				<-start
				rng := rand.New(rand.NewPCG(7, uint64(g)))
				r5OneRun(bg, rep, p, r5Sinks[g%len(r5Sinks)], rng)
			})
		}
		close(start)
		r5Wait(t, &wg, stopAll, 30*time.Second)
	}
}

// Promise: whenever the caller's ctx is cancelled (at any point, here a
// random one), the sink reports either the whole result with nil (it saw the
// end first) or an error for which errors.Is(err, context.Canceled) holds,
// never a *stage.Error, never a value of another run, never more than was
// there; and runs of the same Stream that nothing cancels, going on at the
// same time, never see a done ctx.
func TestReview5_CancelAtRandomPoints(t *testing.T) {
	bg, stopAll := context.WithCancel(context.Background())
	defer stopAll()
	pipes := r5AllPipes([]int{1, 4, 20})
	rep := &r5Reporter{t: t}
	var wg sync.WaitGroup
	for g := range 12 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(11, uint64(g)))
			for range 150 {
				p := pipes[rng.IntN(len(pipes))]
				sk := r5Sinks[rng.IntN(len(r5Sinks))]
				if g%3 == 0 { // a run nothing cancels, beside the others
					r5OneRun(bg, rep, p, sk, rng)
					continue
				}
				sp := r5NewSpec(p.n)
				sp.chain = p.chain()
				ctx, cancel := context.WithCancel(bg)
				spins := rng.IntN(40)
				done := make(chan struct{})
				go func() {
					defer close(done)
					for range spins {
						runtime.Gosched()
					}
					cancel()
				}()
				m := 1 + rng.IntN(3)
				gg := r5Run(sp.ctx(ctx), sk, p.s, m)
				<-done
				bad := append(sp.finish(), gg.bad...)
				err := gg.err
				if (sk == r5SAll || sk == r5SAllBreak) && len(gg.errs) > 0 {
					last := gg.errs[len(gg.errs)-1]
					if errors.Is(last, context.Canceled) {
						err = last
					}
				}
				if err != nil {
					var se *stage.Error
					if !errors.Is(err, context.Canceled) || errors.As(err, &se) {
						bad = append(bad, fmt.Sprintf("error %v (%T), want nil or context.Canceled", err, err))
					}
					for _, v := range gg.vals {
						if v.Run != sp.id && v.Run != -1 {
							bad = append(bad, fmt.Sprintf("value %+v of another run", v))
						}
					}
					E := p.expect(sp)
					if !r5SubMultiset(gg.vals, E) || (p.inOrder() && !r5IsPrefix(gg.vals, E)) {
						bad = append(bad, fmt.Sprintf("values %v, not from %v", gg.vals, E))
					}
				} else {
					bad = append(bad, r5Check(p, sp, sk, m, gg)...)
				}
				rep.report(fmt.Sprintf("%v run %d sink %s cancelled after %d yields", p, sp.id, sk, spins), bad)
			}
		})
	}
	r5Wait(t, &wg, stopAll, 30*time.Second)
}

// Promise (Retry, Error.Attempts): the policy sees the last attempt's error
// and Attempts says how many calls were made for that item in that run; runs
// of one Stream at once keep their own counts.
func TestReview5_RetryAttemptsPerRun(t *testing.T) {
	bg := context.Background()
	type rkey struct{}
	type rspec struct {
		failFirst []int // item x fails its first failFirst[x] attempts
		calls     []atomic.Int32
	}
	for _, w := range []int{1, 3, -1} {
		for _, n := range []int{1, 6, 20} {
			s := stage.Map(source.Slice(ints(n)), func(ctx context.Context, x int) (int, error) {
				rs := ctx.Value(rkey{}).(*rspec)
				if c := rs.calls[x].Add(1); int(c) <= rs.failFirst[x] {
					return 0, &r5ItemErr{Run: int(c), Item: x}
				}
				return x, nil
			}, stage.Workers(w), stage.Retry(3, 0), stage.OnError(stage.Forward))
			var wg sync.WaitGroup
			for g := range 6 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(13, uint64(g)))
					for range 8 {
						rs := &rspec{failFirst: make([]int, n), calls: make([]atomic.Int32, n)}
						var want []int
						var F []int
						for x := range n {
							rs.failFirst[x] = rng.IntN(5) // 3 or more: fails for good
							if rs.failFirst[x] >= 3 {
								F = append(F, x)
							} else {
								want = append(want, x)
							}
						}
						got, err := sink.Slice(context.WithValue(bg, rkey{}, rs), s)
						var bad []string
						if !r5SameInts(got, want) {
							bad = append(bad, fmt.Sprintf("values %v, want %v", got, want))
						}
						for x := range n {
							if c, wantc := int(rs.calls[x].Load()), min(rs.failFirst[x]+1, 3); c != wantc {
								bad = append(bad, fmt.Sprintf("item %d: %d calls, want %d", x, c, wantc))
							}
						}
						var fe *sink.ForwardedError
						if len(F) == 0 {
							if err != nil {
								bad = append(bad, fmt.Sprintf("error %v", err))
							}
						} else if !errors.As(err, &fe) || fe.Count != len(F) {
							bad = append(bad, fmt.Sprintf("error %v, want %d forwarded", err, len(F)))
						} else {
							for _, e := range fe.Sample {
								var se *stage.Error
								var ie *r5ItemErr
								if !errors.As(e, &se) || !errors.As(e, &ie) || se.Attempts != 3 || ie.Run != 3 || ie.Item != se.Index || !slices.Contains(F, se.Index) {
									bad = append(bad, fmt.Sprintf("forwarded %v (%+v): want Attempts 3 and the third attempt's error", e, se))
								}
							}
						}
						if len(bad) > 0 {
							t.Errorf("w=%d n=%d failFirst %v:\n\t%s", w, n, rs.failFirst, strings.Join(bad, "\n\t"))
						}
					}
				})
			}
			wg.Wait()
		}
	}
}

// Promise (sink.All): "Each range over the iterator runs s anew", and several
// sinks may run one Stream at once: one iterator value ranged from several
// goroutines at the same time gives each range the whole result.
func TestReview5_OneAllIteratorRangedAtOnce(t *testing.T) {
	s := stage.Map(source.Slice(ints(10)), double, stage.Workers(3), stage.Ordered())
	it := sink.All(context.Background(), s)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for r := range 30 {
				var got []int
				for v, err := range it {
					if err != nil {
						t.Error(err)
					}
					got = append(got, v)
					if r%3 == 0 && len(got) == 4 {
						break
					}
				}
				want := []int{0, 2, 4, 6, 8, 10, 12, 14, 16, 18}
				if r%3 == 0 {
					want = want[:4]
				}
				if !slices.Equal(got, want) {
					t.Errorf("a range over a shared All iterator: %v, want %v", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}
