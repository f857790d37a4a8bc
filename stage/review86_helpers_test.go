package stage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// review86: random pipelines through the fused path. Each stage's function
// is a deterministic function of its input (so the expected outputs are
// known), counts its calls per input (none twice), and the calls of each
// stage at once (never above Workers(n)). Call costs switch between cheap
// and slow in phases, so that places move to the consumer's goroutines and
// back (the cost only steers the path: no verdict depends on it).

// r86stage is one stage of a random pipeline.
type r86stage struct {
	kind    int // 0 Map, 1 Filter, 2 FlatMap, 3 Concurrent-like Map with nested run, 4 Apply
	workers int
	ordered bool
	buffer  int
	keyed   bool
	slow    int // cost pattern: 0 cheap, 1 phases, 2 alternate, 3 slow
	failAt  int // input value at which the function fails (FailFast), or -1
}

func (s r86stage) String() string {
	kinds := []string{"Map", "Filter", "FlatMap", "Nested", "Apply"}
	return fmt.Sprintf("%s(w=%d,o=%v,b=%d,k=%v,slow=%d,fail=%d)", kinds[s.kind], s.workers, s.ordered, s.buffer, s.keyed, s.slow, s.failAt)
}

// r86pipe is a random pipeline: a source, stages, a sink.
type r86pipe struct {
	src    int // 0 Slice, 1 NeverWaits counter, 2 Seq+NeverWaits, 3 Chan prefilled, 4 Chan fed, 5 Lines
	n      int
	stages []r86stage
	snk    int // 0 Slice, 1 ForEach, 2 All+break, 3 First, 4 Reduce, 5 Chan, 6 ForEach ErrStop, 7 ForEach cancel, 8 ForEach Until drain
	stopAt int // the sink stops at its stopAt-th item (2, 6, 7, 8)
	wrap   int // 0 none, 1 Merge with negatives, 2 Tee into two fused Maps merged, 3 Batch+Unbatch
}

func (p r86pipe) String() string {
	srcs := []string{"Slice", "Counter", "Seq", "ChanFull", "ChanFed", "Lines", "CounterFails", "TryFails", "Acks"}
	snks := []string{"Slice", "ForEach", "AllBreak", "First", "Reduce", "Chan", "ErrStop", "Cancel", "Drain"}
	return fmt.Sprintf("src=%s n=%d stages=%v sink=%s stopAt=%d wrap=%d", srcs[p.src], p.n, p.stages, snks[p.snk], p.stopAt, p.wrap)
}

var r86workers = []int{1, 2, 4, 64, 100, 3}

func r86random(rng *rand.Rand, allowFail bool) r86pipe {
	p := r86pipe{src: rng.IntN(9), snk: rng.IntN(9)}
	if p.snk == 8 && p.src == 5 {
		p.snk = 1
	}
	if rng.IntN(3) == 0 {
		p.wrap = 1 + rng.IntN(3)
	}
	switch rng.IntN(5) {
	case 0:
		p.n = rng.IntN(3)
	case 1:
		p.n = 60 + rng.IntN(20)
	default:
		p.n = rng.IntN(300)
	}
	k := 1 + rng.IntN(3)
	for range k {
		s := r86stage{kind: rng.IntN(5), workers: r86workers[rng.IntN(len(r86workers))], failAt: -1}
		if s.kind == 3 && rng.IntN(2) == 0 {
			s.kind = 0
		}
		switch rng.IntN(8) {
		case 0:
			s.ordered = true
		case 1:
			s.buffer = 1 + rng.IntN(3)
		case 2:
			s.keyed = true
		}
		s.slow = rng.IntN(4)
		if s.slow == 3 && rng.IntN(2) == 0 {
			s.slow = 1
		}
		p.stages = append(p.stages, s)
	}
	if allowFail && rng.IntN(4) == 0 && p.n > 0 {
		i := rng.IntN(len(p.stages))
		p.stages[i].failAt = -2 // resolved to an input value of that stage below
	}
	p.stopAt = rng.IntN(max(p.n, 1) + 2)
	return p
}

// r86apply is stage s's function on one input: its outputs.
func r86apply(s r86stage, v int) []int {
	switch s.kind {
	case 0, 3, 4:
		return []int{2*v + 1}
	case 1:
		if v%3 == 0 {
			return nil
		}
		return []int{v}
	default: // FlatMap
		out := make([]int, v%4)
		for j := range out {
			out[j] = 4*v + j
		}
		return out
	}
}

