package main

import (
	"bytes"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
	"github.com/sluicedev/sluice/stage"
)

// README: "This is its pipeline, word for word (a test checks that this
// block is the code)".
func TestReview73ReadmeBlockWordForWord(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("etl.go")
	if err != nil {
		t.Fatal(err)
	}
	block := regexp.MustCompile("(?s)```go\n(// Load transforms rows.*?)```").FindSubmatch(readme)
	if block == nil {
		t.Fatal("README has no block that starts with // Load transforms rows")
	}
	_, code, ok := strings.Cut(string(src), "func Load(")
	if !ok {
		t.Fatal("etl.go has no func Load")
	}
	// The code from Load's doc comment to the end of the function.
	start := strings.Index(string(src), "// Load transforms rows")
	end := strings.Index(code, "\n}\n")
	if start < 0 || end < 0 {
		t.Fatal("cannot find Load's doc comment or end")
	}
	fn := string(src)[start:strings.Index(string(src), "func Load(")] + "func Load(" + code[:end+3]
	if got := string(block[1]); got != fn {
		t.Errorf("README block differs from etl.go's Load.\nREADME:\n%s\netl.go:\n%s", got, fn)
	}
}

func review73Run(t *testing.T, bin string, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // watchdog only
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v (watchdog: %v)\nstdout:\n%s\nstderr:\n%s", args, err, ctx.Err(), o.String(), e.String())
	}
	return o.String(), e.String()
}

// README: "$ go -C examples run ./etl / transform 100% ... (2119/2119) /
// read 2119 rows from zip_sums.csv / loaded 2119, rejected 0 / database:
// 2119 versions of 2119 modules from 66 hosts, 942 pseudo-versions / top
// hosts: / github.com 1839 modules"; "a summary computed from the database
// ends the run, and a second run prints the same summary."
func TestReview73ReadmeRunTwice(t *testing.T) {
	bin := cmdtest.Build(t)
	db := filepath.Join(t.TempDir(), "m.sqlite")
	var outs [2]string
	for i := range outs {
		out, progress := review73Run(t, bin, "-db", db)
		outs[i] = out
		if !strings.Contains(progress, "transform 100%") || !strings.Contains(progress, "(2119/2119)") {
			t.Errorf("run %d: the progress bar does not reach 100%% (2119/2119):\n%q", i+1, progress)
		}
		want := "read 2119 rows from zip_sums.csv\nloaded 2119, rejected 0\ndatabase: 2119 versions of 2119 modules from 66 hosts, 942 pseudo-versions\ntop hosts:\n  github.com           1839 modules\n"
		if !strings.HasPrefix(out, want) {
			t.Errorf("run %d: output is not the README's:\n%s\nwant it to start with:\n%s", i+1, out, want)
		}
	}
	if outs[0] != outs[1] {
		t.Errorf("a second run printed another summary:\n%s\n---\n%s", outs[0], outs[1])
	}
}

