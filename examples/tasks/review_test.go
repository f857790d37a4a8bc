package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// Review tests: the Python original's semantics as the README states them
// (limit=-1 unlimited, the default limit cores+4 max 32, results as they
// complete) and main.go's promises, which main_test.go does not check.

// startWatcher is a writer that counts "starting" lines and closes reached
// once it has seen want of them.
type startWatcher struct {
	mu      sync.Mutex
	b       strings.Builder
	started int
	want    int
	reached chan struct{}
}

func newStartWatcher(want int) *startWatcher {
	return &startWatcher{want: want, reached: make(chan struct{})}
}

func (w *startWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if strings.Contains(string(p), "starting") {
		w.started++
		if w.started == w.want {
			close(w.reached)
		}
	}
	return len(p), nil
}

func (w *startWatcher) snapshot() (string, int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String(), w.started
}

// runUntilStarted runs n tasks that sleep for days under limit, waits until
// want of them have started (none can have finished), cancels, and returns
// the output and run's error.
func runUntilStarted(t *testing.T, n, limit, want int) (string, int, error) {
	t.Helper()
	w := newStartWatcher(want)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, w, n, limit, 1e6, 3) }() // sleeps of up to ~58 days
	select {
	case <-w.reached:
	case err := <-errc:
		out, _ := w.snapshot()
		t.Fatalf("run returned %v before %d tasks started:\n%s", err, want, out)
	case <-time.After(2 * time.Minute): // hang watchdog only
		out, _ := w.snapshot()
		t.Fatalf("%d tasks never started at once (limit %d):\n%s", want, limit, out)
	}
	cancel()
	var err error
	select {
	case err = <-errc:
	case <-time.After(2 * time.Minute): // hang watchdog only
		t.Fatal("run did not return after its context was cancelled")
	}
	out, started := w.snapshot()
	return out, started, err
}

// Python's limit=-1 is stage.Workers(-1): no limit, all ten start at once.
func TestReviewUnlimitedStartsAllAtOnce(t *testing.T) {
	out, _, err := runUntilStarted(t, 10, -1, 10)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want the cancellation", err)
	}
	if !strings.Contains(out, "(10 running)") {
		t.Fatalf("no line shows 10 running:\n%s", out)
	}
}

// The default limit (limit 0: stage.DefaultWorkers(), cores+4 at most 32):
// exactly that many start while none finishes, and cancelling starts no
// other.
func TestReviewDefaultLimitIsCoresPlusFour(t *testing.T) {
	d := stage.DefaultWorkers()
	out, started, err := runUntilStarted(t, d+5, 0, d)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want the cancellation", err)
	}
	if started != d {
		t.Fatalf("%d tasks started, want the default limit %d:\n%s", started, d, out)
	}
	if strings.Contains(out, fmt.Sprintf("(%d running)", d+1)) {
		t.Fatalf("more than %d ran at once:\n%s", d, out)
	}
}

// limit 3 with tasks that never finish: exactly three start, and cancelling
// ends the run with the cancellation and starts no fourth.
func TestReviewLimitThreeStartsThreeAndCancelStartsNoOther(t *testing.T) {
	out, started, err := runUntilStarted(t, 10, 3, 3)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("run: %v, want the cancellation", err)
	}
	if started != 3 {
		t.Fatalf("%d tasks started, want 3:\n%s", started, out)
	}
	if strings.Contains(out, "waited") {
		t.Fatalf("a cancelled task was reported as finished:\n%s", out)
	}
}

// -limit 1: one at a time, so every line says "(1 running)" and the tasks
// start in input order.
func TestReviewLimitOneRunsInOrder(t *testing.T) {
	var out lockedBuffer
	if err := run(context.Background(), &out, 10, 1, 0.001, 5); err != nil {
		t.Fatal(err)
	}
	next := 0
	for _, line := range strings.Split(strings.TrimSpace(out.b.String()), "\n") {
		if !strings.Contains(line, "starting") {
			continue
		}
		if want := fmt.Sprintf("%d starting (1 running)", next); line != want {
			t.Fatalf("line %q, want %q:\n%s", line, want, out.b.String())
		}
		next++
	}
	if next != 10 {
		t.Fatalf("%d started, want 10", next)
	}
}

// The binary: the same -seed gives the same tasks (the same sleeps), ten
// "starting" and ten "waited" lines, at most -limit running, exit 0.
func TestReviewBinarySeedIsReproducible(t *testing.T) {
	bin := cmdtest.Build(t)
	waits := func() []string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang watchdog only
		defer cancel()
		out, err := exec.CommandContext(ctx, bin, "-scale", "0.01", "-seed", "42", "-limit", "2").Output()
		if err != nil {
			t.Fatalf("exit %v:\n%s", err, out)
		}
		var ws []string
		starts := 0
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			switch {
			case strings.Contains(l, "starting"):
				starts++
				if !strings.HasSuffix(l, "(1 running)") && !strings.HasSuffix(l, "(2 running)") {
					t.Fatalf("line %q: more than -limit 2 running:\n%s", l, out)
				}
			case strings.Contains(l, "waited"):
				ws = append(ws, l)
			}
		}
		if starts != 10 || len(ws) != 10 {
			t.Fatalf("%d starts, %d finishes, want 10 and 10:\n%s", starts, len(ws), out)
		}
		return ws
	}
	a, b := waits(), waits()
	// Each task's sleep depends on the seed only; the order of the lines
	// may differ, so compare them as sets.
	set := func(ls []string) map[string]bool {
		m := map[string]bool{}
		for _, l := range ls {
			m[l] = true
		}
		return m
	}
	sa, sb := set(a), set(b)
	for l := range sa {
		if !sb[l] {
			t.Fatalf("-seed 42 twice: %q in one run only\n%v\n%v", l, a, b)
		}
	}
}
