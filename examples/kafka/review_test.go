package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// Review tests: promises of main.go's doc comment and flags and of the
// README's `examples/kafka` that main_test.go does not check.

// reviewCluster is a cluster the program did not start, for -brokers.
func reviewCluster(t *testing.T, partitions int32) string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topic), kfake.GroupMinSessionTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return strings.Join(c.ListenAddrs(), ",")
}

var reviewMember = regexp.MustCompile(`^member \d+: inserted \d+, ignored \d+ duplicates, drained$`)

// -brokers host:port: the members use a cluster the program did not start
// (no crash there: "in-process cluster only"), twice against the same
// cluster and group; every record is committed exactly once each time, and
// the output has the README's shape.
func TestReviewExternalBrokersTwice(t *testing.T) {
	brokers := reviewCluster(t, 8)
	bin := cmdtest.Build(t)
	for i := range 2 {
		out, err, hung := cmdtest.Run(t, bin, 3*time.Minute, "-brokers", brokers, "-n", "800", "-members", "2")
		if hung || err != nil {
			t.Fatalf("run %d: err %v, hung %v; output:\n%s", i, err, hung, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 || lines[0] != "800 orders on 8 partitions, 2 members" ||
			!reviewMember.MatchString(lines[1]) || !reviewMember.MatchString(lines[2]) ||
			lines[3] != "database: 800 rows, 800 distinct orders; offsets committed to the end: true; every record committed exactly once: true" {
			t.Fatalf("run %d: output:\n%s", i, out)
		}
	}
}

// The first line says how many partitions the orders are on: against a
// cluster whose topic has 3 partitions (-brokers), 3. (It used to say 8
// whatever the topic had: the number was a constant.)
func TestReviewHeaderSaysTheTopicsPartitions(t *testing.T) {
	brokers := reviewCluster(t, 3)
	bin := cmdtest.Build(t)
	out, err, hung := cmdtest.Run(t, bin, 3*time.Minute, "-brokers", brokers, "-n", "300", "-members", "2")
	if hung || err != nil {
		t.Fatalf("err %v, hung %v; output:\n%s", err, hung, out)
	}
	if !strings.Contains(out, "database: 300 rows, 300 distinct orders; offsets committed to the end: true; every record committed exactly once: true") {
		t.Fatalf("output:\n%s", out)
	}
	if first, _, _ := strings.Cut(out, "\n"); first != "300 orders on 3 partitions, 2 members" {
		t.Fatalf("first line %q, want %q (the topic has 3 partitions)", first, "300 orders on 3 partitions, 2 members")
	}
}

// -crash=false: every member drains, none crashes, no duplicates, every
// record committed exactly once.
func TestReviewNoCrash(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), config{n: 1500, members: 2, crash: false}, &out); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Contains(s, "crashed") || strings.Count(s, "drained") != 2 ||
		!strings.Contains(s, "database: 1500 rows, 1500 distinct orders; offsets committed to the end: true; every record committed exactly once: true") {
		t.Fatalf("output:\n%s", s)
	}
}

// -members 1 with the default -crash=true: the only member would crash
// after 500 orders and leave its partitions to nobody. The command refuses
// the flags at once (exit 2) instead of waiting for ever, as it used to.
func TestReviewLoneCrashingMemberIsRefused(t *testing.T) {
	cmdtest.Refused(t, cmdtest.Build(t), "-crash needs -members 2 or more", "-members", "1", "-n", "1000")
}

// run itself, with its only member crashing: it stops waiting once no
// member is left, says what was stored, and fails (it used to wait for
// ever: its wait loop looked only at the rows stored).
func TestReviewRunWithNoMemberLeftFails(t *testing.T) {
	var out bytes.Buffer
	errc := make(chan error, 1)
	go func() { errc <- run(context.Background(), config{n: 1000, members: 1, crash: true}, &out) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "no member was left") {
			t.Fatalf("err %v, want the orders left undone reported; output:\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "exactly once: false") || !strings.Contains(out.String(), "crashed mid-run") {
			t.Fatalf("output:\n%s", out.String())
		}
	case <-time.After(90 * time.Second): // a watchdog: a normal run takes seconds
		t.Fatal("run still waiting 90 s after its only member crashed")
	}
}
