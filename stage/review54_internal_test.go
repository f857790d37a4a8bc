package stage

// Review 54 (internal): c91b3a3's opening part of a run (opened, start)
// and 28d13fb's call options behind a pointer (config.calls, forRun's copy,
// processor.plain), looked at directly.

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// r54Config is the configuration opts give a Map, as a build makes it.
func r54Config(opts ...Option) config {
	var c config
	c.set("stage.Map", "map", opts)
	return c
}

// r54Plain reports whether a stage built with opts is plain in a run.
func r54Plain(opts ...Option) bool {
	r := newRun(context.Background())
	defer r.finish()
	c := r54Config(opts...)
	p := newProcessor(r, c.forRun(r, &node{}), func(context.Context, int, emitter[int]) error { return nil })
	return p.plain
}

// TestReview54PlainOnlyWithoutCallOptions: plain (a call is one attempt
// straight to the user's function) holds exactly when no Retry of more
// than one attempt, no Timeout and no rate limit is in effect, whatever
// the order in which the options came.
func TestReview54PlainOnlyWithoutCallOptions(t *testing.T) {
	shared := rate.NewLimiter(rate.Inf, 1)
	yes := func(error) bool { return true }
	cases := []struct {
		name  string
		opts  []Option
		plain bool
	}{
		{"none", nil, true},
		{"Workers/Ordered/Buffer/Name", []Option{Workers(3), Ordered(), Buffer(2), Name("x")}, true},
		{"Retry(1,0)", []Option{Retry(1, 0)}, true},
		{"Retry(1,1s)", []Option{Retry(1, time.Second)}, true},
		{"RetryIf(1)", []Option{RetryIf(1, 0, yes)}, true},
		{"Retry(2,0)", []Option{Retry(2, 0)}, false},
		{"RetryIf(2)", []Option{RetryIf(2, 0, yes)}, false},
		{"Timeout", []Option{Timeout(time.Hour)}, false},
		{"RateLimit", []Option{RateLimit(1e9, 1)}, false},
		{"SharedRateLimit", []Option{SharedRateLimit(shared)}, false},
		{"Retry(1,0) then Timeout", []Option{Retry(1, 0), Timeout(time.Hour)}, false},
		{"Timeout then Retry(1,0)", []Option{Timeout(time.Hour), Retry(1, 0)}, false},
		{"RateLimit then Retry(1,0)", []Option{RateLimit(1e9, 1), Retry(1, 0)}, false},
		{"Retry(3,0) then Retry(1,0)", []Option{Retry(3, 0), Retry(1, 0)}, true},
		{"Retry(1,0) then Retry(3,0)", []Option{Retry(1, 0), Retry(3, 0)}, false},
	}
	for _, c := range cases {
		if got := r54Plain(c.opts...); got != c.plain {
			t.Errorf("%s: plain = %v, want %v", c.name, got, c.plain)
		}
	}
}

// TestReview54ForRunRateLimit: RateLimit's bucket is per run (each run
// gets a fresh one, the build's stays without one), SharedRateLimit's is
// the user's in every run; the run's copy keeps Retry and Timeout.
func TestReview54ForRunRateLimit(t *testing.T) {
	r1, r2 := newRun(context.Background()), newRun(context.Background())
	defer r1.finish()
	defer r2.finish()

	c := r54Config(RateLimit(10, 2), Retry(3, time.Millisecond), Timeout(time.Hour))
	c1, c2 := c.forRun(r1, &node{}), c.forRun(r2, &node{})
	if c.calls.rateLimit.limiter != nil {
		t.Fatal("forRun set a limiter on the build's call options: runs of one build would share it")
	}
	if c1.calls == c.calls || c2.calls == c.calls || c1.calls == c2.calls {
		t.Fatal("a run with a RateLimit does not have call options of its own")
	}
	l1, l2 := c1.calls.rateLimit.limiter, c2.calls.rateLimit.limiter
	if l1 == nil || l2 == nil || l1 == l2 {
		t.Fatalf("RateLimit's limiters in two runs: %p and %p, want two fresh ones", l1, l2)
	}
	if l1.Limit() != 10 || l1.Burst() != 2 {
		t.Fatalf("the run's limiter: %v/s, burst %d; want 10/s, burst 2", l1.Limit(), l1.Burst())
	}
	for _, k := range []*callOptions{c1.calls, c2.calls} {
		if k.retry.attempts != 3 || k.retry.backoff != time.Millisecond || k.retry.retryable == nil || k.timeout != time.Hour {
			t.Fatalf("the run's copy lost Retry or Timeout: %+v", *k)
		}
	}

	l := rate.NewLimiter(5, 1)
	s := r54Config(SharedRateLimit(l), Timeout(time.Minute))
	s1, s2 := s.forRun(r1, &node{}), s.forRun(r2, &node{})
	if s1.calls.rateLimit.limiter != l || s2.calls.rateLimit.limiter != l {
		t.Fatal("SharedRateLimit's limiter is not the user's in every run")
	}
	if s.calls.rateLimit.limiter != nil || s1.calls.timeout != time.Minute {
		t.Fatal("SharedRateLimit: the build's options changed, or the run's lost its Timeout")
	}

	// Without a rate limit, the runs read the build's options (read only).
	n := r54Config(Retry(2, 0))
	if n1 := n.forRun(r1, &node{}); n1.calls != n.calls {
		t.Fatal("a run without a rate limit copied its call options (an allocation for nothing)")
	}
}

