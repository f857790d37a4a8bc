package main

import (
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

var (
	r7Header = regexp.MustCompile(`(?m)^(\d+) orders on 8 partitions, (\d+) members$`)
	r7Unit   = regexp.MustCompile(`(?m)^member (\d+): inserted (\d+), ignored (\d+) duplicates, (.+)$`)
	r7DB     = regexp.MustCompile(`(?m)^database: (\d+) rows, (\d+) distinct orders(.*)$`)
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
// per member, every ITEM stored exactly once (the inserts add up to n, the
// database has n distinct), the final verdicts true.
func r7Check(t *testing.T, bin string, n, k int, verdicts []string, args ...string) []r7Unit7 {
	t.Helper()
	units, rows, distinct, tail, out := r7RunBin(t, bin, args...)
	if h := r7Header.FindStringSubmatch(out); h == nil || h[1] != strconv.Itoa(n) || h[2] != strconv.Itoa(k) {
		t.Errorf("header %q, want %d orders on 8 partitions, %d members\n%s", h, n, k, out)
	}
	if len(units) != k {
		t.Errorf("%d member lines, want %d\n%s", len(units), k, out)
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

// Promise: without a crash, the members share the orders, each drains, every
// order is stored exactly once and the offsets are committed to the end.
func TestReview7KafkaNoCrash(t *testing.T) {
	bin := cmdtest.Build(t)
	units := r7Check(t, bin, 1200, 2, []string{"offsets committed to the end", "every record committed exactly once"}, "-n", "1200", "-members", "2", "-crash=false")
	for _, u := range units {
		if u.fate != "drained" {
			t.Errorf("member %d: %q, want drained", u.id, u.fate)
		}
	}
}

// Promises: member 0 dies after it stored 500 orders; the others take its
// partitions from their last committed offsets, the database ignores what
// was already stored: every order once, offsets at the end, every record
// committed exactly once; only member 0 crashes.
func TestReview7KafkaCrash(t *testing.T) {
	bin := cmdtest.Build(t)
	units := r7Check(t, bin, 3000, 3, []string{"offsets committed to the end", "every record committed exactly once"}, "-n", "3000")
	for _, u := range units {
		switch {
		case u.fate == "crashed mid-run" && u.id == 0:
			if u.inserted < 500 {
				t.Errorf("member 0 crashed after storing %d, want after 500", u.inserted)
			}
		case u.fate != "drained":
			t.Errorf("member %d: %q, want drained (only member 0 crashes)", u.id, u.fate)
		}
	}
}

// Promise (flag help): -crash needs -members 2 or more: refused (exit 2).
func TestReview7KafkaLoneCrashRefused(t *testing.T) {
	bin := cmdtest.Build(t)
	cmdtest.Refused(t, bin, "-members", "-members", "1")
}
