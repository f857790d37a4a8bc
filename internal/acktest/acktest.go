// Package acktest holds acknowledged sources, and an Ack that records what
// it is told, for the tests of several packages: a test that ends a run on
// purpose often needs to know that the outputs before it were delivered,
// since outputs still on their way when a run is cancelled may be dropped.
package acktest

import (
	"context"
	"io"
	"slices"
	"sync"

	"github.com/sluicedev/sluice/stage"
)

// Func is an [stage.Ack] made of a function.
type Func func(err error)

// Done calls f.
func (f Func) Done(err error) { f(err) }

// Recorder is an [stage.Ack] that records every Done call it is told, in
// order; safe for concurrent use. The zero Recorder is ready.
type Recorder struct {
	mu   sync.Mutex
	told []error
}

// Done records err.
func (a *Recorder) Done(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.told = append(a.told, err)
}

// Told returns a copy of what Done was told so far: empty if it was never
// called, one error per call.
func (a *Recorder) Told() []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.told)
}

// CommitGated returns a stage.AckSource of 0, 1, ..., n-1 and a function
// that returns the channel, made anew at each run's open, that is closed
// once item k of that run was committed (its Ack told nil: the sink
// delivered it). A user function that waits for it before it ends the run
// knows that item k's outputs were delivered, and every earlier item's too
// when outputs reach the sink in input order (one worker, or Ordered).
// Call committed from the run's own calls, which start after its open.
func CommitGated(n, k int) (s stage.Stream[int], committed func() <-chan struct{}) {
	var ch chan struct{}
	s = stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		done := make(chan struct{})
		ch = done
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == n {
				return 0, nil, io.EOF
			}
			v := i
			i++
			return v, Func(func(err error) {
				if v == k && err == nil {
					close(done)
				}
			}), nil
		}, nil
	})
	return s, func() <-chan struct{} { return ch }
}
