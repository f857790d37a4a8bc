package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// Review tests: promises of the README ("ETL in 30 lines") and of main.go's
// doc comment and flag help that etl_test.go does not check.

const (
	reviewH1  = "h1:RYM6lWITV8oADrwLfdzxmt8ucfW6UtP9v1jg4qAbqts="
	reviewZip = "2c42aad9ed60e24046fbf5720f438884942897197cb790ce58cccdacedd9532d"
)

func reviewWrite(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// reviewRunBin runs the binary with a generous hang watchdog.
func reviewRunBin(t *testing.T, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang watchdog only
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s %v hung (watchdog)", bin, args)
	}
	return o.String(), e.String(), err
}

// Every kind of bad row the transform checks goes to the dead-letter list
// with its row number and reason; the good rows around them are loaded.
func TestReviewEveryBadRowKindIsADeadLetter(t *testing.T) {
	rows := []string{
		"good.dev/a,v1.0.0," + reviewH1 + "," + reviewZip,                                  // 1
		"bad.dev/five,v1.0.0," + reviewH1 + "," + reviewZip + ",extra",                     // 2: 5 fields
		",v1.0.0," + reviewH1 + "," + reviewZip,                                            // 3: empty path
		"bad dev/space,v1.0.0," + reviewH1 + "," + reviewZip,                               // 4: space in path
		"bad.dev/v,v01.0.0," + reviewH1 + "," + reviewZip,                                  // 5: leading zero
		"bad.dev/h1prefix,v1.0.0," + strings.TrimPrefix(reviewH1, "h1:") + "," + reviewZip, // 6: no h1:
		"bad.dev/h1short,v1.0.0,h1:AAAA," + reviewZip,                                      // 7: 3 bytes
		"bad.dev/h1b64,v1.0.0,h1:!!!!," + reviewZip,                                        // 8: not base64
		"bad.dev/zipshort,v1.0.0," + reviewH1 + "," + reviewZip[:62],                       // 9: 31 bytes
		"bad.dev/ziphex,v1.0.0," + reviewH1 + "," + strings.Repeat("zz", 32),               // 10: not hex
		"bad.dev/one", // 11: 1 field
		"good.dev/b/v2,v2.1.0+incompatible," + reviewH1 + "," + reviewZip,             // 12
		"good.dev/c,v0.0.0-20190101000000-abcdefabcdef," + reviewH1 + "," + reviewZip, // 13
	}
	in := reviewWrite(t, "in.csv", strings.Join(rows, "\n")+"\n")
	var out, bar bytes.Buffer
	if err := run(context.Background(), in, filepath.Join(t.TempDir(), "db.sqlite"), &out, &bar); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"read 13 rows from in.csv",
		"loaded 3, rejected 10",
		"rejected row 2: 5 fields, want 4",
		`rejected row 3: bad module path ""`,
		`rejected row 4: bad module path "bad dev/space"`,
		`rejected row 5: bad version "v01.0.0"`,
		"rejected row 6: bad h1 hash",
		`rejected row 7: bad h1 hash "h1:AAAA"`,
		`rejected row 8: bad h1 hash "h1:!!!!"`,
		"rejected row 9: bad zip hash",
		"rejected row 10: bad zip hash",
		"rejected row 11: 1 fields, want 4",
		"database: 3 versions of 3 modules from 1 hosts, 1 pseudo-versions",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// The progress bar counts rejected rows too: it reaches the total.
	if !strings.Contains(bar.String(), "(13/13)") {
		t.Errorf("the progress bar did not reach 13/13: %q", bar.String())
	}
}

// A hostile input: one malformed CSV line (a bare quote) among good rows.
// The README promises that bad rows are set aside in a dead-letter list and
// the rest loaded. (The example used to abort the whole load: the file was
// read with one csv.Reader, which fails on the first quote error.)
func TestReviewOneMalformedCSVLineIsADeadLetter(t *testing.T) {
	in := reviewWrite(t, "in.csv",
		"good.dev/a,v1.0.0,"+reviewH1+","+reviewZip+"\n"+
			`bad"quote.dev/b,v1.0.0,`+reviewH1+","+reviewZip+"\n"+
			"good.dev/c,v1.0.0,"+reviewH1+","+reviewZip+"\n")
	var out bytes.Buffer
	err := run(context.Background(), in, filepath.Join(t.TempDir(), "db.sqlite"), &out, nil)
	if err != nil {
		t.Fatalf("one malformed line failed the whole load (nothing loaded, no dead letter): %v", err)
	}
	if !strings.Contains(out.String(), "loaded 2, rejected 1") || !strings.Contains(out.String(), "rejected row 2: not a valid CSV line") {
		t.Fatalf("want the two good rows loaded and the bad one rejected:\n%s", out.String())
	}
}

