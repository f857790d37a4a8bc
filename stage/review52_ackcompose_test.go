package stage_test

// Review 52: acknowledgements through random compositions of the fan-out,
// fan-in, batching, keyed and emitting operators, with forwarded errors.
//
// Doc (Ack): "Done is called at most once per item"; "Done(nil) when the
// item's way through the pipeline has ended well: the sink committed it
// ..., or every output it led to was committed; or it was dropped on
// purpose: a Filter that did not keep it, a FlatMap or Apply call with no
// output, a Handle policy that accepted its failure. An item that fans out
// (FlatMap, Tee) is done when all its outputs are; ... an Unbatch straight
// after a Batch gives each element its item's acknowledgement back";
// "Done(err) as soon as its way failed, with the first error: a forwarded
// *Error it led to reached the sink". And (Apply) "Outputs emitted before
// an error still go downstream"; (Handle) "outputs it emitted before
// failing stay emitted".
//
// The test checks, for a run that ends at the end of its input:
//   - every item is told exactly once;
//   - an item is told an error iff one of its copies reached the sink as a
//     forwarded error, and that error is an *Error about a copy of it;
//   - no copy of an item reaches the sink after the item was told nil.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

type r52V struct{ orig, seq int }

type r52Tracker struct {
	mu      sync.Mutex
	calls   map[int][]error
	doneNil map[int]bool
}

func (tr *r52Tracker) done(orig int, err error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.calls[orig] = append(tr.calls[orig], err)
	if err == nil {
		tr.doneNil[orig] = true
	}
}

type r52Ack struct {
	tr   *r52Tracker
	orig int
}

func (a r52Ack) Done(err error) { a.tr.done(a.orig, err) }

