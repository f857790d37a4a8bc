package stage_test

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/ctxtest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r78PanicAck panics in Done.
type r78PanicAck struct{ told *atomic.Int32 }

func (a r78PanicAck) Done(error) {
	a.told.Add(1)
	panic("review78: Done panics")
}

// Package doc, Cancellation: under a caller's ctx of a type the context
// package cannot see into, "a failure that comes after (..., a panic in an
// Ack's Done; ...) is not the run's: the sink returns the caller's
// cancellation". The sink's callback cancels the caller's ctx at item 1 and
// returns nil; releasing item 1 calls its Ack's Done, which panics. Under a
// standard ctx the panic comes after the run's context was cancelled; under
// the caller's own type ("own-watcher-late": the run's watcher hears the
// end only once the sink's goroutine parks) the run learns of the end only
// later, and the panic's *SourceError was the run's own before every
// failure asked whether the parent's end was on its way (930c845).
func TestReview78AckPanicAfterTheCallersEnd(t *testing.T) {
	for _, kind := range []string{ctxtest.Std, ctxtest.Own, "own-watcher-late", ctxtest.Cause} {
		t.Run(kind, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				var sinkG atomic.Int64
				parent, cancel := r74parent(kind, &sinkG)
				defer cancel()
				var told atomic.Int32
				src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
					i := 0
					return func(context.Context) (int, stage.Ack, error) {
						if i == 3 {
							return 0, nil, io.EOF
						}
						i++
						if i == 1 {
							return i, r78PanicAck{&told}, nil
						}
						return i, nil, nil
					}, nil
				})
				var err error
				runcheck.Run(t, "run", func() {
					id, _ := runcheck.Goroutines()
					sinkG.Store(id)
					err = stage.Run(parent, src, func(_ context.Context, v int, _ error) error {
						if v == 1 {
							cancel()
						}
						return nil
					})
				})
				var se *stage.SourceError
				if told.Load() != 1 || errors.As(err, &se) || !errors.Is(err, context.Canceled) {
					t.Errorf("Done called %d times, err = %v; want once, and context.Canceled (the panic came after the caller's end)", told.Load(), err)
				}
			})
		})
	}
}
