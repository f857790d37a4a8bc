package stage_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"iter"
	"math/rand/v2"
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

var (
	seedFlag  = flag.Uint64("seed", 0, "seed of TestRandomPipelines (0: from the clock)")
	pipelines = flag.Int("pipelines", 300, "how many pipelines TestRandomPipelines builds")
)

// TestRandomPipelines builds many random pipelines (sources, stages, worker
// counts, ordering, policies, injected errors and panics, early exits,
// cancellation) and checks each run against a model: every source item
// accounted for exactly once, no user call after the sink returned, worker
// bounds respected, the right error types.
func TestRandomPipelines(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for i := range *pipelines {
		p := randomPipeline(rng)
		if !t.Run(fmt.Sprint(i), func(t *testing.T) { p.check(t) }) && p.hung.Load() {
			t.Fatalf("pipeline %d hung: the rest are not run (each could hang as long)", i)
		}
	}
}

// stageSpec is one random stage: its kind, options and injected failures.
type stageSpec struct {
	name     string
	kind     string // map, filter, flatmap
	workers  int
	ordered  bool
	policy   stage.ErrorPolicy
	buffer   int
	errEvery int // ids with id%errEvery == 1 fail (0: none)
	dropMod  int // filter and flatmap drop ids with id%dropMod == 0
	slowFrom int // ids from slowFrom on take 30µs (0: never), so that a
	// stage whose cheap calls ran in its consumer gives the place back
	handles bool // failed items go to a Handle policy that drops them
	keyed   bool // KeyBy(id % 3)
	size    int  // batch: Unbatch(Batch(in, size, timeout)); batchmap: a Map over the batches between
	timeout time.Duration

	gauge gauge
	mu    sync.Mutex
	busy  map[int]bool // keyed: keys with a call running
}

func (s *stageSpec) String() string {
	if s.kind == "batch" || s.kind == "batchmap" {
		return fmt.Sprintf("%s %s size=%d timeout=%v workers=%d", s.name, s.kind, s.size, s.timeout, s.workers)
	}
	return fmt.Sprintf("%s %s workers=%d ordered=%v %v handles=%v keyed=%v buffer=%d errEvery=%d dropMod=%d slowFrom=%d",
		s.name, s.kind, s.workers, s.ordered, s.policy, s.handles, s.keyed, s.buffer, s.errEvery, s.dropMod, s.slowFrom)
}

func (s *stageSpec) fails(id int) bool { return s.errEvery > 0 && id%s.errEvery == 1 }
func (s *stageSpec) drops(id int) bool {
	return (s.kind == "filter" || s.kind == "flatmap" || s.kind == "apply") && id%s.dropMod == 0
}

// branch is a source and the stages after it.
type branch struct {
	kind   string // slice, indexed, func, chan, seq, seq2, ack
	base   int    // ids are base, base+1, ...
	n      int
	failAt int  // the source fails instead of producing item failAt (-1: never)
	panics bool // it fails by a panic (always for indexed, whose at cannot return an error)
	stages []*stageSpec
}

type pipeline struct {
	branches []*branch    // one, or two that are merged
	after    []*stageSpec // stages after the merge
	tee      bool         // a Tee of two branches at the end, merged: every item twice
	sinkKind string       // slice, count, all, first, break, foreach-error, cancel, drain
	stopAt   int          // for break, foreach-error, cancel and drain
	stop     context.Context
	drain    context.CancelFunc // drain: stops the sources (Until) after stopAt values
	hung     atomic.Bool        // the run had not returned after the watchdog (see check)

	mu       sync.Mutex
	handled  map[string]bool // "stage/id" of items dropped by Handle policies
	produced map[int]bool    // ids that func and indexed sources produced
	acked    map[int][]error // ack sources: each Done call, per id
	keyClash atomic.Bool     // two calls of one key ran at once in a keyed stage

	failedCommit int  // foreach-error: the value whose callback failed (-1: none)
	unknown      bool // count: which values the sink committed is not known

	returned atomic.Bool // set when the sink returned
	called   atomic.Bool // a user function ran after that
	chans    []chan int  // channels fed to chan sources, drained afterwards
	feeders  sync.WaitGroup
}

