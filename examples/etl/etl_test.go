package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func dataset(t *testing.T) string {
	t.Helper()
	path, err := zipSums()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunTwiceSameResult(t *testing.T) {
	db := filepath.Join(t.TempDir(), "modules.sqlite")
	var outs [2]string
	for i := range outs {
		var out, bar bytes.Buffer
		if err := run(context.Background(), dataset(t), db, &out, &bar); err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		outs[i] = out.String()
		if !strings.Contains(bar.String(), "(2119/2119)") {
			t.Errorf("run %d: the progress bar did not reach 2119/2119: %q", i, bar.String())
		}
	}
	if outs[0] != outs[1] {
		t.Fatalf("two runs differ:\n%s\n---\n%s", outs[0], outs[1])
	}
	for _, want := range []string{"loaded 2119, rejected 0", "database: 2119 versions of 2119 modules"} {
		if !strings.Contains(outs[0], want) {
			t.Errorf("output lacks %q:\n%s", want, outs[0])
		}
	}
}

func TestBadRowsAreDeadLetters(t *testing.T) {
	csv := filepath.Join(t.TempDir(), "in.csv")
	rows := "good.dev/a,v1.2.3,h1:RYM6lWITV8oADrwLfdzxmt8ucfW6UtP9v1jg4qAbqts=,2c42aad9ed60e24046fbf5720f438884942897197cb790ce58cccdacedd9532d\n" +
		"bad.dev/version,1.2,h1:RYM6lWITV8oADrwLfdzxmt8ucfW6UtP9v1jg4qAbqts=,2c42aad9ed60e24046fbf5720f438884942897197cb790ce58cccdacedd9532d\n" +
		"bad.dev/fields,v1.0.0\n" +
		"good.dev/b,v2.0.0-20190101000000-abcdefabcdef,h1:RYM6lWITV8oADrwLfdzxmt8ucfW6UtP9v1jg4qAbqts=,2c42aad9ed60e24046fbf5720f438884942897197cb790ce58cccdacedd9532d\n"
	if err := os.WriteFile(csv, []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), csv, filepath.Join(t.TempDir(), "db.sqlite"), &out, nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"loaded 2, rejected 2",
		`rejected row 2: bad version "1.2"`,
		"rejected row 3: 2 fields, want 4",
		"database: 2 versions of 2 modules from 1 hosts, 1 pseudo-versions",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestCancelledLoadReportsTheCancellation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := run(ctx, dataset(t), filepath.Join(t.TempDir(), "db.sqlite"), &bytes.Buffer{}, nil)
	if err == nil {
		t.Fatal("a cancelled load returned nil")
	}
}

// The README's "ETL in 30 lines" is this example's Load, word for word.
func TestReadmeShowsLoad(t *testing.T) {
	src, err := os.ReadFile("etl.go")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(src), "// readme:begin\n")
	block, _, _ = strings.Cut(block, "\n// readme:end")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+block+"```\n") {
		t.Fatalf("README.md does not show Load as etl.go has it:\n%s", block)
	}
	if n := strings.Count(block, "\n"); n > 30 {
		t.Fatalf("Load is %d lines, the README promises 30", n)
	}
}