func r52AckSource(tr *r52Tracker, n int) stage.Stream[r52V] {
	return stage.AckSource(func(context.Context) (func(context.Context) (r52V, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (r52V, stage.Ack, error) {
			if i == n {
				var zero r52V
				return zero, nil, r52EOF
			}
			v := r52V{orig: i}
			i++
			return v, r52Ack{tr, v.orig}, nil
		}, nil
	})
}

func r52Hash(v r52V, k int) int {
	h := uint64(v.orig)*0x9E3779B97F4A7C15 ^ uint64(v.seq)*0xBF58476D1CE4E5B9 ^ uint64(k+1)*0x94D049BB133111EB
	h ^= h >> 31
	h *= 0xD6E8FEB86659FD93
	h ^= h >> 29
	return int(h % 1000003)
}

func r52Next(seq, i int) int { return (seq*3 + i + 1) % 1000003 }

var errR52 = errors.New("r52: item failed")

// r52OnlyOps, when not nil, restricts r52Build to these operators.
var r52OnlyOps []int

// r52FullRun runs the pipeline build makes to its end and counts the
// outputs (values and forwarded errors) each item leads to; total is their
// sum, desc the pipeline's description.
func r52FullRun(t *testing.T, seed int, build func(*r52Tracker) (stage.Stream[r52V], string)) (full map[int]int, total int, desc string) {
	t.Helper()
	full = map[int]int{}
	s, desc := build(&r52Tracker{calls: map[int][]error{}, doneNil: map[int]bool{}})
	if err := stage.Run(context.Background(), s, func(_ context.Context, v r52V, err error) error {
		total++
		if err != nil {
			var e *stage.Error
			errors.As(err, &e)
			full[e.Input.(r52V).orig]++
			return nil
		}
		full[v.orig]++
		return nil
	}); err != nil {
		t.Fatalf("seed %d (%s): full run: %v", seed, desc, err)
	}
	return full, total, desc
}

// r52Build applies a random sequence of operators to s and returns the
// stream with a description of it.
func r52Build(rng *rand.Rand, s stage.Stream[r52V], depth int) (stage.Stream[r52V], string) {
	var desc []string
	for k := range depth {
		w := 1 + rng.IntN(4)
		var opts []stage.Option
		opts = append(opts, stage.Workers(w))
		if rng.IntN(2) == 0 {
			opts = append(opts, stage.Ordered())
		}
		if rng.IntN(3) == 0 {
			opts = append(opts, stage.Buffer(rng.IntN(3)))
		}
		op := rng.IntN(8)
		if r52OnlyOps != nil {
			op = r52OnlyOps[rng.IntN(len(r52OnlyOps))]
		}
		switch op {
		case 0:
			desc = append(desc, fmt.Sprintf("mapFwd(w%d)", w))
			s = stage.Map(s, func(_ context.Context, v r52V) (r52V, error) {
				if r52Hash(v, k)%7 == 0 {
					return v, errR52
				}
				return r52V{v.orig, r52Next(v.seq, 0)}, nil
			}, append(opts, stage.OnError(stage.Forward))...)
		case 1:
			desc = append(desc, fmt.Sprintf("filter(w%d)", w))
			s = stage.Filter(s, func(_ context.Context, v r52V) (bool, error) {
				return r52Hash(v, k)%5 != 0, nil
			}, opts...)
		case 2:
			desc = append(desc, fmt.Sprintf("flatmap(w%d)", w))
			s = stage.FlatMap(s, func(_ context.Context, v r52V) ([]r52V, error) {
				n := r52Hash(v, k) % 3
				out := make([]r52V, n)
				for i := range out {
					out[i] = r52V{v.orig, r52Next(v.seq, i)}
				}
				return out, nil
			}, opts...)
		case 3:
			size := 1 + rng.IntN(4)
			desc = append(desc, fmt.Sprintf("batch(%d)+unbatch", size))
			s = stage.Unbatch(stage.Batch(s, size, 0))
		case 4:
			desc = append(desc, "tee2+merge")
			b := stage.Tee(s, 2)
			s = stage.Merge(b[0], stage.Map(b[1], func(_ context.Context, v r52V) (r52V, error) {
				return r52V{v.orig, r52Next(v.seq, 5)}, nil
			}, stage.Workers(w)))
		case 5:
			desc = append(desc, fmt.Sprintf("keyby(w%d)", w))
			s = stage.Map(s, func(_ context.Context, v r52V) (r52V, error) {
				if r52Hash(v, k)%11 == 0 {
					return v, errR52
				}
				return r52V{v.orig, r52Next(v.seq, 1)}, nil
			}, append(opts, stage.KeyBy(func(v r52V) int { return v.orig % 3 }), stage.OnError(stage.Forward))...)
		case 6:
			desc = append(desc, fmt.Sprintf("applyEmitThenFail+Handle(w%d)", w))
			s = stage.Apply(s, func(_ context.Context, v r52V, emit func(r52V) bool) error {
				h := r52Hash(v, k)
				if h%3 != 0 {
					emit(r52V{v.orig, r52Next(v.seq, 0)})
				}
				if h%4 == 0 {
					return errR52
				}
				return nil
			}, append(opts, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))...)
		case 7:
			desc = append(desc, fmt.Sprintf("applyEmitThenFail+Forward(w%d)", w))
			s = stage.Apply(s, func(_ context.Context, v r52V, emit func(r52V) bool) error {
				h := r52Hash(v, k)
				emit(r52V{v.orig, r52Next(v.seq, 0)})
				if h%6 == 0 {
					emit(r52V{v.orig, r52Next(v.seq, 1)})
					return errR52
				}
				return nil
			}, append(opts, stage.OnError(stage.Forward))...)
		}
	}
	return s, strings.Join(desc, " -> ")
}

