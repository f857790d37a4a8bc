package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Replica 0 crashes once it has stored min(200, n/(2×replicas)) jobs (150
// here), which it may not reach when the others take nearly all the work
// (its share is not promised). Every run
// must end with each item stored exactly once; the run is repeated, up to
// 3 times, until one of them has crashed.
func TestReplicasWithACrash(t *testing.T) {
	for try := 1; ; try++ {
		var out bytes.Buffer
		if err := run(context.Background(), config{n: 600, replicas: 2, crash: true}, &out); err != nil {
			t.Fatal(err)
		}
		if want := "database: 600 rows, 600 distinct jobs: every job exactly once: true"; !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
		if strings.Contains(out.String(), "crashed mid-run") {
			return
		}
		if try == 3 {
			t.Fatalf("no crash in 3 runs:\n%s", out.String())
		}
		t.Logf("run %d: no crash (its share was small), again:\n%s", try, out.String())
	}
}
