// Package prom records sluice pipelines in Prometheus metrics: a
// stage.Observer that keeps, per stage, counters of received and finished
// items, a gauge of items in flight, and a histogram of call durations.
//
// Labels are per stage only (stage name and kind, and the outcome of a
// call), never per item, so the number of series is bounded by the
// pipeline's shape. Attach the observer once with stage.Observe:
//
//	obs, err := prom.New(prometheus.DefaultRegisterer)
//	ctx = stage.Observe(ctx, obs)
//	err = sink.ForEach(ctx, pipeline, store)
package prom

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicedev/sluice/stage"
)

// Observer is a stage.Observer that records into Prometheus metrics; make
// one with [New].
type Observer struct {
	received *prometheus.CounterVec
	finished *prometheus.CounterVec
	inFlight *prometheus.GaugeVec
	duration *prometheus.HistogramVec
}

// New registers the metrics on reg and returns the observer that records
// into them:
//
//	sluice_stage_received_total{stage,kind}          items taken for a call
//	sluice_stage_finished_total{stage,kind,outcome}  calls ended; outcome "ok" or "error"
//	sluice_stage_in_flight{stage,kind}               items taken and not finished
//	sluice_stage_duration_seconds{stage,kind}        call durations (all attempts)
//
// A call's outcome is "error" when its item failed (the stage's error
// policy handles it) and "ok" otherwise: a call cut short by the end of the
// run (another stage's failure, a cancellation) did not fail. A stage name
// (or kind) that is not valid UTF-8, which a label cannot hold, is recorded with
// each run of invalid bytes replaced by one U+FFFD (so names that differ
// only there share a series). The duration histogram's
// buckets are in seconds, from 1 µs to about 4 s, each bound 4 times the
// one before. A call's duration is the stage.Watcher's latency: from the
// item's receipt to the end of its last attempt, rate-limit and retry
// waits included: how long the item held a worker.
//
// It returns reg's error if reg refuses a metric (one already registered:
// New was called twice on one registry; share the observer instead), and
// then leaves none of its metrics registered. New panics if reg is nil (a programmer error;
// the message starts with "sluice:").
func New(reg prometheus.Registerer) (*Observer, error) {
	if reg == nil {
		panic("sluice: prom.New: nil registerer")
	}
	labels := []string{"stage", "kind"}
	o := &Observer{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_stage_received_total", Help: "Items a sluice stage took for a call of its function.",
		}, labels),
		finished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_stage_finished_total", Help: "Calls of a sluice stage's function that ended, by outcome.",
		}, append(labels, "outcome")),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_stage_in_flight", Help: "Items a sluice stage has taken and not finished.",
		}, labels),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_stage_duration_seconds", Help: "Duration of a sluice stage's calls, from receipt to the end of the last attempt, rate-limit and retry waits included.",
			Buckets: prometheus.ExponentialBuckets(1e-6, 4, 12), // 1µs .. ~4s
		}, labels),
	}
	all := []prometheus.Collector{o.received, o.finished, o.inFlight, o.duration}
	for i, c := range all {
		if err := reg.Register(c); err != nil {
			for _, done := range all[:i] { // all or nothing: a later New may succeed
				reg.Unregister(done)
			}
			return nil, err
		}
	}
	return o, nil
}

// Stage implements stage.Observer: it resolves the stage's series once, so
// that an item costs a few atomic adds.
func (o *Observer) Stage(info stage.Info) stage.Watcher {
	name, kind := strings.ToValidUTF8(info.Name, "\uFFFD"), strings.ToValidUTF8(info.Kind, "\uFFFD")
	return &stageMetrics{
		received: o.received.WithLabelValues(name, kind),
		ok:       o.finished.WithLabelValues(name, kind, "ok"),
		failed:   o.finished.WithLabelValues(name, kind, "error"),
		inFlight: o.inFlight.WithLabelValues(name, kind),
		duration: o.duration.WithLabelValues(name, kind),
	}
}

type stageMetrics struct {
	received, ok, failed prometheus.Counter
	inFlight             prometheus.Gauge
	duration             prometheus.Observer
}

func (m *stageMetrics) Received() {
	m.received.Inc()
	m.inFlight.Inc()
}

func (m *stageMetrics) Finished(d time.Duration, err error) {
	m.inFlight.Dec()
	m.duration.Observe(d.Seconds())
	if _, failed := err.(*stage.Error); failed { // see stage.Watcher
		m.failed.Inc()
		return
	}
	m.ok.Inc()
}

func (m *stageMetrics) Closed() {}
