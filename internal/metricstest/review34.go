// Review34: adversarial scenarios for a metrics adapter, written from the
// documentation of the adapters (metrics/prom, metrics/otelmetric) and of
// package stage only. An adapter's test reads its backend into a Snap34;
// the scenarios compare it with a tap observer that records exactly what the
// engine told the adapter's watchers, and with stage.Stats. The metrics are
// named here by what they count ("received", "finished", "in_flight",
// "duration"); each adapter's doc gives them its backend's names.
package metricstest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Env34 is one adapter's observer on a fresh backend, and the function
// that reads what the backend holds (failing the test if it cannot).
type Env34 struct {
	Obs  stage.Observer
	Read func(testing.TB) Snap34
}

// Review34 runs the review34 scenarios against an adapter: newEnv makes a
// fresh observer on a fresh backend. Each scenario is a subtest.
func Review34(t *testing.T, newEnv func(testing.TB) Env34) {
	for _, sc := range []struct {
		name string
		run  func(*testing.T, func(testing.TB) Env34)
	}{
		{"CancelAtEveryPoint", review34CancelAtEveryPoint},
		{"GoexitEveryKind", review34GoexitEveryKind},
		{"ExactPerCall", review34ExactPerCall},
		{"BucketEdgesAndOutcomes", review34BucketEdgesAndOutcomes},
		{"SameNamesTwoPipelines", review34SameNamesTwoPipelines},
	} {
		t.Run(sc.name, func(t *testing.T) { sc.run(t, newEnv) })
	}
}

// Key34 names one series: Metric is "received", "finished", "in_flight"
// or "duration" (series of other metrics are left out of a Snap34).
type Key34 struct{ Metric, Stage, Kind, Outcome string }

// Point34 is one series' value.
type Point34 struct {
	Value  float64   // counter or gauge value; a histogram's count
	Sum    float64   // a histogram's sum
	Bounds []float64 // a histogram's upper bounds (without +Inf)
	Cum    []uint64  // cumulative counts per bound
}

// Snap34 is what a backend holds, by series.
type Snap34 map[Key34]Point34

// Bounds34 returns the adapters' documented duration buckets (without
// +Inf): "from 1 µs to about 4 s, each bound 4 times the one before".
func Bounds34() []float64 {
	var b []float64
	for v := 1e-6; v < 5; v *= 4 {
		b = append(b, v)
	}
	return b
}

// Tap34 wraps an observer and records, per stage name and kind, every call
// the engine made to the wrapped watchers.
type Tap34 struct {
	inner stage.Observer
	mu    sync.Mutex
	st    map[[2]string]*rec34
	bad   []string // Watcher contract breaches by the engine (context only)
}

type rec34 struct {
	received, ok, failed, closed int
	lat                          []time.Duration
}

// NewTap34 returns a tap on inner.
func NewTap34(inner stage.Observer) *Tap34 {
	return &Tap34{inner: inner, st: map[[2]string]*rec34{}}
}

// Stage taps inner's watcher of the stage.
func (tp *Tap34) Stage(info stage.Info) stage.Watcher {
	w := tp.inner.Stage(info)
	tp.mu.Lock()
	k := [2]string{info.Name, info.Kind}
	if tp.st[k] == nil {
		tp.st[k] = &rec34{}
	}
	tp.mu.Unlock()
	return &tap34W{tp: tp, k: k, w: w}
}

type tap34W struct {
	tp *Tap34
	k  [2]string
	w  stage.Watcher
}

func (w *tap34W) Received() {
	w.tp.mu.Lock()
	w.tp.st[w.k].received++
	w.tp.mu.Unlock()
	w.w.Received()
}