func TestReview52AckRandomCompositions(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		const n = 40
		told := map[bool]int{}
		defer func() {
			if !t.Failed() && (told[true] == 0 || told[false] == 0) {
				t.Errorf("the scenarios never told an error or never told nil: %v", told)
			}
		}()
		for seed := range 600 {
			rng := rand.New(rand.NewPCG(uint64(seed), 52))
			tr := &r52Tracker{calls: map[int][]error{}, doneNil: map[int]bool{}}
			s, desc := r52Build(rng, r52AckSource(tr, n), 1+rng.IntN(6))
			errOrigs := map[int]bool{}
			var lateCopies []string
			err := stage.Run(context.Background(), s, func(_ context.Context, v r52V, err error) error {
				if err != nil {
					var e *stage.Error
					if !errors.As(err, &e) {
						return fmt.Errorf("forwarded error is not an *Error: %v", err)
					}
					in, ok := e.Input.(r52V)
					if !ok {
						return fmt.Errorf("forwarded *Error's Input is %T", e.Input)
					}
					errOrigs[in.orig] = true
					return nil
				}
				tr.mu.Lock()
				if tr.doneNil[v.orig] {
					lateCopies = append(lateCopies, fmt.Sprintf("copy %+v reached the sink after item %d was told Done(nil)", v, v.orig))
				}
				tr.mu.Unlock()
				return nil
			})
			if err != nil {
				t.Fatalf("seed %d (%s): Run returned %v, want nil", seed, desc, err)
			}
			tr.mu.Lock()
			for _, p := range lateCopies {
				t.Errorf("seed %d (%s): %s", seed, desc, p)
			}
			for orig := range n {
				calls := tr.calls[orig]
				if len(calls) != 1 {
					t.Errorf("seed %d (%s): item %d told %d times (%v), want exactly once", seed, desc, orig, len(calls), calls)
					continue
				}
				got := calls[0]
				told[got != nil]++
				switch {
				case errOrigs[orig] && got == nil:
					t.Errorf("seed %d (%s): item %d: a forwarded *Error about it reached the sink, but it was told Done(nil)", seed, desc, orig)
				case !errOrigs[orig] && got != nil:
					t.Errorf("seed %d (%s): item %d: no error about it reached the sink, but it was told Done(%v)", seed, desc, orig, got)
				case got != nil:
					var e *stage.Error
					if !errors.As(got, &e) || !errors.Is(got, errR52) {
						t.Errorf("seed %d (%s): item %d told %v, want the forwarded *Error wrapping errR52", seed, desc, orig, got)
					} else if in, ok := e.Input.(r52V); !ok || in.orig != orig {
						t.Errorf("seed %d (%s): item %d told an *Error about input %v", seed, desc, orig, e.Input)
					}
				}
			}
			tr.mu.Unlock()
			if t.Failed() {
				return
			}
		}
	})
}

// Doc (Until): "the sources upstream of Until take no new item ..., while
// every item they already produced goes on through the stages: calls in
// flight finish, Batch flushes its partial batch, and the sink returns nil
// once the last of them has arrived, as at the end of the input"; (Source)
// "an error next returns once stop is done ends the stream quietly"; and
// the Ack promises above: a drained run ends as at the end of its input,
// so every item the source produced is told exactly once, an error iff a
// forwarded error about it reached the sink. The drain comes either from
// the sink's callback after a random number of outputs, or from inside
// next, just before it returns an item (that item was produced: it goes
// on), or, when neither happened, once the source has nothing more.
func TestReview52AckRandomCompositionsDrained(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		const n = 30
		for seed := range 400 {
			rng := rand.New(rand.NewPCG(uint64(seed), 5254))
			tr := &r52Tracker{calls: map[int][]error{}, doneNil: map[int]bool{}}
			stop, drain := context.WithCancel(context.Background())
			mode := rng.IntN(2)
			at := rng.IntN(n + 5)
			var taken int
			src := stage.AckSource(func(context.Context) (func(context.Context) (r52V, stage.Ack, error), func()) {
				i := 0
				return func(ctx context.Context) (r52V, stage.Ack, error) {
					if i == n {
						drain()
						<-ctx.Done()
						return r52V{}, nil, ctx.Err()
					}
					if mode == 1 && i == at {
						drain()
					}
					v := r52V{orig: i}
					i++
					taken = i
					return v, r52Ack{tr, v.orig}, nil
				}, nil
			})
			s, desc := r52Build(rng, stage.Until(src, stop), 1+rng.IntN(5))
			desc = fmt.Sprintf("mode %d at %d: %s", mode, at, desc)
			errOrigs := map[int]bool{}
			outputs := 0
			err := stage.Run(context.Background(), s, func(_ context.Context, v r52V, err error) error {
				outputs++
				if mode == 0 && outputs == at {
					drain()
				}
				if err != nil {
					var e *stage.Error
					if !errors.As(err, &e) {
						return fmt.Errorf("forwarded error is not an *Error: %v", err)
					}
					errOrigs[e.Input.(r52V).orig] = true
				}
				return nil
			})
			drain()
			if err != nil {
				t.Fatalf("seed %d (%s): Run returned %v, want nil after a drain", seed, desc, err)
			}
			tr.mu.Lock()
			for orig := range taken {
				calls := tr.calls[orig]
				if len(calls) != 1 {
					t.Errorf("seed %d (%s): item %d (of %d taken) told %d times (%v), want exactly once", seed, desc, orig, taken, len(calls), calls)
					continue
				}
				if got := calls[0]; (got != nil) != errOrigs[orig] {
					t.Errorf("seed %d (%s): item %d told %v; a forwarded error about it reached the sink: %v", seed, desc, orig, got, errOrigs[orig])
				}
			}
			for orig := range tr.calls {
				if orig >= taken {
					t.Errorf("seed %d (%s): item %d was never produced but was told %v", seed, desc, orig, tr.calls[orig])
				}
			}
			tr.mu.Unlock()
			if t.Failed() {
				return
			}
		}
	})
}