func randomStage(rng *rand.Rand, name string) *stageSpec {
	s := &stageSpec{
		name:    name,
		kind:    []string{"map", "filter", "flatmap", "apply"}[rng.IntN(4)],
		workers: []int{1, 2, 4, -1, 70}[rng.IntN(5)], // 70: past the 64 a stage starts at once
		ordered: rng.IntN(2) == 0,
		policy:  []stage.ErrorPolicy{stage.FailFast, stage.Forward}[rng.IntN(2)],
		buffer:  []int{0, 0, 1, 3}[rng.IntN(4)],
		dropMod: 2 + rng.IntN(5),
	}
	if rng.IntN(3) == 0 {
		s.errEvery = 5 + rng.IntN(30)
	}
	s.handles = rng.IntN(4) == 0
	s.keyed = rng.IntN(5) == 0
	if rng.IntN(6) == 0 {
		// Unbatch(Batch(in)), or with a stage over whole batches between,
		// which reverses each batch (named "batch", a name that must not
		// fool Unbatch into splitting acknowledgements by position).
		s.kind = []string{"batch", "batchmap"}[rng.IntN(2)]
		s.errEvery, s.slowFrom, s.handles, s.keyed = 0, 0, false, false
		s.size, s.timeout = 1+rng.IntN(5), []time.Duration{0, time.Millisecond}[rng.IntN(2)]
		return s
	}
	if rng.IntN(4) == 0 {
		s.slowFrom = 20 + rng.IntN(60)
	}
	return s
}

func randomBranch(rng *rand.Rand, base int, stages *int) *branch {
	b := &branch{
		kind:   []string{"slice", "func", "chan", "seq", "seq2", "ack", "indexed"}[rng.IntN(7)],
		base:   base,
		n:      rng.IntN(150),
		failAt: -1,
	}
	if (b.kind == "func" || b.kind == "seq2" || b.kind == "indexed") && b.n > 0 && rng.IntN(4) == 0 {
		b.failAt = rng.IntN(b.n)
		b.panics = b.kind == "indexed" || b.kind == "func" && rng.IntN(2) == 0
	}
	for range rng.IntN(3) + 1 {
		*stages++
		b.stages = append(b.stages, randomStage(rng, fmt.Sprintf("s%d", *stages)))
	}
	return b
}

func randomPipeline(rng *rand.Rand) *pipeline {
	p := &pipeline{}
	stages := 0
	p.branches = append(p.branches, randomBranch(rng, 0, &stages))
	if rng.IntN(4) == 0 {
		p.branches = append(p.branches, randomBranch(rng, 1000, &stages))
		for range rng.IntN(2) {
			stages++
			p.after = append(p.after, randomStage(rng, fmt.Sprintf("s%d", stages)))
		}
	}
	p.tee = rng.IntN(5) == 0
	p.sinkKind = []string{"slice", "slice", "count", "all", "first", "break", "foreach-error", "cancel", "drain", "drain"}[rng.IntN(10)]
	p.stopAt = rng.IntN(40)
	p.stop, p.drain = context.WithCancel(context.Background())
	p.handled, p.produced, p.acked = map[string]bool{}, map[int]bool{}, map[int][]error{}
	p.failedCommit = -1
	return p
}

// alive is called by every user function: none may run after the sink returned.
func (p *pipeline) alive() {
	if p.returned.Load() {
		p.called.Store(true)
	}
}

