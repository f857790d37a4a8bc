package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// logLines makes an access log of about size bytes, one request per line.
func logLines(size int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "2026-11-30T12:%02d:%02dZ host-%d GET /items/%d %d %d\n", i/60%60, i%60, i%32, i, 200+i%5*100, 100+i%9000)
	}
	return b.Bytes()
}

// status parses a log line's fields and returns its status (the fifth)
// plus its size (the sixth): the kind of work an ETL does per line.
func status(line string) int {
	f := strings.Fields(line)
	if len(f) < 6 {
		return 0
	}
	st, _ := strconv.Atoi(f[4])
	size, _ := strconv.Atoi(f[5])
	return st + size%7
}

// BenchmarkLines: source.Lines → Map (parse a field), 4 workers, over a
// 50 MB log in memory, beside a sequential bufio.Scanner loop doing the
// same; ns per line and the wall time of one pass.
func BenchmarkLines(b *testing.B) {
	data := logLines(50 << 20)
	lines := bytes.Count(data, []byte{'\n'})
	want := 0
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		want += status(sc.Text())
	}
	b.Run("sequential-scanner", func(b *testing.B) {
		measure(b, lines, func() {
			got := 0
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				got += status(sc.Text())
			}
			check(b, got, want, sc.Err())
		})
	})
	parse := func(_ context.Context, line string) (int, error) { return status(line), nil }
	for _, mark := range []string{"", "neverwaits"} {
		b.Run("sluice"+map[string]string{"": "", "neverwaits": "-neverwaits"}[mark], func(b *testing.B) {
			measure(b, lines, func() {
				src := source.Lines(bytes.NewReader(data))
				if mark == "neverwaits" {
					src = stage.NeverWaits(src)
				}
				got, err := sink.Reduce(ctx, stage.Map(src, parse, stage.Workers(4)), 0, add)
				check(b, got, want, err)
			})
		})
	}
}
