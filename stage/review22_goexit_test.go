package stage_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type r22Obs struct {
	mu       sync.Mutex
	finished []error
	goexitCh chan struct{}
	once     sync.Once
}

func (o *r22Obs) Stage(stage.Info) stage.Watcher { return o }
func (o *r22Obs) Received()                      {}
func (o *r22Obs) Finished(_ time.Duration, err error) {
	o.mu.Lock()
	o.finished = append(o.finished, err)
	o.mu.Unlock()
	if err != nil && strings.Contains(err.Error(), stage.ErrGoexit.Error()) && o.goexitCh != nil {
		o.once.Do(func() { close(o.goexitCh) })
	}
}
func (o *r22Obs) Closed() {}

// stoppable source of n ints; stopped is closed by its stop.
func r22Stoppable(n int, stopped *atomic.Int32) stage.Stream[int] {
	return stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
		i := 0
		return func(ctx context.Context) (int, error) {
			if i >= n {
				return 0, io.EOF
			}
			i++
			return i - 1, nil
		}, func() { stopped.Add(1) }
	})
}

func TestReview22GoexitPrecedence(t *testing.T) {
	cases := []string{"alone", "failfirst", "cancelfirst", "stopfirst", "goexitThenCancel", "goexitThenCancelNil", "goexitThenFail"}
	for _, c := range cases {
		t.Run(c, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				var stopped atomic.Int32
				boom := errors.New("boom")
				obs := &r22Obs{goexitCh: make(chan struct{})}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				ctx = stage.Observe(ctx, obs)
				gate := make(chan struct{})
				started2 := make(chan struct{})
				// Items 1 and 2 end the run only once the other items were
				// called: a call not begun when the run ends never begins
				// (no Finished), and three Finished are checked below.
				entered := []chan struct{}{make(chan struct{}), make(chan struct{})}
				s := stage.Map(r22Stoppable(3, &stopped), func(ctx context.Context, v int) (int, error) {
					if v < 2 {
						close(entered[v])
					}
					switch v {
					case 0:
						return 0, nil
					case 1:
						if c == "failfirst" {
							r22Wait(t, started2, "item 2 started")
							r22Wait(t, entered[0], "item 0 called")
							return 0, boom
						}
						return 1, nil
					case 2:
						close(started2)
						r22Wait(t, entered[0], "item 0 called")
						r22Wait(t, entered[1], "item 1 called")
						if c != "alone" && !strings.HasPrefix(c, "goexit") {
							if c != "failfirst" {
								<-gate
							}
							<-ctx.Done()
						}
						runtime.Goexit()
					}
					return v, nil
				}, stage.Workers(3), stage.Ordered())
				err := stage.Run(ctx, s, func(rctx context.Context, v int, _ error) error {
					r22Wait(t, started2, "item 2 started")
					switch c {
					case "cancelfirst":
						if v == 0 {
							close(gate)
							cancel()
						}
					case "stopfirst":
						if v == 0 {
							close(gate)
							return stage.ErrStop
						}
					case "failfirst":
						select {
						case <-gate:
						default:
							close(gate)
						}
					case "goexitThenCancel", "goexitThenCancelNil":
						if v == 0 {
							r22Wait(t, obs.goexitCh, "goexit finished")
							<-rctx.Done()
							if cause := context.Cause(rctx); !errors.Is(cause, stage.ErrGoexit) {
								t.Errorf("run's cause after Goexit: %v", cause)
							}
							cancel()
							if c == "goexitThenCancelNil" {
								return nil
							}
							return rctx.Err()
						}
					case "goexitThenFail":
						if v == 0 {
							r22Wait(t, obs.goexitCh, "goexit finished")
							<-rctx.Done()
							if cause := context.Cause(rctx); !errors.Is(cause, stage.ErrGoexit) {
								t.Errorf("run's cause after Goexit: %v", cause)
							}
							return boom
						}
					}
					return nil
				})
				switch c {
				case "alone", "goexitThenCancel", "goexitThenCancelNil":
					if !errors.Is(err, stage.ErrGoexit) {
						t.Errorf("Run = %v, want ErrGoexit", err)
					}
				case "failfirst":
					if !errors.Is(err, boom) || errors.Is(err, stage.ErrGoexit) {
						t.Errorf("Run = %v, want boom", err)
					}
				case "cancelfirst":
					if !errors.Is(err, context.Canceled) || errors.Is(err, stage.ErrGoexit) {
						t.Errorf("Run = %v, want Canceled", err)
					}
				case "stopfirst":
					if err != nil {
						t.Errorf("Run = %v, want nil", err)
					}
				case "goexitThenFail":
					// f's error after Goexit ended the run: doc says ErrGoexit unless it
					// failed otherwise first; here Goexit was first.
					if !errors.Is(err, stage.ErrGoexit) {
						t.Errorf("Run = %v, want ErrGoexit (goexit came first)", err)
					}
				}
				if stopped.Load() != 1 {
					t.Errorf("source stopped %d times, want 1", stopped.Load())
				}
				// Watcher: the Goexit call reported as cut short naming ErrGoexit.
				obs.mu.Lock()
				defer obs.mu.Unlock()
				if len(obs.finished) != 3 {
					t.Errorf("Finished called %d times, want 3: %v", len(obs.finished), obs.finished)
				}
				found := false
				for _, e := range obs.finished {
					if e != nil && strings.Contains(e.Error(), stage.ErrGoexit.Error()) {
						found = true
						var se *stage.Error
						if !errors.Is(e, context.Canceled) || errors.As(e, &se) {
							t.Errorf("goexit Finished err %v: want errors.Is Canceled, no *Error", e)
						}
					}
				}
				if !found && c != "cancelfirst" && c != "stopfirst" && c != "failfirst" {
					t.Errorf("no Finished naming ErrGoexit: %v", obs.finished)
				}
				if !found {
					t.Errorf("no Finished naming ErrGoexit: %v", obs.finished)
				}
			})
		})
	}
}

