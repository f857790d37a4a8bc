package stage_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r43Reps is how many times each racing scenario runs.
const r43Reps = 300

// r43Barrier lets n parties go on together once all have arrived.
type r43Barrier struct {
	n       int32
	arrived atomic.Int32
	all     chan struct{}
}

func newR43Barrier(n int) *r43Barrier {
	return &r43Barrier{n: int32(n), all: make(chan struct{})}
}

// arrive counts the caller and waits for the others (a hang detector only).
func (b *r43Barrier) arrive() {
	if b.arrived.Add(1) == b.n {
		close(b.all)
	}
	b.wait()
}

func (b *r43Barrier) wait() {
	select {
	case <-b.all:
	case <-time.After(runcheck.Watchdog):
		panic("review43: barrier hung")
	}
}

// r43Probe collects what calls in flight see as the run's cause.
type r43Probe struct {
	mu     sync.Mutex
	causes []error
	bad    []string
}

func (p *r43Probe) note(c error) {
	p.mu.Lock()
	p.causes = append(p.causes, c)
	p.mu.Unlock()
}

func (p *r43Probe) violation(format string, args ...any) {
	p.mu.Lock()
	p.bad = append(p.bad, fmt.Sprintf(format, args...))
	p.mu.Unlock()
}

// await waits for ctx to end and records its cause.
func (p *r43Probe) await(ctx context.Context) error {
	select {
	case <-ctx.Done():
	case <-time.After(runcheck.Watchdog):
		panic("review43: a call in flight never saw ctx.Done()")
	}
	p.note(context.Cause(ctx))
	return ctx.Err()
}

// r43Identical reports whether a and b are the same error value, without
// == on an uncomparable type.
func r43Identical(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ta, tb := reflect.TypeOf(a), reflect.TypeOf(b)
	if ta != tb {
		return false
	}
	if !ta.Comparable() {
		return false
	}
	defer func() { recover() }() // an interface field holding an uncomparable value
	return a == b
}

// r43Sink runs a stream and returns the sink's error.
type r43Sink func(ctx context.Context, s stage.Stream[int]) error

func r43Sinks() map[string]r43Sink {
	return map[string]r43Sink{
		"run": func(ctx context.Context, s stage.Stream[int]) error {
			return stage.Run(ctx, s, func(context.Context, int, error) error { return nil })
		},
		"foreach": func(ctx context.Context, s stage.Stream[int]) error {
			return sink.ForEach(ctx, s, func(context.Context, int) error { return nil })
		},
		"slice": func(ctx context.Context, s stage.Stream[int]) error {
			_, err := sink.Slice(ctx, s)
			return err
		},
	}
}

// r43Fn is a stage function of the matrix: the role of item i decides what
// it does.
type r43Fn func(ctx context.Context, i int) (int, error)

// r43Shape builds a pipeline of items 0..n-1 whose calls are fn; the
// calls of every item in the pipeline run at once (given enough items).
type r43Shape struct {
	build func(n int, fn r43Fn) stage.Stream[int]
	// bounded: at most 3 calls at once, so that a fourth item can start only
	// once one of the first three has returned.
	bounded bool
}