// A huge line (a 4 MiB field) is a bad row like any other: rejected, and
// the good rows loaded; the run neither fails nor hangs.
func TestReviewHugeLineIsRejected(t *testing.T) {
	huge := "h1:" + strings.Repeat("A", 4<<20)
	in := reviewWrite(t, "in.csv",
		"good.dev/a,v1.0.0,"+reviewH1+","+reviewZip+"\n"+
			"huge.dev/b,v1.0.0,"+huge+","+reviewZip+"\n"+
			"good.dev/c,v1.0.0,"+reviewH1+","+reviewZip+"\n")
	var out bytes.Buffer
	if err := run(context.Background(), in, filepath.Join(t.TempDir(), "db.sqlite"), &out, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "loaded 2, rejected 1") || !strings.Contains(out.String(), "rejected row 2: bad h1 hash") {
		t.Fatalf("want the huge row rejected and the others loaded:\n%.2000s", out.String())
	}
	if out.Len() > 4096 {
		t.Errorf("output of %d bytes for one 4 MiB bad field: a reason quotes at most 64 characters of it", out.Len())
	}
}

// "an idempotent upsert": loading a file, then a file with the same rows
// (one hash changed), leaves one row per (path, version), with the new hash;
// and a file that holds a row twice loads it once.
func TestReviewUpsertReplacesAndDeduplicates(t *testing.T) {
	db := filepath.Join(t.TempDir(), "db.sqlite")
	other := strings.Repeat("ab", 32)
	first := reviewWrite(t, "a.csv", "good.dev/a,v1.0.0,"+reviewH1+","+reviewZip+"\n")
	second := reviewWrite(t, "b.csv",
		"good.dev/a,v1.0.0,"+reviewH1+","+other+"\n"+
			"good.dev/a,v1.0.0,"+reviewH1+","+other+"\n")
	for _, in := range []string{first, second} {
		var out bytes.Buffer
		if err := run(context.Background(), in, db, &out, nil); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), "database: 1 versions of 1 modules") {
			t.Fatalf("want one row in the database:\n%s", out.String())
		}
	}
	d, err := openDB(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var zip string
	if err := d.QueryRow(`SELECT zip_hash FROM modules WHERE path = 'good.dev/a'`).Scan(&zip); err != nil {
		t.Fatal(err)
	}
	if zip != other {
		t.Fatalf("zip_hash %s after the upsert, want %s", zip, other)
	}
}

// An empty file: nothing to load, a summary of an empty database, no hang
// (the progress bar of a stage with a total of 0).
func TestReviewEmptyInput(t *testing.T) {
	in := reviewWrite(t, "empty.csv", "")
	var out, bar bytes.Buffer
	if err := run(context.Background(), in, filepath.Join(t.TempDir(), "db.sqlite"), &out, &bar); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "loaded 0, rejected 0\ndatabase: 0 versions of 0 modules from 0 hosts, 0 pseudo-versions") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// The README shows what `go -C examples run ./etl` prints; the binary (with
// -db and -in as the doc comment shows) prints those lines, in that order,
// twice in a row (the summary is the same); -quiet draws no progress bar,
// and without it the bar on stderr ends at 2119/2119.
func TestReviewBinaryPrintsTheReadmeOutputTwice(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(readme), "```\n$ go -C examples run ./etl\n")
	if !ok {
		t.Fatal("README.md shows no output of ./etl")
	}
	block, _, _ = strings.Cut(block, "```")
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(block), "\n") {
		if strings.HasPrefix(l, "transform ") || strings.TrimSpace(l) == "..." {
			continue // the bar goes to stderr; "..." stands for the rest
		}
		want = append(want, l)
	}
	bin := cmdtest.Build(t)
	db := filepath.Join(t.TempDir(), "modules.sqlite")
	in := dataset(t)
	var outs [2]string
	for i := range outs {
		args := []string{"-db", db, "-in", in}
		if i == 1 {
			args = append(args, "-quiet")
		}
		stdout, stderr, err := reviewRunBin(t, bin, args...)
		if err != nil {
			t.Fatalf("run %d: %v\n%s", i, err, stderr)
		}
		outs[i] = stdout
		rest := stdout
		for _, l := range want {
			_, after, ok := strings.Cut(rest, l+"\n")
			if !ok {
				t.Fatalf("run %d: output lacks README line %q (in order):\n%s", i, l, stdout)
			}
			rest = after
		}
		switch {
		case i == 0 && !strings.Contains(stderr, "(2119/2119)"):
			t.Errorf("no progress bar ending at 2119/2119 on stderr: %q", stderr)
		case i == 1 && stderr != "":
			t.Errorf("-quiet: stderr %q, want no progress bar", stderr)
		}
	}
	if outs[0] != outs[1] {
		t.Fatalf("a second run printed something else:\n%s\n---\n%s", outs[0], outs[1])
	}
}