func (w *tap34W) Finished(lat time.Duration, err error) {
	w.tp.mu.Lock()
	r := w.tp.st[w.k]
	r.lat = append(r.lat, lat)
	if _, failed := err.(*stage.Error); failed {
		r.failed++
	} else {
		r.ok++
		var se *stage.Error
		if err != nil && (!errors.Is(err, context.Canceled) || errors.As(err, &se)) {
			w.tp.bad = append(w.tp.bad, fmt.Sprintf("%v: Finished err %T %v", w.k, err, err))
		}
	}
	w.tp.mu.Unlock()
	w.w.Finished(lat, err)
}

func (w *tap34W) Closed() {
	w.tp.mu.Lock()
	w.tp.st[w.k].closed++
	w.tp.mu.Unlock()
	w.w.Closed()
}

// CheckTap34 checks every series against what the taps saw, summed over
// them (several observers may add into the same series): counts, in flight
// 0, the histogram's count, sum (in seconds) and buckets exactly.
func CheckTap34(t testing.TB, snap Snap34, taps ...*Tap34) {
	t.Helper()
	all := map[[2]string]*rec34{}
	for _, tp := range taps {
		tp.mu.Lock()
		if len(tp.bad) > 0 {
			t.Logf("engine breached the Watcher contract (not the adapter's fault): %v", tp.bad)
		}
		for k, r := range tp.st {
			m := all[k]
			if m == nil {
				m = &rec34{}
				all[k] = m
			}
			m.received += r.received
			m.ok += r.ok
			m.failed += r.failed
			m.closed += r.closed
			m.lat = append(m.lat, r.lat...)
		}
		tp.mu.Unlock()
	}
	bounds := Bounds34()
	for k, r := range all {
		name, kind := k[0], k[1]
		get := func(m, o string) Point34 {
			p, ok := snap[Key34{m, name, kind, o}]
			if !ok && !(m == "finished") {
				t.Errorf("%s{%q,%q}: no series", m, name, kind)
			}
			return p
		}
		if v := get("received", "").Value; v != float64(r.received) {
			t.Errorf("received{%q,%q} = %v, engine called Received %d times", name, kind, v, r.received)
		}
		if v := get("finished", "ok").Value; v != float64(r.ok) {
			t.Errorf("finished{%q,%q,ok} = %v, engine reported %d calls that did not fail", name, kind, v, r.ok)
		}
		if v := get("finished", "error").Value; v != float64(r.failed) {
			t.Errorf("finished{%q,%q,error} = %v, engine reported %d failed calls (*stage.Error)", name, kind, v, r.failed)
		}
		if v := get("in_flight", "").Value; v != float64(r.received-r.ok-r.failed) {
			t.Errorf("in_flight{%q,%q} = %v, want received-finished = %d", name, kind, v, r.received-r.ok-r.failed)
		}
		h := get("duration", "")
		if h.Value != float64(len(r.lat)) {
			t.Errorf("duration{%q,%q} count = %v, engine reported %d latencies", name, kind, h.Value, len(r.lat))
		}
		var sum float64
		want := make([]uint64, len(bounds))
		for _, l := range r.lat {
			s := l.Seconds()
			sum += s
			for i, b := range bounds {
				if s <= b {
					want[i]++
				}
			}
		}
		if math.Abs(h.Sum-sum) > 1e-9*math.Max(1, sum) {
			t.Errorf("duration{%q,%q} sum = %v s, the latencies reported add up to %v s", name, kind, h.Sum, sum)
		}
		if fmt.Sprint(h.Bounds) != fmt.Sprint(bounds) {
			t.Errorf("duration{%q,%q} bounds = %v, want %v", name, kind, h.Bounds, bounds)
		} else if fmt.Sprint(h.Cum) != fmt.Sprint(want) {
			t.Errorf("duration{%q,%q} cumulative buckets = %v, from the latencies reported want %v", name, kind, h.Cum, want)
		}
	}
}

