package stage_test

// Review 52: random pipelines against a sequential model of what they
// compute, checking the content (as a multiset) of every run and the exact
// order whenever the docs promise one.
//
// Doc: "Outputs leave a stage in completion order. With one worker that is
// input order. With Ordered they leave in input order"; (FlatMap) "with
// Ordered, all outputs of one item leave before those of the next";
// (Batch) "in input order", "A forwarded error is a batch boundary: the
// batch before it leaves first, then the error, in order"; (Unbatch) "in
// order"; (KeyBy) "with Ordered, the outputs follow the input order across
// keys too"; (Forward) "the *Error takes the item's place downstream; later
// stages pass it through"; (Tee) "n streams that each see every item of in";
// (Until) "the returned stream is in, until stop is done"; (Apply) "f passes
// zero or more outputs to emit, in order". Several of these run cheap
// stages in their consumer's goroutines (see Workers); the order promises
// hold whatever goroutine makes the call.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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

type r52Entry struct {
	v   int
	err string // "" for a value
}

func (e r52Entry) String() string {
	if e.err != "" {
		return "E" + e.err
	}
	return fmt.Sprint(e.v)
}

func r52H(x, k int) int { return r52Hash(r52V{orig: x}, k) }

const r52M = 1000003

// r52Expect, when not nil, receives for each named stage r52OrderBuild
// makes the number of values it receives and of items that fail in it.
var r52Expect map[string][2]int

