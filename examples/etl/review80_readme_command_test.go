package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Review80: README "Two commands": "From the repository root, on a fresh
// machine with Go installed: go -C examples run ./etl # the main example",
// whose output the README shows ("read 2119 rows from zip_sums.csv",
// "loaded 2119, rejected 0", "database: 2119 versions of 2119 modules from
// 66 hosts, 942 pseudo-versions", "top hosts:", "  github.com 1839
// modules"; the bar on stderr ends at 2119/2119), and "a second run prints
// the same summary". The command is run as written, from the root, with its
// default database in a fresh temporary directory (TMPDIR).
func TestReview80ReadmeCommandFromTheRoot(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	want := "read 2119 rows from zip_sums.csv\n" +
		"loaded 2119, rejected 0\n" +
		"database: 2119 versions of 2119 modules from 66 hosts, 942 pseudo-versions\n" +
		"top hosts:\n" +
		"  github.com           1839 modules\n"
	var first string
	for i := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // hang watchdog only
		cmd := exec.CommandContext(ctx, "go", "-C", "examples", "run", "./etl")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "TMPDIR="+tmp)
		var out, bar bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &bar
		err := cmd.Run()
		cancel()
		if err != nil {
			t.Fatalf("run %d: %v\nstdout:\n%s\nstderr:\n%s", i+1, err, out.String(), bar.String())
		}
		if !strings.HasPrefix(out.String(), want) {
			t.Errorf("run %d printed:\n%s\nwant it to begin with the README's lines:\n%s", i+1, out.String(), want)
		}
		if !strings.Contains(bar.String(), "(2119/2119)") || !strings.Contains(bar.String(), "transform 100%") {
			t.Errorf("run %d: no bar ending at transform 100%% (2119/2119) on stderr:\n%q", i+1, bar.String())
		}
		if i == 0 {
			first = out.String()
		} else if out.String() != first {
			t.Errorf("the second run printed another summary:\n%s\nfirst:\n%s", out.String(), first)
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "sluice-etl.sqlite")); err != nil {
		t.Errorf("default database not in os.TempDir(): %v", err)
	}
}
