package main

import (
	"regexp"
	"testing"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

var (
	r7Header = regexp.MustCompile(`(?m)^(\d+) jobs, (\d+) replicas$`)
	r7Unit   = regexp.MustCompile(`(?m)^replica (\d+): inserted (\d+), ignored (\d+) duplicates, (.+)$`)
	r7DB     = regexp.MustCompile(`(?m)^database: (\d+) rows, (\d+) distinct jobs(.*)$`)
)

// Promise: without a crash, the replicas share the jobs, each drains, and
// every job is stored exactly once.
func TestReview7DistributedNoCrash(t *testing.T) {
	bin := cmdtest.Build(t)
	units := cmdtest.CheckReplicas(t, bin, r7Header, r7Unit, r7DB, 300, 2, []string{"every job exactly once"}, "-n", "300", "-replicas", "2", "-crash=false").Units
	for _, u := range units {
		if u.Fate != "drained" {
			t.Errorf("replica %d: %q, want drained", u.ID, u.Fate)
		}
	}
}

// Promises: one replica crashes mid-run after min(200, n/(2×replicas)) jobs,
// 150 here (the -crash flag's help; "its connection
// drops, nothing it took is acknowledged"); the others pick its work up and
// the database ignores what was already inserted: every job exactly once;
// only replica 0 crashes, the others drain.
func TestReview7DistributedCrash(t *testing.T) {
	bin := cmdtest.Build(t)
	units := cmdtest.CheckReplicas(t, bin, r7Header, r7Unit, r7DB, 900, 3, []string{"every job exactly once"}, "-n", "900").Units
	for _, u := range units {
		switch {
		case u.Fate == "crashed mid-run" && u.ID == 0:
			if u.Inserted < 150 {
				t.Errorf("replica 0 crashed after inserting %d, want after 150", u.Inserted)
			}
		case u.Fate != "drained":
			t.Errorf("replica %d: %q, want drained (only replica 0 crashes)", u.ID, u.Fate)
		}
	}
}

// Promise (flag help): -crash needs -replicas 2 or more: one replica with a
// crash is refused (exit 2) rather than run.
func TestReview7DistributedLoneCrashRefused(t *testing.T) {
	bin := cmdtest.Build(t)
	cmdtest.Refused(t, bin, "-replicas", "-replicas", "1")
}