// r52OrderBuild builds a random pipeline over s and applies the same
// operators to the model; ordered reports whether the output order is
// promised.
func r52OrderBuild(rng *rand.Rand, s stage.Stream[int], model []r52Entry, depth int) (stage.Stream[int], []r52Entry, bool, string) {
	ordered := true
	var desc []string
	each := func(model []r52Entry, f func(x int) []r52Entry) []r52Entry {
		var out []r52Entry
		for _, e := range model {
			if e.err != "" {
				out = append(out, e)
				continue
			}
			out = append(out, f(e.v)...)
		}
		return out
	}
	vals := func(xs ...int) []r52Entry {
		out := make([]r52Entry, len(xs))
		for i, x := range xs {
			out[i] = r52Entry{v: x}
		}
		return out
	}
	for k := range depth {
		k := k
		name := fmt.Sprintf("s%d", k)
		w := 1 + rng.IntN(4)
		if rng.IntN(6) == 0 {
			w = 16
		}
		ord := rng.IntN(2) == 0
		opts := []stage.Option{stage.Workers(w), stage.Name(name)}
		if ord {
			opts = append(opts, stage.Ordered())
		}
		if rng.IntN(4) == 0 {
			opts = append(opts, stage.Buffer(rng.IntN(3)))
		}
		keeps := ord || w == 1
		tag := fmt.Sprintf("w%d", w)
		if ord {
			tag += ",ord"
		}
		values := 0
		for _, e := range model {
			if e.err == "" {
				values++
			}
		}
		kinds := len(desc)
		switch rng.IntN(9) {
		case 0:
			desc = append(desc, "map("+tag+")")
			s = stage.Map(s, func(_ context.Context, x int) (int, error) {
				if r52H(x, k)%9 == 0 {
					return 0, errR52
				}
				return (x*3 + 1) % r52M, nil
			}, append(opts, stage.OnError(stage.Forward))...)
			model = each(model, func(x int) []r52Entry {
				if r52H(x, k)%9 == 0 {
					return []r52Entry{{err: fmt.Sprintf("%s:%d", name, x)}}
				}
				return vals((x*3 + 1) % r52M)
			})
			ordered = ordered && keeps
		case 1:
			desc = append(desc, "filter("+tag+")")
			s = stage.Filter(s, func(_ context.Context, x int) (bool, error) { return r52H(x, k)%4 != 0, nil }, opts...)
			model = each(model, func(x int) []r52Entry {
				if r52H(x, k)%4 != 0 {
					return vals(x)
				}
				return nil
			})
			ordered = ordered && keeps
		case 2:
			desc = append(desc, "flatmap("+tag+")")
			f := func(x int) []int {
				out := make([]int, r52H(x, k)%3)
				for i := range out {
					out[i] = (x*5 + i) % r52M
				}
				return out
			}
			s = stage.FlatMap(s, func(_ context.Context, x int) ([]int, error) { return f(x), nil }, opts...)
			model = each(model, func(x int) []r52Entry { return vals(f(x)...) })
			ordered = ordered && keeps
		case 3:
			size := 1 + rng.IntN(4)
			desc = append(desc, fmt.Sprintf("batch(%d)+unbatch", size))
			s = stage.Unbatch(stage.Batch(s, size, 0))
		case 4:
			desc = append(desc, "keyby("+tag+")")
			s = stage.Map(s, func(_ context.Context, x int) (int, error) {
				if r52H(x, k)%13 == 0 {
					return 0, errR52
				}
				return (x + 11) % r52M, nil
			}, append(opts, stage.OnError(stage.Forward), stage.KeyBy(func(x int) int { return x % 3 }))...)
			model = each(model, func(x int) []r52Entry {
				if r52H(x, k)%13 == 0 {
					return []r52Entry{{err: fmt.Sprintf("%s:%d", name, x)}}
				}
				return vals((x + 11) % r52M)
			})
			ordered = ordered && keeps
		case 5:
			desc = append(desc, "apply("+tag+")")
			f := func(x int) []int {
				out := make([]int, r52H(x, k)%4)
				for i := range out {
					out[i] = (x + i*7) % r52M
				}
				return out
			}
			s = stage.Apply(s, func(_ context.Context, x int, emit func(int) bool) error {
				for _, y := range f(x) {
					emit(y)
				}
				return nil
			}, opts...)
			model = each(model, func(x int) []r52Entry { return vals(f(x)...) })
			ordered = ordered && keeps
		case 6:
			desc = append(desc, "tee+merge")
			b := stage.Tee(s, 2)
			s = stage.Merge(b[0], stage.Map(b[1], func(_ context.Context, x int) (int, error) { return (x + 1) % r52M, nil }, stage.Workers(w)))
			var twice []r52Entry
			for _, e := range model {
				twice = append(twice, e)
				if e.err == "" {
					e.v = (e.v + 1) % r52M
				}
				twice = append(twice, e)
			}
			model = twice
			ordered = false
		case 7:
			desc = append(desc, "until")
			s = stage.Until(s, context.Background())
		case 8:
			desc = append(desc, "concurrent("+tag+")")
			tasks := stage.Map(s, func(_ context.Context, x int) (func(context.Context) (int, error), error) {
				return func(context.Context) (int, error) { return (x * 7) % r52M, nil }, nil
			}, stage.Workers(1))
			s = stage.Concurrent(tasks, opts...)
			model = each(model, func(x int) []r52Entry { return vals((x * 7) % r52M) })
			ordered = ordered && keeps
		}
		if r52Expect != nil && len(desc) > kinds && strings.Contains(desc[len(desc)-1], "(w") {
			failed := 0
			for _, e := range model {
				if strings.HasPrefix(e.err, name+":") {
					failed++
				}
			}
			r52Expect[name] = [2]int{values, failed}
		}
	}
	return s, model, ordered, strings.Join(desc, " -> ")
}

func r52OrderSource(rng *rand.Rand, in []int) (stage.Stream[int], string) {
	switch rng.IntN(4) {
	case 0:
		return source.Slice(in), "slice"
	case 1:
		ch := make(chan int, len(in))
		for _, x := range in {
			ch <- x
		}
		close(ch)
		return source.Chan(ch), "chan"
	case 2:
		return stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
			i := 0
			return func(context.Context) (int, error) {
				if i == len(in) {
					return 0, io.EOF
				}
				i++
				return in[i-1], nil
			}, nil
		})), "neverwaits"
	default:
		return stage.Indexed(len(in), func(i int) int { return in[i] }), "indexed"
	}
}

func TestReview52RandomPipelinesAgainstModel(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) { r52AgainstModel(t, 1500, 5252, 60) })
}

// The same over inputs of 0, 1 or 2 items, where stages known to get one
// item run in their consumer's goroutine from the start (see Workers).
func TestReview52RandomPipelinesAgainstModelTinyInputs(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) { r52AgainstModel(t, 1500, 5258, 3) })
}

