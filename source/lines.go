package source

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"

	"github.com/sluicedev/sluice/stage"
)

// Lines returns a stream of the lines of r, split as bufio.ScanLines splits
// them: the line ending ("\n" or "\r\n") is dropped, and a last line without
// a newline is delivered. Lines may be of any length. A read error ends the
// run with a *stage.SourceError after the complete lines before it went
// through (a partial line before the error is dropped).
//
// r is read through a buffer that each run makes anew, so r is not rewound:
// a second run reads on from where the first run's buffer had read, and a run
// that stops early may have read past the last line it delivered. A nil r
// panics.
func Lines(r io.Reader) stage.Stream[string] {
	if r == nil {
		panic("sluice: source.Lines: nil reader")
	}
	return stage.Source(func(context.Context) (func(context.Context) (string, error), func()) {
		br := bufio.NewReader(r)
		return func(context.Context) (string, error) {
			line, err := br.ReadString('\n')
			switch {
			case err == nil:
				line = line[:len(line)-1]
			case errors.Is(err, io.EOF) && line != "":
				// The last line has no newline: deliver it now, EOF next time.
			case errors.Is(err, io.EOF):
				return "", io.EOF
			default:
				return "", err
			}
			return strings.TrimSuffix(line, "\r"), nil
		}, nil
	})
}
