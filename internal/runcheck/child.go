package runcheck

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"
)

// childEnv names the environment variable that tells a re-executed test
// binary which test's scenario to run; childMarker starts the line on which
// the child reports the scenario's outcome.
const (
	childEnv    = "SLUICE_RUNCHECK_CHILD"
	childMarker = "RUNCHECK-CHILD-OUTCOME: "
)

// InChild runs scenario in a child process, so that a scenario that
// crashes the process or deadlocks fails the calling test only, not the
// whole suite. The test binary is run again with -test.run selecting the
// calling test and an environment variable naming it; there InChild runs
// scenario (under the Watchdog), prints its outcome and returns ok false,
// and the caller returns at once. In the parent InChild returns the
// child's outcome, after checking that the child exited 0; a crash, a hang
// or a missing outcome fails the test. The caller asserts on the outcome.
func InChild(t testing.TB, scenario func() string) (outcome string, ok bool) {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		done := make(chan string, 1)
		go func() { done <- scenario() }()
		select {
		case out := <-done:
			fmt.Printf("%s%s\n", childMarker, out)
		case <-time.After(Watchdog):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Printf("RUNCHECK-CHILD-HUNG: the scenario did not return\n%s\n", buf)
			os.Exit(3)
		}
		return "", false
	}
	out := runChild(t)
	for line := range strings.Lines(out) {
		if rest, found := strings.CutPrefix(line, childMarker); found {
			return strings.TrimRight(rest, "\n"), true
		}
	}
	t.Fatalf("the child process reported no outcome; its output:\n%s", clip(out))
	return "", false
}

// InChildTest runs body as the calling test (or subtest) in a child
// process, so that a body that crashes the process or hangs fails this
// test only, not the whole suite. In the child, the test binary re-run for
// this test alone, it calls body with the child's t; in the parent it
// fails t unless the child ran body and passed. body's failures are the
// child's, reported with its output.
func InChildTest(t *testing.T, body func(t *testing.T)) {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		fmt.Printf("%s%s\n", childMarker, "ran")
		// The same watchdog as InChild's: a hung body ends the child with
		// every goroutine's stack.
		hung := time.AfterFunc(Watchdog, func() {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Printf("RUNCHECK-CHILD-HUNG: the test body did not return\n%s\n", buf)
			os.Exit(3)
		})
		defer hung.Stop()
		body(t)
		return
	}
	out := runChild(t)
	switch {
	case !strings.Contains(out, childMarker+"ran"):
		t.Fatalf("the child process did not run the test; its output:\n%s", clip(out))
	case strings.Contains(out, "--- SKIP: "+t.Name()):
		t.Skipf("skipped in the child process; its output:\n%s", clip(out))
	}
}

// runChild runs the test binary again for t alone (a subtest too), with
// childEnv naming it, and returns its output; it fails t if the child hung
// (past 2 × Watchdog, or the scenario's own watchdog) or failed.
func runChild(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*Watchdog)
	defer cancel()
	parts := strings.Split(t.Name(), "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run="+strings.Join(parts, "/"), "-test.count=1", "-test.v")
	// atexit_sleep_ms=0: a child built with -race would otherwise sleep a
	// second at exit (a race it finds still fails it: exit code 66).
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	raw, err := cmd.CombinedOutput()
	out := string(raw)
	if ctx.Err() != nil || strings.Contains(out, "RUNCHECK-CHILD-HUNG") {
		t.Fatalf("the scenario hung in the child process; its output:\n%s", clip(out))
	}
	if err != nil {
		t.Fatalf("the child process failed (%v): the scenario crashed it or broke a check; its output:\n%s", err, clip(out))
	}
	return out
}

// clip shortens a child's output for a failure message.
func clip(out string) string {
	if len(out) > 6000 {
		return out[:6000] + "\n[... output clipped]"
	}
	return out
}