// r86expected is what the pipeline yields in full, in input order, and the
// inputs each stage sees.
func r86expected(p *r86pipe) (outs []int, inputs [][]int) {
	cur := make([]int, p.n)
	for i := range cur {
		cur[i] = i
	}
	for si := range p.stages {
		inputs = append(inputs, cur)
		if p.stages[si].failAt == -2 {
			if len(cur) == 0 {
				p.stages[si].failAt = -1
			} else {
				p.stages[si].failAt = cur[len(cur)/2]
			}
		}
		var next []int
		for _, v := range cur {
			next = append(next, r86apply(p.stages[si], v)...)
		}
		cur = next
	}
	return cur, inputs
}

func (s r86stage) cost(v int) time.Duration {
	switch s.slow {
	case 1:
		if (v/24)%3 == 1 {
			return 30 * time.Microsecond
		}
	case 2:
		if v%2 == 0 {
			return 25 * time.Microsecond
		}
	case 3:
		return 30 * time.Microsecond
	}
	return 0
}

// r86probe watches one stage: calls per input, calls at once.
type r86probe struct {
	workers int
	calls   sync.Map // input -> *atomic.Int32
	now     atomic.Int64
	max     atomic.Int64
	total   atomic.Int64
	dead    *r86dead
}

// r86dead holds the goroutines that ended the run (a failing call, a sink
// callback that stopped or cancelled it): none of them may begin a call of
// the run's afterwards (no latitude there: the goroutine itself ended it).
type r86dead struct {
	gids      sync.Map
	violation atomic.Pointer[string]
}

func r86gid() int64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = b[len("goroutine "):]
	id, _ := strconv.ParseInt(string(b[:strings.IndexByte(string(b), ' ')]), 10, 64)
	return id
}

func (d *r86dead) mark() { d.gids.Store(r86gid(), true) }

func (d *r86dead) check(what string) {
	if g := r86gid(); func() bool { _, ok := d.gids.Load(g); return ok }() {
		msg := fmt.Sprintf("%s began on goroutine %d after that goroutine ended the run", what, g)
		d.violation.CompareAndSwap(nil, &msg)
	}
}

func (pr *r86probe) enter(v int) {
	pr.dead.check(fmt.Sprintf("a call of input %d", v))
	c, _ := pr.calls.LoadOrStore(v, new(atomic.Int32))
	c.(*atomic.Int32).Add(1)
	pr.total.Add(1)
	n := pr.now.Add(1)
	for {
		m := pr.max.Load()
		if n <= m || pr.max.CompareAndSwap(m, n) {
			break
		}
	}
}

func (pr *r86probe) leave() { pr.now.Add(-1) }

var (
	errR86Fail   = fmt.Errorf("r86: planned failure")
	errR86Source = fmt.Errorf("r86: the source fails after its items")
)

// r86build builds the pipeline; probes[i] watches stage i.
// r86acks records what each item of an AckSource was told.
type r86acks struct {
	calls []atomic.Int32
	errs  []atomic.Pointer[error]
}

type r86ack struct {
	a *r86acks
	i int
}

func (a r86ack) Done(err error) {
	a.a.calls[a.i].Add(1)
	if err != nil {
		a.a.errs[a.i].Store(&err)
	}
}

