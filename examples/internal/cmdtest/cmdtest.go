// Package cmdtest builds and runs an example's command from its tests, so
// that a scenario that could hang or crash runs in a process of its own.
package cmdtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Build builds the command in the test's package directory (the working
// directory of `go test`) into a temporary directory, and returns the
// binary's path. A failed build fails the test.
func Build(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(wd))
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Run runs bin with args until it exits, and returns its output (stdout
// and stderr together) and its error. watchdog is a hang watchdog only: a
// command still running after it is killed, and hung reports it.
func Run(t testing.TB, bin string, watchdog time.Duration, args ...string) (out string, err error, hung bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err = cmd.Run()
	return b.String(), err, ctx.Err() != nil
}

// Refused runs bin with args and fails the test unless the command refuses
// them at once: it exits with status 2 and its output contains want. A
// command still running after the watchdog (a minute, a hang watchdog
// only) fails the test too.
func Refused(t testing.TB, bin, want string, args ...string) {
	t.Helper()
	out, err, hung := Run(t, bin, time.Minute, args...)
	var exit *exec.ExitError
	if hung || !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out, want) {
		t.Errorf("%v: err %v, hung %v; want exit 2 with %q; output:\n%s", args, err, hung, want, out)
	}
}

// Replicas is what a run of a replicated example (distributed, kafka)
// reported: one Unit per replica, and the database's line.
type Replicas struct {
	Units          []Unit
	Rows, Distinct int
	Tail           string // the database line after its counts: the verdicts
	Out            string // the whole output
}

// Unit is one replica's line: "<name> <ID>: inserted <Inserted>, ignored
// <Ignored> duplicates, <Fate>".
type Unit struct {
	ID, Inserted, Ignored int
	Fate                  string
}

// CheckReplicas runs bin with args and checks what holds for every run of
// a replicated example whose output is a header matching header (counts n
// and k), one line per replica matching unit (id, inserted, ignored,
// fate), and a database line matching db (rows, distinct, the verdicts):
// k replica lines, the inserts adding up to n, n rows, n distinct, and
// each of verdicts reported true.
func CheckReplicas(t testing.TB, bin string, header, unit, db *regexp.Regexp, n, k int, verdicts []string, args ...string) Replicas {
	t.Helper()
	out, err, hung := Run(t, bin, time.Minute, args...)
	if hung || err != nil {
		t.Fatalf("%v: hung=%v err=%v\n%s", args, hung, err, out)
	}
	r := Replicas{Out: out}
	for _, m := range unit.FindAllStringSubmatch(out, -1) {
		id, _ := strconv.Atoi(m[1])
		ins, _ := strconv.Atoi(m[2])
		ign, _ := strconv.Atoi(m[3])
		r.Units = append(r.Units, Unit{id, ins, ign, m[4]})
	}
	d := db.FindStringSubmatch(out)
	if d == nil {
		t.Fatalf("no database line\n%s", out)
	}
	r.Rows, _ = strconv.Atoi(d[1])
	r.Distinct, _ = strconv.Atoi(d[2])
	r.Tail = d[3]
	if h := header.FindStringSubmatch(out); h == nil || h[1] != strconv.Itoa(n) || h[2] != strconv.Itoa(k) {
		t.Errorf("header %q, want counts %d and %d\n%s", h, n, k, out)
	}
	if len(r.Units) != k {
		t.Errorf("%d replica lines, want %d\n%s", len(r.Units), k, out)
	}
	sum := 0
	for _, u := range r.Units {
		sum += u.Inserted
	}
	if sum != n || r.Rows != n || r.Distinct != n {
		t.Errorf("inserted %d in all, database %d rows, %d distinct; want %d of each\n%s", sum, r.Rows, r.Distinct, n, out)
	}
	for _, v := range verdicts {
		if !regexp.MustCompile(regexp.QuoteMeta(v) + `: true\b`).MatchString(r.Tail) {
			t.Errorf("verdict %q not true in %q\n%s", v, r.Tail, out)
		}
	}
	return r
}