func TestReview22GoexitStats(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var st stage.Stats
		var stopped atomic.Int32
		ctx := stage.Observe(context.Background(), &st)
		s := stage.Map(r22Stoppable(10, &stopped), func(ctx context.Context, v int) (int, error) {
			if v == 5 {
				runtime.Goexit()
			}
			return v, nil
		}, stage.Name("m"), stage.Workers(3))
		s = stage.Map(s, func(ctx context.Context, v int) (int, error) { return v, nil }, stage.Name("m2"), stage.Workers(2))
		_, err := sink.Count(ctx, s)
		if !errors.Is(err, stage.ErrGoexit) {
			t.Errorf("err = %v", err)
		}
		for _, n := range []string{"m", "m2"} {
			c, ok := st.Get(n)
			if !ok || c.InFlight != 0 || c.Received != c.Finished || c.Running != 0 {
				t.Errorf("%s: %+v", n, c)
			}
			if c.Failed != 0 {
				t.Errorf("%s: Failed=%d, want 0 (cut short is not a failure)", n, c.Failed)
			}
		}
		if stopped.Load() != 1 {
			t.Errorf("source stopped %d", stopped.Load())
		}
	})
}

// Goexit in the sink callback on the sink's goroutine: the sink does not
// return, the run's goroutines exit, and every source is still stopped.
func TestReview22GoexitInSinkCallback(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		var stopped atomic.Int32
		stopCh := make(chan struct{})
		src := stage.Source(func(ctx context.Context) (func(ctx context.Context) (int, error), func()) {
			i := 0
			return func(ctx context.Context) (int, error) {
				i++
				return i, nil // infinite
			}, func() { stopped.Add(1); close(stopCh) }
		})
		s := stage.Map(src, func(ctx context.Context, v int) (int, error) { return v, nil }, stage.Workers(4))
		done := make(chan struct{})
		returned := false
		go func() {
			defer close(done)
			_ = sink.ForEach(context.Background(), s, func(ctx context.Context, v int) error {
				if v == 3 {
					runtime.Goexit()
				}
				return nil
			})
			returned = true
		}()
		r22Wait(t, done, "sink goroutine end")
		if returned {
			t.Errorf("sink returned after Goexit in its callback")
		}
		r22Wait(t, stopCh, "source stop after Goexit in sink callback")
	})
}

// panic(nil) under GODEBUG=panicnil=1 in each piece of user code.
func TestReview22PanicNil(t *testing.T) {
	t.Setenv("GODEBUG", "panicnil=1")
	where := []string{"map", "sinkcb", "source", "ack", "watcher", "filter", "keyby", "runf"}
	for _, w := range where {
		t.Run(w, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				var src stage.Stream[int]
				if w == "source" {
					n := 0
					src = source.Func(func(ctx context.Context) (int, error) {
						n++
						if n == 3 {
							panic(nil)
						}
						return n, nil
					})
				} else if w == "ack" {
					src = stage.AckSource(func(ctx context.Context) (func(ctx context.Context) (int, stage.Ack, error), func()) {
						i := 0
						return func(ctx context.Context) (int, stage.Ack, error) {
							if i >= 5 {
								return 0, nil, io.EOF
							}
							i++
							return i, r22PanicAck{}, nil
						}, func() {}
					})
				} else {
					src = source.Slice([]int{1, 2, 3, 4, 5})
				}
				ctx := context.Background()
				if w == "watcher" {
					ctx = stage.Observe(ctx, r22PanicObs{})
				}
				var opts []stage.Option
				if w == "keyby" {
					opts = append(opts, stage.KeyBy(func(v int) int {
						if v == 3 {
							panic(nil)
						}
						return v
					}))
				}
				s := stage.Map(src, func(ctx context.Context, v int) (int, error) {
					if w == "map" && v == 3 {
						panic(nil)
					}
					return v, nil
				}, opts...)
				s = stage.Filter(s, func(ctx context.Context, v int) (bool, error) {
					if w == "filter" && v == 3 {
						panic(nil)
					}
					return true, nil
				})
				var err error
				if w == "runf" {
					// A panic in Run's f is not recovered: Run lets it continue.
					func() {
						defer func() {
							r := recover()
							err = errors.New("recovered")
							_ = r
						}()
						err = stage.Run(ctx, s, func(ctx context.Context, v int, _ error) error {
							if v == 3 {
								panic(nil)
							}
							return nil
						})
					}()
					if err == nil || err.Error() != "recovered" {
						t.Errorf("panic(nil) in Run's f did not continue: Run returned %v", err)
					}
					return
				}
				err = sink.ForEach(ctx, s, func(ctx context.Context, v int) error {
					if w == "sinkcb" && v == 3 {
						panic(nil)
					}
					return nil
				})
				var pe *stage.PanicError
				if err == nil || !errors.As(err, &pe) {
					t.Errorf("%s: err = %v, want an error wrapping *PanicError", w, err)
				}
			})
		})
	}
}

type r22PanicAck struct{}

func (r22PanicAck) Done(error) { panic(nil) }

type r22PanicObs struct{}

func (r22PanicObs) Stage(stage.Info) stage.Watcher { return r22PanicW{} }

type r22PanicW struct{}

func (r22PanicW) Received()                     { panic(nil) }
func (r22PanicW) Finished(time.Duration, error) {}
func (r22PanicW) Closed()                       {}
