package main

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

var (
	r7Header = regexp.MustCompile(`(?m)^(\d+) jobs, (\d+) replicas$`)
	r7Unit   = regexp.MustCompile(`(?m)^replica (\d+): inserted (\d+), ignored (\d+) duplicates, (.+)$`)
	r7DB     = regexp.MustCompile(`(?m)^database: (\d+) rows, (\d+) distinct jobs(.*)$`)
)

type r7Unit7 struct {
	id, inserted, ignored int
	fate                  string
}

// r7RunBin runs the binary and parses its documented output.
func r7RunBin(t *testing.T, bin string, args ...string) (units []r7Unit7, rows, distinct int, tail, out string) {
	t.Helper()
	out, err, hung := cmdtest.Run(t, bin, time.Minute, args...)
	if hung || err != nil {
		t.Fatalf("%v: hung=%v err=%v\n%s", args, hung, err, out)
	}
	for _, m := range r7Unit.FindAllStringSubmatch(out, -1) {
		id, _ := strconv.Atoi(m[1])
		ins, _ := strconv.Atoi(m[2])
		ign, _ := strconv.Atoi(m[3])
		units = append(units, r7Unit7{id, ins, ign, m[4]})
	}
	d := r7DB.FindStringSubmatch(out)
	if d == nil {
		t.Fatalf("no database line\n%s", out)
	}
	rows, _ = strconv.Atoi(d[1])
	distinct, _ = strconv.Atoi(d[2])
	return units, rows, distinct, d[3], out
}

// r7Check checks the promises that hold for every run: the header, one line
// per replica, every ITEM stored exactly once (the inserts add up to n, the
// database has n distinct), the final verdicts true.
func r7Check(t *testing.T, bin string, n, k int, verdicts []string, args ...string) []r7Unit7 {
	t.Helper()
	units, rows, distinct, tail, out := r7RunBin(t, bin, args...)
	if h := r7Header.FindStringSubmatch(out); h == nil || h[1] != strconv.Itoa(n) || h[2] != strconv.Itoa(k) {
		t.Errorf("header %q, want %d jobs, %d replicas\n%s", h, n, k, out)
	}
	if len(units) != k {
		t.Errorf("%d replica lines, want %d\n%s", len(units), k, out)
	}
	sum := 0
	for _, u := range units {
		sum += u.inserted
	}
	if sum != n || rows != n || distinct != n {
		t.Errorf("inserted %d in all, database %d rows, %d distinct; want %d of each\n%s", sum, rows, distinct, n, out)
	}
	for _, v := range verdicts {
		if !regexp.MustCompile(regexp.QuoteMeta(v) + `: true\b`).MatchString(tail) {
			t.Errorf("verdict %q not true in %q\n%s", v, tail, out)
		}
	}
	return units
}

// Promise: without a crash, the replicas share the jobs, each drains, and
// every job is stored exactly once.
func TestReview7DistributedNoCrash(t *testing.T) {
	bin := cmdtest.Build(t)
	units := r7Check(t, bin, 300, 2, []string{"every job exactly once"}, "-n", "300", "-replicas", "2", "-crash=false")
	for _, u := range units {
		if u.fate != "drained" {
			t.Errorf("replica %d: %q, want drained", u.id, u.fate)
		}
	}
}

// Promises: one replica crashes mid-run after 200 jobs ("its connection
// drops, nothing it took is acknowledged"); the others pick its work up and
// the database ignores what was already inserted: every job exactly once;
// only replica 0 crashes, the others drain.
func TestReview7DistributedCrash(t *testing.T) {
	bin := cmdtest.Build(t)
	units := r7Check(t, bin, 900, 3, []string{"every job exactly once"}, "-n", "900")
	for _, u := range units {
		switch {
		case u.fate == "crashed mid-run" && u.id == 0:
			if u.inserted < 200 {
				t.Errorf("replica 0 crashed after inserting %d, want after 200", u.inserted)
			}
		case u.fate != "drained":
			t.Errorf("replica %d: %q, want drained (only replica 0 crashes)", u.id, u.fate)
		}
	}
}

// Promise (flag help): -crash needs -replicas 2 or more: one replica with a
// crash is refused (exit 2) rather than run.
func TestReview7DistributedLoneCrashRefused(t *testing.T) {
	bin := cmdtest.Build(t)
	cmdtest.Refused(t, bin, "-replicas", "-replicas", "1")
}
