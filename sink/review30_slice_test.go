package sink_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// TestReview30SliceZeroSizeElements attacks sink.Slice's presizing ("When s
// knows its length, the slice is made with room for that many values before
// the run (at most 4096 values and 64 KiB)") with element types of size 0,
// for which a bound in bytes is no bound in values. It must return every
// value, and never crash (a division by the element size, say).
func TestReview30SliceZeroSizeElements(t *testing.T) {
	outcome, ok := runcheck.InChild(t, func() string {
		got, err := sink.Slice(context.Background(), source.Slice(make([]struct{}, 10000)))
		if err != nil || len(got) != 10000 || cap(got) < len(got) {
			return "struct{}: wrong result"
		}
		got2, err := sink.Slice(context.Background(), source.Slice(make([][0]int, 5)))
		if err != nil || len(got2) != 5 {
			return "[0]int: wrong result"
		}
		return "ok"
	})
	if !ok {
		return
	}
	if outcome != "ok" {
		t.Fatal(outcome)
	}
}

// TestReview30SlicePresizeBounds attacks "the slice is made with room for that
// many values before the run (at most 4096 values and 64 KiB)": over a known
// length that is larger than both bounds, whatever the room grows to, the
// result is every value; and a run that fails before any value still returns
// a nil slice ("Without any value it returns a nil slice"), though room was
// made before the run.
func TestReview30SlicePresizeBounds(t *testing.T) {
	boom := errors.New("boom")
	in := make([][1024]byte, 100)
	s := stage.Map(source.Slice(in), func(_ context.Context, v [1024]byte) ([1024]byte, error) {
		return v, boom
	}, stage.Workers(1))
	got, err := sink.Slice(context.Background(), s)
	if got != nil {
		t.Fatalf("a run that failed before any value returned a non-nil slice (len %d, cap %d)", len(got), cap(got))
	}
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the stage's error", err)
	}
	// Forwarded only: no value, so nil, with a *ForwardedError.
	s2 := stage.Map(source.Slice(in), func(_ context.Context, v [1024]byte) ([1024]byte, error) {
		return v, boom
	}, stage.OnError(stage.Forward))
	got, err = sink.Slice(context.Background(), s2)
	var fe *sink.ForwardedError
	if got != nil || !errors.As(err, &fe) || fe.Count != 100 || len(fe.Sample) != sink.SampleSize {
		t.Fatalf("all forwarded: got len %d nil=%v, err %v", len(got), got == nil, err)
	}
	// Elements bigger than 64 KiB: no room at all can be made, values still come.
	big := make([][70 << 10]byte, 3)
	big[2][5] = 7
	gotBig, err := sink.Slice(context.Background(), source.Slice(big))
	if err != nil || len(gotBig) != 3 || gotBig[2][5] != 7 {
		t.Fatalf("huge elements: len %d err %v", len(gotBig), err)
	}
}