func r86build(p r86pipe, probes []*r86probe, feed <-chan int, produced *atomic.Int64, stop context.Context, acks *r86acks) stage.Stream[int] {
	var s stage.Stream[int]
	switch p.src {
	case 8:
		n := p.n
		s = stage.NeverWaits(stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
			i := 0
			return func(context.Context) (int, stage.Ack, error) {
				if i >= n {
					return 0, nil, io.EOF
				}
				i++
				produced.Add(1)
				return i - 1, r86ack{acks, i - 1}, nil
			}, nil
		}))
	case 0:
		s = stage.Indexed(p.n, func(i int) int { produced.Add(1); return i })
	case 1:
		s = r81counter(p.n, produced)
	case 2:
		n := p.n
		s = stage.NeverWaits(source.Seq(func(yield func(int) bool) {
			for i := range n {
				produced.Add(1)
				if !yield(i) {
					return
				}
			}
		}))
	case 3, 4:
		s = source.Chan(feed)
	case 6:
		n := p.n
		s = stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			i := 0
			return func(context.Context) (int, error) {
				if i >= n {
					return 0, errR86Source
				}
				i++
				produced.Add(1)
				return i - 1, nil
			}, nil
		}))
	case 7:
		// Interruptible, over a channel filled before the run, failing at its end.
		s = stage.Interruptible(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			return func(ctx context.Context) (int, error) {
				select {
				case v, ok := <-feed:
					if !ok {
						return 0, errR86Source
					}
					return v, nil
				default:
				}
				select {
				case v, ok := <-feed:
					if !ok {
						return 0, errR86Source
					}
					return v, nil
				case <-ctx.Done():
					return 0, ctx.Err()
				}
			}, nil
		}))
	case 5:
		var b strings.Builder
		for i := range p.n {
			fmt.Fprintf(&b, "%d\n", i)
		}
		s = stage.Map(source.Lines(strings.NewReader(b.String())), func(_ context.Context, l string) (int, error) {
			return strconv.Atoi(l)
		}, stage.Name("parse"), stage.Workers(1))
	}
	for si, st := range p.stages {
		pr := probes[si]
		opts := []stage.Option{stage.Name(fmt.Sprintf("s%d", si)), stage.Workers(st.workers)}
		if st.ordered {
			opts = append(opts, stage.Ordered())
		}
		if st.buffer > 0 {
			opts = append(opts, stage.Buffer(st.buffer))
		}
		if st.keyed {
			opts = append(opts, stage.KeyBy(func(v int) int { return v % 5 }))
		}
		call := func(ctx context.Context, v int) ([]int, error) {
			pr.enter(v)
			defer pr.leave()
			r81spin(st.cost(v))
			if v == st.failAt {
				pr.dead.mark()
				return nil, errR86Fail
			}
			if st.kind == 3 {
				// A run inside the run, over a fused stage of its own.
				got, err := sink.Reduce(ctx, stage.Map(source.Slice(ints(v%5)), double, stage.Workers(2)), 0,
					func(acc, x int) int { return acc + x })
				if err != nil {
					return nil, err
				}
				if want := (v % 5) * (v%5 - 1); got != want {
					return nil, fmt.Errorf("r86: nested run got %d, want %d", got, want)
				}
			}
			return r86apply(st, v), nil
		}
		switch st.kind {
		case 0, 3:
			s = stage.Map(s, func(ctx context.Context, v int) (int, error) {
				out, err := call(ctx, v)
				if err != nil {
					return 0, err
				}
				return out[0], nil
			}, opts...)
		case 1:
			s = stage.Filter(s, func(ctx context.Context, v int) (bool, error) {
				out, err := call(ctx, v)
				return len(out) == 1, err
			}, opts...)
		case 2:
			s = stage.FlatMap(s, call, opts...)
		case 4:
			s = stage.Apply(s, func(ctx context.Context, v int, emit func(int) bool) error {
				out, err := call(ctx, v)
				for _, o := range out {
					emit(o)
				}
				return err
			}, opts...)
		}
	}
	switch p.wrap {
	case 1:
		neg := make([]int, 1+p.n%7)
		for i := range neg {
			neg[i] = -1 - i
		}
		s = stage.Merge(s, source.Slice(neg))
	case 2:
		b := stage.Tee(s, 2)
		s = stage.Merge(
			stage.Map(b[0], func(_ context.Context, v int) (int, error) { return v, nil }, stage.Workers(2)),
			stage.Map(b[1], func(_ context.Context, v int) (int, error) { return -v - 1, nil }, stage.Workers(2)))
	case 3:
		s = stage.Unbatch(stage.Batch(s, 3, 0))
	}
	if stop != nil {
		s = stage.Until(s, stop)
	}
	return s
}

