package stage_test

// Build-time checks: the constructors and options that the docs say panic
// (with a "sluice:" message), and the hostile values the docs allow.

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Each "X panics if ..." sentence of the combinators and options: the panic
// comes when the option or the stream is made, with a "sluice:" message.
func TestReview67BuildPanics(t *testing.T) {
	in := source.Slice(r67Ints(3))
	var zero stage.Stream[int]
	var zeroB stage.Stream[[]int]
	var zeroT stage.Stream[func(context.Context) (int, error)]
	var zeroOpt stage.Option
	cases := []struct {
		name string
		f    func()
	}{
		{"Batch size 0", func() { stage.Batch(in, 0, 0) }},
		{"Batch size -1", func() { stage.Batch(in, -1, time.Second) }},
		{"Batch timeout -1", func() { stage.Batch(in, 1, -1) }},
		{"Batch zero stream", func() { stage.Batch(zero, 1, 0) }},
		{"Unbatch zero stream", func() { stage.Unbatch(zeroB) }},
		{"Merge zero input", func() { stage.Merge(in, zero) }},
		{"Merge same stream twice", func() { stage.Merge(in, in) }},
		{"Merge stream and a stage on it", func() { stage.Merge(in, stage.Map(in, r67Id)) }},
		{"Merge two stages on one stream", func() { stage.Merge(stage.Map(in, r67Id), stage.Map(in, r67Id)) }},
		{"Tee n 0", func() { stage.Tee(in, 0) }},
		{"Tee n -1", func() { stage.Tee(in, -1) }},
		{"Tee zero stream", func() { stage.Tee(zero, 2) }},
		{"FlatMap nil f", func() { stage.FlatMap[int, int](in, nil) }},
		{"FlatMap zero stream", func() {
			stage.FlatMap(zero, func(context.Context, int) ([]int, error) { return nil, nil })
		}},
		{"Filter nil keep", func() { stage.Filter(in, nil) }},
		{"Filter zero stream", func() {
			stage.Filter(zero, func(context.Context, int) (bool, error) { return true, nil })
		}},
		{"Concurrent zero stream", func() { stage.Concurrent(zeroT) }},
		{"Until zero stream", func() { stage.Until(zero, context.Background()) }},
		{"Until nil stop", func() {
			var stop context.Context
			stage.Until(in, stop)
		}},
		{"Retry attempts 0", func() { stage.Retry(0, 0) }},
		{"Retry attempts -1", func() { stage.Retry(-1, time.Millisecond) }},
		{"Retry backoff -1", func() { stage.Retry(2, -1) }},
		{"RetryIf attempts 0", func() { stage.RetryIf(0, 0, func(error) bool { return true }) }},
		{"RetryIf backoff -1", func() { stage.RetryIf(2, -1, func(error) bool { return true }) }},
		{"RetryIf nil retryable", func() { stage.RetryIf(2, 0, nil) }},
		{"Timeout 0", func() { stage.Timeout(0) }},
		{"Timeout -1", func() { stage.Timeout(-1) }},
		{"Timeout MinInt64", func() { stage.Timeout(math.MinInt64) }},
		{"RateLimit rate 0", func() { stage.RateLimit(0, 1) }},
		{"RateLimit rate -1", func() { stage.RateLimit(-1, 1) }},
		{"RateLimit rate -Inf", func() { stage.RateLimit(math.Inf(-1), 1) }},
		{"RateLimit burst 0", func() { stage.RateLimit(1, 0) }},
		{"RateLimit burst -1", func() { stage.RateLimit(1, -1) }},
		{"SharedRateLimit nil", func() { stage.SharedRateLimit(nil) }},
		{"KeyBy nil", func() { stage.KeyBy[int, int](nil) }},
		{"KeyBy wrong input type at build", func() {
			stage.Map(in, r67Id, stage.KeyBy(func(s string) string { return s }))
		}},
		{"Buffer -1", func() { stage.Buffer(-1) }},
		{"Buffer MinInt", func() { stage.Buffer(math.MinInt) }},
		{"Workers -2", func() { stage.Workers(-2) }},
		{"Workers MinInt", func() { stage.Workers(math.MinInt) }},
		{"Budget -1", func() { stage.Budget(-1, nil) }},
		{"Handle nil", func() { stage.Handle(nil) }},
		{"zero Option on Map", func() { stage.Map(in, r67Id, zeroOpt) }},
		{"zero Option on Filter", func() {
			stage.Filter(in, func(context.Context, int) (bool, error) { return true, nil }, zeroOpt)
		}},
		{"zero Option on FlatMap", func() {
			stage.FlatMap(in, func(context.Context, int) ([]int, error) { return nil, nil }, zeroOpt)
		}},
		{"zero Option on Concurrent", func() {
			stage.Concurrent(source.Slice([]func(context.Context) (int, error){}), zeroOpt)
		}},
	}
	for _, c := range cases {
		r67MustPanicSluice(t, c.name, c.f)
	}
}