// CheckStats34 compares every stage of stats (names, counts summed over
// kinds) with the series: received, finished, failed, in flight, the
// histogram's count; and checks that no stage has series stats lacks.
func CheckStats34(t testing.TB, snap Snap34, stats *stage.Stats) {
	t.Helper()
	type agg struct{ recv, ok, failed, in, n float64 }
	by := map[string]*agg{}
	for k, p := range snap {
		a := by[k.Stage]
		if a == nil {
			a = &agg{}
			by[k.Stage] = a
		}
		switch {
		case k.Metric == "received":
			a.recv += p.Value
		case k.Metric == "finished" && k.Outcome == "ok":
			a.ok += p.Value
		case k.Metric == "finished" && k.Outcome == "error":
			a.failed += p.Value
		case k.Metric == "finished":
			t.Errorf("finished series with outcome %q", k.Outcome)
		case k.Metric == "in_flight":
			a.in += p.Value
		case k.Metric == "duration":
			a.n += p.Value
		}
	}
	seen := map[string]bool{}
	for _, c := range stats.Snapshot() {
		seen[c.Name] = true
		a := by[c.Name]
		if a == nil {
			t.Errorf("stage %q: in Stats (%+v), no series", c.Name, c)
			continue
		}
		if a.recv != float64(c.Received) || a.ok+a.failed != float64(c.Finished) || a.failed != float64(c.Failed) ||
			a.in != float64(c.InFlight) || a.n != float64(c.Finished) {
			t.Errorf("stage %q: series received %v, ok %v, error %v, in flight %v, durations %v; Stats received %d, finished %d, failed %d, in flight %d",
				c.Name, a.recv, a.ok, a.failed, a.in, a.n, c.Received, c.Finished, c.Failed, c.InFlight)
		}
		if c.InFlight != 0 {
			t.Errorf("stage %q: Stats in flight %d after the runs", c.Name, c.InFlight)
		}
	}
	var extra []string
	for n := range by {
		if !seen[n] {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("series for stages Stats never saw: %s", strings.Join(extra, ", "))
	}
}

// New: in flight counts "items taken and not finished"; "a call cut
// short by the end of the run (another stage's failure, a cancellation) did
// not fail". The caller cancels at every item in turn, from inside that
// item's call, in stages of every shape (KeyBy, Ordered, Buffer, FlatMap,
// Concurrent, a RateLimit wait, a Retry backoff), and runs stop early
// (sink.First, a break out of sink.All) at every item: after each run,
// nothing is in flight, no call counts as an error (no function failed),
// every received call finished, and the series match the engine's calls
// and Stats.
func review34CancelAtEveryPoint(t *testing.T, newEnv func(testing.TB) Env34) {
	const n = 12
	env := newEnv(t)
	obs := env.Obs
	tp := NewTap34(obs)
	var stats stage.Stats
	base := stage.Observe(stage.Observe(context.Background(), tp), &stats)
	// f returns a stage function that cancels the run at item k and
	// returns its ctx's error once the run is ending.
	type fn = func(context.Context, int) (int, error)
	mk := func(k int, cancel func()) fn {
		return func(ctx context.Context, v int) (int, error) {
			if v == k {
				cancel()
			}
			if v >= k {
				<-ctx.Done()
				return 0, ctx.Err()
			}
			return v, nil
		}
	}
	shapes := map[string]func(k int, cancel func()) stage.Stream[int]{
		"map": func(k int, c func()) stage.Stream[int] {
			return stage.Map(source.Slice(Ints(n)), mk(k, c), stage.Name("c.map"), stage.Workers(4))
		},
		"buffered": func(k int, c func()) stage.Stream[int] {
			return stage.Map(source.Slice(Ints(n)), mk(k, c), stage.Name("c.buf"), stage.Workers(3), stage.Buffer(2))
		},
		"ordered": func(k int, c func()) stage.Stream[int] {
			return stage.Map(source.Slice(Ints(n)), mk(k, c), stage.Name("c.ord"), stage.Workers(3), stage.Ordered())
		},
		"keyby": func(k int, c func()) stage.Stream[int] {
			return stage.Map(source.Slice(Ints(n)), mk(k, c), stage.Name("c.key"), stage.Workers(3),
				stage.KeyBy(func(v int) int { return v % 3 }))
		},
		"flatmap": func(k int, c func()) stage.Stream[int] {
			f := mk(k, c)
			return stage.FlatMap(source.Slice(Ints(n)), func(ctx context.Context, v int) ([]int, error) {
				x, err := f(ctx, v)
				return []int{x, x, x}, err
			}, stage.Name("c.flat"), stage.Workers(2))
		},
		"concurrent": func(k int, c func()) stage.Stream[int] {
			f := mk(k, c)
			tasks := stage.Map(source.Slice(Ints(n)), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
				return func(ctx context.Context) (int, error) { return f(ctx, v) }, nil
			}, stage.Name("c.mk"), stage.Workers(1)) // tasks in input order: item k before the later ones that wait for the cancel
			return stage.Concurrent(tasks, stage.Name("c.conc"), stage.Workers(3))
		},
		"ratelimit": func(k int, c func()) stage.Stream[int] {
			// One token then one a day: calls after the first wait for a
			// token until the run ends.
			return stage.Map(source.Slice(Ints(n)), func(ctx context.Context, v int) (int, error) {
				c()
				return v, nil
			}, stage.Name("c.rate"), stage.Workers(3), stage.RateLimit(1.0/86400, 1))
		},
		"backoff": func(k int, c func()) stage.Stream[int] {
			// Item k fails, and is cancelled as it goes into a day's backoff.
			return stage.Map(source.Slice(Ints(n)), func(ctx context.Context, v int) (int, error) {
				if v == k {
					return 0, errR34
				}
				return v, nil
			}, stage.Name("c.back"), stage.Workers(2), stage.RetryIf(2, 24*time.Hour, func(error) bool { c(); return true }))
		},
		"downstream": func(k int, c func()) stage.Stream[int] {
			up := stage.Map(source.Slice(Ints(n)), func(_ context.Context, v int) (int, error) { return v, nil },
				stage.Name("c.up"), stage.Workers(1), stage.Buffer(1)) // input order, as above
			return stage.Map(up, mk(k, c), stage.Name("c.down"), stage.Workers(2))
		},
	}
	check := func(label string) {
		t.Helper()
		snap := env.Read(t)
		for key, p := range snap {
			if key.Metric == "in_flight" && p.Value != 0 {
				t.Errorf("%s: in_flight{%s} = %v after the run", label, key.Stage, p.Value)
			}
			if key.Metric == "finished" && key.Outcome == "error" && p.Value != 0 {
				t.Errorf("%s: finished{%s,error} = %v: no call failed", label, key.Stage, p.Value)
			}
		}
	}
	for name, shape := range shapes {
		for k := range n {
			label := fmt.Sprintf("%s/cancel@%d", name, k)
			ctx, cancel := context.WithCancel(base)
			runcheck.Run(t, label, func() { _, _ = sink.Count(ctx, shape(k, cancel)) })
			cancel()
			check(label)
			// Early stops: First, and a break after k+1 items; no cancel.
			label = fmt.Sprintf("%s/first", name)
			never := func() {}
			if name == "ratelimit" || name == "backoff" {
				continue
			}
			runcheck.Run(t, label, func() { _, _, _ = sink.First(base, shape(n, never)) })
			check(label)
			label = fmt.Sprintf("%s/break@%d", name, k)
			runcheck.Run(t, label, func() {
				i := 0
				for range sink.All(base, shape(n, never)) {
					if i++; i > k {
						break
					}
				}
			})
			check(label)
		}
	}
	snap := env.Read(t)
	CheckTap34(t, snap, tp)
	CheckStats34(t, snap, &stats)
}