func r52AgainstModel(t *testing.T, seeds int, stream uint64, maxN int) {
	{
		checkedOrder := 0
		for seed := range seeds {
			rng := rand.New(rand.NewPCG(uint64(seed), stream))
			n := rng.IntN(maxN)
			if rng.IntN(8) == 0 {
				n = 1
			}
			in := make([]int, n)
			model := make([]r52Entry, n)
			for i := range in {
				in[i] = rng.IntN(r52M)
				model[i] = r52Entry{v: in[i]}
			}
			src, sdesc := r52OrderSource(rng, in)
			s, want, ordered, desc := r52OrderBuild(rng, src, model, 1+rng.IntN(5))
			desc = sdesc + " -> " + desc
			var got []r52Entry
			for v, err := range sink.All(context.Background(), s) {
				if err != nil {
					var e *stage.Error
					if !errors.As(err, &e) || !errors.Is(err, errR52) {
						t.Fatalf("seed %d (%s): unexpected error %v", seed, desc, err)
					}
					got = append(got, r52Entry{err: fmt.Sprintf("%s:%v", e.Stage, e.Input)})
					continue
				}
				got = append(got, r52Entry{v: v})
			}
			str := func(es []r52Entry) []string {
				out := make([]string, len(es))
				for i, e := range es {
					out[i] = e.String()
				}
				return out
			}
			g, w := str(got), str(want)
			if ordered {
				checkedOrder++
				if !slices.Equal(g, w) {
					t.Fatalf("seed %d (%s): order promised;\n got %v\nwant %v", seed, desc, g, w)
				}
				continue
			}
			slices.Sort(g)
			slices.Sort(w)
			if !slices.Equal(g, w) {
				t.Fatalf("seed %d (%s): content differs;\n got %v\nwant %v", seed, desc, g, w)
			}
		}
		if checkedOrder < 50 {
			t.Errorf("only %d scenarios had a promised order", checkedOrder)
		}
	}
}

// Doc (sink package): "A sink never reports success for a run that failed";
// (FailFast) "the sink returns the error"; (First) "always the first pair
// of `for v, err := range All(ctx, s) { ...; break }`"; (All) "If the run
// fails, the last pair is (zero, err) with the error that ended it";
// (Leaks) "When a sink returns, no goroutine of the run is running".
// The random pipelines of the model test end in a FailFast stage that
// fails at one value the model says reaches it: every sink must fail with
// that *Error, having seen a prefix of the model (in order when an order
// is promised, as a sub-multiset otherwise); First must give the model's
// first entry when the order is promised.
func TestReview52RandomPipelinesFailFastAtTheEnd(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		errFF := errors.New("r52: failfast")
		for seed := range 600 {
			rng := rand.New(rand.NewPCG(uint64(seed), 5253))
			n := 1 + rng.IntN(40)
			in := make([]int, n)
			model := make([]r52Entry, n)
			for i := range in {
				in[i] = rng.IntN(r52M)
				model[i] = r52Entry{v: in[i]}
			}
			src, sdesc := r52OrderSource(rng, in)
			s, want, ordered, desc := r52OrderBuild(rng, src, model, 1+rng.IntN(4))
			desc = sdesc + " -> " + desc
			// First, before the failing stage (a Chan source is spent by one
			// run: only the slice-like sources run again).
			if sdesc != "chan" && ordered {
				v, ok, err := sink.First(context.Background(), s)
				switch {
				case len(want) == 0:
					if ok || err != nil {
						t.Fatalf("seed %d (%s): First of an empty stream = %v, %v, %v", seed, desc, v, ok, err)
					}
				case want[0].err != "":
					var e *stage.Error
					if ok || !errors.As(err, &e) || fmt.Sprintf("%s:%v", e.Stage, e.Input) != want[0].err {
						t.Fatalf("seed %d (%s): First = %v, %v, %v; want the forwarded error %s", seed, desc, v, ok, err, want[0].err)
					}
				default:
					if !ok || err != nil || v != want[0].v {
						t.Fatalf("seed %d (%s): First = %v, %v, %v; want %d", seed, desc, v, ok, err, want[0].v)
					}
				}
			}
			var target = -1
			for i, e := range want {
				if e.err == "" && rng.IntN(3) == 0 {
					target = i
					break
				}
			}
			if target < 0 {
				continue
			}
			tv := want[target].v
			for i, e := range want {
				if e.err == "" && e.v == tv {
					target = i
					break
				}
			}
			w := 1 + rng.IntN(4)
			opts := []stage.Option{stage.Workers(w), stage.Name("ff")}
			last := ordered && w == 1
			if rng.IntN(2) == 0 {
				opts = append(opts, stage.Ordered())
				last = ordered
			}
			fail := stage.Map(s, func(_ context.Context, x int) (int, error) {
				if x == tv {
					return 0, errFF
				}
				return x, nil
			}, opts...)
			var got []r52Entry
			var final error
			runcheck.Run(t, desc, func() {
				for v, err := range sink.All(context.Background(), fail) {
					if err != nil {
						var e *stage.Error
						if errors.As(err, &e) && errors.Is(err, errR52) {
							got = append(got, r52Entry{err: fmt.Sprintf("%s:%v", e.Stage, e.Input)})
							continue
						}
						final = err
						continue
					}
					got = append(got, r52Entry{v: v})
				}
			})
			var e *stage.Error
			if !errors.Is(final, errFF) || !errors.As(final, &e) || e.Stage != "ff" || e.Input != any(tv) {
				t.Fatalf("seed %d (%s): the run ended with %v, want the FailFast *Error of stage ff at %d", seed, desc, final, tv)
			}
			// What the sink saw comes from the model's entries other than
			// the failed one (several entries may hold its value: a sub-
			// multiset check counts them).
			pool := map[string]int{}
			for _, x := range want {
				pool[x.String()]++
			}
			for _, x := range got {
				pool[x.String()]--
				if pool[x.String()] < 0 {
					t.Fatalf("seed %d (%s): the sink saw %v, more often than the model has it: got %v, model %v", seed, desc, x, got, want)
				}
			}
			if last {
				for i, x := range got {
					if i >= target || x != want[i] {
						t.Fatalf("seed %d (%s): order promised; got %v is not a prefix of the model before the failed item %d: %v", seed, desc, got, target, want)
					}
				}
			}
		}
	})
}

