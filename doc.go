// Package sluice builds concurrent data pipelines out of typed stages.
//
// A pipeline is a source, any number of stages and a sink:
//
//   - package source makes a lazy stream from a slice, a channel, a generator
//     function, an iterator or a reader;
//   - package stage transforms streams with bounded concurrency (Map, Filter,
//     FlatMap, Concurrent, Merge, Apply) and a per-stage error policy:
//     fail fast, or forward wrapped errors downstream as values;
//   - package sink runs a stream and returns when everything has stopped.
//
// # Vocabulary
//
// Lazy streams: building a pipeline runs nothing; each sink call runs it
// anew. Workers: a stage runs at most n calls at once. Ordering: outputs
// leave in completion order unless the stage is Ordered. Error policies:
// FailFast cancels the run at the first error; Forward passes the error on in
// the item's place. Cancellation: every blocking step of a run can be
// abandoned through its context. Leaks: when a sink returns, no goroutine of
// the run is left. Package stage defines each term in full.
//
// For production: Batch and Unbatch, Tee, Retry, Timeout and RateLimit,
// the Handle and Budget policies (dead letters, error budgets), KeyBy
// (per-key order), Until (graceful drain), and Observe (Stats, Logger, and
// the metrics/prom and metrics/otelmetric modules).
//
// This package holds no code; see the README for a tour.
package sluice
