package runcheck

import (
	"context"
	"fmt"
	"os"
	"os/exec"
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
	ctx, cancel := context.WithTimeout(context.Background(), 2*Watchdog)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	raw, err := cmd.CombinedOutput()
	out := string(raw)
	shown := out
	if len(shown) > 6000 {
		shown = shown[:6000] + "\n[... output clipped]"
	}
	if ctx.Err() != nil || strings.Contains(out, "RUNCHECK-CHILD-HUNG") {
		t.Fatalf("the scenario hung in the child process; its output:\n%s", shown)
	}
	if err != nil {
		t.Fatalf("the child process failed (%v): the scenario crashed it or broke a check; its output:\n%s", err, shown)
	}
	for line := range strings.Lines(out) {
		if rest, found := strings.CutPrefix(line, childMarker); found {
			return strings.TrimRight(rest, "\n"), true
		}
	}
	t.Fatalf("the child process reported no outcome; its output:\n%s", shown)
	return "", false
}