// Doc (Stream): "Several sinks may run one Stream at the same time: each
// run has its own goroutines, queues and stage state"; "Each sink call is a
// new run; a slice source yields its items again". The random pipelines of
// the model test, each run by four sinks at once, then again: every run
// must match the model (order included where promised).
func TestReview52RandomPipelinesConcurrentRuns(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		for seed := range 250 {
			rng := rand.New(rand.NewPCG(uint64(seed), 5255))
			n := rng.IntN(50)
			in := make([]int, n)
			model := make([]r52Entry, n)
			for i := range in {
				in[i] = rng.IntN(r52M)
				model[i] = r52Entry{v: in[i]}
			}
			src, sdesc := r52OrderSource(rng, in)
			if sdesc == "chan" {
				src, sdesc = source.Slice(in), "slice"
			}
			s, want, ordered, desc := r52OrderBuild(rng, src, model, 1+rng.IntN(5))
			desc = sdesc + " -> " + desc
			w := make([]string, len(want))
			for i, e := range want {
				w[i] = e.String()
			}
			if !ordered {
				slices.Sort(w)
			}
			for round := range 2 {
				results := make([][]string, 4)
				errs := make([]error, 4)
				var wg sync.WaitGroup
				for r := range 4 {
					wg.Go(func() {
						for v, err := range sink.All(context.Background(), s) {
							if err != nil {
								var e *stage.Error
								if !errors.As(err, &e) || !errors.Is(err, errR52) {
									errs[r] = err
									return
								}
								results[r] = append(results[r], "E"+fmt.Sprintf("%s:%v", e.Stage, e.Input))
								continue
							}
							results[r] = append(results[r], fmt.Sprint(v))
						}
					})
				}
				wg.Wait()
				for r := range 4 {
					if errs[r] != nil {
						t.Fatalf("seed %d (%s) round %d run %d: %v", seed, desc, round, r, errs[r])
					}
					g := results[r]
					if !ordered {
						slices.Sort(g)
					}
					if !slices.Equal(g, w) {
						t.Fatalf("seed %d (%s) round %d run %d (ordered %v):\n got %v\nwant %v", seed, desc, round, r, ordered, g, w)
					}
				}
			}
		}
	})
}

var errR52Src = errors.New("r52: source failed")