// Doc (Run): "An item for which f returned nil or ErrStop is committed";
// "nil when f returned ErrStop"; (Ack) "Done(nil) when ... every output it
// led to was committed"; "Done(err) as soon as its way failed, with the
// first error: a forwarded *Error it led to reached the sink"; "Done is not
// called when the run ended before the item's fate was known: ... a sink
// that stopped early"; (Run) "a forwarded error's item is told that error,
// as when f returns nil". A first run to the end counts how many outputs
// (values and forwarded errors) each item leads to; a second run of the
// same pipeline stops with ErrStop at a random output. Then: an item told
// nil had every one of its outputs committed; an item told an error had a
// forwarded error about it reach the sink; an item a forwarded error about
// which reached the sink is told an error; nobody is told twice.
func TestReview52AckRandomCompositionsErrStop(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		const n = 30
		for seed := range 400 {
			r, ok := r52EndedRun(t, seed, n, "stop at", func(context.CancelFunc) (error, bool) { return stage.ErrStop, true })
			if !ok {
				continue
			}
			if r.err != nil {
				t.Fatalf("seed %d (%s): Run = %v, want nil after ErrStop", seed, r.desc, r.err)
			}
			r.checkTold(t, seed, n, -1)
			if t.Failed() {
				return
			}
		}
	})
}

var errR52Sink = errors.New("r52: commit failed")

// Same as TestReview52AckRandomCompositionsErrStop, with a sink callback
// that fails (returns an error) at a random output instead of ErrStop.
func TestReview52AckRandomCompositionsSinkFails(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		const n = 30
		for seed := range 400 {
			r, ok := r52EndedRun(t, seed, n, "commit fails at", func(context.CancelFunc) (error, bool) { return errR52Sink, false })
			if !ok {
				continue
			}
			if !errors.Is(r.err, errR52Sink) {
				t.Fatalf("seed %d (%s): Run = %v, want the callback's error", seed, r.desc, r.err)
			}
			// "the sink callback that got it (or an output of it) returned
			// err (the commit failed)": told an error (the first one).
			failedOrig := r.stopOrig
			r.tr.mu.Lock()
			c := r.tr.calls[failedOrig]
			r.tr.mu.Unlock()
			if len(c) != 1 || c[0] == nil {
				t.Errorf("seed %d (%s): the commit of an output of item %d failed; it was told %v", seed, r.desc, failedOrig, c)
			} else if !r.errOrigs[failedOrig] && !errors.Is(c[0], errR52Sink) {
				t.Errorf("seed %d (%s): item %d told %v, want the callback's error", seed, r.desc, failedOrig, c[0])
			}
			r.checkTold(t, seed, n, failedOrig)
			if t.Failed() {
				return
			}
		}
	})
}

