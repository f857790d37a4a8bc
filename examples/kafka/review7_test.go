package main

import (
	"regexp"
	"testing"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

var (
	r7Header = regexp.MustCompile(`(?m)^(\d+) orders on 8 partitions, (\d+) members$`)
	r7Unit   = regexp.MustCompile(`(?m)^member (\d+): inserted (\d+), ignored (\d+) duplicates, (.+)$`)
	r7DB     = regexp.MustCompile(`(?m)^database: (\d+) rows, (\d+) distinct orders(.*)$`)
)

// Promise: without a crash, the members share the orders, each drains, every
// order is stored exactly once and the offsets are committed to the end.
func TestReview7KafkaNoCrash(t *testing.T) {
	bin := cmdtest.Build(t)
	units := cmdtest.CheckReplicas(t, bin, r7Header, r7Unit, r7DB, 1200, 2, []string{"offsets committed to the end", "every record committed exactly once"}, "-n", "1200", "-members", "2", "-crash=false").Units
	for _, u := range units {
		if u.Fate != "drained" {
			t.Errorf("member %d: %q, want drained", u.ID, u.Fate)
		}
	}
}

// Promises: member 0 dies after it stored min(500, n/(2×members)) orders,
// 500 here (the -crash flag's help); the others take its
// partitions from their last committed offsets, the database ignores what
// was already stored: every order once, offsets at the end, every record
// committed exactly once; only member 0 crashes.
func TestReview7KafkaCrash(t *testing.T) {
	bin := cmdtest.Build(t)
	units := cmdtest.CheckReplicas(t, bin, r7Header, r7Unit, r7DB, 3000, 3, []string{"offsets committed to the end", "every record committed exactly once"}, "-n", "3000").Units
	for _, u := range units {
		switch {
		case u.Fate == "crashed mid-run" && u.ID == 0:
			if u.Inserted < 500 {
				t.Errorf("member 0 crashed after storing %d, want after 500", u.Inserted)
			}
		case u.Fate != "drained":
			t.Errorf("member %d: %q, want drained (only member 0 crashes)", u.ID, u.Fate)
		}
	}
}

// Promise (flag help): -crash needs -members 2 or more: refused (exit 2).
func TestReview7KafkaLoneCrashRefused(t *testing.T) {
	bin := cmdtest.Build(t)
	cmdtest.Refused(t, bin, "-members", "-members", "1")
}
