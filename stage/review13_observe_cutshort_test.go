package stage_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Promise (Watcher.Finished): "when the call ended because the run did (a
// failure elsewhere, the caller's cancellation, an early stop), an error for
// which errors.Is(err, context.Canceled) holds and that neither is nor wraps
// an *Error, whatever the function returned: the call neither succeeded nor
// failed."
//
// Three items on three workers (Buffer(1): every worker a goroutine of the
// stage, so they may wait for their peers). Items 1 and 2 start and wait for
// the run's ctx; then item 0 ends the run in one of several ways. Item 1
// returns ctx.Err(); item 2 returns an error of its own ("whatever the
// function returned").
func TestReview13ObserveCutShortIsCanceled(t *testing.T) {
	errOwn := errors.New("review13: my own error after ctx.Done")
	type ending struct {
		name string
		// run runs s with ctx (derived from a cancellable parent, whose
		// cancel is given) and returns the sink's error.
		run     func(ctx context.Context, cancel context.CancelFunc, s stage.Stream[int], peersIn <-chan struct{}) error
		item0   func(ctx context.Context) (int, error)
		wantErr func(error) bool
		// whether item 0 itself counts as failed
		item0Failed bool
	}
	endings := []ending{
		{
			name: "failfast-elsewhere",
			run: func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int], _ <-chan struct{}) error {
				_, err := sink.Slice(ctx, s)
				return err
			},
			item0:       func(context.Context) (int, error) { return 0, errR13o },
			wantErr:     func(err error) bool { return errors.Is(err, errR13o) },
			item0Failed: true,
		},
		{
			name: "caller-cancel",
			run: func(ctx context.Context, cancel context.CancelFunc, s stage.Stream[int], _ <-chan struct{}) error {
				_, err := sink.Slice(ctx, s)
				return err
			},
			// item 0 waits like the others; the test cancels the caller's
			// ctx once all three are in (see below).
			item0:   nil,
			wantErr: func(err error) bool { return errors.Is(err, context.Canceled) },
		},
		{
			name: "first",
			run: func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int], _ <-chan struct{}) error {
				v, ok, err := sink.First(ctx, s)
				if err == nil && (!ok || v != 100) {
					return errors.New("First returned the wrong item")
				}
				return err
			},
			item0:   func(context.Context) (int, error) { return 100, nil },
			wantErr: func(err error) bool { return err == nil },
		},
		{
			name: "callback-error",
			run: func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int], _ <-chan struct{}) error {
				return sink.ForEach(ctx, s, func(context.Context, int) error { return errR13o })
			},
			item0:   func(context.Context) (int, error) { return 100, nil },
			wantErr: func(err error) bool { return errors.Is(err, errR13o) },
		},
		{
			name: "errstop",
			run: func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int], _ <-chan struct{}) error {
				return stage.Run(ctx, s, func(context.Context, int, error) error { return stage.ErrStop })
			},
			item0:   func(context.Context) (int, error) { return 100, nil },
			wantErr: func(err error) bool { return err == nil },
		},
		{
			name: "break-all",
			run: func(ctx context.Context, _ context.CancelFunc, s stage.Stream[int], _ <-chan struct{}) error {
				for _, err := range sink.All(ctx, s) {
					if err != nil {
						return err
					}
					break
				}
				return nil
			},
			item0:   func(context.Context) (int, error) { return 100, nil },
			wantErr: func(err error) bool { return err == nil },
		},
	}
	for _, e := range endings {
		t.Run(e.name, func(t *testing.T) {
			rec := &r13oRec{}
			parent, cancel := context.WithCancel(context.Background())
			defer cancel()
			ctx := stage.Observe(parent, rec)
			peers := make(chan struct{}, 3)
			peersIn := make(chan struct{})
			s := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, x int) (int, error) {
				if x == 0 && e.item0 != nil {
					<-peersIn
					return e.item0(ctx)
				}
				peers <- struct{}{}
				<-ctx.Done()
				if x == 2 {
					return 0, errOwn
				}
				return 0, ctx.Err()
			}, stage.Workers(3), stage.Buffer(1))
			go func() {
				need := 2
				if e.item0 == nil {
					need = 3
				}
				for range need {
					<-peers
				}
				close(peersIn)
				if e.item0 == nil {
					cancel()
				}
			}()
			var err error
			r13oWatchdog(t, func() { err = e.run(ctx, cancel, s, peersIn) })
			if !e.wantErr(err) {
				t.Fatalf("sink returned %v", err)
			}
			w := rec.byName(t, "map#1")
			w.check(t)
			wantFailed, wantOK, wantCanceled := int64(0), int64(0), int64(2)
			switch {
			case e.item0 == nil:
				wantCanceled = 3
			case e.item0Failed:
				wantFailed = 1
			default:
				wantOK = 1
			}
			if w.received.Load() != 3 || w.failed.Load() != wantFailed || w.ok.Load() != wantOK || w.canceled.Load() != wantCanceled {
				w.mu.Lock()
				t.Errorf("received %d ok %d failed %d canceled %d weird %d (failed errs %v); want 3 %d %d %d 0",
					w.received.Load(), w.ok.Load(), w.failed.Load(), w.canceled.Load(), w.weird.Load(), w.failErrs,
					wantOK, wantFailed, wantCanceled)
				w.mu.Unlock()
			}
		})
	}
}

