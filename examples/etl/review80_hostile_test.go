package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// Review80: promises of the README's "ETL in 30 lines" and main.go's doc
// under hostile input and cancellation.

// r80Row is a CSV line (path and version as given, encoded as CSV) with
// valid hashes.
func r80Row(path, version string) string {
	q := func(s string) string {
		if strings.ContainsAny(s, `",`+"\r\n") {
			return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
		}
		return s
	}
	return q(path) + "," + q(version) + "," + reviewH1 + "," + reviewZip
}

// "sets bad rows aside in a dead-letter list, and loads the rest": whatever a
// line holds (NUL bytes, invalid UTF-8, quotes, SQL, a long field, control
// characters), the run does not fail; every line read is either loaded or
// rejected; and a second run prints the same summary.
func TestReview80HostileFieldsNeverFailTheRun(t *testing.T) {
	paths := []string{
		"nul.example/a\x00b",
		"badutf8.example/\xff\xfe",
		`quote.example/"x"`,
		"sql.example/');DROP/**/TABLE/**/modules;--",
		"unicode.example/ü/日本",
		"long.example/" + strings.Repeat("p", 100_000),
		"ctrl.example/\x01\x1b[31m",
		"comma.example/a,b",
		"cr.example/a\rb",
	}
	var lines []string
	for _, p := range paths {
		lines = append(lines, r80Row(p, "v1.0.0"))
	}
	// Random garbage lines, from a fixed seed.
	rng := rand.New(rand.NewPCG(80, 80))
	alphabet := []byte("ab,\"' \t\x00\xff\\;\r")
	for range 200 {
		b := make([]byte, 1+rng.IntN(60))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		l := strings.TrimRight(string(b), "\r")
		if strings.TrimSpace(strings.ReplaceAll(l, "\r", "")) == "" {
			l = "x" + l
		}
		lines = append(lines, l)
	}
	in := reviewWrite(t, "hostile.csv", strings.Join(lines, "\n")+"\n")
	db := filepath.Join(t.TempDir(), "db.sqlite")
	rows, err := readCSV(in)
	if err != nil {
		t.Fatal(err)
	}
	var outs [2]string
	for i := range outs {
		var out bytes.Buffer
		if err := run(context.Background(), in, db, &out, nil); err != nil {
			t.Fatalf("run %d: hostile rows failed the whole run (they should be set aside): %v", i+1, err)
		}
		outs[i] = out.String()
		var read, loaded, rejected int
		if _, err := fmt.Sscanf(out.String(), "read %d rows from hostile.csv\nloaded %d, rejected %d\n", &read, &loaded, &rejected); err != nil {
			t.Fatalf("run %d: output: %v\n%.3000s", i+1, err, out.String())
		}
		if read != len(rows) || loaded+rejected != read {
			t.Errorf("run %d: read %d (file has %d records), loaded %d + rejected %d", i+1, read, len(rows), loaded, rejected)
		}
		if loaded != len(paths) {
			t.Errorf("run %d: loaded %d, want the %d rows with valid hashes", i+1, loaded, len(paths))
		}
	}
	if outs[0] != outs[1] {
		t.Errorf("a second run printed another summary")
	}
	d, err := openDB(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, p := range paths {
		var got string
		if err := d.QueryRow(`SELECT path FROM modules WHERE path = ?`, p).Scan(&got); err != nil || got != p {
			t.Errorf("path %.40q: stored %.40q, %v", p, got, err)
		}
	}
}

// r80CancelAt cancels the run once the transform stage has finished n calls.
type r80CancelAt struct {
	n      int64
	cancel context.CancelFunc
	done   atomic.Int64
}

func (o *r80CancelAt) Stage(info stage.Info) stage.Watcher {
	if info.Name != "transform" {
		return nil
	}
	return o
}
func (o *r80CancelAt) Received() {}
func (o *r80CancelAt) Finished(time.Duration, error) {
	if o.done.Add(1) == o.n {
		o.cancel()
	}
}
func (o *r80CancelAt) Closed() {}

func r80Count(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM modules`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// README: "Abort (cancel the ctx given to the sink): ... the sink returns the
// cancellation error"; Load's Report: "Loaded int // rows upserted"; main.go:
// "Run it twice: the summary is the same." A load cancelled mid-run (at
// several points) returns context.Canceled, its Loaded is what the database
// holds, and a rerun on the same database prints exactly what a run on a
// fresh database prints.
func TestReview80CancelledMidRunThenRerun(t *testing.T) {
	in, err := zipSums()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := readCSV(in)
	if err != nil {
		t.Fatal(err)
	}
	var fresh bytes.Buffer
	if err := run(context.Background(), in, filepath.Join(t.TempDir(), "fresh.sqlite"), &fresh, nil); err != nil {
		t.Fatal(err)
	}
	for _, at := range []int64{1, 249, 251, 1000, 2000} {
		t.Run(fmt.Sprint(at), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "db.sqlite")
			db, err := openDB(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			obs := &r80CancelAt{n: at, cancel: cancel}
			rep, err := Load(stage.Observe(ctx, obs), db, rows)
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Load cancelled after %d transforms: err %v, want context.Canceled", at, err)
			}
			if n := r80Count(t, db); rep.Loaded != n {
				t.Errorf("Loaded %d, the database holds %d", rep.Loaded, n)
			}
			if rep.Loaded >= len(rows) {
				t.Errorf("Loaded %d of %d after a cancellation at %d", rep.Loaded, len(rows), at)
			}
			db.Close()
			var again bytes.Buffer
			if err := run(context.Background(), in, path, &again, nil); err != nil {
				t.Fatal(err)
			}
			if again.String() != fresh.String() {
				t.Errorf("rerun after a cancelled run printed:\n%s\nwant (a fresh run):\n%s", again.String(), fresh.String())
			}
		})
	}
}
