package stage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func r35Levels(recs []r35Rec) (info, warn, other int) {
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

// Doc: "Logger returns an Observer that logs to l: a stage's start (Info,
// with its kind, workers and expected total), each failed item (Warn, with
// its index, attempts and error ...), and its close (Info, with its counts
// and mean latency). It never logs per successful item."
func TestReview35LoggerSuccess(t *testing.T) {
	h := newR35Handler()
	s := stage.Filter(stage.Map(source.Slice(ints(50)), double, stage.Workers(3)), func(context.Context, int) (bool, error) { return true, nil }, stage.Name("keep-all"))
	r35Run(t, func() {
		if _, err := sink.Slice(stage.Observe(context.Background(), stage.Logger(slog.New(h))), s); err != nil {
			t.Error(err)
		}
	})
	recs := h.records()
	info, warn, other := r35Levels(recs)
	if info != 4 || warn != 0 || other != 0 {
		t.Errorf("records %d info %d warn %d other, want 4 info (start+close × 2 stages): %v", info, warn, other, recs)
	}
	var starts, closes []r35Rec
	for _, r := range recs {
		if strings.Contains(r.all(), "50") && strings.Contains(r.all(), "3") && strings.Contains(r.all(), "map") {
			starts = append(starts, r)
		}
		_ = closes
	}
	if len(starts) == 0 {
		t.Errorf("no record of map#1 names its kind, workers 3 and total 50: %v", recs)
	}
	for _, name := range []string{"map#1", "keep-all"} {
		n := 0
		for _, r := range recs {
			if strings.Contains(r.all(), name) {
				n++
			}
		}
		if n != 2 {
			t.Errorf("%d records name stage %q, want 2 (start and close): %v", n, name, recs)
		}
	}
}

// Each failed item: one Warn with index, attempts and error; in-flight
// calls cut by the FailFast cancel are not failures.
func TestReview35LoggerFailures(t *testing.T) {
	t.Run("forward-retry", func(t *testing.T) {
		h := newR35Handler()
		bad := errors.New("bad-thing")
		s := stage.Map(source.Slice(ints(10)), func(_ context.Context, x int) (int, error) {
			if x == 4 || x == 7 {
				return 0, bad
			}
			return x, nil
		}, stage.OnError(stage.Forward), stage.Retry(3, 0))
		r35Run(t, func() {
			sink.Slice(stage.Observe(context.Background(), stage.Logger(slog.New(h))), s)
		})
		var warns []r35Rec
		for _, r := range h.records() {
			if r.level == slog.LevelWarn {
				warns = append(warns, r)
			}
		}
		if len(warns) != 2 {
			t.Fatalf("%d warns, want 2: %v", len(warns), h.records())
		}
		for _, w := range warns {
			a := w.all()
			if !strings.Contains(a, "bad-thing") || !strings.Contains(a, "3") || !(strings.Contains(a, "4") || strings.Contains(a, "7")) {
				t.Errorf("warn lacks index, attempts 3 or error: %v", w)
			}
		}
	})
	t.Run("failfast-inflight", func(t *testing.T) {
		h := newR35Handler()
		started := make(chan struct{}, 4)
		s := stage.Map(source.Slice(ints(4)), func(ctx context.Context, x int) (int, error) {
			started <- struct{}{}
			if x == 0 {
				for i := 0; i < 4; i++ {
					<-started
				}
				return 0, errors.New("first")
			}
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Workers(4), stage.Buffer(1), stage.Ordered())
		r35Run(t, func() {
			sink.Slice(stage.Observe(context.Background(), stage.Logger(slog.New(h))), s)
		})
		_, warn, _ := r35Levels(h.records())
		if warn != 1 {
			t.Errorf("%d warns, want 1 (calls cut by the run's cancellation are no failures): %v", warn, h.records())
		}
	})
	t.Run("timeout-is-failure", func(t *testing.T) {
		h := newR35Handler()
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		s := stage.Map(source.Slice(ints(2)), func(ctx context.Context, x int) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		}, stage.Timeout(time.Millisecond), stage.OnError(stage.Forward), stage.Workers(1))
		r35Run(t, func() {
			sink.Slice(stage.Observe(ctx, stage.Logger(slog.New(h))), s)
		})
		_, warn, _ := r35Levels(h.records())
		if warn != 2 {
			t.Errorf("%d warns, want 2 (each timed-out item failed): %v", warn, h.records())
		}
	})
	t.Run("caller-deadline-not-failure", func(t *testing.T) {
		h := newR35Handler()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s := stage.Map(source.Slice(ints(1)), func(c context.Context, x int) (int, error) {
			cancel()
			<-c.Done()
			return 0, c.Err()
		})
		r35Run(t, func() {
			sink.Slice(stage.Observe(ctx, stage.Logger(slog.New(h))), s)
		})
		_, warn, _ := r35Levels(h.records())
		if warn != 0 {
			t.Errorf("%d warns for a call the caller's cancellation ended: %v", warn, h.records())
		}
	})
	t.Run("handle-keypanic-niltask", func(t *testing.T) {
		h := newR35Handler()
		accept := stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil }))
		kb := stage.Map(source.Slice(ints(3)), double, accept, stage.KeyBy(func(x int) int {
			if x == 1 {
				panic("key")
			}
			return x
		}))
		ctx := stage.Observe(context.Background(), stage.Logger(slog.New(h)))
		r35Run(t, func() {
			if _, err := sink.Slice(ctx, kb); err != nil {
				t.Error(err)
			}
			if _, err := sink.Slice(ctx, stage.Concurrent(source.Slice([]func(context.Context) (int, error){nil}), accept)); err != nil {
				t.Error(err)
			}
		})
		var warns []string
		for _, r := range h.records() {
			if r.level == slog.LevelWarn {
				warns = append(warns, r.all())
			}
		}
		if len(warns) != 2 {
			t.Fatalf("warns %v, want 2", warns)
		}
		if !strings.Contains(strings.Join(warns, "|"), "nil task") {
			t.Errorf("warns %v lack the nil task error", warns)
		}
	})
}

