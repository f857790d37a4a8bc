package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// ErrGoexit: "the run fails with ErrGoexit rather than return what it has
// as if complete (unless it failed otherwise, whose error it returns, its
// context was cancelled first, whose error it returns as for any
// cancellation, or its sink stopped it with ErrStop)". Goexit in a stage's
// function (item 0, on a worker goroutine) races another ender; item 2
// waits for ctx.Done() and records the cause, which must be what the sink
// returns. In a child process: a Goexit mishandled could hang or crash.
func TestReview43GoexitEnders(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		type ender struct {
			other   string // "fail", "parent", "stop", "handler-goexit"
			wantNil bool
		}
		enders := map[string]ender{
			"goexit-vs-failure":       {other: "fail"},
			"goexit-vs-stop":          {other: "stop", wantNil: true},
			"goexit-vs-handlergoexit": {other: "handler-goexit"},
		}
		for _, ename := range r43Names(enders) {
			e := enders[ename]
			for _, ordered := range []bool{false, true} {
				if ordered && e.other == "stop" {
					continue // item 3 would wait behind the items in flight
				}
				for _, sname := range []string{"run", "foreach"} {
					t.Run(fmt.Sprintf("%s/ordered=%v/%s", ename, ordered, sname), func(t *testing.T) {
						fails, first := 0, ""
						for range r43GoexitReps {
							msg := r43GoexitOnce(t, e.other, ordered, sname, e.wantNil)
							if msg != "" {
								fails++
								if first == "" {
									first = msg
								}
							}
						}
						if fails > 0 {
							t.Errorf("%d/%d runs: first: %s", fails, r43GoexitReps, first)
						}
					})
				}
			}
		}
	})
}

// r43GoexitReps keeps the child's matrix well within the Watchdog.
const r43GoexitReps = 80

func r43GoexitOnce(t *testing.T, other string, ordered bool, sname string, wantNil bool) string {
	parent, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	p := &r43Probe{}
	// The stop case: item 3 succeeds at once and its callback waits for the
	// others, then returns ErrStop.
	n := 3
	if other == "stop" {
		n = 4
	}
	bar := newR43Barrier(n)
	var ext sync.WaitGroup
	if other == "parent" {
		ext.Go(func() { bar.wait(); cancel(errR43P) })
	}
	fn := func(ctx context.Context, i int) (int, error) {
		switch i {
		case 0:
			bar.arrive()
			runtime.Goexit()
		case 1:
			bar.arrive()
			if other == "fail" || other == "handler-goexit" {
				return 0, errR43B
			}
			return 0, p.await(ctx)
		case 2:
			bar.arrive()
			return 0, p.await(ctx)
		}
		return i, nil
	}
	opts := r43Opts(ordered, stage.Workers(4), stage.Buffer(1))
	if other == "handler-goexit" {
		opts = append(opts, stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { runtime.Goexit(); return nil })))
	}
	s := stage.Map(r43Src(n), fn, opts...)
	cb := func(v int) error {
		if other == "stop" && v == 3 {
			bar.arrive()
			return stage.ErrStop
		}
		return nil
	}
	var err error
	runcheck.Run(t, sname, func() {
		if sname == "run" {
			err = stage.Run(parent, s, func(_ context.Context, v int, _ error) error { return cb(v) })
		} else {
			err = r43ForEach(parent, s, cb)
		}
	})
	ext.Wait()
	if wantNil {
		if err != nil {
			return fmt.Sprintf("the callback returned ErrStop, but the sink returned %T %v", err, err)
		}
		return ""
	}
	se, isSE := r43StageErr(err)
	switch {
	case other == "fail" && isSE && se.Err == errR43B:
	case other == "parent" && errors.Is(err, context.Canceled):
		for _, c := range p.causes {
			if c != errR43P {
				return fmt.Sprintf("the sink returned the cancellation %v, but a call in flight saw cause %T %v", err, c, c)
			}
		}
		return ""
	case errors.Is(err, stage.ErrGoexit):
	default:
		return fmt.Sprintf("sink returned %T %v, want ErrGoexit or the other ender's error", err, err)
	}
	for _, c := range p.causes {
		if !r43Identical(c, err) {
			return fmt.Sprintf("a call in flight saw cause %T %v, but the sink returned %T %v", c, c, err, err)
		}
	}
	return ""
}

// TestReview43GoexitVsParentCause: ErrGoexit: "the run fails with
// ErrGoexit ... unless ... its context was cancelled first, whose error it
// returns as for any cancellation"; the package doc, FailFast: "the run's
// context is cancelled with the *Error as its cause"; the sink doc: "its
// result is a function of the items and errors it saw, never of timing".
// Item 0 calls runtime.Goexit while the parent is cancelled with a cause;
// items 1 and 2 wait for ctx.Done() and record context.Cause. Either ender
// may win, but the cause the calls see and the sink's error must name the
// same one: the parent's cause with an error that is context.Canceled, or
// ErrGoexit with ErrGoexit.
func TestReview43GoexitVsParentCause(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, ordered := range []bool{false, true} {
			for _, sname := range []string{"run", "foreach"} {
				t.Run(fmt.Sprintf("ordered=%v/%s", ordered, sname), func(t *testing.T) {
					const reps = 1000
					fails, first := 0, ""
					for range reps {
						if msg := r43GoexitOnce(t, "parent", ordered, sname, false); msg != "" {
							fails++
							if first == "" {
								first = msg
							}
						}
					}
					if fails > 0 {
						t.Errorf("%d/%d runs: first: %s", fails, reps, first)
					}
				})
			}
		}
	})
}
