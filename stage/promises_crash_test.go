package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// childEnv names the environment variable that tells a re-executed test
// binary which scenario to run.
const childEnv = "SLUICE_PROMISE_CHILD"

// childMarker starts the line on which a child reports its scenario's outcome.
const childMarker = "CHILD-OUTCOME: "

// inChild runs scenario in a child process, so that a scenario that crashes
// the process or deadlocks fails this test only, not the whole suite. The
// test binary is run again with -test.run selecting the calling test and
// childEnv set; there inChild runs scenario (under a hang watchdog) and prints
// its outcome. In the parent, inChild returns that outcome after checking that
// the child exited 0; a crash, a hang or a missing outcome fails the test.
// In the child inChild returns ok false, and the caller returns at once; in
// the parent the caller asserts on the outcome.
func inChild(t *testing.T, scenario func() string) (outcome string, ok bool) {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		done := make(chan string, 1)
		go func() { done <- scenario() }()
		select {
		case out := <-done:
			fmt.Printf("%s%s\n", childMarker, out)
		case <-time.After(20 * time.Second):
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			fmt.Printf("CHILD-HUNG: the scenario did not return\n%s\n", buf)
			os.Exit(3)
		}
		return "", false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	raw, err := cmd.CombinedOutput()
	out := string(raw)
	shown := out
	if len(shown) > 6000 {
		shown = shown[:6000] + "\n[... output clipped]"
	}
	if ctx.Err() != nil {
		t.Fatalf("the child process hung and was killed; its output:\n%s", shown)
	}
	if strings.Contains(out, "CHILD-HUNG") {
		t.Fatalf("the scenario hung in the child process; its output:\n%s", shown)
	}
	if err != nil {
		t.Fatalf("the child process failed (%v): the scenario crashed it or broke a check; its output:\n%s", err, shown)
	}
	for line := range strings.Lines(out) {
		if rest, ok := strings.CutPrefix(line, childMarker); ok {
			return strings.TrimRight(rest, "\n"), true
		}
	}
	t.Fatalf("the child process reported no outcome; its output:\n%s", shown)
	return "", false
}

// TestKeyByKeyPanicBecomesAnError pins: a panic in a KeyBy key function is a
// panic in user code like any other: it does not crash the process or hang the
// sink; the run fails and the sink returns an error in which errors.As finds a
// *stage.PanicError.
func TestKeyByKeyPanicBecomesAnError(t *testing.T) {
	out, parent := inChild(t, func() string {
		key := func(x int) int {
			if x == 7 {
				panic("bad key")
			}
			return x % 3
		}
		s := stage.Map(source.Slice(ints(50)), double, stage.Workers(4), stage.KeyBy(key))
		_, err := sink.Count(context.Background(), s)
		var pe *stage.PanicError
		return fmt.Sprintf("failed=%v panicError=%v (err: %v)", err != nil, errors.As(err, &pe), err)
	})
	if !parent {
		return
	}
	if !strings.HasPrefix(out, "failed=true panicError=true") {
		t.Fatalf("child outcome %q, want the run failed with a *stage.PanicError", out)
	}
}

// TestBatchOfMaxIntSize pins: Batch accepts any size >= 1, math.MaxInt
// included: over 3 items with a timeout, it delivers the one partial batch
// [0 1 2] when the input ends, and the run succeeds (no crash).
func TestBatchOfMaxIntSize(t *testing.T) {
	out, parent := inChild(t, func() string {
		got, err := sink.Slice(context.Background(), stage.Batch(source.Slice(ints(3)), math.MaxInt, time.Hour))
		return fmt.Sprintf("%v %v", got, err)
	})
	if !parent {
		return
	}
	if out != "[[0 1 2]] <nil>" {
		t.Fatalf("child outcome %q, want \"[[0 1 2]] <nil>\"", out)
	}
}

// TestBatchLargeSizeAllocatesForWhatItHolds pins: a Batch's memory follows the
// items it holds, not its size bound. With size 1<<24 over 3 items it asserts
// (1) the delivered batch's capacity is small (at most 1024, against 1<<24),
// and (2) the whole run allocates less than 16 MiB in total (runtime.MemStats
// TotalAlloc; one batch of 1<<24 ints would be 128 MiB).
func TestBatchLargeSizeAllocatesForWhatItHolds(t *testing.T) {
	const size = 1 << 24
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, err := sink.Slice(context.Background(), stage.Batch(source.Slice(ints(3)), size, time.Hour))
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != 1 || len(got[0]) != 3 {
		t.Fatalf("got %v, %v; want one batch [0 1 2]", got, err)
	}
	if c := cap(got[0]); c > 1024 {
		t.Errorf("the 3-item batch has capacity %d: memory follows the size bound, not the items", c)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("a run of 3 items in a Batch of size %d allocated %d MiB", size, grew>>20)
	}
}
