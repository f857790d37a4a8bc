package source_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// r30BlockedReader gives "x\n" in its first Read; its second Read tells
// entered, waits for release and fails with err (a connection closed by the
// service's shutdown, say); any further Read is counted.
type r30BlockedReader struct {
	reads   atomic.Int64
	entered chan struct{}
	release chan struct{}
	err     error
}

func (r *r30BlockedReader) Read(p []byte) (int, error) {
	switch r.reads.Add(1) {
	case 1:
		return copy(p, "x\n"), nil
	case 2:
		close(r.entered)
		<-r.release
		return 0, r.err
	default:
		return 0, io.EOF
	}
}

// TestReview30LinesDrainedReadErrorIsQuiet attacks stage.Until's "the
// sources upstream of Until take no new item (a source blocked waiting for
// one ... sees its context end and stops quietly) ... the sink returns nil
// once the last of them has arrived" and stage.Source's "The ctx given to
// open and next is the run's context; it also ends ... under Until when the
// stop context is done: an error next then returns ends the stream quietly"
// (Lines, like every source here, "is written with stage.Source"), with
// Lines' "To stop a run blocked on a read, close the reader": Lines has
// delivered "x" and is blocked in the Read of the next line (nothing of it
// buffered); stop is done; then the Read fails (the reader was closed to
// stop the blocked read). The drain must end quietly: nil, lines [x], as
// it does when the Read returns io.EOF.
func TestReview30LinesDrainedReadErrorIsQuiet(t *testing.T) {
	boom := errors.New("connection reset")
	for _, bufio4k := range []bool{false, true} {
		for _, readErr := range []error{io.EOF, io.ErrClosedPipe, boom} {
			for range 5 {
				label := fmt.Sprintf("bufio=%v, Read fails with %v", bufio4k, readErr)
				br := &r30BlockedReader{entered: make(chan struct{}), release: make(chan struct{}), err: readErr}
				var r io.Reader = br
				if bufio4k {
					r = bufio.NewReaderSize(br, 4096)
				}
				stop, drain := context.WithCancel(context.Background())
				var lines []string
				var err error
				runcheck.Run(t, label, func() {
					done := make(chan error, 1)
					go func() {
						done <- sink.ForEach(context.Background(), stage.Until(source.Lines(r), stop), func(_ context.Context, l string) error {
							lines = append(lines, l)
							return nil
						})
					}()
					r30Wait(t, br.entered) // blocked in the Read of line 2
					drain()
					close(br.release)
					err = <-done
				})
				if err != nil || !slices.Equal(lines, []string{"x"}) {
					t.Errorf("%s: drained run returned %v (%T) with lines %q; want nil and [x]", label, err, err, lines)
					break
				}
			}
		}
	}
}