func (b *branch) source(p *pipeline) stage.Stream[int] {
	produce := func(i int) (int, error) {
		if i == b.failAt {
			if b.panics {
				panic(errBoom)
			}
			return 0, errBoom
		}
		return b.base + i, nil
	}
	switch b.kind {
	case "slice":
		ids := make([]int, b.n)
		for i := range ids {
			ids[i] = b.base + i
		}
		return source.Slice(ids)
	case "func":
		i := 0
		return source.Func(func(context.Context) (int, error) {
			p.alive()
			if i == b.n {
				return 0, errEOF
			}
			i++
			v, err := produce(i - 1)
			if err == nil {
				p.mu.Lock()
				p.produced[v] = true
				p.mu.Unlock()
			}
			return v, err
		})
	case "indexed":
		// Positions are claimed concurrently, so items after failAt may be
		// made before its panic: the model delivers those that were.
		return stage.Indexed(b.n, func(i int) int {
			p.alive()
			v, _ := produce(i)
			p.mu.Lock()
			p.produced[v] = true
			p.mu.Unlock()
			return v
		})
	case "chan":
		ch := make(chan int)
		p.chans = append(p.chans, ch)
		p.feeders.Add(1)
		go func() {
			defer p.feeders.Done()
			defer close(ch)
			for i := range b.n {
				ch <- b.base + i
			}
		}()
		return source.Chan(ch)
	case "seq":
		return source.Seq(func(yield func(int) bool) {
			for i := range b.n {
				p.alive()
				if !yield(b.base + i) {
					return
				}
			}
		})
	case "ack":
		return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
			i := 0
			return func(context.Context) (int, stage.Ack, error) {
				p.alive()
				if i == b.n {
					return 0, nil, errEOF
				}
				i++
				id := b.base + i - 1
				return id, randomAck{p, id}, nil
			}, nil
		})
	default: // seq2
		return source.Seq2(iter.Seq2[int, error](func(yield func(int, error) bool) {
			for i := range b.n {
				p.alive()
				v, err := produce(i)
				if !yield(v, err) || err != nil {
					return
				}
			}
		}))
	}
}

func (s *stageSpec) build(p *pipeline, in stage.Stream[int]) stage.Stream[int] {
	switch s.kind {
	case "batch":
		return stage.Unbatch(stage.Batch(in, s.size, s.timeout))
	case "batchmap":
		b := stage.Map(stage.Batch(in, s.size, s.timeout), func(_ context.Context, b []int) ([]int, error) {
			p.alive()
			slices.Reverse(b)
			return b, nil
		}, stage.Name("batch"), stage.Workers(s.workers))
		return stage.Unbatch(b)
	}
	policy := s.policy
	if s.handles {
		policy = stage.Handle(func(_ context.Context, e *stage.Error) error {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.handled[fmt.Sprintf("%s/%v", e.Stage, e.Input)] = true
			return nil
		})
	}
	opts := []stage.Option{stage.Name(s.name), stage.Workers(s.workers), stage.OnError(policy), stage.Buffer(s.buffer)}
	if s.ordered {
		opts = append(opts, stage.Ordered())
	}
	if s.keyed {
		opts = append(opts, stage.KeyBy(func(id int) int { return id % 3 }))
	}
	enter := func(id int) error {
		p.alive()
		s.gauge.enter()
		defer s.gauge.leave()
		if s.keyed {
			s.mu.Lock()
			if s.busy == nil {
				s.busy = map[int]bool{}
			}
			if s.busy[id%3] {
				p.keyClash.Store(true)
			}
			s.busy[id%3] = true
			s.mu.Unlock()
			defer func() {
				s.mu.Lock()
				s.busy[id%3] = false
				s.mu.Unlock()
			}()
		}
		if s.slowFrom > 0 && id%1000 >= s.slowFrom {
			time.Sleep(30 * time.Microsecond)
		}
		if s.fails(id) {
			if id%2 == 1 {
				panic(errBoom)
			}
			return errBoom
		}
		return nil
	}
	switch s.kind {
	case "map":
		return stage.Map(in, func(_ context.Context, id int) (int, error) { return id, enter(id) }, opts...)
	case "filter":
		return stage.Filter(in, func(_ context.Context, id int) (bool, error) { return !s.drops(id), enter(id) }, opts...)
	case "apply":
		// Emits before it returns, then lets others run: its item's output
		// may be committed, and the run end, while the worker still holds
		// the item.
		return stage.Apply(in, func(_ context.Context, id int, emit func(int) bool) error {
			if err := enter(id); err != nil || s.drops(id) {
				return err
			}
			emit(id)
			for range id % 4 {
				runtime.Gosched()
			}
			return nil
		}, opts...)
	default:
		return stage.FlatMap(in, func(_ context.Context, id int) ([]int, error) {
			if err := enter(id); err != nil || s.drops(id) {
				return nil, err
			}
			return []int{id}, nil
		}, opts...)
	}
}

