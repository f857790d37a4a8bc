package source_test

import (
	"context"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// stage.ErrGoexit: "A function that calls Goexit on the sink's own goroutine
// ends that goroutine: the sink does not return, as with any function, and
// the run's goroutines exit. The functions that run on the sink's goroutine:
// ... and next when the sink reads a source directly."
//
// A bare Func, Seq, Seq2 or Lines source whose next (iterator step, Read)
// calls runtime.Goexit under sink.Slice: the sink's goroutine ends without a
// return, and no goroutine of the run is left (goleak's wait a hang detector
// only). An iterator's deferred calls run.
func TestReview71GoexitInBareSource(t *testing.T) {
	var deferred atomic.Bool
	sources := map[string]func() stage.Stream[string]{
		"func": func() stage.Stream[string] {
			var i atomic.Int64
			return source.Func(func(context.Context) (string, error) {
				if i.Add(1) == 3 {
					runtime.Goexit()
				}
				return "x", nil
			})
		},
		"seq": func() stage.Stream[string] {
			return source.Seq(func(yield func(string) bool) {
				defer deferred.Store(true)
				if yield("a") && yield("b") {
					runtime.Goexit()
				}
			})
		},
		"seq2": func() stage.Stream[string] {
			return source.Seq2(func(yield func(string, error) bool) {
				defer deferred.Store(true)
				if yield("a", nil) {
					runtime.Goexit()
				}
			})
		},
		"lines": func() stage.Stream[string] {
			return source.Lines(&review71Reader{t: t, steps: []review71Step{{data: "a\nb\n"}, {goexit: true}}})
		},
		"lines-strings-reader": func() stage.Stream[string] {
			return source.Lines(struct{ *strings.Reader }{strings.NewReader("only\n")}) // control: no Goexit
		},
	}
	for name, src := range sources {
		t.Run(name, func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				opts := goleak.IgnoreCurrent()
				s := src()
				done := make(chan struct{})
				returned := false
				go func() {
					defer close(done)
					_, _ = sink.Slice(context.Background(), s)
					returned = true
				}()
				select {
				case <-done:
				case <-t.Context().Done():
				}
				if returned != (name == "lines-strings-reader") {
					t.Fatalf("the sink returned: %v", returned)
				}
				if err := goleak.Find(opts); err != nil {
					t.Fatalf("goroutines of the run left: %v", err)
				}
				if (name == "seq" || name == "seq2") && !deferred.Load() {
					t.Fatalf("the iterator's deferred calls did not run")
				}
			})
		})
	}
}
