package source_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r30GoexitReader gives "0\n", "1\n", ... and calls runtime.Goexit in its
// at-th Read.
type r30GoexitReader struct {
	at, i int
}

func (r *r30GoexitReader) Read(p []byte) (int, error) {
	if r.i == r.at {
		runtime.Goexit()
	}
	r.i++
	return copy(p, fmt.Sprintf("%d\n", r.i-1)), nil
}

// r30GoexitSources build sources whose user code calls runtime.Goexit (what
// t.FailNow does) at its 4th item; deferred is closed by the user code's own
// cleanup where it has one (Seq's deferred calls).
func r30GoexitSources() map[string]func(deferred chan struct{}) stage.Stream[int] {
	atoi := func(_ context.Context, s string) (int, error) {
		var v int
		_, err := fmt.Sscan(s, &v)
		return v, err
	}
	return map[string]func(chan struct{}) stage.Stream[int]{
		"Func": func(chan struct{}) stage.Stream[int] {
			i := 0
			return source.Func(func(context.Context) (int, error) {
				if i == 3 {
					runtime.Goexit()
				}
				i++
				return i - 1, nil
			})
		},
		"Seq": func(deferred chan struct{}) stage.Stream[int] {
			return source.Seq(func(yield func(int) bool) {
				defer close(deferred)
				for i := 0; ; i++ {
					if i == 3 {
						runtime.Goexit()
					}
					if !yield(i) {
						return
					}
				}
			})
		},
		"Seq2": func(deferred chan struct{}) stage.Stream[int] {
			return source.Seq2(func(yield func(int, error) bool) {
				defer close(deferred)
				for i := 0; ; i++ {
					if i == 3 {
						runtime.Goexit()
					}
					if !yield(i, nil) {
						return
					}
				}
			})
		},
		"Lines": func(chan struct{}) stage.Stream[int] {
			// one Read per line: a waiting reader (its type is hidden).
			return stage.Map(source.Lines(&r30GoexitReader{at: 3}), atoi, stage.Workers(1))
		},
	}
}

// TestReview30GoexitInSourceUserCode attacks stage.ErrGoexit's promise for
// the user code of package source (next of Func, the iterator of Seq and
// Seq2, the Read of Lines' reader): "the run fails with ErrGoexit rather
// than return what it has as if complete ... A function that calls Goexit
// on the sink's own goroutine ends that goroutine: the sink does not
// return, as with any function, and the run's goroutines exit"; and Seq's
// "when the run ends, early or not, the iterator is stopped (its deferred
// calls run)". Either the sink returns an error for which errors.Is(err,
// stage.ErrGoexit) holds, or its goroutine ends without returning; it never
// returns success, never hangs, and leaves no goroutine of the run behind.
func TestReview30GoexitInSourceUserCode(t *testing.T) {
	id := func(_ context.Context, v int) (int, error) { return v, nil }
	shapes := map[string]func(stage.Stream[int]) stage.Stream[int]{
		"bare": func(s stage.Stream[int]) stage.Stream[int] { return s },
		"map4": func(s stage.Stream[int]) stage.Stream[int] { return stage.Map(s, id, stage.Workers(4)) },
		"map4-ord": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(4), stage.Ordered())
		},
		"map1-buf": func(s stage.Stream[int]) stage.Stream[int] {
			return stage.Map(s, id, stage.Workers(1), stage.Buffer(2))
		},
	}
	out, ok := runcheck.InChild(t, func() string {
		var bad []string
		for sname, mk := range r30GoexitSources() {
			for shname, shape := range shapes {
				for _, never := range []bool{false, true} {
					if never && sname == "Lines" {
						continue
					}
					label := fmt.Sprintf("%s/%s/neverwaits=%v", sname, shname, never)
					deferred := make(chan struct{})
					src := mk(deferred)
					if never {
						src = stage.NeverWaits(src)
					}
					s := shape(src)
					_, before := runcheck.Goroutines()
					done := make(chan struct{})
					var returned bool
					var got []int
					var err error
					go func() {
						defer close(done)
						got, err = sink.Slice(context.Background(), s)
						returned = true
					}()
					select {
					case <-done:
					case <-time.After(30 * time.Second):
						bad = append(bad, label+": hung")
						continue
					}
					if returned && !errors.Is(err, stage.ErrGoexit) {
						bad = append(bad, fmt.Sprintf("%s: returned %v, %v; want an error that is ErrGoexit", label, got, err))
					}
					if sname == "Seq" || sname == "Seq2" {
						select {
						case <-deferred:
						case <-time.After(30 * time.Second):
							bad = append(bad, label+": the iterator's deferred calls never ran")
						}
					}
					// "the run's goroutines exit": wait (watchdog only) for them.
					deadline := time.Now().Add(30 * time.Second)
					for {
						leaked := runcheck.LeakedSince(before)
						if len(leaked) == 0 {
							break
						}
						if time.Now().After(deadline) {
							bad = append(bad, fmt.Sprintf("%s: %d goroutines left:\n%s", label, len(leaked), strings.Join(leaked, "\n\n")))
							break
						}
						runtime.Gosched()
					}
				}
			}
		}
		sort.Strings(bad)
		if len(bad) == 0 {
			return "ok"
		}
		return strings.ReplaceAll(strings.Join(bad, " || "), "\n", " ¶ ")
	})
	if ok && out != "ok" {
		t.Fatal(out)
	}
}
