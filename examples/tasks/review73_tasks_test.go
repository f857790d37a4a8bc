package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

type review73Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *review73Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

var (
	review73Start = regexp.MustCompile(`^(\d+) starting \((\d+) running\)$`)
	review73Done  = regexp.MustCompile(`^(\d+) waited (\d+\.\d\d)s$`)
)

// review73Check checks one run's output: ten tasks, each starting once
// then reported once, each "starting" line's count between 1 and limit,
// each wait at most 5 s × scale.
func review73Check(t *testing.T, out string, n, limit int, scale float64) {
	t.Helper()
	started := map[int]bool{}
	finished := map[int]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if m := review73Start.FindStringSubmatch(l); m != nil {
			id, _ := strconv.Atoi(m[1])
			running, _ := strconv.Atoi(m[2])
			if started[id] || id < 0 || id >= n {
				t.Errorf("task %d started twice or is not one of the %d", id, n)
			}
			started[id] = true
			if running < 1 || running > limit {
				t.Errorf("%q: want 1 to %d running (itself included)", l, limit)
			}
			continue
		}
		if m := review73Done.FindStringSubmatch(l); m != nil {
			id, _ := strconv.Atoi(m[1])
			waited, _ := strconv.ParseFloat(m[2], 64)
			if !started[id] || finished[id] {
				t.Errorf("task %d reported before it started, or twice", id)
			}
			finished[id] = true
			if waited < 0 || waited > 5*scale+0.005 {
				t.Errorf("%q: want a wait of at most %.2fs", l, 5*scale)
			}
			continue
		}
		t.Errorf("unexpected line %q", l)
	}
	if len(started) != n || len(finished) != n {
		t.Errorf("%d started, %d reported; want %d each:\n%s", len(started), len(finished), n, out)
	}
}

// README: "ten tasks that each print "N starting", sleep a random time up
// to 5 s (-scale shrinks it), and return; at most three run at once, and
// each "starting" line shows how many are running."
func TestReview73BinaryAtMostThree(t *testing.T) {
	bin := cmdtest.Build(t)
	for i := range 5 {
		out, err, hung := cmdtest.Run(t, bin, time.Minute, "-scale", "0.01")
		if err != nil || hung {
			t.Fatalf("run %d: err %v hung %v:\n%s", i, err, hung, out)
		}
		review73Check(t, out, 10, 3, 0.01)
	}
}

// Doc: "Each "starting" line shows how many tasks were running as that
// task started, itself included, so the output shows that no more than
// three ever run at once." With many seeds, and with a limit of one (then
// every count is exactly 1: the task itself).
func TestReview73StartingCounts(t *testing.T) {
	for seed := uint64(1); seed <= 30; seed++ {
		var out review73Buffer
		if err := run(context.Background(), &out, 10, 3, 0.002, seed); err != nil {
			t.Fatal(err)
		}
		review73Check(t, out.b.String(), 10, 3, 0.002)
	}
	var out review73Buffer
	if err := run(context.Background(), &out, 10, 1, 0.001, 7); err != nil {
		t.Fatal(err)
	}
	review73Check(t, out.b.String(), 10, 1, 0.001)
	if c := strings.Count(out.b.String(), "(1 running)"); c != 10 {
		t.Errorf("limit 1: %d lines say (1 running), want 10:\n%s", c, out.b.String())
	}
}

// Doc: "sleeps up to 5 s per task" / "-scale 0.1 # ten times faster": a
// scale of 0 sleeps not at all, and every task still runs and is reported.
func TestReview73ScaleZero(t *testing.T) {
	bin := cmdtest.Build(t)
	out, err, hung := cmdtest.Run(t, bin, time.Minute, "-scale", "0")
	if err != nil || hung {
		t.Fatalf("err %v hung %v:\n%s", err, hung, out)
	}
	review73Check(t, out, 10, 3, 0)
}

// Flags the command cannot honour are refused with status 2, as crawl's
// are ("-limit" is how many run at once, "-scale" multiplies a sleep): a
// negative limit used to panic with a stack trace, a negative scale to
// print negative waits.
func TestReview73BadFlagsRefused(t *testing.T) {
	bin := cmdtest.Build(t)
	for _, args := range [][]string{{"-limit", "-5"}, {"-limit", "0"}, {"-scale", "-0.1"}, {"-scale", "NaN"}} {
		cmdtest.Refused(t, bin, "want -limit 1 or more", args...)
	}
}