// Same as TestReview52AckRandomCompositionsErrStop, with the caller's ctx
// cancelled from the sink's callback (which then returns nil: that output
// is committed) at a random output. Doc (Ack): "Done is not called when the
// run ended before the item's fate was known: ... a cancelled context";
// "Whatever ends the run, an item whose outputs were all committed is told
// nil".
func TestReview52AckRandomCompositionsCancelled(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		const n = 30
		for seed := range 400 {
			r, ok := r52EndedRun(t, seed, n, "cancelled at", func(cancel context.CancelFunc) (error, bool) { cancel(); return nil, true })
			if !ok {
				continue
			}
			if r.stopAt < r.total && !errors.Is(r.err, context.Canceled) {
				t.Fatalf("seed %d (%s): Run = %v, want context.Canceled", seed, r.desc, r.err)
			}
			r.checkTold(t, seed, n, -1)
			if t.Failed() {
				return
			}
		}
	})
}

// r52Ended is a second run of a seed's random pipeline (over n items of
// r52AckSource), ended at a random output (see r52EndedRun).
type r52Ended struct {
	full      map[int]int // outputs per item in a run to the end
	total     int         // their sum
	desc      string      // the pipeline, and where the run ended
	tr        *r52Tracker
	committed map[int]int  // outputs committed per item
	errOrigs  map[int]bool // items a forwarded error about which reached the sink
	stopAt    int          // the output at which end was called, from 1
	stopOrig  int          // the item of that output
	err       error        // what Run returned
}

// r52EndedRun runs seed's pipeline to its end (r52FullRun), then again,
// calling end at a random output stopAt: end may cancel the run's context,
// and returns what the sink's callback returns and whether that output
// counts as committed (every other output is, and the callback returns nil
// for it). what says how the run ended, for messages. ok is false when the
// pipeline has no output.
func r52EndedRun(t *testing.T, seed, n int, what string, end func(cancel context.CancelFunc) (error, bool)) (r r52Ended, ok bool) {
	t.Helper()
	build := func(tr *r52Tracker) (stage.Stream[r52V], string) {
		rng := rand.New(rand.NewPCG(uint64(seed), 5256))
		return r52Build(rng, r52AckSource(tr, n), 1+rng.IntN(5))
	}
	r.full, r.total, r.desc = r52FullRun(t, seed, build)
	if r.total == 0 {
		return r, false
	}
	r.stopAt = 1 + rand.New(rand.NewPCG(uint64(seed), 1)).IntN(r.total)
	r.tr = &r52Tracker{calls: map[int][]error{}, doneNil: map[int]bool{}}
	s, _ := build(r.tr)
	r.committed, r.errOrigs, r.stopOrig = map[int]int{}, map[int]bool{}, -1
	seen := 0
	ctx, cancel := context.WithCancel(context.Background())
	r.err = stage.Run(ctx, s, func(_ context.Context, v r52V, err error) error {
		seen++
		orig := v.orig
		if err != nil {
			var e *stage.Error
			errors.As(err, &e)
			orig = e.Input.(r52V).orig
			r.errOrigs[orig] = true
		}
		if seen != r.stopAt {
			r.committed[orig]++
			return nil
		}
		r.stopOrig = orig
		ret, committed := end(cancel)
		if committed {
			r.committed[orig]++
		}
		return ret
	})
	cancel()
	r.desc = fmt.Sprintf("%s, %s output %d of %d", r.desc, what, r.stopAt, r.total)
	return r, true
}

