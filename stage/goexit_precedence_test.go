package stage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// ErrGoexit's doc: the run fails with ErrGoexit "unless it failed
// otherwise, whose error it returns, or its sink stopped it with ErrStop".
// Each case orders the failure (or stop) and the Goexit with gates: the
// goroutine that calls runtime.Goexit waits until the run's context is done,
// so the other outcome is always first; in the last case the Goexit is first
// and a failure that follows it does not replace it. Buffer(1) keeps the
// stage off the sink's goroutine (a Goexit there would end the sink).
func TestGoexitPrecedence(t *testing.T) {
	boom := errors.New("boom")
	opts := []stage.Option{stage.Workers(2), stage.Buffer(1)}
	out, ok := runcheck.InChild(t, func() string {
		var res []string

		// A failure (FailFast) first, then a Goexit: the failure is the result.
		started := make(chan struct{})
		m := stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, v int) (int, error) {
			if v == 1 {
				close(started)
				<-ctx.Done()
				runtime.Goexit()
			}
			<-started
			return 0, boom
		}, append(opts, stage.OnError(stage.FailFast))...)
		_, err := sink.Slice(context.Background(), m)
		res = append(res, fmt.Sprintf("failure-first: boom=%v goexit=%v", errors.Is(err, boom), errors.Is(err, stage.ErrGoexit)))

		// The sink stops with ErrStop at the first item, then a Goexit: nil.
		started = make(chan struct{})
		m = stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, v int) (int, error) {
			if v == 1 {
				close(started)
				<-ctx.Done()
				runtime.Goexit()
			}
			<-started
			return v, nil
		}, opts...)
		err = sink.ForEach(context.Background(), m, func(context.Context, int) error { return stage.ErrStop })
		res = append(res, fmt.Sprintf("stop-first: %v", err))

		// The parent's cancellation first, then a Goexit: the parent's error.
		ctx, cancel := context.WithCancelCause(context.Background())
		m = stage.Map(source.Slice([]int{0}), func(ctx context.Context, v int) (int, error) {
			cancel(boom)
			<-ctx.Done()
			runtime.Goexit()
			return v, nil
		}, opts...)
		_, err = sink.Slice(ctx, m)
		res = append(res, fmt.Sprintf("cancel-first: boom=%v goexit=%v", errors.Is(err, boom), errors.Is(err, stage.ErrGoexit)))

		// A Goexit first, then a failure: ErrGoexit stays the result.
		m = stage.Map(source.Slice([]int{0, 1}), func(ctx context.Context, v int) (int, error) {
			if v == 1 {
				<-ctx.Done() // the Goexit of item 0 cancelled the run
				return 0, boom
			}
			runtime.Goexit()
			return v, nil
		}, append(opts, stage.OnError(stage.FailFast))...)
		_, err = sink.Slice(context.Background(), m)
		res = append(res, fmt.Sprintf("goexit-first: boom=%v goexit=%v", errors.Is(err, boom), errors.Is(err, stage.ErrGoexit)))
		return fmt.Sprint(res)
	})
	if !ok {
		return
	}
	want := "[failure-first: boom=true goexit=false stop-first: <nil> cancel-first: boom=true goexit=false goexit-first: boom=false goexit=true]"
	if out != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
}

// Watcher's doc: a call that runtime.Goexit ended is reported Finished, cut
// short; before, the watcher heard Received and never Finished, so Stats
// (and the Prometheus and OpenTelemetry gauges) counted the item in flight
// for ever. Both on a goroutine of the stage (Buffer(1)) and on the sink's
// own goroutine (one item: the call runs there; the sink does not return).
func TestGoexitCallIsFinishedForWatchers(t *testing.T) {
	out, ok := runcheck.InChild(t, func() string {
		var res []string
		for _, c := range []struct {
			name  string
			items []int
			opts  []stage.Option
		}{
			{"stage-goroutine", []int{0, 1, 2, 3}, []stage.Option{stage.Name("m"), stage.Workers(2), stage.Buffer(1)}},
			{"sink-goroutine", []int{2}, []stage.Option{stage.Name("m")}},
		} {
			stats := &stage.Stats{}
			ctx := stage.Observe(context.Background(), stats)
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, _ = sink.Slice(ctx, stage.Map(source.Slice(c.items), func(_ context.Context, v int) (int, error) {
					if v == 2 {
						runtime.Goexit()
					}
					return v, nil
				}, c.opts...))
			}()
			<-done
			n, _ := stats.Get("m")
			res = append(res, fmt.Sprintf("%s: received=finished %v in-flight %d", c.name, n.Received == n.Finished, n.InFlight))
		}
		return fmt.Sprint(res)
	})
	if !ok {
		return
	}
	if want := "[stage-goroutine: received=finished true in-flight 0 sink-goroutine: received=finished true in-flight 0]"; out != want {
		t.Fatalf("got  %s\nwant %s", out, want)
	}
}
