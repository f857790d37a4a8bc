package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

var (
	r7Starting = regexp.MustCompile(`^(\d+) starting \((\d+) running\)$`)
	r7Waited   = regexp.MustCompile(`^(\d+) waited (\d+\.\d\d)s$`)
)

// r7Line is one parsed line of the documented output.
type r7Line struct {
	start   bool
	id      int
	running int // "starting" lines only
	waited  float64
}

func r7Parse(t *testing.T, out string) []r7Line {
	t.Helper()
	var lines []r7Line
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if m := r7Starting.FindStringSubmatch(l); m != nil {
			id, _ := strconv.Atoi(m[1])
			k, _ := strconv.Atoi(m[2])
			lines = append(lines, r7Line{start: true, id: id, running: k})
			continue
		}
		if m := r7Waited.FindStringSubmatch(l); m != nil {
			id, _ := strconv.Atoi(m[1])
			w, _ := strconv.ParseFloat(m[2], 64)
			lines = append(lines, r7Line{id: id, waited: w})
			continue
		}
		t.Fatalf("line %q is neither %q nor %q\n%s", l, r7Starting, r7Waited, out)
	}
	return lines
}

// r7Check checks the promises that hold for any limit: every task starts once
// and is reported once, after it started; "running" never exceeds the limit.
// (A "starting" line's count and its place among the lines are not one atomic
// step, so the count is not compared with the lines before it.)
func r7Check(t *testing.T, out string, n, limit int) []r7Line {
	t.Helper()
	lines := r7Parse(t, out)
	started, reported := map[int]bool{}, map[int]bool{}
	for _, l := range lines {
		if l.id < 0 || l.id >= n {
			t.Fatalf("task id %d outside 0..%d\n%s", l.id, n-1, out)
		}
		if l.start {
			if started[l.id] {
				t.Errorf("task %d started twice\n%s", l.id, out)
			}
			started[l.id] = true
			if l.running < 1 || l.running > limit {
				t.Errorf("task %d starting with %d running, limit %d\n%s", l.id, l.running, limit, out)
			}
			continue
		}
		if !started[l.id] {
			t.Errorf("task %d reported before it started\n%s", l.id, out)
		}
		if reported[l.id] {
			t.Errorf("task %d reported twice\n%s", l.id, out)
		}
		reported[l.id] = true
	}
	if len(started) != n || len(reported) != n {
		t.Errorf("started %d, reported %d, want %d of each\n%s", len(started), len(reported), n, out)
	}
	return lines
}

type r7Buffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	first chan struct{}
	once  sync.Once
}

func (w *r7Buffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.first != nil {
		w.once.Do(func() { close(w.first) })
	}
	return w.b.Write(p)
}

func (w *r7Buffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// Promise: at most -limit tasks run at once, and each "starting" line says how
// many are running (the binary, as a user runs it, default limit 3).
func TestReview7BinaryDefaultLimit(t *testing.T) {
	bin := cmdtest.Build(t)
	out, err, hung := cmdtest.Run(t, bin, time.Minute, "-scale", "0.01")
	if hung || err != nil {
		t.Fatalf("hung=%v err=%v\n%s", hung, err, out)
	}
	r7Check(t, out, 10, 3)
}

// Promise: -limit 1 runs one task at a time, so (Workers(1) keeps input order)
// tasks start and are reported in input order, each alone.
func TestReview7LimitOneIsSequential(t *testing.T) {
	var buf r7Buffer
	if err := run(context.Background(), &buf, 8, 1, 0.001, 3); err != nil {
		t.Fatal(err)
	}
	lines := r7Check(t, buf.String(), 8, 1)
	var starts, reports []int
	for _, l := range lines {
		if l.start {
			starts = append(starts, l.id)
		} else {
			reports = append(reports, l.id)
		}
	}
	for i := range starts {
		if starts[i] != i || reports[i] != i {
			t.Fatalf("with limit 1, want input order: starts %v, reports %v", starts, reports)
		}
	}
}

// Promise: limit 0 means DefaultWorkers (min(NumCPU+4, 32)), -1 means no limit.
func TestReview7ZeroAndUnlimited(t *testing.T) {
	var buf r7Buffer
	if err := run(context.Background(), &buf, 40, 0, 0.001, 5); err != nil {
		t.Fatal(err)
	}
	r7Check(t, buf.String(), 40, min(runtime.NumCPU()+4, 32))
	var buf2 r7Buffer
	if err := run(context.Background(), &buf2, 12, -1, 0.001, 5); err != nil {
		t.Fatal(err)
	}
	r7Check(t, buf2.String(), 12, 12)
}

// Promise: -seed fixes the random draws: the same seed waits the same times.
func TestReview7SeedRepeats(t *testing.T) {
	waits := func() map[int]float64 {
		var buf r7Buffer
		if err := run(context.Background(), &buf, 10, 3, 0.01, 42); err != nil {
			t.Fatal(err)
		}
		m := map[int]float64{}
		for _, l := range r7Check(t, buf.String(), 10, 3) {
			if !l.start {
				m[l.id] = l.waited
			}
		}
		return m
	}
	a, b := waits(), waits()
	for id, w := range a {
		if b[id] != w {
			t.Errorf("seed 42: task %d waited %.2fs, then %.2fs", id, w, b[id])
		}
	}
}

// Promise (README, from the Python original): "close remaining awaitables
// yourself" becomes "nothing to do: the sink cancels and waits". Cancelling
// the run while tasks sleep (for up to 5000 s here) returns the cancellation,
// and no goroutine is left behind (goleak in TestMain).
func TestReview7CancelStopsSleepingTasks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	buf := &r7Buffer{first: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- run(ctx, buf, 10, 3, 1000, 9) }()
	select {
	case <-buf.first: // a task has started
	case err := <-done:
		t.Fatalf("run returned %v before any task started", err)
	case <-time.After(time.Minute):
		t.Fatal("no task started (watchdog)")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after its context was cancelled (watchdog)")
	}
}
