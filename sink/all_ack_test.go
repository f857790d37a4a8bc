package sink_test

import (
	"context"
	"io"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// recordAck records what Done was told.
type recordAck struct {
	told bool
	err  error
}

func (a *recordAck) Done(err error) { a.told, a.err = true, err }

// oneAcked is a source of one item, 7, whose acknowledgement is a.
func oneAcked(a *recordAck) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		done := false
		return func(context.Context) (int, stage.Ack, error) {
			if done {
				return 0, nil, io.EOF
			}
			done = true
			return 7, a, nil
		}, nil
	})
}

// All: the item of a loop body that breaks is committed (Done(nil)); the
// item of one that panics is not, and its acknowledgement is not told.
func TestAllBreakCommitsPanicDoesNot(t *testing.T) {
	a := &recordAck{}
	for v := range sink.All(context.Background(), oneAcked(a)) {
		if v == 7 {
			break
		}
	}
	if !a.told || a.err != nil {
		t.Fatalf("break: told %v, %v; want Done(nil)", a.told, a.err)
	}
	b := &recordAck{}
	func() {
		defer func() {
			if recover() != "body" {
				t.Error("the loop body's panic did not continue")
			}
		}()
		for range sink.All(context.Background(), oneAcked(b)) {
			panic("body")
		}
	}()
	if b.told {
		t.Fatalf("panic: Done(%v) was called, want no call", b.err)
	}
}