// README: "sets bad rows aside in a dead-letter list, and loads the rest
// into SQLite ... with an idempotent upsert ... a second run prints the
// same summary". Doc: "transforms the rows concurrently (checks the hashes,
// derives each module's host, ...)".
func TestReview73HostileCSV(t *testing.T) {
	src, err := zipSums()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	good := strings.SplitN(string(data), "\n", 11)[:10]
	f := strings.Split(good[0], ",") // path, version, h1, zip hash
	short := base64.StdEncoding.EncodeToString(make([]byte, 31))
	bad := []string{
		"only,three,fields",
		`a,"b,c,d`, // a stray quote: not valid CSV
		strings.Join([]string{"bad.example/h1", f[1], "h1:not base64!", f[3]}, ","),
		strings.Join([]string{"bad.example/zip", f[1], f[2], f[3][:63]}, ","),
		strings.Join([]string{"bad.example/ver", "1.0.0", f[2], f[3]}, ","),
		strings.Join([]string{"", f[1], f[2], f[3]}, ","),
		strings.Join([]string{"bad.example/with space", f[1], f[2], f[3]}, ","),
		strings.Join([]string{"bad.example/five", f[1], f[2], f[3], "extra"}, ","),
		strings.Join([]string{"bad.example/short", f[1], "h1:" + short, f[3]}, ","),
		strings.Join([]string{"bad.example/nohash", f[1], f[3], f[3]}, ","),
	}
	var csv strings.Builder
	for i := range 10 {
		csv.WriteString(good[i])
		if i%2 == 0 {
			csv.WriteString("\r\n") // RFC 4180 line ends
		} else {
			csv.WriteString("\n")
		}
		csv.WriteString(bad[i] + "\n")
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "hostile.csv")
	if err := os.WriteFile(in, []byte(csv.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := cmdtest.Build(t)
	dbPath := filepath.Join(dir, "m.sqlite")
	var outs [2]string
	for i := range outs {
		out, progress := review73Run(t, bin, "-db", dbPath, "-in", in)
		outs[i] = out
		if !strings.Contains(out, "read 20 rows from hostile.csv\nloaded 10, rejected 10\n") {
			t.Errorf("run %d: want 20 rows read, 10 loaded, 10 rejected:\n%s", i+1, out)
		}
		if n := strings.Count(out, "rejected row "); n != 10 {
			t.Errorf("run %d: %d rejected rows listed, want 10:\n%s", i+1, n, out)
		}
		if !strings.Contains(progress, "(20/20)") {
			t.Errorf("run %d: progress bar does not reach (20/20): %q", i+1, progress)
		}
	}
	if outs[0] != outs[1] {
		t.Errorf("a second run printed another summary:\n%s\n---\n%s", outs[0], outs[1])
	}
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n, badN int
	if err := db.QueryRow(`SELECT COUNT(*), COALESCE(SUM(path LIKE 'bad.example%' OR path = '' OR path = 'a' OR path = 'only'), 0) FROM modules`).Scan(&n, &badN); err != nil {
		t.Fatal(err)
	}
	if n != 10 || badN != 0 {
		t.Errorf("database holds %d rows (%d bad ones), want the 10 good ones only", n, badN)
	}
}

// parse's doc: "Reasons quote at most 64 characters of a bad field."
func TestReview73ReasonsQuoteAtMost64(t *testing.T) {
	long := strings.Repeat("é", 500) + " " + strings.Repeat("x", 500)
	f := []string{"example.com/m", "v1.0.0", "h1:" + base64.StdEncoding.EncodeToString(make([]byte, 32)), strings.Repeat("ab", 32)}
	rows := map[string][]string{
		"path":    {long, f[1], f[2], f[3]},
		"version": {f[0], "v" + long, f[2], f[3]},
		"h1":      {f[0], f[1], "h1:" + long, f[3]},
		"zip":     {f[0], f[1], f[2], long},
	}
	for name, row := range rows {
		_, err := parse(context.Background(), row)
		if err == nil {
			t.Errorf("%s: a bad field was accepted", name)
			continue
		}
		msg := err.Error()
		if c := strings.Count(msg, "é") + strings.Count(msg, "x") + strings.Count(msg, `\u00e9`); c > 64 {
			t.Errorf("%s: reason quotes %d characters of the field: %.200s...", name, c, msg)
		}
		if utf8.RuneCountInString(msg) > 200 {
			t.Errorf("%s: reason is %d characters long", name, utf8.RuneCountInString(msg))
		}
	}
}

// review73Hooks counts what a database saw: rows per committed
// transaction, and can make one commit fail.
type review73Hooks struct {
	mu         sync.Mutex
	pending    int
	committed  []int
	commits    int
	failCommit int // the n-th commit fails (0: none)
}

type review73Connector struct {
	d   driver.Driver
	dsn string
	h   *review73Hooks
}

func (c review73Connector) Connect(context.Context) (driver.Conn, error) {
	conn, err := c.d.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	return &review73Conn{inner: conn, h: c.h}, nil
}
func (c review73Connector) Driver() driver.Driver { return c.d }

type review73Conn struct {
	inner driver.Conn
	h     *review73Hooks
}

func (c *review73Conn) Prepare(q string) (driver.Stmt, error) {
	s, err := c.inner.Prepare(q)
	if err != nil {
		return nil, err
	}
	return &review73Stmt{inner: s, h: c.h}, nil
}
func (c *review73Conn) Close() error { return c.inner.Close() }
func (c *review73Conn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}
func (c *review73Conn) BeginTx(ctx context.Context, o driver.TxOptions) (driver.Tx, error) {
	var tx driver.Tx
	var err error
	if b, ok := c.inner.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, o)
	} else {
		//lint:ignore SA1019 a driver without BeginTx has only Begin
		tx, err = c.inner.Begin()
	}
	if err != nil {
		return nil, err
	}
	c.h.mu.Lock()
	c.h.pending = 0
	c.h.mu.Unlock()
	return &review73Tx{inner: tx, h: c.h}, nil
}

type review73Stmt struct {
	inner driver.Stmt
	h     *review73Hooks
}

func (s *review73Stmt) Close() error  { return s.inner.Close() }
func (s *review73Stmt) NumInput() int { return s.inner.NumInput() }
func (s *review73Stmt) Exec(args []driver.Value) (driver.Result, error) {
	return nil, errors.New("review73: Exec without context")
}
func (s *review73Stmt) Query(args []driver.Value) (driver.Rows, error) {
	return nil, errors.New("review73: Query without context")
}
func (s *review73Stmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	r, err := s.inner.(driver.StmtExecContext).ExecContext(ctx, args)
	if err == nil {
		s.h.mu.Lock()
		s.h.pending++
		s.h.mu.Unlock()
	}
	return r, err
}

type review73Tx struct {
	inner driver.Tx
	h     *review73Hooks
}

