package sink_test

import (
	"context"
	"errors"
	"io"
	"runtime"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Every failing row: a stage that forwards an error for each of n items,
// each holding a 128-byte input.
func allFail(n int) stage.Stream[[128]byte] {
	rows := source.Func(func() func(context.Context) ([128]byte, error) {
		i := 0
		return func(context.Context) ([128]byte, error) {
			if i == n {
				return [128]byte{}, io.EOF
			}
			i++
			return [128]byte{}, nil
		}
	}())
	return stage.Map(rows, func(context.Context, [128]byte) ([128]byte, error) {
		return [128]byte{}, errBad
	}, stage.OnError(stage.Forward), stage.Workers(2))
}

// A sink keeps a bounded sample of forwarded errors and their count, in an
// error that errors.Is and errors.As see through; memory does not grow with
// the number of failed items.
func TestForwardedErrorsAreASample(t *testing.T) {
	const n = 200_000
	sinks := map[string]func(s stage.Stream[[128]byte]) error{
		"ForEach": func(s stage.Stream[[128]byte]) error {
			return sink.ForEach(context.Background(), s, func(context.Context, [128]byte) error { return nil })
		},
		"Count": func(s stage.Stream[[128]byte]) error { _, err := sink.Count(context.Background(), s); return err },
		"Reduce": func(s stage.Stream[[128]byte]) error {
			_, err := sink.Reduce(context.Background(), s, 0, func(acc int, _ [128]byte) int { return acc + 1 })
			return err
		},
		"Chan": func(s stage.Stream[[128]byte]) error {
			return sink.Chan(context.Background(), s, make(chan [128]byte))
		},
		"Slice": func(s stage.Stream[[128]byte]) error { _, err := sink.Slice(context.Background(), s); return err },
	}
	for name, run := range sinks {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := run(allFail(n))
			runtime.GC()
			runtime.ReadMemStats(&after)
			var fe *sink.ForwardedError
			var se *stage.Error
			if !errors.As(err, &fe) || !errors.As(err, &se) || !errors.Is(err, errBad) {
				t.Fatalf("err = %v, want a *sink.ForwardedError around *stage.Errors wrapping errBad", err)
			}
			if fe.Count != n || len(fe.Sample) != sink.SampleSize {
				t.Fatalf("Count %d with %d kept, want %d with %d", fe.Count, len(fe.Sample), n, sink.SampleSize)
			}
			// Every failed row kept would be n × (an *Error and its input) > 50 MiB.
			if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 4<<20 {
				t.Fatalf("the heap grew by %d bytes while err is held", grown)
			}
			runtime.KeepAlive(err)
		})
	}
}

// One forwarded error is still reported as one, with its own message.
func TestOneForwardedError(t *testing.T) {
	_, err := sink.Count(context.Background(), allFail(1))
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 1 || err.Error() != fe.Sample[0].Error() {
		t.Fatalf("err = %v", err)
	}
}
