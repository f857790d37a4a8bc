// Package otelmetric records sluice pipelines with OpenTelemetry metrics: a
// stage.Observer that keeps, per stage, counters of received and finished
// items, an up-down counter of items in flight, and a histogram of call
// durations.
//
// Attributes are per stage only (sluice.stage, sluice.kind, and the outcome
// of a call), never per item. Attach the observer once with stage.Observe:
//
//	obs, err := otelmetric.New(otel.Meter("etl"))
//	ctx = stage.Observe(ctx, obs)
package otelmetric

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/sluicedev/sluice/stage"
)

// Observer is a stage.Observer that records with an OpenTelemetry meter;
// make one with [New].
type Observer struct {
	received metric.Int64Counter
	finished metric.Int64Counter
	inFlight metric.Int64UpDownCounter
	duration metric.Float64Histogram
}

// durationBuckets are the duration histogram's bounds, in seconds: 1 µs
// to about 4 s, ×4 each, as in package prom.
var durationBuckets = func() []float64 {
	b := make([]float64, 12)
	for i, v := 0, 1e-6; i < len(b); i, v = i+1, v*4 {
		b[i] = v
	}
	return b
}()

// New creates the instruments on meter and returns the observer that
// records with them:
//
//	sluice.stage.received   items taken for a call           {sluice.stage, sluice.kind}
//	sluice.stage.finished   calls ended                      {..., sluice.outcome = ok | error}
//	sluice.stage.in_flight  items taken and not finished     {sluice.stage, sluice.kind}
//	sluice.stage.duration   call durations, in seconds ("s") {sluice.stage, sluice.kind}
//
// A call's outcome is error when its item failed (the stage's error policy
// handles it) and ok otherwise: a call cut short by the end of the run
// (another stage's failure, a cancellation) did not fail. The duration
// histogram's buckets are in seconds, from 1 µs to about 4 s, each bound
// 4 times the one before (as the prom package's; a View can change them).
// A call's duration is the stage.Watcher's latency: from the item's
// receipt to the end of its last attempt, rate-limit and retry waits
// included: how long the item held a worker. A stage name (or kind) that
// is not valid UTF-8, which OTLP's string attributes cannot carry, is
// recorded with each run of invalid bytes replaced by one U+FFFD, as in
// package prom (so names that differ only there share a series).
// New returns the meter's errors, joined, and no observer, if it could
// not create an instrument; the same meter may serve several observers,
// which then add into the same series. New panics if meter is nil (a
// programmer error; the message starts with "sluice:").
func New(meter metric.Meter) (*Observer, error) {
	if meter == nil {
		panic("sluice: otelmetric.New: nil meter")
	}
	var o Observer
	var err, e error
	o.received, e = meter.Int64Counter("sluice.stage.received", metric.WithDescription("Items a sluice stage took for a call of its function."), metric.WithUnit("{item}"))
	err = errors.Join(err, e)
	o.finished, e = meter.Int64Counter("sluice.stage.finished", metric.WithDescription("Calls of a sluice stage's function that ended, by outcome."), metric.WithUnit("{item}"))
	err = errors.Join(err, e)
	o.inFlight, e = meter.Int64UpDownCounter("sluice.stage.in_flight", metric.WithDescription("Items a sluice stage has taken and not finished."), metric.WithUnit("{item}"))
	err = errors.Join(err, e)
	o.duration, e = meter.Float64Histogram("sluice.stage.duration", metric.WithDescription("Duration of a sluice stage's calls, from receipt to the end of the last attempt, rate-limit and retry waits included."), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	err = errors.Join(err, e)
	if err != nil {
		return nil, err
	}
	return &o, nil
}

// Stage implements stage.Observer: the stage's attribute sets are built
// once, so that an item costs no allocation for them.
func (o *Observer) Stage(info stage.Info) stage.Watcher {
	name, kind := strings.ToValidUTF8(info.Name, "\uFFFD"), strings.ToValidUTF8(info.Kind, "\uFFFD")
	base := []attribute.KeyValue{attribute.String("sluice.stage", name), attribute.String("sluice.kind", kind)}
	set := attribute.NewSet(base...)
	with := func(outcome string) attribute.Set {
		return attribute.NewSet(append(base[:2:2], attribute.String("sluice.outcome", outcome))...)
	}
	return &stageMetrics{
		o:      o,
		add:    []metric.AddOption{metric.WithAttributeSet(set)},
		record: []metric.RecordOption{metric.WithAttributeSet(set)},
		ok:     []metric.AddOption{metric.WithAttributeSet(with("ok"))},
		failed: []metric.AddOption{metric.WithAttributeSet(with("error"))},
	}
}

type stageMetrics struct {
	o               *Observer
	add, ok, failed []metric.AddOption
	record          []metric.RecordOption
}

// The hot path has no context to give; metrics ignore it.
var bg = context.Background()

func (m *stageMetrics) Received() {
	m.o.received.Add(bg, 1, m.add...)
	m.o.inFlight.Add(bg, 1, m.add...)
}

func (m *stageMetrics) Finished(d time.Duration, err error) {
	m.o.inFlight.Add(bg, -1, m.add...)
	m.o.duration.Record(bg, d.Seconds(), m.record...)
	if _, failed := err.(*stage.Error); failed { // see stage.Watcher
		m.o.finished.Add(bg, 1, m.failed...)
		return
	}
	m.o.finished.Add(bg, 1, m.ok...)
}

func (m *stageMetrics) Closed() {}
