package source_test

import (
	"context"
	"errors"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Lines with MaxLineLength(math.MaxInt): any n >= 1 is valid, and "at most
// the maximum plus 4 KiB is read into memory" must not overflow into a
// failure or a huge allocation. Runs in a child process.
func TestReview14LinesMaxLineLengthMaxInt(t *testing.T) {
	if os.Getenv("R14_CHILD_LINES") == "1" {
		long := strings.Repeat("x", 200_000)
		// cases 0 and 1: MaxLineLength(math.MaxInt), a reader that never
		// waits and one that may; case 2: a control, just below.
		for k, r := range []func() stage.Stream[string]{
			func() stage.Stream[string] {
				return source.Lines(strings.NewReader("a\n"+long+"\nb"), source.MaxLineLength(math.MaxInt))
			},
			func() stage.Stream[string] {
				return source.Lines(struct{ *strings.Reader }{strings.NewReader("a\n" + long + "\nb")}, source.MaxLineLength(math.MaxInt))
			},
			func() stage.Stream[string] {
				return source.Lines(strings.NewReader("a\n"+long+"\nb"), source.MaxLineLength(math.MaxInt-4095))
			},
		} {
			got, err := sink.Slice(context.Background(), r())
			if err != nil || len(got) != 3 || got[0] != "a" || got[1] != long || got[2] != "b" {
				t.Errorf("case %d: got %d lines, %v; want the 3 lines (the long one is 200000 bytes)", k, len(got), err)
			}
		}
		// a line just over a small maximum still fails with LineTooLongError
		_, err := sink.Slice(context.Background(), source.Lines(strings.NewReader("abcd\n"), source.MaxLineLength(3)))
		var le *source.LineTooLongError
		if !errors.As(err, &le) || le.Line != 1 || le.Max != 3 {
			t.Errorf("max 3: %v", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestReview14LinesMaxLineLengthMaxInt$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "R14_CHILD_LINES=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		s := string(out)
		if len(s) > 4000 {
			s = s[len(s)-4000:]
		}
		t.Fatalf("child: %v\n%s", err, s)
	}
}
