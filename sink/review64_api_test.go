package sink_test

// Review 64: the API surface of package sink, from its documentation only:
// the exported error type at its zero value, and batches the consumer may
// keep.

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "Error reports the count and the first error." ForwardedError is an
// exported struct a user may build (or get with Count 0 from a fake); its
// zero value, with no first error, must print rather than panic.
func TestReview64APIZeroForwardedErrorPrints(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		e := &sink.ForwardedError{}
		if msg := e.Error(); msg == "" {
			t.Error("(&sink.ForwardedError{}).Error() is empty")
		}
		if len(e.Unwrap()) != 0 {
			t.Error("a zero ForwardedError unwraps to errors")
		}
		// Count without a Sample (the fields are exported and independent).
		_ = (&sink.ForwardedError{Count: 3}).Error()
	})
}

// "errors.Is and errors.As see through it to each kept error", and it
// keeps "the first min(Count, SampleSize) of them, in arrival order".
func TestReview64APIForwardedErrorSample(t *testing.T) {
	items := make([]int, 20)
	for i := range items {
		items[i] = i
	}
	sentinel := errors.New("review64 forwarded")
	got, err := sink.Slice(context.Background(), stage.Map(source.Slice(items),
		func(_ context.Context, v int) (int, error) {
			if v%2 == 0 {
				return 0, fmt.Errorf("item %d: %w", v, sentinel)
			}
			return v, nil
		}, stage.Workers(1), stage.OnError(stage.Forward)))
	var fe *sink.ForwardedError
	var se *stage.Error
	if !errors.As(err, &fe) || !errors.Is(err, sentinel) || !errors.As(err, &se) {
		t.Fatalf("err = %v: want a *ForwardedError through which Is and As see the kept errors", err)
	}
	if fe.Count != 10 || len(fe.Sample) != sink.SampleSize || len(got) != 10 {
		t.Fatalf("Count %d, Sample %d, values %d: want 10, %d, 10", fe.Count, len(fe.Sample), len(got), sink.SampleSize)
	}
	for i, e := range fe.Sample {
		var ie *stage.Error
		if !errors.As(e, &ie) || ie.Index != 2*i {
			t.Fatalf("Sample[%d] = %v: want the *Error of item %d (arrival order, Workers(1))", i, e, 2*i)
		}
	}
}

// stage.Batch: "Each batch is a new slice that the consumer may keep". A
// consumer that keeps every batch, and appends to one it keeps (as a
// consumer that owns a slice may), must not see another batch change.
func TestReview64APIBatchesMayBeKept(t *testing.T) {
	items := make([]int, 100)
	for i := range items {
		items[i] = i
	}
	var kept [][]int
	err := sink.ForEach(context.Background(), stage.Batch(source.Slice(items), 7, 0),
		func(_ context.Context, b []int) error {
			kept = append(kept, b)
			// The consumer owns b: appending to it must not write into
			// the next batch's memory.
			_ = append(b, -1, -1, -1, -1, -1, -1, -1)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	next := 0
	for i, b := range kept {
		for j, v := range b {
			if v != next {
				t.Fatalf("kept batch %d [%d] = %d, want %d (batches: %v)", i, j, v, next, kept)
			}
			next++
		}
	}
	if next != len(items) {
		t.Fatalf("the kept batches hold %d items, want %d", next, len(items))
	}
}

// sink.Slice: "When s knows its length (stage.Stream.Len), the slice is
// made with room for that many values before the run" and "Without any
// value it returns a nil slice." A Map under Handle keeps Len 3 (the most
// it can carry) but drops every item: the preallocated slice must not leak
// out as an empty non-nil one.
func TestReview64APISliceWithoutValueIsNil(t *testing.T) {
	boom := errors.New("review64 boom")
	s := stage.Map(source.Slice([]int{1, 2, 3}),
		func(_ context.Context, v int) (int, error) { return 0, boom },
		stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return nil })))
	if s.Len() != 3 {
		t.Fatalf("Len = %d, the doc says a Map under Handle keeps 3", s.Len())
	}
	got, err := sink.Slice(context.Background(), s)
	if err != nil || got != nil {
		t.Fatalf("Slice = %#v (cap %d), %v: want a nil slice", got, cap(got), err)
	}
}