func (p *pipeline) build() stage.Stream[int] {
	var outs []stage.Stream[int]
	for _, b := range p.branches {
		s := b.source(p)
		if p.sinkKind == "drain" {
			s = stage.Until(s, p.stop)
		}
		for _, st := range b.stages {
			s = st.build(p, s)
		}
		outs = append(outs, s)
	}
	s := outs[0]
	if len(outs) > 1 {
		s = stage.Merge(outs...)
	}
	for _, st := range p.after {
		s = st.build(p, s)
	}
	if p.tee {
		// Copy 1 of every item is id + copyBase.
		b := stage.Tee(s, 2)
		second := stage.Map(b[1], func(_ context.Context, id int) (int, error) { return id + copyBase, nil }, stage.Workers(2))
		s = stage.Merge(b[0], second)
	}
	return s
}

// copyBase marks the second copy of an item made by a pipeline's Tee.
const copyBase = 1_000_000

// copies is how many times each item reaches the sink.
func (p *pipeline) copies() int {
	if p.tee {
		return 2
	}
	return 1
}

// model is what a run that is not cut short must deliver.
type model struct {
	values    []int           // ids that reach the sink, in source order per branch
	forwarded map[string]bool // "stage/id" of forwarded errors
	fatal     map[string]bool // "stage/id" of FailFast errors that may end the run
	handled   map[string]bool // "stage/id" of items a Handle policy drops
	srcErr    bool
}

func (p *pipeline) model() model {
	m := model{forwarded: map[string]bool{}, fatal: map[string]bool{}, handled: map[string]bool{}}
	for _, b := range p.branches {
		m.srcErr = m.srcErr || b.failAt >= 0
	next:
		for i := range b.n {
			id := b.base + i
			if b.failAt >= 0 && i >= b.failAt && (b.kind != "indexed" || i == b.failAt || !p.produced[id]) {
				continue // not made: the source failed first
			}
			for _, st := range append(slices.Clone(b.stages), p.after...) {
				switch {
				case st.fails(id) && st.handles:
					m.handled[fmt.Sprintf("%s/%d", st.name, id)] = true
					continue next
				case st.fails(id) && st.policy == stage.Forward:
					m.forwarded[fmt.Sprintf("%s/%d", st.name, id)] = true
					continue next
				case st.fails(id):
					m.fatal[fmt.Sprintf("%s/%d", st.name, id)] = true
					continue next
				case st.drops(id):
					continue next
				}
			}
			m.values = append(m.values, id)
		}
	}
	return m
}

func (p *pipeline) describe() string {
	s := fmt.Sprintf("sink %s(stop at %d) tee=%v", p.sinkKind, p.stopAt, p.tee)
	for i, b := range p.branches {
		s += fmt.Sprintf("\n branch %d: %s n=%d failAt=%d panics=%v", i, b.kind, b.n, b.failAt, b.panics)
		for _, st := range b.stages {
			s += "\n  " + st.String()
		}
	}
	for _, st := range p.after {
		s += "\n after merge: " + st.String()
	}
	return s
}