// Doc: never crashing on odd names; a panic in an observer fails the run and
// the process goes on.
func TestReview35LoggerOddNames(t *testing.T) {
	names := []string{"\x00", "a\nb", "=", "\"{}\"", "\xff\xfe", strings.Repeat("x", 1<<16), "map#1"}
	for _, hname := range []string{"text", "json", "capture"} {
		var buf bytes.Buffer
		var lg *slog.Logger
		switch hname {
		case "text":
			lg = slog.New(slog.NewTextHandler(&buf, nil))
		case "json":
			lg = slog.New(slog.NewJSONHandler(&buf, nil))
		default:
			lg = slog.New(newR35Handler())
		}
		s := source.Slice(ints(3))
		for _, n := range names {
			s = stage.Map(s, func(_ context.Context, x int) (int, error) {
				if x == 1 {
					return 0, errors.New("e\n\xff")
				}
				return x, nil
			}, stage.Name(n), stage.OnError(stage.Forward))
		}
		r35Run(t, func() {
			_, err := sink.Slice(stage.Observe(context.Background(), stage.Logger(lg)), s)
			var fe *sink.ForwardedError
			if !errors.As(err, &fe) || fe.Count != 1 {
				t.Errorf("%s: %v", hname, err)
			}
		})
	}
}

type r35PanicHandler struct{ at slog.Level }

func (h r35PanicHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h r35PanicHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level == h.at {
		panic("handler boom")
	}
	return nil
}
func (h r35PanicHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h r35PanicHandler) WithGroup(string) slog.Handler      { return h }

type r35ErrHandler struct{}

