package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r43FailingSource yields 0, 1, ..., n-1, then fails (returns errR43S, or
// panics with it), closing failed just before.
func r43FailingSource(n int, panics bool, failed chan struct{}) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				close(failed)
				if panics {
					panic(errR43S)
				}
				return 0, errR43S
			}
			i++
			return i - 1, nil
		}, nil
	})
}

// TestReview43SourceErrorThenItemFailure: the package doc: "A source that
// fails ends the run with a *SourceError whatever the policies: the source
// stops, the items it produced before still go through, then the sink
// returns the error", and Run: "the error that cut the run short before f
// saw the end of s: the first FailFast *Error". Item 0, produced before the
// source failed, fails once the source has failed: the run must end with
// item 0's *Error (f never saw the end of s), whatever the timing, and the
// call in flight (item 1) must see that *Error as the cause.
func TestReview43SourceErrorThenItemFailure(t *testing.T) {
	for _, panics := range []bool{false, true} {
		for _, sname := range r43Names(r43Sinks()) {
			for _, ordered := range []bool{false, true} {
				t.Run(fmt.Sprintf("panics=%v/%s/ordered=%v", panics, sname, ordered), func(t *testing.T) {
					fails, first := 0, ""
					for range r43Reps {
						failed := make(chan struct{})
						p := &r43Probe{}
						started := make(chan struct{})
						fn := func(ctx context.Context, i int) (int, error) {
							if i == 0 {
								<-failed
								<-started
								return 0, errR43A
							}
							close(started)
							return 0, p.await(ctx)
						}
						opts := []stage.Option{stage.Workers(3)}
						if ordered {
							opts = append(opts, stage.Ordered())
						}
						var err error
						runcheck.Run(t, sname, func() {
							err = r43Sinks()[sname](context.Background(), stage.Map(r43FailingSource(2, panics, failed), fn, opts...))
						})
						msg := r43CheckFailure(errR43A, nil)(err, p.causes)
						if msg != "" {
							fails++
							if first == "" {
								first = msg
							}
						}
					}
					if fails > 0 {
						t.Errorf("%d/%d runs: first: %s", fails, r43Reps, first)
					}
				})
			}
		}
	}
}

// TestReview43SourceErrorItemsGoThrough: "the items it produced before
// still go through" and Source: the ctx of next "also ends when another
// source of the run fails". Branch A's source fails while its item 0 is in
// flight; branch B's source, blocked for its next item, sees its context
// end (so the failure is known to the run); only then is item 0 released:
// its context must not have ended, it must reach the sink, and the sink
// returns the *SourceError. Branch B's item in flight (taken before the
// failure) goes through too.
func TestReview43SourceErrorItemsGoThrough(t *testing.T) {
	for _, sname := range []string{"run", "foreach", "slice"} {
		t.Run(sname, func(t *testing.T) {
			fails, first := 0, ""
			for range r43Reps {
				failed := make(chan struct{})
				bEnded, bWaiting := make(chan struct{}), make(chan struct{})
				var bGave atomic.Bool
				b := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
					return func(ctx context.Context) (int, error) {
						if !bGave.Swap(true) {
							return 100, nil
						}
						close(bWaiting)
						<-ctx.Done()
						close(bEnded)
						return 0, ctx.Err()
					}, nil
				})
				var delivered sync.Map
				var ctxErrAtRelease atomic.Value
				fn := func(ctx context.Context, i int) (int, error) {
					if i == 0 {
						<-failed
						<-bEnded
						if ctx.Err() != nil {
							ctxErrAtRelease.Store(context.Cause(ctx))
						}
					}
					return i, nil
				}
				s := stage.Merge(
					stage.Map(r43GatedFailingSource(bWaiting, failed), fn, stage.Workers(2)),
					stage.Map(b, fn, stage.Workers(2)))
				var err error
				runcheck.Run(t, sname, func() {
					switch sname {
					case "run":
						err = stage.Run(context.Background(), s, func(_ context.Context, v int, _ error) error {
							delivered.Store(v, true)
							return nil
						})
					case "foreach":
						err = sink.ForEach(context.Background(), s, func(_ context.Context, v int) error {
							delivered.Store(v, true)
							return nil
						})
					case "slice":
						var vs []int
						vs, err = sink.Slice(context.Background(), s)
						for _, v := range vs {
							delivered.Store(v, true)
						}
					}
				})
				var msg string
				var se *stage.SourceError
				_, got0 := delivered.Load(0)
				_, got100 := delivered.Load(100)
				switch {
				case ctxErrAtRelease.Load() != nil:
					msg = fmt.Sprintf("item 0, produced before the source failed, saw its ctx end (cause %v)", ctxErrAtRelease.Load())
				case !errors.As(err, &se) || !errors.Is(err, errR43S):
					msg = fmt.Sprintf("sink returned %T %v, want the *SourceError", err, err)
				case !got0 || !got100:
					msg = fmt.Sprintf("items produced before the failure were lost: item 0 delivered %v, item 100 delivered %v", got0, got100)
				}
				if msg != "" {
					fails++
					if first == "" {
						first = msg
					}
				}
			}
			if fails > 0 {
				t.Errorf("%d/%d runs: first: %s", fails, r43Reps, first)
			}
		})
	}
}