// run runs the pipeline with its sink and returns the values and errors
// (forwarded, then the one that ended the run) that came out.
func (p *pipeline) run() (values []int, forwarded []error, nfwd int, end error) {
	ctx := context.Background()
	s := p.build()
	// Sinks join the error that ended the run (first) and a
	// *sink.ForwardedError; All yields forwarded errors one by one.
	split := func(err error) {
		if err == nil {
			return
		}
		errs := []error{err}
		if joined, ok := err.(interface{ Unwrap() []error }); ok && !isForwardedError(err) {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			var fe *sink.ForwardedError
			switch {
			case errors.As(e, &fe) && e == error(fe):
				forwarded = append(forwarded, fe.Sample...)
				nfwd += fe.Count - len(fe.Sample)
			case p.isForwarded(e):
				forwarded = append(forwarded, e)
			default:
				end = e
			}
		}
	}
	switch p.sinkKind {
	case "slice":
		var err error
		values, err = sink.Slice(ctx, s)
		split(err)
	case "count":
		// Count gives no values; collect them with a spy stage instead.
		var mu sync.Mutex
		s = stage.Map(s, func(_ context.Context, id int) (int, error) {
			mu.Lock()
			values = append(values, id)
			mu.Unlock()
			return id, nil
		}, stage.Workers(1))
		n, err := sink.Count(ctx, s)
		p.unknown = true // the spy saw values that a cut-short Count may not have
		split(err)
		if end == nil && n != len(values) {
			end = fmt.Errorf("Count = %d, but %d values passed", n, len(values))
		}
	case "first":
		v, ok, err := sink.First(ctx, s)
		if ok {
			values = append(values, v)
		}
		split(err)
	case "all", "break":
		for v, err := range sink.All(ctx, s) {
			if err != nil {
				split(err)
				continue
			}
			values = append(values, v)
			if p.sinkKind == "break" && len(values) > p.stopAt {
				break
			}
		}
	case "foreach-error":
		split(sink.ForEach(ctx, s, func(_ context.Context, id int) error {
			values = append(values, id)
			if len(values) > p.stopAt {
				p.failedCommit = id
				return errStopAt
			}
			return nil
		}))
	case "drain":
		// stage.Run, which hands over every forwarded error (a sink keeps a
		// sample), so that the check can account for each item.
		split(stage.Run(ctx, s, func(_ context.Context, id int, err error) error {
			if err != nil {
				forwarded = append(forwarded, err)
				return nil
			}
			values = append(values, id)
			if len(values) > p.stopAt {
				p.drain()
			}
			return nil
		}))
	case "cancel":
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		split(sink.ForEach(ctx, s, func(_ context.Context, id int) error {
			values = append(values, id)
			if len(values) > p.stopAt {
				cancel()
			}
			return nil
		}))
	}
	nfwd += len(forwarded)
	return values, forwarded, nfwd, end
}

var errStopAt = errors.New("stop at")

func isForwardedError(err error) bool {
	_, ok := err.(*sink.ForwardedError)
	return ok
}

// isForwarded reports whether err is an item error of a Forward stage.
func (p *pipeline) isForwarded(err error) bool {
	var se *stage.Error
	if !errors.As(err, &se) {
		return false
	}
	for _, st := range p.stages() {
		if st.name == se.Stage {
			return st.policy == stage.Forward && !st.handles
		}
	}
	return false
}

func (p *pipeline) stages() []*stageSpec {
	var all []*stageSpec
	for _, b := range p.branches {
		all = append(all, b.stages...)
	}
	return append(all, p.after...)
}

