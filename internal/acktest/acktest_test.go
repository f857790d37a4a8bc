package acktest_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/internal/acktest"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The channel closes once item k was delivered, and is new at each run: a
// run that fails before item k leaves it open.
func TestCommitGated(t *testing.T) {
	src, committed := acktest.CommitGated(5, 2)
	got, err := sink.Slice(context.Background(), src)
	if err != nil || !slices.Equal(got, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("got %v, %v; want [0 1 2 3 4], nil", got, err)
	}
	select {
	case <-committed():
	default:
		t.Fatal("item 2 was delivered, but its channel is open")
	}

	errStop := errors.New("stop at 1")
	_, err = sink.Slice(context.Background(), stage.Map(src, func(_ context.Context, v int) (int, error) {
		if v == 1 {
			return 0, errStop
		}
		return v, nil
	}, stage.Workers(1)))
	if !errors.Is(err, errStop) {
		t.Fatalf("err = %v, want the failure at item 1", err)
	}
	select {
	case <-committed():
		t.Fatal("item 2 was never delivered in the second run, but its channel is closed")
	default:
	}
}

// Recorder: the zero value is ready; Told is every Done call in order, and
// a copy.
func TestRecorder(t *testing.T) {
	var a acktest.Recorder
	if got := a.Told(); len(got) != 0 {
		t.Fatalf("a new Recorder told %v, want nothing", got)
	}
	errX := errors.New("x")
	a.Done(nil)
	a.Done(errX)
	got := a.Told()
	if len(got) != 2 || got[0] != nil || got[1] != errX {
		t.Fatalf("Told() = %v, want [nil x]", got)
	}
	got[0] = errX
	if a.Told()[0] != nil {
		t.Fatal("Told returned the Recorder's own slice, not a copy")
	}
}
