package stage_test

// Review 47: the caller's context is a context type of the user's whose Err
// ends the calling goroutine (runtime.Goexit, as t.FailNow in a fake
// context does) when a goroutine of the run asks it, at the moment the run
// asks it most: as a stage fails, and as a goroutine of the run is itself
// ended by a Goexit in a stage's function. The promises (package doc,
// Leaks; ErrGoexit): the sink returns once the run is over, with an error,
// and when it returns no goroutine of the run is running; a Goexit on the
// sink's own goroutine ends that goroutine, and the run's goroutines exit.

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r47Parent is a context of the user's over a cancellable standard one
// (the context package finds it through Value, and asks Value again when
// it removes a child) whose Err (or, value, whose Value), once armed,
// calls runtime.Goexit on every goroutine but the one that called the
// sink (onSink: on that one only). review48 uses it too.
type r47Parent struct {
	context.Context
	cancel  context.CancelFunc
	value   bool
	onSink  bool
	sink    atomic.Int64 // the id of the goroutine that called the sink
	armed   atomic.Bool
	goexits atomic.Int64
}

func newR47Parent(t *testing.T, value, onSink, armed bool) *r47Parent {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &r47Parent{Context: ctx, cancel: cancel, value: value, onSink: onSink}
	p.armed.Store(armed)
	return p
}

func (c *r47Parent) goexit() {
	sink := c.sink.Load()
	if sink == 0 || !c.armed.Load() {
		return
	}
	if (r47Goid() == sink) == c.onSink {
		c.goexits.Add(1)
		runtime.Goexit()
	}
}

func (c *r47Parent) Err() error {
	if !c.value {
		c.goexit()
	}
	return c.Context.Err()
}

func (c *r47Parent) Value(key any) any {
	if c.value {
		c.goexit()
	}
	return c.Context.Value(key)
}

// r47Goid is the calling goroutine's id, as its stack trace prints it.
func r47Goid() int64 {
	var buf [64]byte
	s := strings.TrimPrefix(string(buf[:runtime.Stack(buf[:], false)]), "goroutine ")
	id, err := strconv.ParseInt(s[:strings.IndexByte(s, ' ')], 10, 64)
	if err != nil {
		panic(err)
	}
	return id
}

var errR47 = errors.New("r47: the stage failed")

// TestReview47ParentGoexitsOffTheSink: a goroutine of the run fails (an
// error, or a Goexit in the stage's function; generator's source waits,
// so its items run on goroutines of the run) and the run asks the parent's
// Err (did it end first?) or cancels its context (the context package asks
// the parent's Value as it removes the run's context), which Goexits.
// The sink must return, with errR47 or ErrGoexit, and no goroutine of the
// run may outlive it.
func TestReview47ParentGoexitsOffTheSink(t *testing.T) {
	for _, method := range []string{"Err", "Value"} {
		for _, goexit := range []bool{false, true} {
			for _, workers := range []int{2, 4} {
				for _, ordered := range []bool{false, true} {
					name := method + "/fails"
					if goexit {
						name = method + "/goexits"
					}
					name += "/workers=" + strconv.Itoa(workers) + "/ordered=" + strconv.FormatBool(ordered)
					t.Run(name, func(t *testing.T) {
						runcheckInChild(t, func(t *testing.T) {
							for range 20 {
								p := newR47Parent(t, method == "Value", false, true)
								opts := []stage.Option{stage.Workers(workers)}
								if ordered {
									opts = append(opts, stage.Ordered())
								}
								in := stage.Map(generator(50), func(ctx context.Context, v int) (int, error) {
									if goexit {
										runtime.Goexit()
									}
									return 0, errR47
								}, opts...)
								var err error
								runcheck.Run(t, name, func() {
									p.sink.Store(r47Goid())
									err = stage.Run(p, in, func(context.Context, int, error) error { return nil })
								})
								if !errors.Is(err, errR47) && !errors.Is(err, stage.ErrGoexit) {
									t.Fatalf("stage.Run = %v, want errR47 or ErrGoexit", err)
								}
								if t.Failed() {
									return
								}
							}
						})
					})
				}
			}
		}
	}
}