// stage.Watcher.Finished: "A call that runtime.Goexit ended (see ErrGoexit)
// is reported as cut short too"; the adapters' New: "a call cut short by
// the end of the run ... did not fail", in flight: "items taken and not
// finished". A Goexit on a worker goroutine of each kind of stage (under
// KeyBy, Ordered, Retry, after an emit): the run fails with ErrGoexit, no
// item stays in flight, no call counts as an error, and the series match
// the engine's calls and Stats. In a child process.
func review34GoexitEveryKind(t *testing.T, newEnv func(testing.TB) Env34) {
	runcheck.InChildTest(t, func(t *testing.T) {
		env := newEnv(t)
		obs := env.Obs
		tp := NewTap34(obs)
		var stats stage.Stats
		ctx := stage.Observe(stage.Observe(context.Background(), tp), &stats)
		in := func() stage.Stream[int] { return source.Slice(Ints(12)) }
		g := func(v int) {
			if v == 5 {
				runtime.Goexit()
			}
		}
		attempt := 0
		pipes := map[string]func() error{
			"map": func() error {
				_, err := sink.Count(ctx, stage.Map(in(), func(_ context.Context, v int) (int, error) { g(v); return v, nil },
					stage.Name("gmap"), stage.Workers(2), stage.Buffer(1)))
				return err
			},
			"ordered": func() error {
				_, err := sink.Count(ctx, stage.Map(in(), func(_ context.Context, v int) (int, error) { g(v); return v, nil },
					stage.Name("gord"), stage.Workers(3), stage.Ordered()))
				return err
			},
			"keyby": func() error {
				_, err := sink.Count(ctx, stage.Filter(in(), func(_ context.Context, v int) (bool, error) { g(v); return true, nil },
					stage.Name("gkey"), stage.Workers(3), stage.KeyBy(func(v int) int { return v % 2 })))
				return err
			},
			"flatmap": func() error {
				_, err := sink.Count(ctx, stage.FlatMap(in(), func(_ context.Context, v int) ([]int, error) { g(v); return []int{v, v}, nil },
					stage.Name("gflat"), stage.Workers(2), stage.Buffer(1)))
				return err
			},
			"retry": func() error {
				_, err := sink.Count(ctx, stage.Map(in(), func(_ context.Context, v int) (int, error) {
					if v == 5 {
						if attempt++; attempt == 2 {
							runtime.Goexit()
						}
						return 0, errR34
					}
					return v, nil
				}, stage.Name("gretry"), stage.Workers(2), stage.Buffer(1), stage.Retry(3, time.Microsecond)))
				return err
			},
			"apply": func() error {
				_, err := sink.Count(ctx, stage.Apply(in(), func(_ context.Context, v int, emit func(int) bool) error {
					emit(v)
					g(v)
					return nil
				}, stage.Name("gapply"), stage.Workers(2), stage.Buffer(1)))
				return err
			},
			"concurrent": func() error {
				tasks := stage.Map(in(), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
					return func(context.Context) (int, error) { g(v); return v, nil }, nil
				}, stage.Name("gmk"))
				_, err := sink.Count(ctx, stage.Concurrent(tasks, stage.Name("gconc"), stage.Workers(2), stage.Buffer(1)))
				return err
			},
		}
		for name, p := range pipes {
			var err error
			runcheck.Run(t, name, func() { err = p() })
			if !errors.Is(err, stage.ErrGoexit) {
				t.Errorf("%s: run = %v, want ErrGoexit", name, err)
			}
		}
		snap := env.Read(t)
		for k, p := range snap {
			if k.Metric == "in_flight" && p.Value != 0 {
				t.Errorf("in_flight{%s,%s} = %v after the runs, want 0", k.Stage, k.Kind, p.Value)
			}
			if k.Metric == "finished" && k.Outcome == "error" && p.Value != 0 {
				t.Errorf("finished{%s,%s,error} = %v: a call ended by Goexit is cut short, not failed", k.Stage, k.Kind, p.Value)
			}
		}
		CheckTap34(t, snap, tp)
		CheckStats34(t, snap, &stats)
	})
}

