// Command etl is sluice's ETL example: it extracts a real public dataset,
// the checksums of 2,119 Go module versions that the Go distribution ships
// (zip_sums.csv), transforms the rows concurrently (checks the hashes,
// derives each module's host, major version and whether it is a
// pseudo-version), and loads them into an embedded SQL database (SQLite,
// pure Go) in batched transactions with an idempotent upsert. A progress bar
// on stderr follows the transform stage through sluice's observer hook; a
// summary, computed from the database, ends the run. Run it twice: the
// summary is the same.
//
//	go -C examples run ./etl
//	go -C examples run ./etl -db /tmp/modules.sqlite -in my.csv
package main

import (
	"bufio"
	"cmp"
	"context"
	"database/sql"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/sluicedev/sluice/stage"
)

func main() {
	in := flag.String("in", "", "the CSV file to load (default: zip_sums.csv of the Go installation)")
	dbPath := flag.String("db", filepath.Join(os.TempDir(), "sluice-etl.sqlite"), "the SQLite database to load into (created if missing)")
	quiet := flag.Bool("quiet", false, "no progress bar")
	flag.Parse()
	if *in == "" {
		var err error
		if *in, err = zipSums(); err != nil {
			fmt.Fprintln(os.Stderr, "etl:", err)
			os.Exit(1)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var progress io.Writer = os.Stderr
	if *quiet {
		progress = nil
	}
	if err := run(ctx, *in, *dbPath, os.Stdout, progress); err != nil {
		fmt.Fprintln(os.Stderr, "etl:", err)
		os.Exit(1)
	}
}

// zipSums is the path of the dataset in the Go installation that the go
// command on PATH belongs to.
func zipSums() (string, error) {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOROOT: %w (give -in)", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "src/cmd/go/internal/modfetch/zip_sum_test/testdata/zip_sums.csv"), nil
}

// run loads the CSV file in into the database at dbPath and prints a
// summary to out; progress, if not nil, gets a progress bar.
func run(ctx context.Context, in, dbPath string, out, progress io.Writer) error {
	rows, err := readCSV(in)
	if err != nil {
		return err
	}
	db, err := openDB(ctx, dbPath)
	if err != nil {
		return err
	}
	defer db.Close()
	if progress != nil {
		ctx = stage.Observe(ctx, newProgress(progress, "transform"))
	}
	rep, err := Load(ctx, db, rows)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "read %d rows from %s\n", len(rows), filepath.Base(in))
	fmt.Fprintf(out, "loaded %d, rejected %d\n", rep.Loaded, len(rep.Rejected))
	slices.SortStableFunc(rep.Rejected, func(a, b string) int { return cmp.Compare(rowOf(a), rowOf(b)) })
	for _, r := range rep.Rejected { // in row order, whatever order the workers finished in
		fmt.Fprintln(out, "  rejected", r)
	}
	return summarize(ctx, db, out)
}

// rowOf is the row number of a rejected row's line ("row 12: ...").
func rowOf(rejected string) int {
	var n int
	fmt.Sscanf(rejected, "row %d:", &n)
	return n
}

// readCSV reads the whole file: it is small, and a slice source tells the
// observer the total (the progress bar's 100%). Each line is one record (no
// field of zip_sums.csv holds a line break), read on its own, so that a line
// that is not valid CSV (a stray quote) spoils only itself: it becomes a nil
// row, which the transform rejects like any other bad row.
func readCSV(path string) ([][]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rows [][]string
	lines := bufio.NewReader(f)
	for {
		line, err := lines.ReadString('\n')
		if line = strings.TrimRight(line, "\r\n"); line != "" {
			r := csv.NewReader(strings.NewReader(line))
			r.FieldsPerRecord = -1 // the transform checks the fields, row by row
			row, bad := r.Read()
			if bad != nil {
				row = nil
			}
			rows = append(rows, row)
		}
		switch {
		case err == io.EOF:
			return rows, nil
		case err != nil:
			return nil, err
		}
	}
}

func openDB(ctx context.Context, path string) (*sql.DB, error) {
	db, err := sql.Open("sqlite", path)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one writer; the sink commits one batch at a time
	_, err = db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS modules (
		path TEXT NOT NULL, version TEXT NOT NULL, h1 TEXT NOT NULL, zip_hash TEXT NOT NULL,
		host TEXT NOT NULL, major TEXT NOT NULL, pseudo BOOLEAN NOT NULL,
		PRIMARY KEY (path, version))`)
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// summarize prints what the database holds.
func summarize(ctx context.Context, db *sql.DB, out io.Writer) error {
	var versions, modules, hosts, pseudos int
	err := db.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT path), COUNT(DISTINCT host), COALESCE(SUM(pseudo), 0) FROM modules`).
		Scan(&versions, &modules, &hosts, &pseudos)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "database: %d versions of %d modules from %d hosts, %d pseudo-versions\n", versions, modules, hosts, pseudos)
	rows, err := db.QueryContext(ctx, `SELECT host, COUNT(DISTINCT path) AS n FROM modules GROUP BY host ORDER BY n DESC, host LIMIT 5`)
	if err != nil {
		return err
	}
	defer rows.Close()
	fmt.Fprintln(out, "top hosts:")
	for rows.Next() {
		var host string
		var n int
		if err := rows.Scan(&host, &n); err != nil {
			return err
		}
		fmt.Fprintf(out, "  %-20s %d modules\n", host, n)
	}
	return rows.Err()
}
