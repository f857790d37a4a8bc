package main

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

var (
	r7Read     = regexp.MustCompile(`(?m)^read (\d+) rows from (\S+)$`)
	r7Loaded   = regexp.MustCompile(`(?m)^loaded (\d+), rejected (\d+)$`)
	r7Database = regexp.MustCompile(`(?m)^database: (\d+) versions of (\d+) modules from (\d+) hosts, (\d+) pseudo-versions$`)
	r7RowNum   = regexp.MustCompile(`^row (\d+): `)
	r7Bar      = regexp.MustCompile(`transform\s+100%.*\((\d+)/(\d+)\)`)
)

func r7Rows(t *testing.T, n int) [][]string {
	t.Helper()
	path, err := zipSums()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := readCSV(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < n {
		t.Fatalf("dataset has %d rows, want %d", len(rows), n)
	}
	return rows[:n]
}

func r7Count(t *testing.T, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM modules`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func r7Open(t *testing.T) *sql.DB {
	t.Helper()
	db, err := openDB(context.Background(), filepath.Join(t.TempDir(), "r7.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Promises of the command: 2119 rows read and loaded, none rejected, the
// documented summary (2119 versions of 2119 modules from 66 hosts, 942
// pseudo-versions), a progress bar that reaches (2119/2119) unless -quiet, and
// a second run on the same database prints the same summary.
func TestReview7ETLBinaryTwice(t *testing.T) {
	bin := cmdtest.Build(t)
	db := filepath.Join(t.TempDir(), "m.sqlite")
	summary := func(args ...string) (string, string) {
		out, err, hung := cmdtest.Run(t, bin, time.Minute, append([]string{"-db", db}, args...)...)
		if hung || err != nil {
			t.Fatalf("hung=%v err=%v\n%s", hung, err, out)
		}
		m := r7Read.FindStringSubmatch(out)
		if m == nil || m[1] != "2119" || m[2] != "zip_sums.csv" {
			t.Errorf("read line %q, want 2119 rows from zip_sums.csv\n%s", m, out)
		}
		if m := r7Loaded.FindStringSubmatch(out); m == nil || m[1] != "2119" || m[2] != "0" {
			t.Errorf("loaded line %q, want loaded 2119, rejected 0\n%s", m, out)
		}
		d := r7Database.FindStringSubmatch(out)
		if d == nil || d[1] != "2119" || d[2] != "2119" || d[3] != "66" || d[4] != "942" {
			t.Errorf("database line %q, want 2119 versions of 2119 modules from 66 hosts, 942 pseudo-versions\n%s", d, out)
		}
		i := strings.Index(out, "database:")
		if i < 0 {
			t.Fatalf("no summary\n%s", out)
		}
		return out[i:], out
	}
	first, out := summary()
	if m := r7Bar.FindStringSubmatch(out); m == nil || m[1] != "2119" || m[2] != "2119" {
		t.Errorf("progress bar did not reach (2119/2119): %q\n%s", m, out)
	}
	second, out := summary("-quiet")
	if strings.Contains(out, "transform") && r7Bar.MatchString(out) {
		t.Errorf("-quiet still drew a progress bar\n%s", out)
	}
	if first != second {
		t.Errorf("second run's summary differs:\n%s\nvs\n%s", first, second)
	}
}

// Promise: bad rows are set aside in the dead-letter list ("row N: why", N
// the row's 1-based number), the rest are loaded, Loaded counts what is in
// the database; the upsert is idempotent: a second Load of the same rows adds
// nothing.
func TestReview7ETLLoadRejects(t *testing.T) {
	rows := r7Rows(t, 40)
	bad := map[int]bool{}
	setBad := func(i int, row []string) { rows[i] = row; bad[i+1] = true }
	setBad(3, nil)                                         // a line that was not valid CSV
	setBad(7, []string{"example.com/x", "v1.0.0", "h1:x"}) // 3 fields
	r := append([]string(nil), rows[11]...)
	r[2] = "h1:not-a-hash"
	setBad(11, r)
	r = append([]string(nil), rows[20]...)
	r[1] = "1.0.0" // not a version
	setBad(20, r)
	r = append([]string(nil), rows[33]...)
	r[3] = "zz"
	setBad(33, r)
	db := r7Open(t)
	for pass := 1; pass <= 2; pass++ {
		rep, err := Load(context.Background(), db, rows)
		if err != nil {
			t.Fatal(err)
		}
		got := map[int]bool{}
		for _, rj := range rep.Rejected {
			m := r7RowNum.FindStringSubmatch(rj)
			if m == nil {
				t.Fatalf("rejected %q is not \"row N: reason\"", rj)
			}
			n, _ := strconv.Atoi(m[1])
			got[n] = true
		}
		if len(got) != len(bad) || len(rep.Rejected) != len(bad) {
			t.Errorf("pass %d: rejected %q, want rows %v", pass, rep.Rejected, bad)
		}
		for n := range bad {
			if !got[n] {
				t.Errorf("pass %d: row %d not rejected (%q)", pass, n, rep.Rejected)
			}
		}
		if want := len(rows) - len(bad); rep.Loaded != want || r7Count(t, db) != want {
			t.Errorf("pass %d: Loaded %d, database %d, want %d", pass, rep.Loaded, r7Count(t, db), want)
		}
	}
}

// Promise (readCSV): a line that is not valid CSV (a stray quote) spoils only
// itself; the command reports it as a rejected row with its line's number.
func TestReview7ETLStrayQuote(t *testing.T) {
	path, err := zipSums()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")[:10]
	lines = append(lines[:5], append([]string{`bad"module,v1.0.0,"h1:x,zz`}, lines[5:]...)...) // line 6
	in := filepath.Join(t.TempDir(), "my.csv")
	if err := os.WriteFile(in, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := cmdtest.Build(t)
	out, err, hung := cmdtest.Run(t, bin, time.Minute, "-quiet", "-in", in, "-db", filepath.Join(t.TempDir(), "x.sqlite"))
	if hung || err != nil {
		t.Fatalf("hung=%v err=%v\n%s", hung, err, out)
	}
	if m := r7Read.FindStringSubmatch(out); m == nil || m[1] != "11" {
		t.Errorf("read line %q, want 11 rows\n%s", m, out)
	}
	if m := r7Loaded.FindStringSubmatch(out); m == nil || m[1] != "10" || m[2] != "1" {
		t.Errorf("loaded line %q, want loaded 10, rejected 1\n%s", m, out)
	}
	if !regexp.MustCompile(`(?m)^\s*rejected row 6: `).MatchString(out) {
		t.Errorf("no \"rejected row 6\" line\n%s", out)
	}
	if d := r7Database.FindStringSubmatch(out); d == nil || d[1] != "10" {
		t.Errorf("database line %q, want 10 versions\n%s", d, out)
	}
}

// Promise: Report.Loaded is "rows upserted". When a batch's commit fails (a
// deferred foreign key that SQLite checks only at COMMIT, set off by one
// row), Load returns the error and Loaded must not count the rows of the
// transaction that was rolled back: Loaded equals what the database holds.
func TestReview7ETLLoadedOnFailedCommit(t *testing.T) {
	rows := r7Rows(t, 600)
	db := r7Open(t)
	db.SetMaxOpenConns(1) // the pragma is per connection
	for _, q := range []string{
		`PRAGMA foreign_keys = ON`,
		`CREATE TABLE r7parent (id INTEGER PRIMARY KEY)`,
		`CREATE TABLE r7child (pid INTEGER REFERENCES r7parent(id) DEFERRABLE INITIALLY DEFERRED)`,
		`CREATE TRIGGER r7poison AFTER INSERT ON modules WHEN NEW.path = '` + rows[550][0] + `' AND NEW.version = '` + rows[550][1] + `'
		 BEGIN INSERT INTO r7child VALUES (42); END`,
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	rep, err := Load(context.Background(), db, rows)
	if err == nil {
		t.Fatalf("Load succeeded (Loaded %d) although a commit failed", rep.Loaded)
	}
	if errors.Is(err, context.Canceled) {
		t.Fatalf("Load failed with %v, want the commit's error", err)
	}
	if n := r7Count(t, db); rep.Loaded != n {
		t.Errorf("Loaded %d, but the database holds %d rows (err %v)", rep.Loaded, n, err)
	}
}

// Promise: cancelling ctx aborts Load with an error for which
// errors.Is(err, context.Canceled) holds, and Loaded never exceeds what was
// committed.
func TestReview7ETLLoadCancelled(t *testing.T) {
	rows := r7Rows(t, 2119)
	db := r7Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := Load(ctx, db, rows)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Load(cancelled) = %v, want context.Canceled", err)
	}
	if n := r7Count(t, db); rep.Loaded != n {
		t.Errorf("Loaded %d, database %d", rep.Loaded, n)
	}
}