// Same promise, with the caller's ctx ending by its deadline: the doc promises
// errors.Is(err, context.Canceled) for a call cut short by the end of the run,
// whatever ended it. The calls wait for ctx.Done, so only the order of events
// matters (the deadline is a trigger, not an assertion).
func TestReview13ObserveCutShortByDeadline(t *testing.T) {
	rec := &r13oRec{}
	parent, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ctx := stage.Observe(parent, rec)
	s := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, x int) (int, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Workers(2), stage.Buffer(1))
	var err error
	r13oWatchdog(t, func() { _, err = sink.Slice(ctx, s) })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("sink returned %v", err)
	}
	w := rec.byName(t, "map#1")
	w.check(t)
	if w.canceled.Load() != w.received.Load() || w.failed.Load() != 0 || w.ok.Load() != 0 {
		t.Errorf("received %d: ok %d failed %d canceled %d (weird %v); want every call cut short (Canceled)",
			w.received.Load(), w.ok.Load(), w.failed.Load(), w.canceled.Load(), w.weirdErrs)
	}
}

// Watcher.Finished: "A call that returned nil is a success, even once the
// run was ending": a function that sees the run end and returns nil is
// reported with a nil error, while its peer's failure is reported as the
// item's *Error.
func TestReview13ObserveCutShortNilReturn(t *testing.T) {
	rec := &r13oRec{}
	ctx := stage.Observe(context.Background(), rec)
	peer := make(chan struct{})
	s := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, x int) (int, error) {
		if x == 0 {
			<-peer
			return 0, errR13o
		}
		close(peer)
		<-ctx.Done()
		return 1, nil
	}, stage.Workers(2), stage.Buffer(1))
	var err error
	r13oWatchdog(t, func() { _, err = sink.Slice(ctx, s) })
	if !errors.Is(err, errR13o) {
		t.Fatalf("sink returned %v", err)
	}
	w := rec.byName(t, "map#1")
	w.check(t)
	if w.failed.Load() != 1 || w.canceled.Load() != 0 || w.ok.Load() != 1 {
		t.Errorf("ok %d failed %d canceled %d; want 1 1 0 (a nil return is a success, even once the run was ending)",
			w.ok.Load(), w.failed.Load(), w.canceled.Load())
	}
}

// Promise (Retry + Watcher.Finished): a retry backoff is cut short by the
// run's cancellation, "without a retry"; the call ended because the run did,
// so Finished must report a cancellation, not an *Error.
func TestReview13ObserveCutShortInBackoff(t *testing.T) {
	rec := &r13oRec{}
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx := stage.Observe(parent, rec)
	attempted := make(chan struct{}, 10)
	var attempts int
	s := stage.Map(source.Slice([]int{0}), func(ctx context.Context, x int) (int, error) {
		attempts++
		attempted <- struct{}{}
		return 0, errR13o
	}, stage.Workers(1), stage.Retry(5, time.Hour))
	go func() {
		<-attempted
		cancel()
	}()
	var err error
	r13oWatchdog(t, func() { _, err = sink.Slice(ctx, s) })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("sink returned %v", err)
	}
	if attempts != 1 {
		t.Fatalf("%d attempts, want 1", attempts)
	}
	w := rec.byName(t, "map#1")
	w.check(t)
	if w.received.Load() != 1 || w.canceled.Load() != 1 {
		t.Errorf("received %d ok %d failed %d canceled %d; want the call reported as cut short", w.received.Load(), w.ok.Load(), w.failed.Load(), w.canceled.Load())
	}
}