// r86check runs p once and reports the first problem, or "".
func r86check(p r86pipe) string {
	want, inputs := r86expected(&p)
	probes := make([]*r86probe, len(p.stages))
	dead := new(r86dead)
	for i := range probes {
		probes[i] = &r86probe{workers: p.stages[i].workers, dead: dead}
	}
	var feed chan int
	produced := new(atomic.Int64)
	feederDone := make(chan struct{})
	stopFeed := make(chan struct{})
	switch p.src {
	case 3, 7:
		feed = make(chan int, p.n)
		for i := range p.n {
			feed <- i
		}
		close(feed)
		close(feederDone)
	case 4:
		feed = make(chan int)
		go func() {
			defer close(feederDone)
			defer close(feed)
			for i := range p.n {
				select {
				case feed <- i:
					produced.Add(1)
				case <-stopFeed:
					return
				}
			}
		}()
	default:
		close(feederDone)
	}
	var feedOnce sync.Once
	endFeed := func() {
		feedOnce.Do(func() {
			close(stopFeed)
			<-feederDone
		})
	}
	defer endFeed()
	failing := false
	for _, st := range p.stages {
		if st.failAt >= 0 {
			failing = true
		}
	}
	stats := new(stage.Stats)
	ctx, cancel := context.WithCancel(stage.Observe(context.Background(), stats))
	defer cancel()
	var stop context.Context
	var drain context.CancelFunc
	if p.snk == 8 {
		stop, drain = context.WithCancel(context.Background())
		defer drain()
	}
	acks := &r86acks{calls: make([]atomic.Int32, p.n), errs: make([]atomic.Pointer[error], p.n)}
	s := r86build(p, probes, feed, produced, stop, acks)

	var got []int
	var err error
	early := false // the sink stopped before the end on purpose
	switch p.snk {
	case 0:
		got, err = sink.Slice(ctx, s)
	case 1:
		bound, bounded := readAhead(p)
		ahead := int64(0)
		err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
			got = append(got, v)
			if bounded {
				ahead = max(ahead, produced.Load()-int64(len(got)))
			}
			return nil
		})
		if ahead > int64(bound) {
			return fmt.Sprintf("read-ahead: %d items taken from the source and not yet seen by the sink, bound %d", ahead, bound)
		}
	case 2:
		for v, e := range sink.All(ctx, s) {
			if e != nil {
				err = e
				break
			}
			got = append(got, v)
			if len(got) == p.stopAt {
				early = true
				dead.mark()
				break
			}
		}
	case 3:
		v, ok, e := sink.First(ctx, s)
		if ok {
			got = append(got, v)
		}
		err, early = e, true
	case 4:
		var sum int
		sum, err = sink.Reduce(ctx, s, 0, func(acc, v int) int { got = append(got, v); return acc + v })
		t := 0
		for _, v := range got {
			t += v
		}
		if err == nil && t != sum {
			return fmt.Sprintf("Reduce: %d, want %d", sum, t)
		}
	case 5:
		out := make(chan int)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for v := range out {
				got = append(got, v)
			}
		}()
		err = sink.Chan(ctx, s, out)
		close(out)
		<-done
	case 8:
		err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
			got = append(got, v)
			if len(got) == p.stopAt {
				early = true
				drain()
			}
			return nil
		})
	case 6, 7:
		after := 0
		err = sink.ForEach(ctx, s, func(_ context.Context, v int) error {
			if early {
				after++
				return nil
			}
			got = append(got, v)
			if len(got) == p.stopAt {
				early = true
				dead.mark()
				if p.snk == 7 {
					cancel()
					return nil
				}
				return stage.ErrStop
			}
			return nil
		})
		if after > 0 {
			return fmt.Sprintf("callback called %d times after it stopped or cancelled the run", after)
		}
	}
	endFeed() // its count of items sent is final
	if v := dead.violation.Load(); v != nil {
		return *v
	}
	// Every call ended; none twice; never above Workers(n).
	for i, pr := range probes {
		if pr.now.Load() != 0 {
			return fmt.Sprintf("stage %d: %d calls still running after the sink returned", i, pr.now.Load())
		}
		if w := p.stages[i].workers; w > 0 && pr.max.Load() > int64(w) {
			return fmt.Sprintf("stage %d: %d calls at once, Workers(%d)", i, pr.max.Load(), w)
		}
		bad := ""
		pr.calls.Range(func(k, c any) bool {
			if c.(*atomic.Int32).Load() != 1 {
				bad = fmt.Sprintf("stage %d: input %d called %d times", i, k, c.(*atomic.Int32).Load())
				return false
			}
			if !slices.Contains(inputs[i], k.(int)) {
				bad = fmt.Sprintf("stage %d: called with %d, not one of its inputs", i, k)
				return false
			}
			return true
		})
		if bad != "" {
			return bad
		}
		c, ok := stats.Get(fmt.Sprintf("s%d", i))
		if !ok {
			return fmt.Sprintf("stage %d: no stats", i)
		}
		if c.Received != pr.total.Load() || c.Finished != c.Received || c.InFlight != 0 || c.Running != 0 {
			return fmt.Sprintf("stage %d: stats %+v, calls %d", i, c, pr.total.Load())
		}
	}
	if p.src == 3 || p.src == 7 {
		produced.Store(int64(p.n - len(feed)))
	}
	base := want
	switch p.wrap {
	case 1:
		for i := range 1 + p.n%7 {
			want = append(want, -1-i)
		}
	case 2:
		want = nil
		for _, v := range base {
			want = append(want, v, -v-1)
		}
	}
	if p.snk == 8 && !failing {
		// Drained: every output of every item the source produced arrived.
		if err != nil && !(p.src == 6 || p.src == 7) {
			return fmt.Sprintf("drain: err %v", err)
		}
		pp := *p.copyN(int(produced.Load()))
		full, _ := r86expected(&pp)
		seen := map[int]int{}
		for _, v := range got {
			seen[v]++
		}
		for _, v := range full {
			if p.wrap == 2 {
				if seen[v] != 1 || seen[-v-1] != 1 {
					return fmt.Sprintf("drain: output %d of the %d items produced delivered %d/%d times", v, pp.n, seen[v], seen[-v-1])
				}
				continue
			}
			if seen[v] != 1 {
				return fmt.Sprintf("drain: output %d of the %d items produced delivered %d times (got %d items)", v, pp.n, seen[v], len(got))
			}
		}
	}
	if p.src == 8 {
		if problem := r86checkAcks(p, got, err, acks); problem != "" {
			return problem
		}
	}
	// What the sink got: no duplicates, each one expected.
	left := map[int]int{}
	for _, v := range want {
		left[v]++
	}
	for _, v := range got {
		if left[v] == 0 {
			return fmt.Sprintf("got %d, unexpected or twice (got %v)", v, got)
		}
		left[v]--
	}
	if p.snk == 7 && early {
		if err == nil || !errorsIsCanceled(err) {
			return fmt.Sprintf("cancelled run: err %v", err)
		}
		return ""
	}
	if failing {
		// FailFast at failAt: the error, unless the sink stopped first.
		if err == nil {
			if !early {
				return fmt.Sprintf("failing run: nil error with %d of %d items", len(got), len(want))
			}
			return ""
		}
		var se *stage.Error
		if !errorsAs(err, &se) || !errorsIs(err, errR86Fail) {
			return fmt.Sprintf("failing run: err %v", err)
		}
		return ""
	}
	srcFails := p.src == 6 || p.src == 7
	if srcFails {
		var se *stage.SourceError
		switch {
		case err == nil && (early || p.snk == 3):
			// stopped (or drained) before the failure mattered
		case err == nil:
			return fmt.Sprintf("source failed, err nil, got %d of %d", len(got), len(want))
		case !errorsAs(err, &se) || !errorsIs(err, errR86Source):
			return fmt.Sprintf("source failed: err %v", err)
		case p.wrap == 1 && len(got) < len(base):
			// the other input of the Merge stops with the failure
			return fmt.Sprintf("source failed after its items: got %v, want %v and some negatives", got, base)
		case p.wrap != 1 && len(got) != len(want):
			return fmt.Sprintf("source failed after its items: got %d of %d (early=%v): %v, want %v", len(got), len(want), early, got, want)
		}
		if err != nil {
			if orderKept(p) && !slices.Equal(got, want) {
				return fmt.Sprintf("order: got %v, want %v", got, want)
			}
			return ""
		}
	}
	if err != nil {
		return fmt.Sprintf("err %v", err)
	}
	if early {
		if p.snk == 3 {
			if len(want) > 0 && len(got) != 1 || len(want) == 0 && len(got) != 0 {
				return fmt.Sprintf("First got %v of %d", got, len(want))
			}
			if len(got) == 1 && orderKept(p) && got[0] != want[0] {
				return fmt.Sprintf("First got %d, want %d", got[0], want[0])
			}
		}
		if orderKept(p) && !slices.Equal(got, want[:len(got)]) {
			return fmt.Sprintf("order: got %v, want a prefix of %v", got, want)
		}
		return ""
	}
	if len(got) != len(want) {
		return fmt.Sprintf("got %d items, want %d", len(got), len(want))
	}
	if orderKept(p) && !slices.Equal(got, want) {
		return fmt.Sprintf("order: got %v, want %v", got, want)
	}
	if p.snk == 2 || p.snk == 6 || p.snk == 7 {
		if p.stopAt > 0 && p.stopAt <= len(want) {
			return fmt.Sprintf("sink should have stopped at %d of %d", p.stopAt, len(want))
		}
	}
	return ""
}