func (t *review73Tx) Commit() error {
	t.h.mu.Lock()
	t.h.commits++
	fail := t.h.commits == t.h.failCommit
	t.h.mu.Unlock()
	if fail {
		t.inner.Rollback()
		return errors.New("review73: the disk is full")
	}
	if err := t.inner.Commit(); err != nil {
		return err
	}
	t.h.mu.Lock()
	t.h.committed = append(t.h.committed, t.h.pending)
	t.h.pending = 0
	t.h.mu.Unlock()
	return nil
}
func (t *review73Tx) Rollback() error { return t.inner.Rollback() }

// review73DB creates the schema at path with the example's openDB and
// returns a database over it that reports to h.
func review73DB(t *testing.T, path string, h *review73Hooks) *sql.DB {
	t.Helper()
	plain, err := openDB(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	d := plain.Driver()
	plain.Close()
	db := sql.OpenDB(review73Connector{d: d, dsn: path, h: h})
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func review73Count(t *testing.T, path string) int {
	t.Helper()
	db, err := openDB(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM modules`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// README: "loads the rest into SQLite ... in transactions of 250 rows with
// an idempotent upsert"; Report: "Loaded int // rows upserted".
func TestReview73LoadTransactionsOf250(t *testing.T) {
	rows := review73Rows(t)
	path := filepath.Join(t.TempDir(), "m.sqlite")
	var h review73Hooks
	db := review73DB(t, path, &h)
	for run := 1; run <= 2; run++ {
		h.committed = nil
		rep, err := Load(context.Background(), db, rows)
		if err != nil {
			t.Fatal(err)
		}
		sum := 0
		for _, n := range h.committed {
			sum += n
			if n > 250 {
				t.Errorf("run %d: a transaction of %d rows (want at most 250)", run, n)
			}
		}
		if rep.Loaded != 2119 || len(rep.Rejected) != 0 || sum != 2119 {
			t.Errorf("run %d: loaded %d, rejected %d, rows committed %d; want 2119, 0, 2119", run, rep.Loaded, len(rep.Rejected), sum)
		}
		if n := review73Count(t, path); n != 2119 {
			t.Errorf("run %d: database holds %d rows, want 2119", run, n)
		}
	}
}

// Report: "Loaded int // rows upserted": when a commit fails, Load fails
// and Loaded counts only what the database holds.
func TestReview73LoadedIsWhatWasCommitted(t *testing.T) {
	rows := review73Rows(t)
	path := filepath.Join(t.TempDir(), "m.sqlite")
	h := review73Hooks{failCommit: 3}
	db := review73DB(t, path, &h)
	rep, err := Load(context.Background(), db, rows)
	if err == nil {
		t.Fatal("Load succeeded with a commit that failed")
	}
	if n := review73Count(t, path); rep.Loaded != n {
		t.Errorf("Loaded %d, but the database holds %d rows", rep.Loaded, n)
	}
}

// review73Watch counts a stage's calls in flight through the observer hook.
type review73Watch struct {
	name                          string
	info                          stage.Info
	opened                        atomic.Int64
	now, most, received, finished atomic.Int64
}

func (o *review73Watch) Stage(info stage.Info) stage.Watcher {
	if info.Name != o.name {
		return nil
	}
	o.info = info
	o.opened.Add(1)
	return o
}
func (o *review73Watch) Received() {
	o.received.Add(1)
	n := o.now.Add(1)
	for {
		m := o.most.Load()
		if n <= m || o.most.CompareAndSwap(m, n) {
			return
		}
	}
}
func (o *review73Watch) Finished(time.Duration, error) { o.finished.Add(1); o.now.Add(-1) }
func (o *review73Watch) Closed()                       {}

// README: "transforms the rows on 4 workers ... A progress bar on stderr
// follows the transform stage through the observer hook, sized by the
// total the slice source knows".
func TestReview73TransformOn4Workers(t *testing.T) {
	rows := review73Rows(t)
	rows = append(rows, nil, []string{"x"}) // two bad rows too
	db, err := openDB(context.Background(), filepath.Join(t.TempDir(), "m.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w := &review73Watch{name: "transform"}
	rep, err := Load(stage.Observe(context.Background(), w), db, rows)
	if err != nil {
		t.Fatal(err)
	}
	if w.opened.Load() != 1 {
		t.Fatalf("the observer saw %d stages named transform, want 1", w.opened.Load())
	}
	if w.info.Workers != 4 || w.info.Total != len(rows) {
		t.Errorf("transform: workers %d, total %d; want 4, %d", w.info.Workers, w.info.Total, len(rows))
	}
	if m := w.most.Load(); m > 4 {
		t.Errorf("%d transform calls at once, want at most 4", m)
	}
	if r, f := w.received.Load(), w.finished.Load(); r != int64(len(rows)) || f != r {
		t.Errorf("received %d, finished %d; want %d each", r, f, len(rows))
	}
	if rep.Loaded != 2119 || len(rep.Rejected) != 2 {
		t.Errorf("loaded %d, rejected %d (%q); want 2119, 2", rep.Loaded, len(rep.Rejected), rep.Rejected)
	}
}

// review73Rows reads the dataset's rows, as main does.
func review73Rows(t *testing.T) [][]string {
	t.Helper()
	src, err := zipSums()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := readCSV(src)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