var errR34 = errors.New("review34 item error")

// Runs34 runs a mix of pipelines (every stage kind that calls a function,
// every policy, Retry, RateLimit, KeyBy and its key panic, Ordered, Buffer,
// outputs that wait for room, FailFast, a panic, a cancellation, an early
// stop, names shared between pipelines and kinds), concurrently, with ctx.
func Runs34(t *testing.T, ctx context.Context) {
	a := func() stage.Stream[int] {
		m := stage.Map(source.Slice(Ints(120)), func(_ context.Context, v int) (int, error) {
			if v%11 == 0 {
				return 0, errR34
			}
			return v, nil
		}, stage.Name("retry"), stage.Retry(3, 50*time.Microsecond), stage.KeyBy(func(v int) int { return v % 5 }),
			stage.Ordered(), stage.Workers(4), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
		fm := stage.FlatMap(m, func(_ context.Context, v int) ([]int, error) {
			if v%13 == 0 {
				panic("review34 flatmap")
			}
			return []int{v, v + 1, v + 2}, nil
		}, stage.Name("fan"), stage.Workers(2), stage.OnError(stage.Forward))
		return stage.Filter(fm, func(_ context.Context, v int) (bool, error) { return v%2 == 0, nil },
			stage.Name("shared"), stage.RateLimit(50000, 1), stage.Workers(3))
	}
	b := func() stage.Stream[int] {
		tasks := stage.Map(source.Slice(Ints(60)), func(_ context.Context, v int) (func(context.Context) (int, error), error) {
			if v%9 == 0 {
				return nil, nil
			}
			return func(context.Context) (int, error) {
				if v%10 == 0 {
					return 0, errR34
				}
				return v, nil
			}, nil
		}, stage.Name("shared"), stage.Workers(2))
		return stage.Concurrent(tasks, stage.Name("tasks"), stage.Workers(5), stage.OnError(stage.Budget(100, nil)))
	}
	c := func() stage.Stream[int] {
		ap := stage.Apply(source.Slice(Ints(40)), func(_ context.Context, v int, emit func(int) bool) error {
			for i := range 5 {
				if !emit(v*5 + i) {
					return errR34
				}
			}
			return nil
		}, stage.Name("apply"), stage.Workers(3))
		return stage.Unbatch(stage.Batch(ap, 7, 0))
	}
	d := func() stage.Stream[int] {
		return stage.Map(source.Slice(Ints(30)), func(_ context.Context, v int) (int, error) { return v, nil },
			stage.Name("keypanic"), stage.Workers(3), stage.KeyBy(func(v int) int {
				if v%8 == 3 {
					panic("review34 key")
				}
				return v % 2
			}), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	}
	e := func() stage.Stream[int] {
		m := stage.Map(source.Slice(Ints(100)), func(_ context.Context, v int) (int, error) {
			if v == 50 {
				panic("review34 failfast")
			}
			return v, nil
		}, stage.Name("ff"), stage.Workers(4))
		return stage.Map(m, func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("after"), stage.Workers(2))
	}
	var wg sync.WaitGroup
	run := func(label string, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runcheck.NoHang(t, label, f)
		}()
	}
	for i := range 3 {
		run(fmt.Sprint("a", i), func() { _, _ = sink.Count(ctx, a()) })
		run(fmt.Sprint("b", i), func() { _, _ = sink.Count(ctx, b()) })
		run(fmt.Sprint("c", i), func() {
			_ = sink.ForEach(ctx, c(), func(context.Context, int) error { return nil })
		})
		run(fmt.Sprint("d", i), func() { _, _ = sink.Slice(ctx, d()) })
		run(fmt.Sprint("e", i), func() { _, _ = sink.Count(ctx, e()) })
		run(fmt.Sprint("first", i), func() { _, _, _ = sink.First(ctx, a()) })
		run(fmt.Sprint("break", i), func() {
			n := 0
			for range sink.All(ctx, b()) {
				if n++; n == 7 {
					break
				}
			}
		})
		run(fmt.Sprint("cancel", i), func() {
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			m := stage.Map(source.Slice(Ints(80)), func(fctx context.Context, v int) (int, error) {
				if v == 30 {
					cancel()
				}
				if v >= 30 {
					<-fctx.Done()
					return 0, fctx.Err()
				}
				return v, nil
			}, stage.Name("cancel"), stage.Workers(4), stage.Buffer(1))
			_, _ = sink.Count(cctx, m)
		})
	}
	wg.Wait()
}

// New: received: "items taken for a call", finished: "calls ended;
// outcome "ok" or "error"", in flight: "items taken and not finished",
// duration: "call durations (all attempts)";
// "A call's outcome is "error" when its item failed ... and "ok"
// otherwise"; "The duration histogram's buckets are in seconds, from 1 µs
// to about 4 s, each bound 4 times the one before. A call's duration is the
// stage.Watcher's latency". A tap between the engine and the adapter
// records every Received and Finished(latency, err): each series must
// match it exactly (count, sum, every bucket), and match stage.Stats.
func review34ExactPerCall(t *testing.T, newEnv func(testing.TB) Env34) {
	env := newEnv(t)
	obs := env.Obs
	tp := NewTap34(obs)
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), tp), &stats)
	Runs34(t, ctx)
	snap := env.Read(t)
	CheckTap34(t, snap, tp)
	CheckStats34(t, snap, &stats)
	// Every series belongs to a stage the engine announced.
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for k := range snap {
		if tp.st[[2]string{k.Stage, k.Kind}] == nil {
			t.Errorf("series %+v for a stage never announced", k)
		}
	}
	// The runs did what they were built for (else the test proves little).
	for _, k := range [][2]string{{"retry", "map"}, {"fan", "flatmap"}, {"tasks", "concurrent"}, {"keypanic", "map"}, {"ff", "map"}} {
		if r := tp.st[k]; r == nil || r.failed == 0 {
			t.Errorf("stage %v: no failed call seen", k)
		}
	}
	for _, k := range [][2]string{{"shared", "filter"}, {"shared", "map"}, {"apply", "apply"}, {"after", "map"}, {"cancel", "map"}} {
		if r := tp.st[k]; r == nil || r.ok == 0 {
			t.Errorf("stage %v: no call seen", k)
		}
	}
}

