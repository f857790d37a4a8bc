package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"golang.org/x/mod/module"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Module is one row of zip_sums.csv, checked and enriched.
type Module struct {
	Path, Version, H1, ZipHash string
	Host                       string // the path's first element
	Major                      string // "v0", "v1", "v2", ...
	Pseudo                     bool   // a pseudo-version (an untagged commit)
}

// Report is what a load did.
type Report struct {
	Loaded   int      // rows upserted
	Rejected []string // rows that failed the transform, and why
}

const upsert = `INSERT INTO modules (path, version, h1, zip_hash, host, major, pseudo)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (path, version) DO UPDATE SET
	h1 = excluded.h1, zip_hash = excluded.zip_hash, host = excluded.host,
	major = excluded.major, pseudo = excluded.pseudo`

// readme:begin
// Load transforms rows concurrently, sets aside the rows that fail (a
// dead-letter list), and upserts the rest in batched transactions.
func Load(ctx context.Context, db *sql.DB, rows [][]string) (Report, error) {
	var rep Report
	modules := stage.Map(source.Slice(rows), parse, stage.Name("transform"), stage.Workers(4),
		stage.OnError(stage.Handle(func(_ context.Context, e *stage.Error) error {
			rep.Rejected = append(rep.Rejected, fmt.Sprintf("row %d: %v", e.Index+1, e.Err))
			return nil // drop the row, go on
		})))
	batches := stage.Batch(modules, 250, 100*time.Millisecond)
	err := sink.ForEach(ctx, batches, func(ctx context.Context, batch []Module) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		for _, m := range batch {
			if _, err := tx.ExecContext(ctx, upsert, m.Path, m.Version, m.H1, m.ZipHash, m.Host, m.Major, m.Pseudo); err != nil {
				return err
			}
		}
		if err := tx.Commit(); err != nil {
			return err
		}
		rep.Loaded += len(batch) // committed: upserted
		return nil
	})
	return rep, err
}

// readme:end

var semver = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)

// parse checks one CSV row (path, version, h1 hash, zip hash) and derives
// the module's host, major version and whether it is a pseudo-version. A
// nil row is a line that was not valid CSV (see readCSV). Reasons quote at
// most 64 characters of a bad field.
func parse(_ context.Context, row []string) (Module, error) {
	if row == nil {
		return Module{}, errors.New("not a valid CSV line")
	}
	if len(row) != 4 {
		return Module{}, fmt.Errorf("%d fields, want 4", len(row))
	}
	m := Module{Path: row[0], Version: row[1], H1: row[2], ZipHash: row[3]}
	if m.Path == "" || strings.ContainsAny(m.Path, " \t") {
		return Module{}, fmt.Errorf("bad module path %.64q", m.Path)
	}
	v := semver.FindStringSubmatch(m.Version)
	if v == nil {
		return Module{}, fmt.Errorf("bad version %.64q", m.Version)
	}
	sum, ok := strings.CutPrefix(m.H1, "h1:")
	if raw, err := base64.StdEncoding.DecodeString(sum); !ok || err != nil || len(raw) != 32 {
		return Module{}, fmt.Errorf("bad h1 hash %.64q", m.H1)
	}
	if raw, err := hex.DecodeString(m.ZipHash); err != nil || len(raw) != 32 {
		return Module{}, fmt.Errorf("bad zip hash %.64q", m.ZipHash)
	}
	m.Host, _, _ = strings.Cut(m.Path, "/")
	m.Major = "v" + v[1]
	m.Pseudo = module.IsPseudoVersion(m.Version) // the go command's own rule
	return m, nil
}