func r43Shapes() map[string]r43Shape {
	w3 := stage.Workers(3)
	mapOf := func(opts ...stage.Option) func(n int, fn r43Fn) stage.Stream[int] {
		return func(n int, fn r43Fn) stage.Stream[int] {
			return stage.Map(source.Slice(ints(n)), fn, opts...)
		}
	}
	return map[string]r43Shape{
		"map":       {build: mapOf(w3), bounded: true},
		"map-ord":   {build: mapOf(w3, stage.Ordered()), bounded: true},
		"map-unlim": {build: mapOf(stage.Workers(-1))},
		"map-buf":   {build: mapOf(w3, stage.Buffer(1)), bounded: true},
		"keyby":     {build: mapOf(w3, stage.KeyBy(func(i int) int { return i })), bounded: true},
		"keyby-ord": {build: mapOf(w3, stage.Ordered(), stage.KeyBy(func(i int) int { return i })), bounded: true},
		"timeout":   {build: mapOf(w3, stage.Timeout(time.Hour)), bounded: true},
		"ratelimit": {build: mapOf(w3, stage.RateLimit(1e9, 16)), bounded: true},
		"retry":     {build: mapOf(w3, stage.Retry(3, 0)), bounded: true},
		"chan-src": {build: func(n int, fn r43Fn) stage.Stream[int] {
			ch := make(chan int, n)
			for i := range n {
				ch <- i
			}
			close(ch)
			return stage.Map(source.Chan(ch), fn, w3)
		}, bounded: true},
		"filter": {build: func(n int, fn r43Fn) stage.Stream[int] {
			return stage.Filter(source.Slice(ints(n)), func(ctx context.Context, i int) (bool, error) {
				_, err := fn(ctx, i)
				return true, err
			}, w3)
		}, bounded: true},
		"flatmap": {build: func(n int, fn r43Fn) stage.Stream[int] {
			return stage.FlatMap(source.Slice(ints(n)), func(ctx context.Context, i int) ([]int, error) {
				v, err := fn(ctx, i)
				return []int{v}, err
			}, w3)
		}, bounded: true},
		"apply-ord": {build: func(n int, fn r43Fn) stage.Stream[int] {
			return stage.Apply(source.Slice(ints(n)), func(ctx context.Context, i int, emit func(int) bool) error {
				v, err := fn(ctx, i)
				if err == nil {
					emit(v)
				}
				return err
			}, w3, stage.Ordered())
		}, bounded: true},
		"concurrent": {build: func(n int, fn r43Fn) stage.Stream[int] {
			tasks := stage.Map(source.Slice(ints(n)), func(_ context.Context, i int) (func(context.Context) (int, error), error) {
				return func(ctx context.Context) (int, error) { return fn(ctx, i) }, nil
			}, stage.Workers(1))
			return stage.Concurrent(tasks, w3)
		}, bounded: true},
		"batch": {build: func(n int, fn r43Fn) stage.Stream[int] {
			return stage.Unbatch(stage.Batch(stage.Map(source.Slice(ints(n)), fn, w3), 2, 0))
		}, bounded: true},
		"downstream": {build: func(n int, fn r43Fn) stage.Stream[int] {
			return stage.Map(stage.Map(source.Slice(ints(n)), fn, w3), double, stage.Workers(2))
		}, bounded: true},
		"merge": {build: func(n int, fn r43Fn) stage.Stream[int] {
			var ins []stage.Stream[int]
			for i := range n {
				ins = append(ins, stage.Map(source.Slice([]int{i}), fn, stage.Workers(1)))
			}
			return stage.Merge(ins...)
		}},
		"tee": {build: func(n int, fn r43Fn) stage.Stream[int] {
			bs := stage.Tee(source.Slice([]int{0}), n)
			var ins []stage.Stream[int]
			for k, b := range bs {
				ins = append(ins, stage.Map(b, func(ctx context.Context, _ int) (int, error) { return fn(ctx, k) }, stage.Workers(1)))
			}
			return stage.Merge(ins...)
		}},
	}
}

// r43Names returns the keys of m sorted, for stable subtest order.
func r43Names[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	for i := range ks {
		for j := i + 1; j < len(ks); j++ {
			if ks[j] < ks[i] {
				ks[i], ks[j] = ks[j], ks[i]
			}
		}
	}
	return ks
}

// r43StageErr returns err as a *stage.Error when it is one (not wrapped).
func r43StageErr(err error) (*stage.Error, bool) {
	se, ok := err.(*stage.Error)
	return se, ok
}

var (
	errR43A = errors.New("review43: A")
	errR43B = errors.New("review43: B")
	errR43P = errors.New("review43: parent's cause")
	errR43S = errors.New("review43: source")
)

func r43ForEach(ctx context.Context, s stage.Stream[int], cb func(int) error) error {
	return sink.ForEach(ctx, s, func(_ context.Context, v int) error { return cb(v) })
}