func (r35ErrHandler) Enabled(context.Context, slog.Level) bool  { return true }
func (r35ErrHandler) Handle(context.Context, slog.Record) error { return errors.New("disk full") }
func (h r35ErrHandler) WithAttrs([]slog.Attr) slog.Handler      { return h }
func (h r35ErrHandler) WithGroup(string) slog.Handler           { return h }

func TestReview35LoggerHostileHandlers(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string {
		var res []string
		run := func(lg *slog.Logger, fail bool) string {
			s := stage.Map(source.Slice(ints(3)), func(_ context.Context, x int) (int, error) {
				if fail && x == 1 {
					return 0, errors.New("bad")
				}
				return x, nil
			}, stage.OnError(stage.Forward))
			_, err := sink.Slice(stage.Observe(context.Background(), stage.Logger(lg)), s)
			var pe *stage.PanicError
			switch {
			case errors.As(err, &pe):
				return "panic-error"
			case err == nil:
				return "nil"
			default:
				var fe *sink.ForwardedError
				if errors.As(err, &fe) && len(fe.Sample) == 1 && strings.Contains(err.Error(), "bad") && !strings.Contains(err.Error(), "\n") {
					return "forwarded"
				}
				return "other:" + err.Error()
			}
		}
		res = append(res, "start-panics="+run(slog.New(r35PanicHandler{slog.LevelInfo}), false))
		res = append(res, "warn-panics="+run(slog.New(r35PanicHandler{slog.LevelWarn}), true))
		res = append(res, "handler-errs="+run(slog.New(r35ErrHandler{}), true))
		res = append(res, "zero-logger="+run(new(slog.Logger), false))
		return strings.Join(res, " ")
	})
	if !ok {
		return
	}
	t.Logf("outcome: %s", out)
	for _, want := range []string{"start-panics=panic-error", "warn-panics=", "handler-errs=forwarded", "zero-logger=panic-error"} {
		if !strings.Contains(out, want) {
			t.Errorf("outcome %q lacks %q", out, want)
		}
	}
	if strings.Contains(out, "warn-panics=forwarded") || strings.Contains(out, "warn-panics=nil") {
		t.Errorf("a panicking handler on Warn did not fail the run: %s", out)
	}
}

func TestReview35LoggerNil(t *testing.T) {
	if r35Panics(func() { stage.Logger(nil) }) == nil {
		t.Error("Logger(nil) did not panic")
	}
}

// A Logger attached to runs at once: each run logs its own start and close.
func TestReview35LoggerConcurrentRuns(t *testing.T) {
	h := newR35Handler()
	ctx := stage.Observe(context.Background(), stage.Logger(slog.New(h)))
	s := stage.Map(source.Slice(ints(20)), double)
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := sink.Slice(ctx, s); err != nil {
				t.Error(err)
			}
		}()
	}
	r35Run(t, wg.Wait)
	info, warn, other := r35Levels(h.records())
	if info != 10 || warn+other != 0 {
		t.Errorf("info %d warn %d other %d, want 10 info", info, warn, other)
	}
	_ = fmt.Sprint
}

// The close record carries the stage's counts in that run: a Logger reused
// for a second run reports that run's counts, not a running total.
func TestReview35LoggerCountsPerRun(t *testing.T) {
	h := newR35Handler()
	ctx := stage.Observe(context.Background(), stage.Logger(slog.New(h)))
	s := stage.Map(source.Slice(ints(3)), double)
	for i := 0; i < 2; i++ {
		r35Run(t, func() {
			if _, err := sink.Slice(ctx, s); err != nil {
				t.Error(err)
			}
		})
	}
	var closes []string
	for _, r := range h.records() {
		if v, ok := r.attrs["received"]; ok {
			closes = append(closes, v)
		}
	}
	if fmt.Sprint(closes) != "[3 3]" {
		t.Errorf("close records' received counts %v, want [3 3] (per run)", closes)
	}
}