// checkTold checks what every item of an ended run was told: at most once;
// an error if a forwarded error about it reached the sink; no error
// otherwise; nil only with every output of a run to the end committed.
// skip is an item the caller checks itself (-1: none).
func (r *r52Ended) checkTold(t *testing.T, seed, n, skip int) {
	t.Helper()
	r.tr.mu.Lock()
	defer r.tr.mu.Unlock()
	for orig := range n {
		calls := r.tr.calls[orig]
		if len(calls) > 1 {
			t.Errorf("seed %d (%s): item %d told %d times: %v", seed, r.desc, orig, len(calls), calls)
			continue
		}
		if orig == skip {
			continue
		}
		if r.errOrigs[orig] {
			if len(calls) != 1 || calls[0] == nil {
				t.Errorf("seed %d (%s): a forwarded error about item %d reached the sink; it was told %v", seed, r.desc, orig, calls)
			}
			continue
		}
		if len(calls) == 1 && calls[0] != nil {
			t.Errorf("seed %d (%s): item %d told %v, though no error about it reached the sink", seed, r.desc, orig, calls[0])
		}
		if len(calls) == 1 && calls[0] == nil && r.committed[orig] != r.full[orig] {
			t.Errorf("seed %d (%s): item %d told nil with %d of its %d outputs committed", seed, r.desc, orig, r.committed[orig], r.full[orig])
		}
	}
}

// Doc (Ack): "Whatever ends the run, an item whose outputs were all
// committed is told nil (unless it shares the fate of a batch ...)", with
// "An item for which f returned nil or ErrStop is committed" (Run). Over
// pipelines that never drop an item (Map with forwarded errors, Batch +
// Unbatch, Tee + Merge, KeyBy), so that the outputs of an item are exactly
// those of a run to the end, the run is ended at a random output by
// ErrStop, the caller's cancellation, or a failing commit: an item all of
// whose outputs were committed, none a forwarded error, must be told nil;
// an item told nil must have had all of them committed.
func TestReview52AckAllCommittedToldNil(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		r52OnlyOps = []int{0, 3, 4, 5}
		defer func() { r52OnlyOps = nil }()
		const n = 30
		for seed := range 500 {
			build := func(tr *r52Tracker) (stage.Stream[r52V], string) {
				rng := rand.New(rand.NewPCG(uint64(seed), 5262))
				return r52Build(rng, r52AckSource(tr, n), 1+rng.IntN(5))
			}
			full, total, desc := r52FullRun(t, seed, build)
			rng := rand.New(rand.NewPCG(uint64(seed), 2))
			stopAt := 1 + rng.IntN(total)
			how := rng.IntN(3)
			tr := &r52Tracker{calls: map[int][]error{}, doneNil: map[int]bool{}}
			s, _ := build(tr)
			committed := map[int]int{}
			errOrigs := map[int]bool{}
			failedOrig := -1
			seen := 0
			ctx, cancel := context.WithCancel(context.Background())
			_ = stage.Run(ctx, s, func(_ context.Context, v r52V, err error) error {
				seen++
				orig := v.orig
				if err != nil {
					var e *stage.Error
					errors.As(err, &e)
					orig = e.Input.(r52V).orig
					errOrigs[orig] = true
				}
				if seen == stopAt {
					switch how {
					case 0:
						committed[orig]++
						return stage.ErrStop
					case 1:
						committed[orig]++
						cancel()
						return nil
					default:
						failedOrig = orig
						return errR52Sink
					}
				}
				committed[orig]++
				return nil
			})
			cancel()
			desc = fmt.Sprintf("%s, ended (%d) at output %d of %d", desc, how, stopAt, total)
			tr.mu.Lock()
			for orig := range n {
				calls := tr.calls[orig]
				if len(calls) > 1 {
					t.Errorf("seed %d (%s): item %d told %d times: %v", seed, desc, orig, len(calls), calls)
					continue
				}
				if orig == failedOrig || errOrigs[orig] {
					if len(calls) != 1 || calls[0] == nil {
						t.Errorf("seed %d (%s): item %d failed (a forwarded error, or its commit); told %v", seed, desc, orig, calls)
					}
					continue
				}
				all := committed[orig] == full[orig]
				toldNil := len(calls) == 1 && calls[0] == nil
				if all && !toldNil {
					t.Errorf("seed %d (%s): all %d outputs of item %d were committed; it was told %v, want nil", seed, desc, full[orig], orig, calls)
				}
				if !all && len(calls) == 1 {
					t.Errorf("seed %d (%s): item %d told %v with %d of its %d outputs committed", seed, desc, orig, calls[0], committed[orig], full[orig])
				}
			}
			tr.mu.Unlock()
			if t.Failed() {
				return
			}
		}
	})
}
