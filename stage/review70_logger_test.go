package stage_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func r70levels(recs []r70rec) (info, warn, other int) {
	for _, r := range recs {
		switch r.level {
		case slog.LevelInfo:
			info++
		case slog.LevelWarn:
			warn++
		default:
			other++
		}
	}
	return
}

// Logger: "logs to l: a stage's start (Info, with its kind, workers and
// expected total), each failed item (Warn, with its index, attempts and
// error ...), and its close (Info, with its counts and mean latency; the
// counts are the run's). It never logs per successful item."
func TestReview70LoggerRecords(t *testing.T) {
	for _, m := range modes {
		t.Run(m.String(), func(t *testing.T) {
			h := newR70handler()
			s := stage.Map(source.Slice(ints(40)), func(_ context.Context, v int) (int, error) {
				if v == 17 || v == 31 {
					return 0, fmt.Errorf("bad row %d", v)
				}
				return v, nil
			}, m.opts(stage.Name("logged"), stage.Retry(3, 0), stage.OnError(stage.Forward))...)
			_, err := sink.Slice(stage.Observe(context.Background(), stage.Logger(slog.New(h))), s)
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 2 {
				t.Fatalf("err %v", err)
			}
			recs := h.records()
			info, warn, other := r70levels(recs)
			if info != 2 || warn != 2 || other != 0 || len(recs) != 4 {
				t.Fatalf("records %v; want Info start, 2 Warn, Info close", recs)
			}
			start, end := recs[0], recs[3]
			if start.level != slog.LevelInfo || end.level != slog.LevelInfo {
				t.Fatalf("records %v; want the start first and the close last", recs)
			}
			workers := fmt.Sprint(m.workers)
			if !start.hasValue("map") || !start.hasValue(workers) || !start.hasValue("40") {
				t.Errorf("start record %v lacks kind map, workers %s or total 40", start, workers)
			}
			for _, w := range recs[1:3] {
				if w.level != slog.LevelWarn {
					t.Fatalf("records %v", recs)
				}
				idx := "17"
				if w.hasValueContaining("bad row 31") {
					idx = "31"
				}
				if !w.hasValue(idx) || !w.hasValue("3") || !w.hasValueContaining("bad row "+idx) {
					t.Errorf("Warn record %v lacks index %s, attempts 3 or the error", w, idx)
				}
			}
			if !end.hasValue("40") || !end.hasValue("2") {
				t.Errorf("close record %v lacks the counts (40 received and finished, 2 failed)", end)
			}
		})
	}
}

// Logger: "It never logs per successful item", for every stage kind, with a
// large input.
func TestReview70LoggerNoPerItem(t *testing.T) {
	h := newR70handler()
	s := stage.Map(source.Slice(ints(3000)), double, stage.Workers(8))
	s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Workers(-1))
	s = stage.FlatMap(s, func(_ context.Context, v int) ([]int, error) { return []int{v}, nil })
	s = stage.Unbatch(stage.Batch(s, 7, 0))
	n, err := sink.Count(stage.Observe(context.Background(), stage.Logger(slog.New(h))), s)
	if err != nil || n != 3000 {
		t.Fatal(n, err)
	}
	if recs := h.records(); len(recs) != 8 {
		t.Errorf("%d records for 4 stages, want 8 (start and close each)", len(recs))
	}
}

// Logger: "each failed item (Warn ...; a call ended by the run's
// cancellation is not a failure)".
func TestReview70LoggerCutShortNotWarned(t *testing.T) {
	h := newR70handler()
	const w = 5
	started := newR70gate(w - 1)
	s := stage.Map(source.Slice(ints(w)), func(ctx context.Context, v int) (int, error) {
		if v == 0 {
			<-started.Wait()
			return 0, errR70
		}
		started.Arrive()
		<-ctx.Done()
		return 0, errors.New("gave up")
	}, stage.Workers(w), stage.Buffer(1))
	var err error
	runcheck.Run(t, "slice", func() {
		_, err = sink.Slice(stage.Observe(context.Background(), stage.Logger(slog.New(h))), s)
	})
	if !errors.Is(err, errR70) {
		t.Fatal(err)
	}
	if _, warn, _ := r70levels(h.records()); warn != 1 {
		t.Errorf("%d Warn records, want 1 (the failed item; the cut-short calls are not failures): %v", warn, h.records())
	}
}