// r43GatedFailingSource yields 0, then fails once gate is closed.
func r43GatedFailingSource(gate <-chan struct{}, failed chan struct{}) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == 1 {
				<-gate
				close(failed)
				return 0, errR43S
			}
			i++
			return 0, nil
		}, nil
	})
}

// TestReview43SourceEndVsParent: ErrGoexit (for the Goexit case, which may
// win: "the run fails with ErrGoexit ... unless ... its context was
// cancelled first") and Run: "when ctx was cancelled, an error for
// which errors.Is(err, context.Canceled) ... holds — even if a source had
// failed before, since the items before the failure were not all
// delivered". Item 0 waits for ctx.Done(), so it is never delivered; the
// source fails (an error, a panic, or runtime.Goexit in next) while the
// parent is cancelled with a cause. The sink must return the cancellation,
// and item 0 must see the parent's cause (a source failure does not cancel
// the stages: "the items it produced before still go through").
func TestReview43SourceEndVsParent(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, how := range []string{"error", "panic", "goexit"} {
			for _, sname := range r43Names(r43Sinks()) {
				t.Run(how+"/"+sname, func(t *testing.T) {
					fails, first := 0, ""
					for range r43Reps {
						parent, cancel := context.WithCancelCause(context.Background())
						started := make(chan struct{})
						src := stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
							i := 0
							return func(context.Context) (int, error) {
								if i == 0 {
									i++
									return 0, nil
								}
								<-started
								go cancel(errR43P)
								switch how {
								case "panic":
									panic(errR43S)
								case "goexit":
									runtime.Goexit()
								}
								return 0, errR43S
							}, nil
						})
						p := &r43Probe{}
						fn := func(ctx context.Context, i int) (int, error) {
							close(started)
							return 0, p.await(ctx)
						}
						var err error
						runcheck.Run(t, sname, func() {
							err = r43Sinks()[sname](parent, stage.Map(src, fn, stage.Workers(2)))
						})
						<-parent.Done()
						var msg string
						want := error(errR43P) // the cause item 0 must see
						switch {
						case how == "goexit" && errors.Is(err, stage.ErrGoexit):
							// A Goexit is a failure of the run: it may come
							// first, and is then the cause.
							want = err
						case !errors.Is(err, context.Canceled):
							msg = fmt.Sprintf("sink returned %T %v, want the cancellation", err, err)
						}
						for _, c := range p.causes {
							if !r43Identical(c, want) && msg == "" {
								msg = fmt.Sprintf("item 0 saw cause %T %v, but the sink returned %T %v", c, c, err, err)
							}
						}
						if msg != "" {
							fails++
							if first == "" {
								first = msg
							}
						}
					}
					if fails > 0 {
						t.Errorf("%d/%d runs: first: %s", fails, r43Reps, first)
					}
				})
			}
		}
	})
}
