package stage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The sink's callback is one ender, a stage's failure (or the parent's
// cancellation) the other. stage.Run: "nil when f returned ErrStop,
// whatever else happened meanwhile"; "the error f returned, or the error
// that had cut the run short before"; "Its result depends only on what f
// saw and returned, never on timing". sink.ForEach: "f may return
// stage.ErrStop ... ForEach then returns nil".
//
// Item 0 succeeds at once and reaches the callback, which waits until items
// 1 and 2 are in flight and then returns; item 1 fails (or the parent is
// cancelled) at the same moment; item 2 waits for ctx.Done() and records
// the cause.

var errR43Cb = errors.New("review43: callback")

func TestReview43CallbackEnders(t *testing.T) {
	key := stage.KeyBy(func(i int) int { return i })
	shapes := map[string]func(fn r43Fn) stage.Stream[int]{
		"map-buf": func(fn r43Fn) stage.Stream[int] {
			return stage.Map(source.Slice(ints(3)), fn, stage.Workers(3), stage.Buffer(1))
		},
		"map-buf-ord": func(fn r43Fn) stage.Stream[int] {
			return stage.Map(source.Slice(ints(3)), fn, stage.Workers(3), stage.Buffer(1), stage.Ordered())
		},
		"keyby-buf": func(fn r43Fn) stage.Stream[int] {
			return stage.Map(source.Slice(ints(3)), fn, stage.Workers(3), stage.Buffer(1), key)
		},
		"merge": func(fn r43Fn) stage.Stream[int] {
			return stage.Merge(
				stage.Map(source.Slice([]int{0}), fn, stage.Workers(1)),
				stage.Map(source.Slice([]int{1}), fn, stage.Workers(1)),
				stage.Map(source.Slice([]int{2}), fn, stage.Workers(1)))
		},
	}
	type ender struct {
		cb       error // what the callback returns
		item1    bool  // item 1 fails (else it waits, and the parent is cancelled)
		wantNil  bool
		runCheck func(sname string, err error, causes []error) string
	}
	consistent := func(sname string, err error, causes []error) string {
		switch se, ok := r43StageErr(err); {
		case ok && se.Stage != "foreach" && errors.Is(se, errR43B):
		case sname == "run" && err == errR43Cb:
		case sname == "foreach" && ok && se.Stage == "foreach" && se.Err == errR43Cb:
		case errors.Is(err, context.Canceled):
			for _, c := range causes {
				if c != errR43P {
					return fmt.Sprintf("the sink returned the cancellation %v, but a call in flight saw cause %T %v", err, c, c)
				}
			}
			return ""
		default:
			return fmt.Sprintf("sink returned %T %v, want the callback's error or item 1's", err, err)
		}
		for _, c := range causes {
			if !r43Identical(c, err) {
				return fmt.Sprintf("a call in flight saw cause %T %v, but the sink returned %T %v", c, c, err, err)
			}
		}
		return ""
	}
	enders := map[string]ender{
		"stop-vs-failure":         {cb: stage.ErrStop, item1: true, wantNil: true},
		"wrapped-stop-vs-failure": {cb: fmt.Errorf("done: %w", stage.ErrStop), item1: true, wantNil: true},
		"stop-vs-parent":          {cb: stage.ErrStop, wantNil: true},
		"error-vs-failure":        {cb: errR43Cb, item1: true, runCheck: consistent},
		"error-vs-parent":         {cb: errR43Cb, runCheck: consistent},
	}
	sinks := map[string]func(ctx context.Context, s stage.Stream[int], cb func() error) error{
		"run": func(ctx context.Context, s stage.Stream[int], cb func() error) error {
			return stage.Run(ctx, s, func(_ context.Context, v int, err error) error {
				if err == nil && v == 0 {
					return cb()
				}
				return nil
			})
		},
		"foreach": func(ctx context.Context, s stage.Stream[int], cb func() error) error {
			return sink.ForEach(ctx, s, func(_ context.Context, v int) error {
				if v == 0 {
					return cb()
				}
				return nil
			})
		},
	}
	for _, ename := range r43Names(enders) {
		e := enders[ename]
		for _, shname := range r43Names(shapes) {
			for _, sname := range r43Names(sinks) {
				t.Run(ename+"/"+shname+"/"+sname, func(t *testing.T) {
					fails, first := 0, ""
					for range r43Reps {
						parent, cancel := context.WithCancelCause(context.Background())
						p := &r43Probe{}
						bar := newR43Barrier(3)
						var ext sync.WaitGroup
						if !e.item1 {
							ext.Go(func() { bar.wait(); cancel(errR43P) })
						}
						fn := func(ctx context.Context, i int) (int, error) {
							switch i {
							case 0:
								return 0, nil
							case 1:
								bar.arrive()
								if e.item1 {
									return 0, errR43B
								}
								return 0, p.await(ctx)
							default:
								bar.arrive()
								return 0, p.await(ctx)
							}
						}
						var err error
						runcheck.Run(t, shname, func() {
							err = sinks[sname](parent, shapes[shname](fn), func() error { bar.arrive(); return e.cb })
						})
						ext.Wait()
						cancel(nil)
						var msg string
						if e.wantNil {
							if err != nil {
								msg = fmt.Sprintf("the callback returned %v, but the sink returned %T %v, want nil", e.cb, err, err)
							}
						} else {
							msg = e.runCheck(sname, err, p.causes)
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
	}
}