// Logger: "its close (Info, with its counts and mean latency; the counts are
// the run's)": two runs at once of one stage name share one Logger; each
// close reports its own run's counts, not their sum.
func TestReview70LoggerCountsAreTheRuns(t *testing.T) {
	// Learn the messages of start and close from a run alone.
	h0 := newR70handler()
	_, _ = sink.Count(stage.Observe(context.Background(), stage.Logger(slog.New(h0))), stage.Map(source.Slice(ints(2)), double))
	r0 := h0.records()
	if len(r0) != 2 || r0[0].msg == r0[1].msg {
		t.Skipf("start and close records not told apart by message: %v", r0)
	}
	closeMsg := r0[1].msg

	h := newR70handler()
	lg := stage.Logger(slog.New(h))
	both := newR70gate(2)
	mk := func(n int) stage.Stream[int] {
		return stage.Map(source.Slice(ints(n)), func(_ context.Context, v int) (int, error) {
			if v == 0 {
				both.Arrive()
				<-both.Wait()
			}
			return v, nil
		}, stage.Workers(1))
	}
	errs := make(chan error, 2)
	for _, n := range []int{7, 13} {
		go func() {
			_, err := sink.Count(stage.Observe(context.Background(), lg), mk(n))
			errs <- err
		}()
	}
	runcheck.NoHang(t, "runs", func() {
		for range 2 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})
	var closes []r70rec
	for _, r := range h.records() {
		if r.msg == closeMsg {
			closes = append(closes, r)
		}
	}
	if len(closes) != 2 {
		t.Fatalf("close records %v", closes)
	}
	seven, thirteen := 0, 0
	for _, c := range closes {
		if c.hasValue("20") {
			t.Errorf("close record %v reports the two runs' sum", c)
		}
		if c.hasValue("7") && !c.hasValue("13") {
			seven++
		}
		if c.hasValue("13") && !c.hasValue("7") {
			thirteen++
		}
	}
	if seven != 1 || thirteen != 1 {
		t.Errorf("close records %v; want one with 7 items, one with 13", closes)
	}
}

// Logger: "A handler that panics (the zero slog.Logger's has none to call)
// fails the run with a *PanicError, as any observer's panic does. Logger
// panics if l is nil." And (Watcher) "a panic in Closed ... is returned
// unless the run failed".
func TestReview70LoggerHandlerPanics(t *testing.T) {
	fail := func(v int) bool { return v == 3 }
	cases := []struct {
		name    string
		panicAt func(slog.Record) bool
		failing bool
	}{
		{"every", func(slog.Record) bool { return true }, false},
		{"warn", func(r slog.Record) bool { return r.Level == slog.LevelWarn }, true},
		{"info", func(r slog.Record) bool { return r.Level == slog.LevelInfo }, false},
	}
	for _, c := range cases {
		for _, m := range modes {
			t.Run(c.name+"/"+m.String(), func(t *testing.T) {
				h := newR70handler()
				h.panicAt = c.panicAt
				s := stage.Map(source.Slice(ints(10)), func(_ context.Context, v int) (int, error) {
					if c.failing && fail(v) {
						return 0, errR70
					}
					return v, nil
				}, m.opts(stage.OnError(stage.Forward))...)
				var err error
				runcheck.Run(t, "slice", func() {
					_, err = sink.Slice(stage.Observe(context.Background(), stage.Logger(slog.New(h))), s)
				})
				var pe *stage.PanicError
				if !errors.As(err, &pe) || !strings.Contains(fmt.Sprint(pe.Value), "r70handler") {
					t.Fatalf("err %v; want one wrapping the handler's *PanicError", err)
				}
			})
		}
	}
	t.Run("zero-logger", func(t *testing.T) {
		var err error
		runcheck.Run(t, "slice", func() {
			_, err = sink.Slice(stage.Observe(context.Background(), stage.Logger(&slog.Logger{})), stage.Map(source.Slice(ints(3)), double))
		})
		var pe *stage.PanicError
		if !errors.As(err, &pe) {
			t.Fatalf("err %v; want a *PanicError", err)
		}
	})
	t.Run("nil", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("Logger(nil) did not panic")
			}
		}()
		stage.Logger(nil)
	})
}
