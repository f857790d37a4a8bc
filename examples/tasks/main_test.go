package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// lockedBuffer is written by several tasks at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestAtMostThreeRunAtOnce(t *testing.T) {
	var out lockedBuffer
	if err := run(context.Background(), &out, 10, 3, 0.002, 1); err != nil {
		t.Fatal(err)
	}
	started, finished, most := map[int]bool{}, map[int]bool{}, 0
	for _, line := range strings.Split(strings.TrimSpace(out.b.String()), "\n") {
		var id, running int
		var waited float64
		switch {
		case strings.Contains(line, "starting"):
			if _, err := fmt.Sscanf(line, "%d starting (%d running)", &id, &running); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			started[id] = true
			most = max(most, running)
		default:
			if _, err := fmt.Sscanf(line, "%d waited %fs", &id, &waited); err != nil {
				t.Fatalf("line %q: %v", line, err)
			}
			if !started[id] {
				t.Fatalf("task %d finished before it started", id)
			}
			finished[id] = true
		}
	}
	if len(started) != 10 || len(finished) != 10 {
		t.Fatalf("%d started, %d finished; want 10 and 10\n%s", len(started), len(finished), out.b.String())
	}
	if most > 3 {
		t.Fatalf("%d tasks ran at once, want at most 3\n%s", most, out.b.String())
	}
}
