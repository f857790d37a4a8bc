package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// Review tests: promises of main.go's doc comment and flags and of the
// README's `examples/distributed` that main_test.go does not check.

// The README's output, line by line, with the numbers that vary left open.
// Replica 0 crashes once it has stored 200 jobs, which it may not reach
// when the others take most of a small run: it may then drain.
var reviewOutput = []*regexp.Regexp{
	regexp.MustCompile(`^(\d+) jobs, (\d+) replicas$`),
	regexp.MustCompile(`^replica 0: inserted \d+, ignored \d+ duplicates, (crashed mid-run|drained)$`),
	regexp.MustCompile(`^replica [1-9]\d*: inserted \d+, ignored \d+ duplicates, drained$`),
	regexp.MustCompile(`^database: (\d+) rows, (\d+) distinct jobs: every job exactly once: true$`),
}

// -nats URL: the replicas use a server that the program did not start; a
// second run against the same server starts afresh ("a rerun against the
// same server starts afresh"); each prints the README's lines, with every
// job exactly once; and the work queue is empty afterwards.
func TestReviewExternalServerTwice(t *testing.T) {
	srv := startTestServer(t)
	bin := cmdtest.Build(t)
	for i := range 2 {
		out, err, hung := cmdtest.Run(t, bin, 3*time.Minute, "-nats", srv.ClientURL(), "-n", "500", "-replicas", "2")
		if hung || err != nil {
			t.Fatalf("run %d: err %v, hung %v; output:\n%s", i, err, hung, out)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 4 {
			t.Fatalf("run %d: %d lines, want 4:\n%s", i, len(lines), out)
		}
		for j, re := range reviewOutput {
			if !re.MatchString(lines[j]) {
				t.Fatalf("run %d: line %q does not match %s:\n%s", i, lines[j], re, out)
			}
		}
		if !strings.HasPrefix(out, "500 jobs, 2 replicas\n") || !strings.Contains(out, "database: 500 rows, 500 distinct jobs") {
			t.Fatalf("run %d:\n%s", i, out)
		}
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := js.Stream(ctx, "JOBS")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Fatalf("%d messages left in the work queue", info.State.Msgs)
	}
}

// -crash=false: every replica drains, none crashes, every job once.
func TestReviewNoCrash(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), config{n: 400, replicas: 2, crash: false}, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "crashed") || strings.Count(out.String(), "drained") != 2 ||
		!strings.Contains(out.String(), "database: 400 rows, 400 distinct jobs: every job exactly once: true") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// -replicas 1 with the default -crash=true: the only replica would crash
// after 200 jobs and leave the rest to nobody. The command refuses the flags
// at once (exit 2) instead of waiting for ever, as it used to.
func TestReviewLoneCrashingReplicaIsRefused(t *testing.T) {
	cmdtest.Refused(t, cmdtest.Build(t), "-crash needs -replicas 2 or more", "-replicas", "1", "-n", "300")
}

// run itself, with its only replica crashing: it stops waiting once no
// replica is left, says what was stored, and fails (it used to wait for
// ever: its wait loop looked only at the rows stored).
func TestReviewRunWithNoReplicaLeftFails(t *testing.T) {
	var out bytes.Buffer
	errc := make(chan error, 1)
	go func() { errc <- run(context.Background(), config{n: 300, replicas: 1, crash: true}, &out) }()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "no replica was left") {
			t.Fatalf("err %v, want the jobs left undone reported; output:\n%s", err, out.String())
		}
		if !strings.Contains(out.String(), "every job exactly once: false") || !strings.Contains(out.String(), "crashed mid-run") {
			t.Fatalf("output:\n%s", out.String())
		}
	case <-time.After(60 * time.Second): // a watchdog: a normal run takes seconds
		t.Fatal("run still waiting 60 s after its only replica crashed")
	}
}

// startTestServer starts a JetStream server on loopback, in t's temporary
// directory, and shuts it down when t ends.
func startTestServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(30 * time.Second) {
		t.Fatal("the NATS server did not start")
	}
	return srv
}