// New: "The duration histogram's buckets are in seconds, from 1 µs to about
// 4 s, each bound 4 times the one before. A call's duration is the
// stage.Watcher's latency". A latency exactly on a bound falls in that
// bound's bucket (le), one nanosecond more in the next; outcomes follow the
// three forms of Watcher.Finished's err. The watcher is driven directly, as
// the engine does (Stage, Received, Finished, Closed).
func review34BucketEdgesAndOutcomes(t *testing.T, newEnv func(testing.TB) Env34) {
	env := newEnv(t)
	obs := env.Obs
	bounds := Bounds34()
	w := obs.Stage(stage.Info{Name: "edge", Kind: "map", Workers: 1, Total: -1})
	var lats []time.Duration
	for _, b := range bounds {
		d := time.Duration(math.Round(b * 1e9))
		lats = append(lats, d, d+1)
	}
	lats = append(lats, 0, time.Hour, math.MaxInt64)
	cut := fmt.Errorf("cut short: %w", context.Canceled)
	failed := &stage.Error{Stage: "edge", Index: 3, Attempts: 1, Err: errR34}
	wantOK, wantErr := 0, 0
	for i, d := range lats {
		w.Received()
		switch i % 3 {
		case 0:
			w.Finished(d, nil)
			wantOK++
		case 1:
			w.Finished(d, failed)
			wantErr++
		case 2:
			w.Finished(d, cut)
			wantOK++
		}
	}
	w.Received() // one left in flight
	w.Closed()
	snap := env.Read(t)
	k := func(m, o string) Key34 { return Key34{m, "edge", "map", o} }
	if v := snap[k("received", "")].Value; v != float64(len(lats)+1) {
		t.Errorf("received = %v, want %d", v, len(lats)+1)
	}
	if v := snap[k("finished", "ok")].Value; v != float64(wantOK) {
		t.Errorf("finished ok = %v, want %d (nil and cut-short errors)", v, wantOK)
	}
	if v := snap[k("finished", "error")].Value; v != float64(wantErr) {
		t.Errorf("finished error = %v, want %d (*stage.Error)", v, wantErr)
	}
	if v := snap[k("in_flight", "")].Value; v != 1 {
		t.Errorf("in_flight = %v, want 1 (one received, not finished; Closed does not finish it)", v)
	}
	h := snap[k("duration", "")]
	want := make([]uint64, len(bounds))
	var sum float64
	for _, d := range lats {
		sum += d.Seconds()
		for i, b := range bounds {
			if d.Seconds() <= b {
				want[i]++
			}
		}
	}
	if fmt.Sprint(h.Bounds) != fmt.Sprint(bounds) {
		t.Fatalf("bounds = %v, want %v", h.Bounds, bounds)
	}
	if fmt.Sprint(h.Cum) != fmt.Sprint(want) || h.Value != float64(len(lats)) {
		t.Errorf("cumulative buckets = %v (count %v), want %v (count %d): latencies %v", h.Cum, h.Value, want, len(lats), lats)
	}
	if math.Abs(h.Sum-sum) > 1e-9*sum {
		t.Errorf("sum = %v s, want %v s", h.Sum, sum)
	}
}