// "Options are checked when they are made": an invalid option panics at
// the call that makes it, before any stage is built with it (the cases
// above already build nothing; here the options are made alone and
// thrown away, so the panic cannot come from a stage).
func TestReview67OptionsCheckedWhenMade(t *testing.T) {
	r67MustPanicSluice(t, "Retry(0, 0) alone", func() { _ = stage.Retry(0, 0) })
	r67MustPanicSluice(t, "Timeout(0) alone", func() { _ = stage.Timeout(0) })
	r67MustPanicSluice(t, "RateLimit(1, 0) alone", func() { _ = stage.RateLimit(1, 0) })
	r67MustPanicSluice(t, "Buffer(-1) alone", func() { _ = stage.Buffer(-1) })
	r67MustPanicSluice(t, "Workers(-2) alone", func() { _ = stage.Workers(-2) })
}

// The values the docs allow do not panic when made: Retry(1, 0) ("means no
// retry"), Batch timeout 0 ("only when full"), Tee n 1, Workers(-1) and 0,
// Buffer 0 and huge, Budget(0, nil) ("h ... may be nil"), RateLimit with a
// rate of +Inf or the largest float, SharedRateLimit of a limiter that can
// never give a token (it fails attempts with ErrNoToken at run time).
func TestReview67BuildAllowed(t *testing.T) {
	in := source.Slice(r67Ints(3))
	r67MustNotPanic(t, "Retry(1, 0)", func() { stage.Map(in, r67Id, stage.Retry(1, 0)) })
	r67MustNotPanic(t, "Retry huge backoff", func() { stage.Map(in, r67Id, stage.Retry(3, math.MaxInt64)) })
	r67MustNotPanic(t, "Batch timeout 0", func() { stage.Batch(in, 1, 0) })
	r67MustNotPanic(t, "Batch size MaxInt", func() { stage.Batch(in, math.MaxInt, 0) })
	r67MustNotPanic(t, "Tee 1", func() { stage.Tee(in, 1) })
	r67MustNotPanic(t, "Workers -1", func() { stage.Map(in, r67Id, stage.Workers(-1)) })
	r67MustNotPanic(t, "Workers 0", func() { stage.Map(in, r67Id, stage.Workers(0)) })
	r67MustNotPanic(t, "Buffer 0", func() { stage.Map(in, r67Id, stage.Buffer(0)) })
	r67MustNotPanic(t, "Buffer MaxInt", func() { stage.Map(in, r67Id, stage.Buffer(math.MaxInt)) })
	r67MustNotPanic(t, "Budget(0, nil)", func() { stage.Map(in, r67Id, stage.OnError(stage.Budget(0, nil))) })
	r67MustNotPanic(t, "RateLimit +Inf", func() { stage.Map(in, r67Id, stage.RateLimit(math.Inf(1), 1)) })
	r67MustNotPanic(t, "RateLimit MaxFloat64", func() { stage.Map(in, r67Id, stage.RateLimit(math.MaxFloat64, 1)) })
	r67MustNotPanic(t, "RateLimit tiny", func() { stage.Map(in, r67Id, stage.RateLimit(math.SmallestNonzeroFloat64, 1)) })
	r67MustNotPanic(t, "RateLimit burst MaxInt", func() { stage.Map(in, r67Id, stage.RateLimit(1, math.MaxInt)) })
	r67MustNotPanic(t, "SharedRateLimit burst 0", func() {
		stage.Map(in, r67Id, stage.SharedRateLimit(rate.NewLimiter(1, 0)))
	})
	r67MustNotPanic(t, "Timeout MaxInt64", func() { stage.Map(in, r67Id, stage.Timeout(math.MaxInt64)) })
	r67MustNotPanic(t, "Merge no inputs", func() { stage.Merge[int]() })
	r67MustNotPanic(t, "Until with a done stop", func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		stage.Until(in, ctx)
	})
}

// "RateLimit panics if perSecond is not above 0 (NaN included)" (stated
// after the black-box round found the doc silent on NaN): RateLimit(NaN)
// panics when made, with a "sluice:" message.
func TestReview67RateLimitNaN(t *testing.T) {
	v, panicked := r67Recover(func() { stage.RateLimit(math.NaN(), 2) })
	msg, _ := v.(string)
	if !panicked || !strings.HasPrefix(msg, "sluice:") {
		t.Fatalf("RateLimit(NaN, 2): panicked %v with %v; want a panic with a sluice: message", panicked, v)
	}
}
