package kafka_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review91: of two options that set the same thing, the last wins, OnEvent
// included.

// Doc (Option): "Options are applied in order: of two that set the same
// thing, the last wins."
//
// TestReview78PolicyFailureEndsTheRun holds it for Attempts and
// DeadLetter; this test adds OnEvent, whose first function must never be
// called. The source gets DeadLetter("dlqA"), Attempts(3), OnEvent(first),
// then DeadLetter("dlqB"), Attempts(2), OnEvent(second). A record that
// always fails is tried twice and goes to dlqB (with sluice-attempts 2);
// dlqA stays empty and first is never called. The run is drained once a
// Committed event shows both records settled.
func TestReview91LastOptionWins(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs", "dlqA", "dlqB")
	produceTo(t, addrs, "jobs", 0, 0, 2)
	settled := make(chan struct{})
	var once sync.Once
	watch := func(e kafka.Event) {
		if e.Kind == kafka.Committed && e.Err == nil && e.Offsets["jobs"][0] == 2 {
			once.Do(func() { close(settled) })
		}
	}
	var firstCalls atomic.Int32
	first := func(e kafka.Event) {
		firstCalls.Add(1)
		watch(e)
	}
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(10*time.Millisecond),
		kafka.DeadLetter("dlqA"), kafka.Attempts(3), kafka.OnEvent(first),
		kafka.DeadLetter("dlqB"), kafka.Attempts(2), kafka.OnEvent(watch))
	var tries atomic.Int32
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	work := stage.Map(stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 0 {
			tries.Add(1)
			return r, errors.New("review91: always fails")
		}
		return r, nil
	}, stage.OnError(stage.Forward))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), work, func(context.Context, kafka.Record[int]) error { return nil })
	})
	select {
	case <-settled:
	case <-waitHung():
		t.Fatal("hung: no Committed event with both records settled")
	}
	drain()
	wantForwarded(t, waitErr(t, "the run", errc), int(tries.Load()))
	if n := tries.Load(); n != 2 {
		t.Errorf("the failing record was tried %d times; want 2 (Attempts(3) then Attempts(2))", n)
	}
	if n := firstCalls.Load(); n != 0 {
		t.Errorf("the first OnEvent function was called %d times; want the last one only", n)
	}
	if end := r14EndOffset(t, addrs, "dlqA"); end != 0 {
		t.Errorf("dlqA holds %d records; want none (DeadLetter(\"dlqA\") then DeadLetter(\"dlqB\"))", end)
	}
	if end := r14EndOffset(t, addrs, "dlqB"); end != 1 {
		t.Fatalf("dlqB holds %d records; want the failed record's dead letter", end)
	}
	if dl := r14ReadTopic(t, addrs, "dlqB", 1)[0]; r14Header(dl, "sluice-attempts") != "2" || r14Header(dl, "sluice-offset") != "0" {
		t.Errorf("dead letter headers %v; want sluice-offset 0, sluice-attempts 2", headerMap(dl.Headers))
	}
}