func (p *pipeline) check(t *testing.T) {
	var values []int
	var forwarded []error
	var nfwd int
	var end error
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		values, forwarded, nfwd, end = p.run()
	}()
	select {
	case <-ran:
	case <-time.After(runcheck.Watchdog): // a hang bound only: fail this pipeline, not the whole suite at its timeout
		p.hung.Store(true)
		t.Fatalf("hang: the run had not returned after %v\npipeline: %s", runcheck.Watchdog, p.describe())
	}
	p.returned.Store(true)
	// Let the channel feeders finish: sources leave items in the channels.
	for _, ch := range p.chans {
		for range ch {
		}
	}
	p.feeders.Wait()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf(format+"\npipeline: %s\nvalues %v\nforwarded %v\nend %v", append(args, p.describe(), values, forwarded, end)...)
	}
	if p.called.Load() {
		fail("a user function ran after the sink returned")
	}
	if p.keyClash.Load() {
		fail("a keyed stage ran two calls of one key at once")
	}
	for _, st := range p.stages() {
		if st.workers > 0 && st.gauge.max > st.workers {
			fail("stage %s ran %d calls at once, want at most %d", st.name, st.gauge.max, st.workers)
		}
	}
	m := p.model()
	// No value twice, none that the model does not deliver.
	seen := map[int]bool{}
	for _, v := range values {
		if seen[v] {
			fail("value %d delivered twice", v)
		}
		seen[v] = true
	}
	for _, v := range values {
		if !slices.Contains(m.values, v%copyBase) {
			fail("value %d delivered, the model drops it", v)
		}
	}
	for _, e := range forwarded {
		var se *stage.Error
		if !errors.As(e, &se) || !errors.Is(e, errBoom) || !m.forwarded[fmt.Sprintf("%s/%v", se.Stage, se.Input)] {
			fail("forwarded error %v is not one the model forwards", e)
		}
	}
	for h := range p.handled {
		if !m.handled[h] {
			fail("item %s went to a Handle policy, the model has no failure there", h)
		}
	}
	if p.ordered() && !slices.IsSorted(values) {
		fail("an ordered pipeline delivered %v out of order", values)
	}
	// The error that ended the run must be of a kind that could end it.
	var se *stage.Error
	var srcErr *stage.SourceError
	switch {
	case end == nil:
	case errors.As(end, &srcErr):
		if !m.srcErr || !errors.Is(end, errBoom) {
			fail("unexpected source error")
		}
	case errors.Is(end, errStopAt):
		if p.sinkKind != "foreach-error" || !errors.As(end, &se) || se.Stage != "foreach" {
			fail("callback error not wrapped as the foreach stage's")
		}
	case errors.Is(end, context.Canceled):
		if p.sinkKind != "cancel" {
			fail("cancelled without a cancel")
		}
	case errors.As(end, &se):
		if !m.fatal[fmt.Sprintf("%s/%v", se.Stage, se.Input)] || !errors.Is(end, errBoom) {
			fail("FailFast error %v is not one the model has", end)
		}
	default:
		fail("unexpected error type %T", end)
	}
	// A run that was not cut short delivers exactly the model.
	if p.sinkKind == "drain" && len(m.fatal) == 0 && !m.srcErr {
		p.checkDrained(fail, m, values, forwarded, end)
	}
	cut := len(m.fatal) > 0 || m.srcErr && len(p.branches) > 1 || p.sinkKind == "first" ||
		p.sinkKind == "break" || p.sinkKind == "foreach-error" || p.sinkKind == "cancel" || p.sinkKind == "drain"
	p.checkAcks(fail, m, values, cut || m.srcErr)
	if cut {
		return
	}
	if len(p.handled) != len(m.handled) {
		fail("%d items went to Handle policies, the model has %d", len(p.handled), len(m.handled))
	}
	if len(values) != len(m.values)*p.copies() || nfwd != len(m.forwarded)*p.copies() {
		fail("got %d values and %d forwarded errors, the model has %d and %d", len(values), nfwd, len(m.values)*p.copies(), len(m.forwarded)*p.copies())
	}
	if m.srcErr != (srcErr != nil) {
		fail("source error: got %v, the model has %v", srcErr != nil, m.srcErr)
	}
}

// fails reports whether id fails in a stage that forwards or handles it.
func (m model) fails(id int) bool { return has(m.forwarded, id) || has(m.handled, id) }

// has reports whether a "stage/id" key of set names id.
func has(set map[string]bool, id int) bool {
	suffix := fmt.Sprintf("/%d", id)
	for k := range set {
		if strings.HasSuffix(k, suffix) {
			return true
		}
	}
	return false
}

// checkDrained checks a drained run: it ended without an error, and every
// item a func source produced came out (as a value, a forwarded error, a
// handled failure, or a drop the model makes): nothing taken was lost.
func (p *pipeline) checkDrained(fail func(string, ...any), m model, values []int, forwarded []error, end error) {
	if end != nil {
		fail("a drained run ended with %v, want nil", end)
	}
	out := map[int]bool{}
	for _, v := range values {
		out[v%copyBase] = true
	}
	for _, e := range forwarded {
		var se *stage.Error
		if errors.As(e, &se) {
			out[se.Input.(int)] = true
		}
	}
	for h := range p.handled {
		var name string
		var id int
		fmt.Sscanf(strings.Replace(h, "/", " ", 1), "%s %d", &name, &id)
		out[id] = true
	}
	delivered := map[int]bool{}
	for _, v := range m.values {
		delivered[v] = true
	}
	for id := range p.produced {
		if delivered[id] || m.fails(id) {
			if !out[id] {
				fail("item %d was taken from the source and lost in the drain", id)
			}
		}
	}
}