// TestReview47ParentValueGoexitsOnTheSink: the stage fails on the sink's
// goroutine (a 1-item run over a source that never waits runs its item
// there) and the parent's Value, asked there as the failure cancels the
// run's context (the context package removes it from the parent), Goexits:
// the sink's goroutine ends (the sink does not return), and the run leaves
// no goroutine.
func TestReview47ParentValueGoexitsOnTheSink(t *testing.T) {
	for _, workers := range []int{1, 2, 4} {
		t.Run("workers="+strconv.Itoa(workers), func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				for range 20 {
					p := newR47Parent(t, true, true, false)
					var sinkTook atomic.Bool
					in := stage.Map(stage.Indexed(1, func(i int) int { return i }), func(ctx context.Context, v int) (int, error) {
						if r47Goid() == p.sink.Load() {
							sinkTook.Store(true)
							p.armed.Store(true)
							return 0, errR47
						}
						return v, nil
					}, stage.Workers(workers))
					_, before := runcheck.Goroutines()
					returned := false
					runcheck.NoHang(t, "the sink's goroutine", func() {
						done := make(chan struct{})
						go func() {
							defer close(done)
							p.sink.Store(r47Goid())
							_ = stage.Run(p, in, func(context.Context, int, error) error { return nil })
							returned = true
						}()
						<-done
					})
					if !sinkTook.Load() {
						t.Fatal("the scenario did not happen: the item ran on another goroutine than the sink's")
					}
					if returned {
						t.Fatalf("stage.Run returned; the parent's Value was to Goexit on its goroutine (%d Goexits)", p.goexits.Load())
					}
					if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
						t.Fatalf("%d goroutine(s) of the run alive after the sink's goroutine ended:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
					}
				}
			})
		})
	}
}

// r47Counting is a waiting source of 0, 1, 2, ... (its items run on
// goroutines of the run); stopped is set when the run stops it.
func r47Counting(stopped *atomic.Bool) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		n := 0
		return func(context.Context) (int, error) { n++; return n, nil }, func() { stopped.Store(true) }
	})
}

// r47StopEarly runs in (a never-ending pipeline whose workers fill their
// queue and wait for room) into a Run whose callback arms p (a context's
// Value Goexits on the sink's goroutine from then on) and stops the run at
// its first item: finish cancels what runs, and the cancellation asks the
// Value (context's removeChild). The sink's goroutine ends by that Goexit;
// the promise (ErrGoexit's doc): the run's goroutines exit, and the source
// is stopped (Leaks: sources release what they hold).
func r47StopEarly(t *testing.T, p *r47Parent, ctx context.Context, in stage.Stream[int], stopped *atomic.Bool) {
	t.Helper()
	_, before := runcheck.Goroutines()
	returned := false
	runcheck.NoHang(t, "the sink's goroutine", func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			p.sink.Store(r47Goid())
			_ = stage.Run(ctx, in, func(context.Context, int, error) error {
				p.armed.Store(true)
				return stage.ErrStop
			})
			returned = true
		}()
		<-done
	})
	if p.goexits.Load() == 0 {
		t.Fatal("the scenario did not happen: nothing asked the context's Value on the sink's goroutine once the callback stopped the run")
	}
	if returned {
		t.Fatal("stage.Run returned after a Goexit on its goroutine")
	}
	if leaked := runcheck.LeakedSince(before); len(leaked) > 0 {
		t.Fatalf("%d goroutine(s) of the run alive after the sink's goroutine ended:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
	}
	if !stopped.Load() {
		t.Fatal("the source was not stopped")
	}
}

// TestReview47ParentValueGoexitsAtFinish: the caller's context's Value
// Goexits on the sink's goroutine as the run, stopped by its callback,
// cancels its context at its end.
func TestReview47ParentValueGoexitsAtFinish(t *testing.T) {
	for _, workers := range []int{1, 2, 4} {
		t.Run("workers="+strconv.Itoa(workers), func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				for range 20 {
					p := newR47Parent(t, true, true, false)
					var stopped atomic.Bool
					in := stage.Map(r47Counting(&stopped), double, stage.Workers(workers))
					r47StopEarly(t, p, p, in, &stopped)
					if t.Failed() {
						return
					}
				}
			})
		})
	}
}

// TestReview47UntilStopValueGoexitsAtFinish: the same for Until's stop
// context (the caller's is Background): at finish the run stops its hook
// on the stop context, and the context package asks the stop's Value.
func TestReview47UntilStopValueGoexitsAtFinish(t *testing.T) {
	for _, workers := range []int{1, 2, 4} {
		t.Run("workers="+strconv.Itoa(workers), func(t *testing.T) {
			runcheckInChild(t, func(t *testing.T) {
				for range 20 {
					stop := newR47Parent(t, true, true, false)
					var stopped atomic.Bool
					in := stage.Map(stage.Until(r47Counting(&stopped), stop), double, stage.Workers(workers))
					r47StopEarly(t, stop, context.Background(), in, &stopped)
					if t.Failed() {
						return
					}
				}
			})
		})
	}
}