// TestReview54OptionsOrderAndReuse: options that set call options compose
// in any order (each sets its own field, the last of RateLimit and
// SharedRateLimit wins), and options reused across stages give each stage
// call options of its own.
func TestReview54OptionsOrderAndReuse(t *testing.T) {
	a := r54Config(Retry(3, time.Second), Timeout(time.Minute))
	b := r54Config(Timeout(time.Minute), Retry(3, time.Second))
	for _, c := range []config{a, b} {
		k := c.calls
		if k.retry.attempts != 3 || k.retry.backoff != time.Second || k.timeout != time.Minute {
			t.Fatalf("Retry and Timeout together: %+v", *k)
		}
	}
	l := rate.NewLimiter(1, 1)
	rs := r54Config(RateLimit(7, 3), SharedRateLimit(l)).calls.rateLimit
	if rs.shared != l || rs.perSecond != 0 {
		t.Fatalf("RateLimit then SharedRateLimit: %+v, want the shared one", rs)
	}
	sr := r54Config(SharedRateLimit(l), RateLimit(7, 3)).calls.rateLimit
	if sr.shared != nil || sr.perSecond != 7 || sr.burst != 3 {
		t.Fatalf("SharedRateLimit then RateLimit: %+v, want RateLimit's", sr)
	}

	opts := []Option{Retry(2, 0)}
	x := r54Config(opts...)
	y := r54Config(append(opts, Timeout(time.Hour), RateLimit(1, 1))...)
	if x.calls == y.calls || x.calls.timeout != 0 || x.calls.rateLimit.perSecond != 0 {
		t.Fatal("an Option reused across stages shares call options between them")
	}

	// The same through built stages.
	in := Indexed(1, func(i int) int { return i })
	f := func(_ context.Context, v int) (int, error) { return v, nil }
	m1 := Map(in, f, opts...).open.(*applyStage[int, int])
	m2 := Map(Indexed(1, func(i int) int { return i }), f, append(opts, Timeout(time.Hour))...).open.(*applyStage[int, int])
	if m1.cfg.calls == m2.cfg.calls || m1.cfg.calls.timeout != 0 || m2.cfg.calls.timeout != time.Hour {
		t.Fatal("two stages built with the same Option share call options")
	}
}

// TestReview54OpenedGuard: the opening part may be made only before the
// run started; after a failed check the run never starts, and a goroutine
// registered then is only kept, never run.
func TestReview54OpenedGuard(t *testing.T) {
	r := newRun(context.Background())
	r.start()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("opened after start did not panic")
			}
		}()
		r.opened()
	}()
	ran := make(chan struct{})
	r.goroutine(func() { close(ran) }) // after start: runs at once, without the opening part
	<-ran
	if r.opening != nil {
		t.Error("a goroutine started after start made the opening part")
	}
	r.finish()

	errCheck := errors.New("r54 check")
	f := newRun(context.Background())
	f.check(func() error { return errCheck })
	started := false
	f.goroutine(func() { started = true })
	f.start()
	if f.started {
		t.Fatal("a run whose check failed started")
	}
	f.goroutine(func() { started = true }) // kept with the pending ones, never run
	f.finish()
	if started {
		t.Fatal("a goroutine of a run whose check failed ran")
	}
	if err := f.result(context.Background()); !errors.Is(err, errCheck) {
		t.Fatalf("the run whose check failed returned %v, want %v", err, errCheck)
	}
}
