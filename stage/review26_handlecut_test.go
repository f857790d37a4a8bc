package stage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// A Handle handler (a dead-letter write) that waits on the run's ctx and
// returns the context's error because the run ended meanwhile did not end
// the run: the run had ended before the item's fate was known. ack.go says
// Done is not called then ("a FailFast error at another item, a cancelled
// context ..."), and engine.go that a reference is failed only when "its
// policy ended the run"; stage.Run treats the same situation at the sink
// (a commit cut short) as unknown. The handler's cut-short write is told to
// the source as a failure instead.
func TestReview26AckHandleCutShortByCancel(t *testing.T) {
	a := newR26Acks()
	entered := make(chan struct{})
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := stage.Map(a.source(1), func(context.Context, int) (int, error) {
		return 0, errors.New("bad row")
	}, stage.Workers(2), stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
		close(entered)
		<-ctx.Done() // the dead-letter write sees the run end
		return ctx.Err()
	})))
	done := make(chan error, 1)
	go func() { done <- stage.Run(parent, s, func(context.Context, int, error) error { return nil }) }()
	r26Wait(t, entered, "the handler")
	cancel()
	var err error
	select {
	case err = <-done:
	case <-r26AfterWatchdog():
		t.Fatal("hung")
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	if f := a.fate(0); f != "unsettled" {
		t.Errorf("item 0, whose dead-letter write the cancellation cut short: Done(%s), want no Done (the run ended before its fate was known)", f)
	}
}

// The same, cut short by a FailFast error at another item in a later stage.
func TestReview26AckHandleCutShortByFailFastElsewhere(t *testing.T) {
	a := newR26Acks()
	entered := make(chan struct{})
	s := stage.Map(a.source(2), func(_ context.Context, x int) (int, error) {
		if x == 0 {
			return 0, errors.New("bad row")
		}
		return x, nil
	}, stage.Workers(2), stage.OnError(stage.Handle(func(ctx context.Context, e *stage.Error) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	})))
	boom := errors.New("boom")
	s = stage.Map(s, func(_ context.Context, x int) (int, error) {
		<-entered // item 0's handler is running
		return 0, boom
	})
	done := make(chan error, 1)
	go func() {
		done <- stage.Run(context.Background(), s, func(context.Context, int, error) error { return nil })
	}()
	var err error
	select {
	case err = <-done:
	case <-r26AfterWatchdog():
		t.Fatal("hung")
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	if f := a.fate(1); !errors.Is(a.errOf(1), boom) {
		t.Errorf("item 1 (FailFast at it): Done(%s), want boom", f)
	}
	if f := a.fate(0); f != "unsettled" {
		t.Errorf("item 0, whose dead-letter write another item's FailFast cut short: Done(%s), want no Done", f)
	}
}
