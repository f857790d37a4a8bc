package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Review tests: promises of main.go's doc comment and the README's "Running
// it in a service" that main_test.go does not check. They reuse start,
// waitForJobs and rest from main_test.go.

// reviewWait waits for the process to exit, with a generous hang watchdog.
func reviewWait(t *testing.T, cmd *exec.Cmd, lines *bufio.Scanner) (string, error) {
	t.Helper()
	type res struct {
		out string
		err error
	}
	done := make(chan res, 1)
	go func() {
		var b strings.Builder
		for lines.Scan() {
			b.WriteString(lines.Text() + "\n")
		}
		done <- res{b.String(), cmd.Wait()}
	}()
	select {
	case r := <-done:
		return r.out, r.err
	case <-time.After(2 * time.Minute): // hang watchdog only
		cmd.Process.Kill()
		r := <-done
		t.Fatalf("the service did not exit; output so far:\n%s", r.out)
		return "", nil
	}
}

func reviewExitCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*exec.ExitError); ok {
		return e.ExitCode()
	}
	return -1
}

// "If ... a second signal arrives, it aborts instead: it cancels the run
// and exits 1." Jobs take an hour and the grace period is an hour, so only
// the second signal can end the run. The kernel may merge two SIGTERMs sent
// back to back into one, so the test keeps sending SIGTERM until the process
// exits: from the second delivery on, it must abort.
func TestReviewSecondSignalAborts(t *testing.T) {
	cmd, url, lines := start(t, "-work", "1h", "-grace", "1h")
	waitForJobs(t, url, 8)
	exited := make(chan struct{})
	go func() {
		for {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	out, err := reviewWait(t, cmd, lines)
	close(exited)
	if reviewExitCode(err) != 1 || !strings.Contains(out, "aborted: context canceled") {
		t.Fatalf("exit %v, output %q; want exit 1 and the cancellation", err, out)
	}
}

// "On SIGTERM (or Ctrl-C) it drains": SIGINT drains too, exit 0, every job
// taken stored.
func TestReviewSIGINTDrains(t *testing.T) {
	cmd, url, lines := start(t)
	waitForJobs(t, url, 20)
	cmd.Process.Signal(syscall.SIGINT)
	out, err := reviewWait(t, cmd, lines)
	if err != nil {
		t.Fatalf("exit: %v, want 0; output:\n%s", err, out)
	}
	m := regexp.MustCompile(`drained: took (\d+) jobs, stored (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] {
		t.Fatalf("output %q, want every job taken to be stored", out)
	}
}

// "finishes the jobs in flight, stores the last partial batch": with jobs
// that take 300 ms, the signal comes while 8 jobs are in flight; the drain
// waits for them and stores them all (fewer than a batch of 100: a partial
// batch), and exits 0.
func TestReviewDrainFinishesSlowJobsInFlight(t *testing.T) {
	cmd, url, lines := start(t, "-work", "300ms", "-grace", "1h")
	waitForJobs(t, url, 8)
	cmd.Process.Signal(syscall.SIGTERM)
	out, err := reviewWait(t, cmd, lines)
	if err != nil {
		t.Fatalf("exit: %v, want 0; output:\n%s", err, out)
	}
	m := regexp.MustCompile(`drained: took (\d+) jobs, stored (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] {
		t.Fatalf("output %q, want every job taken to be stored", out)
	}
	if n, _ := strconv.Atoi(m[2]); n < 8 {
		t.Fatalf("stored %d jobs, want at least the 8 seen in flight", n)
	}
}

// Drain under load: jobs that take no time, so the source is busy taking
// jobs when the signal arrives. Whatever the interleaving, every job taken
// must be stored ("Nothing taken is lost"). Several rounds.
func TestReviewDrainUnderLoadLosesNothing(t *testing.T) {
	for round := range 4 {
		cmd, url, lines := start(t, "-work", "0s")
		waitForJobs(t, url, float64(1000*(round+1)))
		cmd.Process.Signal(syscall.SIGTERM)
		out, err := reviewWait(t, cmd, lines)
		if err != nil {
			t.Fatalf("round %d: exit: %v, want 0; output:\n%s", round, err, out)
		}
		m := regexp.MustCompile(`drained: took (\d+) jobs, stored (\d+)`).FindStringSubmatch(out)
		if m == nil || m[1] != m[2] {
			t.Fatalf("round %d: output %q, want every job taken to be stored", round, out)
		}
	}
}

// The README's metrics: the Prometheus adapter's families, labelled per
// stage, for the "process" stage of the running service.
func TestReviewMetricsHaveTheReadmeFamilies(t *testing.T) {
	cmd, url, lines := start(t)
	waitForJobs(t, url, 50)
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, re := range []string{
		`(?m)^sluice_stage_received_total\{[^}]*stage="process"[^}]*\} \d`,
		`(?m)^sluice_stage_finished_total\{[^}]*outcome="ok"[^}]*stage="process"[^}]*\} \d`,
		`(?m)^sluice_stage_in_flight\{[^}]*stage="process"[^}]*\} \d`,
		`(?m)^sluice_stage_duration_seconds_(bucket|count)\{[^}]*stage="process"[^}]*\} \d`,
	} {
		if !regexp.MustCompile(re).Match(body) {
			t.Errorf("/metrics lacks %s:\n%s", re, grepSluice(body))
		}
	}
	if regexp.MustCompile(`(?m)^sluice_stage_finished_total\{[^}]*outcome="error"[^}]*stage="process"[^}]*\} [1-9]`).Match(body) {
		t.Errorf("jobs that succeed were counted as errors:\n%s", grepSluice(body))
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if out, err := reviewWait(t, cmd, lines); err != nil {
		t.Fatalf("exit: %v; output:\n%s", err, out)
	}
}

func grepSluice(body []byte) string {
	var b strings.Builder
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "sluice_") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// -addr: "where to serve /metrics" (the doc comment's 127.0.0.1:9090 form).
func TestReviewAddrFlag(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd, url, lines := start(t, "-addr", addr)
	if url != "http://"+addr+"/metrics" {
		t.Fatalf("metrics on %s, want http://%s/metrics", url, addr)
	}
	waitForJobs(t, url, 1)
	cmd.Process.Signal(syscall.SIGTERM)
	if out, err := reviewWait(t, cmd, lines); err != nil {
		t.Fatalf("exit: %v; output:\n%s", err, out)
	}
}

// A signal as soon as the service says it is ready (possibly before its
// pipeline has taken any job): it still drains cleanly, exit 0, with every
// job taken (maybe none) stored.
func TestReviewSignalRightAfterReady(t *testing.T) {
	for round := range 3 {
		cmd, _, lines := start(t)
		cmd.Process.Signal(syscall.SIGTERM)
		out, err := reviewWait(t, cmd, lines)
		if err != nil {
			t.Fatalf("round %d: exit: %v, want 0; output:\n%s", round, err, out)
		}
		m := regexp.MustCompile(`drained: took (\d+) jobs, stored (\d+)`).FindStringSubmatch(out)
		if m == nil || m[1] != m[2] {
			t.Fatalf("round %d: output %q, want every job taken to be stored", round, out)
		}
	}
}