// Doc (package, Error policies): "A source that fails ends the run with a
// *SourceError whatever the policies: the source stops, the items it
// produced before still go through, then the sink returns the error";
// (Indexed) "A panic in at ends the run with a *SourceError"; (sink) "A
// sink never reports success for a run that failed". Random pipelines
// with a FailFast stage in the middle that may fail at some value, over a
// source that may fail after k items: when the FailFast stage never failed,
// the sink must see exactly what the model computes from the k items (in
// order where promised) and return the *SourceError (or nil when the source
// did not fail); when it failed, the sink must not return nil.
func TestReview52RandomPipelinesSourceFailure(t *testing.T) {
	runcheckInChild(t, func(t *testing.T) {
		errFF := errors.New("r52: failfast")
		for seed := range 800 {
			rng := rand.New(rand.NewPCG(uint64(seed), 5257))
			n := rng.IntN(40)
			in := make([]int, n)
			for i := range in {
				in[i] = rng.IntN(r52M)
			}
			k := n
			if rng.IntN(3) != 0 {
				k = rng.IntN(n + 1)
			}
			var src stage.Stream[int]
			var sdesc string
			switch rng.IntN(3) {
			case 0:
				sdesc = "source"
				src = stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
						if i == k {
							if k < n {
								return 0, errR52Src
							}
							return 0, io.EOF
						}
						i++
						return in[i-1], nil
					}, nil
				})
			case 1:
				sdesc = "neverwaits-panic"
				src = stage.NeverWaits(stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					i := 0
					return func(context.Context) (int, error) {
						if i == k {
							if k < n {
								panic(errR52Src)
							}
							return 0, io.EOF
						}
						i++
						return in[i-1], nil
					}, nil
				}))
			default:
				sdesc = "indexed-panic"
				src = stage.Indexed(n, func(i int) int {
					if i >= k {
						panic(errR52Src)
					}
					return in[i]
				})
			}
			model := make([]r52Entry, k)
			for i := range model {
				model[i] = r52Entry{v: in[i]}
			}
			s1, m1, o1, d1 := r52OrderBuild(rng, src, model, rng.IntN(3))
			p := 1 + rng.IntN(60)
			var fired atomic.Bool
			w := 1 + rng.IntN(3)
			ffOpts := []stage.Option{stage.Workers(w), stage.Name("ff")}
			ffKeeps := w == 1
			if rng.IntN(2) == 0 {
				ffOpts = append(ffOpts, stage.Ordered())
				ffKeeps = true
			}
			ff := stage.Map(s1, func(_ context.Context, x int) (int, error) {
				if r52H(x, 99)%p == 0 {
					fired.Store(true)
					return 0, errFF
				}
				return x, nil
			}, ffOpts...)
			s2, want, o2, d2 := r52OrderBuild(rng, ff, m1, rng.IntN(3))
			ordered := o1 && ffKeeps && o2
			desc := fmt.Sprintf("%s(n %d, fails after %d) -> %s -> ff(1/%d) -> %s", sdesc, n, k, d1, p, d2)
			var got []string
			var final error
			runcheck.Run(t, desc, func() {
				for v, err := range sink.All(context.Background(), s2) {
					if err != nil {
						var e *stage.Error
						if errors.As(err, &e) && errors.Is(err, errR52) {
							got = append(got, "E"+fmt.Sprintf("%s:%v", e.Stage, e.Input))
							continue
						}
						final = err
						continue
					}
					got = append(got, fmt.Sprint(v))
				}
			})
			if fired.Load() {
				if final == nil {
					t.Fatalf("seed %d (%s): the FailFast stage failed, yet the run reported success", seed, desc)
				}
				var se *stage.SourceError
				if !errors.Is(final, errFF) && !(k < n && errors.As(final, &se)) {
					t.Fatalf("seed %d (%s): the run ended with %v", seed, desc, final)
				}
				continue
			}
			if k < n {
				var se *stage.SourceError
				if !errors.As(final, &se) || !errors.Is(final, errR52Src) {
					t.Fatalf("seed %d (%s): the run ended with %v, want the *SourceError", seed, desc, final)
				}
			} else if final != nil {
				t.Fatalf("seed %d (%s): the run ended with %v, want nil", seed, desc, final)
			}
			w2 := make([]string, len(want))
			for i, e := range want {
				w2[i] = e.String()
			}
			if !ordered {
				slices.Sort(w2)
				slices.Sort(got)
			}
			if !slices.Equal(got, w2) {
				t.Fatalf("seed %d (%s, ordered %v): the items produced before the failure did not all go through:\n got %v\nwant %v", seed, desc, ordered, got, w2)
			}
		}
	})
}