// Observer.Stage: "Stage is called once per stage per run"; an adapter
// resolves a stage's series once. Two pipelines sharing one observer
// with the same stage names: a name used by stages of two kinds gets a
// series per kind (by stage and kind), the same name and kind adds up; a
// run whose stages have no item still leaves in flight 0.
func review34SameNamesTwoPipelines(t *testing.T, newEnv func(testing.TB) Env34) {
	env := newEnv(t)
	obs := env.Obs
	var stats stage.Stats
	ctx := stage.Observe(stage.Observe(context.Background(), obs), &stats)
	p1 := stage.Filter(stage.Map(source.Slice(Ints(10)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("s")),
		func(_ context.Context, v int) (bool, error) { return v < 5, nil }, stage.Name("t"))
	p2 := stage.Map(stage.Filter(source.Slice(Ints(7)), func(_ context.Context, v int) (bool, error) {
		if v == 6 {
			return false, errR34
		}
		return true, nil
	}, stage.Name("s"), stage.OnError(stage.Forward)), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("t"))
	p3 := stage.Map(source.Slice([]int{}), func(_ context.Context, v int) (int, error) { return v, nil }, stage.Name("t"))
	for range 2 {
		if _, err := sink.Count(ctx, p1); err != nil {
			t.Fatal(err)
		}
		var se *stage.Error
		if _, err := sink.Count(ctx, p2); !errors.As(err, &se) {
			t.Fatalf("p2: %v", err)
		}
		if _, err := sink.Count(ctx, p3); err != nil {
			t.Fatal(err)
		}
	}
	snap := env.Read(t)
	for _, c := range []struct {
		k    Key34
		want float64
	}{
		{Key34{"received", "s", "map", ""}, 20},
		{Key34{"received", "s", "filter", ""}, 14},
		{Key34{"finished", "s", "filter", "error"}, 2},
		{Key34{"finished", "s", "filter", "ok"}, 12},
		{Key34{"received", "t", "filter", ""}, 20},
		{Key34{"received", "t", "map", ""}, 12}, // forwarded errors are not received
		{Key34{"in_flight", "t", "map", ""}, 0},
		{Key34{"duration", "t", "map", ""}, 12},
	} {
		if p, ok := snap[c.k]; !ok || p.Value != c.want {
			t.Errorf("%+v = %v (present %v), want %v", c.k, p.Value, ok, c.want)
		}
	}
	CheckStats34(t, snap, &stats)
}