// reviewObserver records the stages of a run and counts their calls.
type reviewObserver struct {
	mu     sync.Mutex
	infos  []stage.Info
	counts map[string]*[3]atomic.Int64 // received, finished, closed
}

func (o *reviewObserver) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.infos = append(o.infos, info)
	c := &[3]atomic.Int64{}
	o.counts[info.Name] = c
	return reviewWatcher{c}
}

type reviewWatcher struct{ c *[3]atomic.Int64 }

func (w reviewWatcher) Received()                     { w.c[0].Add(1) }
func (w reviewWatcher) Finished(time.Duration, error) { w.c[1].Add(1) }
func (w reviewWatcher) Closed()                       { w.c[2].Add(1) }

// "transforms the rows on 4 workers", "a progress bar ... follows the
// transform stage through the observer hook, sized by the total the slice
// source knows": the observer sees one stage named transform, a map with 4
// workers and the dataset's 2119 rows as its total, and every row goes
// through it once.
func TestReviewTransformStageAsTheReadmeSays(t *testing.T) {
	rows, err := readCSV(dataset(t))
	if err != nil {
		t.Fatal(err)
	}
	db, err := openDB(context.Background(), filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	obs := &reviewObserver{counts: map[string]*[3]atomic.Int64{}}
	rep, err := Load(stage.Observe(context.Background(), obs), db, rows)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Loaded != 2119 || len(rep.Rejected) != 0 {
		t.Fatalf("loaded %d, rejected %d", rep.Loaded, len(rep.Rejected))
	}
	if len(obs.infos) != 1 {
		t.Fatalf("stages seen: %+v, want the transform only", obs.infos)
	}
	if i := obs.infos[0]; i.Name != "transform" || i.Kind != "map" || i.Workers != 4 || i.Total != 2119 {
		t.Fatalf("transform stage %+v, want map, 4 workers, total 2119", i)
	}
	c := obs.counts["transform"]
	if c[0].Load() != 2119 || c[1].Load() != 2119 || c[2].Load() != 1 {
		t.Fatalf("received %d, finished %d, closed %d; want 2119, 2119, 1", c[0].Load(), c[1].Load(), c[2].Load())
	}
}

// Rejected rows print in row order, whatever order the 4 workers failed
// them in: the output of a run depends on its input only.
func TestReviewRejectedRowsPrintInRowOrder(t *testing.T) {
	var b strings.Builder
	const rows = 300
	for i := range rows {
		if i%3 == 0 {
			fmt.Fprintf(&b, "bad.dev/%d,v1.0.0,h1:bad,%s\n", i, reviewZip)
		} else {
			fmt.Fprintf(&b, "good.dev/%d,v1.0.0,%s,%s\n", i, reviewH1, reviewZip)
		}
	}
	in := reviewWrite(t, "in.csv", b.String())
	var out bytes.Buffer
	if err := run(context.Background(), in, filepath.Join(t.TempDir(), "db.sqlite"), &out, nil); err != nil {
		t.Fatal(err)
	}
	last := 0
	seen := 0
	for line := range strings.Lines(out.String()) {
		var n int
		if _, err := fmt.Sscanf(line, "  rejected row %d:", &n); err != nil {
			continue
		}
		if n <= last {
			t.Fatalf("rejected row %d printed after row %d:\n%s", n, last, out.String())
		}
		last, seen = n, seen+1
	}
	if seen != rows/3 {
		t.Fatalf("%d rejected rows printed, want %d", seen, rows/3)
	}
}
