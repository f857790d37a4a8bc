package sink_test

// Review 89: mutation testing of package sink; tests for documented
// promises that no test pinned down.

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/acktest"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r89WaitChanSending waits until sink.Chan's callback waits to send a value
// on out: a goroutine parked in a select whose first frame outside the
// runtime is Chan's callback (not stage.Run waiting for an item). The 30 s
// are a hang watchdog only.
func r89WaitChanSending(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		_, all := runcheck.Goroutines()
		for _, st := range all {
			head, rest, _ := strings.Cut(st, "\n")
			if !strings.Contains(head, "[select") {
				continue
			}
			for line := range strings.SplitSeq(rest, "\n") {
				if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "runtime.") {
					continue // a file:line, or a frame of the runtime
				}
				if strings.Contains(line, "sink.Chan[") && strings.Contains(line, ".func1(") {
					return
				}
				break
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("sink.Chan never waited to send on out")
}

// sink.Chan: "If the run fails while Chan waits on out, Chan stops waiting
// and returns the error that ended the run." stage.Ack: "Done is not called
// when the run ended before the item's fate was known: a FailFast error at
// another item, [...] the commit was cut short, as sink.Chan's wait for
// room [...]. The source then leaves the item unacknowledged, and a broker
// redelivers it."
//
// The value Chan waits to send when a FailFast error at another item ends
// the run was never sent: its acknowledgement must not be told anything,
// least of all Done(nil), which would tell a broker it was delivered.
// (TestReview20ChanCancelledSendIsNotAFailure covers the caller's
// cancellation; this covers a failure of the run itself, with the caller's
// ctx still alive.)
func TestReview89ChanWaitCutShortByAFailureIsNotCommitted(t *testing.T) {
	errR89 := errors.New("r89: item 2 fails")
	ack := &acktest.Recorder{}
	src := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		n := 0
		return func(context.Context) (int, stage.Ack, error) {
			n++
			switch n {
			case 1:
				return 1, ack, nil
			case 2:
				return 2, nil, nil
			}
			return 0, nil, io.EOF
		}, nil
	})
	gate := make(chan struct{})
	s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
		if v == 2 {
			select { // fails once Chan waits with item 1
			case <-gate:
				return 0, errR89
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		return v, nil
	}, stage.Workers(2), stage.Name("r89map"))
	out := make(chan int) // nobody reads: Chan waits on its send of item 1
	done := make(chan error, 1)
	go func() { done <- sink.Chan(context.Background(), s, out) }()
	r89WaitChanSending(t)
	close(gate)
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second): // hang watchdog only
		t.Fatal("sink.Chan did not return after the run failed")
	}
	var se *stage.Error
	if !errors.Is(err, errR89) || !errors.As(err, &se) || se.Stage != "r89map" {
		t.Fatalf("sink.Chan returned %v, want the *stage.Error of r89map wrapping item 2's error", err)
	}
	if calls := ack.Told(); len(calls) != 0 {
		t.Fatalf("the item Chan never sent (a FailFast error ended the run while it waited) was told Done(%v), want no Done call", calls)
	}
}