// readAhead is how many source items the pipeline may hold that the sink's
// callback has not seen: each stage's workers plus buffer (plus workers
// again when Ordered), and one handed to the sink while it waited (see
// Run); only for pipelines of one output per item.
func readAhead(p r86pipe) (int, bool) {
	if p.wrap != 0 || p.src == 5 {
		return 0, false
	}
	n := 1
	for _, s := range p.stages {
		if s.kind == 1 || s.kind == 2 || s.workers < 0 {
			return 0, false
		}
		n += s.workers + s.buffer
		if s.ordered {
			n += s.workers
		}
	}
	return n, true
}

// r86outputsOf is what source item i leads to at the end of the stages,
// and whether it reaches stage si with input value at (si < 0: none).
func r86outputsOf(p r86pipe, i int, si, at int) (outs []int, reaches bool) {
	cur := []int{i}
	for k, st := range p.stages {
		if k == si && slices.Contains(cur, at) {
			reaches = true
		}
		var next []int
		for _, v := range cur {
			next = append(next, r86apply(st, v)...)
		}
		cur = next
	}
	return cur, reaches
}

// r86checkAcks: an item told nil had every output committed; an item
// whose outputs were all committed was told nil; none told twice; the item
// at which FailFast ended the run told its error.
func r86checkAcks(p r86pipe, got []int, err error, acks *r86acks) string {
	seen := map[int]int{}
	for _, v := range got {
		seen[v]++
	}
	failSt, failAt := -1, 0
	for k, st := range p.stages {
		if st.failAt >= 0 {
			failSt, failAt = k, st.failAt
		}
	}
	for i := range p.n {
		c := acks.calls[i].Load()
		if c > 1 {
			return fmt.Sprintf("ack: item %d told %d times", i, c)
		}
		var told error
		if e := acks.errs[i].Load(); e != nil {
			told = *e
		}
		outs, failed := r86outputsOf(p, i, failSt, failAt)
		all := true
		for _, v := range outs {
			switch p.wrap {
			case 2:
				if seen[v] == 0 || seen[-v-1] == 0 {
					all = false
				}
			default:
				if seen[v] == 0 {
					all = false
				}
			}
		}
		if c == 1 && told == nil && !all {
			return fmt.Sprintf("ack: item %d told nil, but not every output of %v was committed (got %v)", i, outs, got)
		}
		if len(outs) > 0 && all && !failed && (c != 1 || told != nil) {
			return fmt.Sprintf("ack: item %d had every output %v committed, told %d times (err %v)", i, outs, c, told)
		}
		if failed && errorsIs(err, errR86Fail) && (c != 1 || told == nil) {
			return fmt.Sprintf("ack: item %d failed the run (%v), told %d times (err %v)", i, err, c, told)
		}
	}
	return ""
}

// copyN is p over its first n source items.
func (p r86pipe) copyN(n int) *r86pipe {
	q := p
	q.n = n
	q.stages = slices.Clone(p.stages)
	return &q
}

// orderKept: every stage keeps its input's order.
func orderKept(p r86pipe) bool {
	if p.wrap == 1 || p.wrap == 2 {
		return false
	}
	for _, s := range p.stages {
		if s.keyed || !(s.ordered || s.workers == 1) {
			return false
		}
	}
	return true
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func errorsAs(err error, target any) bool { return errors.As(err, target) }

func errorsIsCanceled(err error) bool { return errors.Is(err, context.Canceled) }