// randomAck records what became of an ack source's item.
type randomAck struct {
	p  *pipeline
	id int
}

func (a randomAck) Done(err error) {
	a.p.mu.Lock()
	defer a.p.mu.Unlock()
	a.p.acked[a.id] = append(a.p.acked[a.id], err)
}

// checkAcks checks the acknowledgements of ack sources against what the
// sink committed, in every run, cut short or not:
//   - an item is told at most once;
//   - told nil only if it was dropped on purpose (a Filter, a Handle policy)
//     or every copy of it reached the sink and was committed;
//   - told an error only if it was forwarded, failed a FailFast stage, or a
//     copy of it failed its commit;
//   - an item every copy of which was committed is told nil, whatever cut
//     the run short (unless a stage over whole batches ties it to items
//     that were not committed);
//   - in a run that was not cut short, every item is told.
func (p *pipeline) checkAcks(fail func(string, ...any), m model, values []int, cut bool) {
	committed := map[int]int{} // copies committed, per id
	for _, v := range values {
		if v != p.failedCommit {
			committed[v%copyBase]++
		}
	}
	delivered := map[int]bool{}
	for _, v := range m.values {
		delivered[v] = true
	}
	all := func(id int) bool { return committed[id] == p.copies() }
	for id, dones := range p.acked {
		failedCommit := p.failedCommit >= 0 && p.failedCommit%copyBase == id
		switch {
		case len(dones) > 1:
			fail("item %d acknowledged %d times", id, len(dones))
		case dones[0] == nil && delivered[id] && !all(id) && !p.unknown:
			fail("item %d acknowledged as done, but %d of its %d copies were committed", id, committed[id], p.copies())
		case dones[0] == nil && has(m.forwarded, id):
			fail("item %d acknowledged as done, but its error was forwarded", id)
		case dones[0] != nil && p.wholeBatches():
			// A batch is settled as one: a member may be told the failure
			// of another item of its batch, but only a failure that happened.
			var se *stage.Error
			if !errors.Is(dones[0], errStopAt) && (!errors.As(dones[0], &se) || !m.forwarded[fmt.Sprintf("%s/%v", se.Stage, se.Input)] && !m.fatal[fmt.Sprintf("%s/%v", se.Stage, se.Input)]) {
				fail("item %d acknowledged with error %v, which is no failure the model has", id, dones[0])
			}
		case dones[0] != nil && !has(m.forwarded, id) && !has(m.fatal, id) && !failedCommit:
			fail("item %d acknowledged with error %v, the model has none", id, dones[0])
		case dones[0] != nil && failedCommit && !errors.Is(dones[0], errStopAt) && !has(m.forwarded, id) && !has(m.fatal, id):
			fail("item %d acknowledged with %v, want its failed commit's error", id, dones[0])
		}
	}
	for _, b := range p.branches {
		if b.kind != "ack" {
			continue
		}
		for i := range b.n {
			id := b.base + i
			switch {
			case !cut && len(p.acked[id]) != 1:
				fail("item %d was never acknowledged in a complete run", id)
			case delivered[id] && all(id) && !p.unknown && !p.wholeBatches() && len(p.acked[id]) != 1:
				fail("item %d: every copy was committed, but it was never acknowledged", id)
			}
		}
	}
}

// ordered reports whether the pipeline keeps source order end to end.
func (p *pipeline) ordered() bool {
	if len(p.branches) > 1 || p.tee {
		return false
	}
	for _, st := range p.stages() {
		switch {
		case st.kind == "batchmap":
			return false // it reverses each batch
		case st.kind != "batch" && !st.ordered && st.workers != 1:
			return false
		}
	}
	return true
}

// wholeBatches reports whether a stage works on whole batches, so that an
// item is acknowledged only with the rest of its batch.
func (p *pipeline) wholeBatches() bool {
	for _, st := range p.stages() {
		if st.kind == "batchmap" {
			return true
		}
	}
	return false
}
