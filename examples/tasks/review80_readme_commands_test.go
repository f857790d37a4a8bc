package main

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// Review80: the README's "Two commands": `go test -race -timeout 30m
// github.com/sluicedev/sluice/...` run from the repository root is "the
// tests of every module (go.work lists them)"; and "Every test package
// checks this with goleak.VerifyTestMain". Checked from the files: every
// go.mod of the repository is in go.work, and every directory that holds a
// _test.go file is a package the pattern matches, with a TestMain calling
// goleak.VerifyTestMain.
func TestReview80TestCommandCoversEveryModule(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	work, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	inUse := false
	for l := range strings.Lines(string(work)) {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "use ("):
			inUse = true
		case inUse && l == ")":
			inUse = false
		case inUse && l != "":
			used[filepath.Clean(l)] = true
		case strings.HasPrefix(l, "use "):
			used[filepath.Clean(strings.TrimSpace(strings.TrimPrefix(l, "use ")))] = true
		}
	}
	var testDirs []string
	goleakDirs := map[string]bool{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil && !used[filepath.Clean(rel)] {
				t.Errorf("module %s is not in go.work: the README's test command misses it", rel)
			}
			return nil
		}
		if strings.HasSuffix(d.Name(), "_test.go") {
			dir := filepath.Dir(rel)
			if len(testDirs) == 0 || testDirs[len(testDirs)-1] != dir {
				testDirs = append(testDirs, dir)
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if regexp.MustCompile(`goleak\.VerifyTestMain\(`).Match(b) {
				goleakDirs[dir] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-e", "-f", "{{.Dir}}", "github.com/sluicedev/sluice/...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	listed := map[string]bool{}
	for s := bufio.NewScanner(bytes.NewReader(out)); s.Scan(); {
		rel, _ := filepath.Rel(root, s.Text())
		listed[rel] = true
	}
	for _, dir := range testDirs {
		if !listed[dir] {
			t.Errorf("%s has tests that `go test github.com/sluicedev/sluice/...` from the root does not run", dir)
		}
		if !goleakDirs[dir] {
			t.Errorf("%s: test package without a TestMain calling goleak.VerifyTestMain", dir)
		}
	}
	if len(testDirs) < 10 {
		t.Errorf("found only %d test packages: %v", len(testDirs), testDirs)
	}
}

// README Layout: "examples/ its own module: runnable programs", tied to the
// core by a replace (the README's "Use it" shows the same for your own
// module). Outside the workspace (GOWORK=off), the module builds and vets
// as it stands: its go.mod and go.sum are complete on their own.
func TestReview80ExamplesModuleStandsAlone(t *testing.T) {
	for _, args := range [][]string{{"build", "./..."}, {"vet", "./..."}} {
		cmd := exec.Command("go", args...)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("GOWORK=off go %v: %v\n%s", args, err, out)
		}
	}
}
