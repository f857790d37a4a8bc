package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// Review80: run's check says it takes "0 jobs or more". With none, it
// still ends at once, prints the README's lines, and reports every job
// (none) exactly once.
func TestReview80ZeroJobs(t *testing.T) {
	var out bytes.Buffer
	errc := make(chan error, 1)
	go func() { errc <- run(context.Background(), config{n: 0, replicas: 3, crash: false}, &out) }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("run with no jobs: %v\n%s", err, out.String())
		}
	case <-time.After(60 * time.Second): // hang watchdog only
		t.Fatal("run with no jobs still running after 60 s")
	}
	want := "0 jobs, 3 replicas\n" +
		"replica 0: inserted 0, ignored 0 duplicates, drained\n" +
		"replica 1: inserted 0, ignored 0 duplicates, drained\n" +
		"replica 2: inserted 0, ignored 0 duplicates, drained\n" +
		"database: 0 rows, 0 distinct jobs: every job exactly once: true\n"
	if out.String() != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

// The -crash flag: "crash replica 0 mid-run (needs -replicas 2 or more)";
// the doc comment: it "crashes one of them mid-run". With fewer jobs than
// the 200 replica 0 must store before it crashes, it cannot crash, yet the
// flags are accepted and the run reports replica 0 "drained".
func TestReview80CrashFlagWithFewJobs(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), config{n: 150, replicas: 2, crash: true}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "replica 0: ") || !strings.Contains(out.String(), "crashed mid-run") {
		t.Fatalf("-crash with 150 jobs: no crash:\n%s", out.String())
	}
}
