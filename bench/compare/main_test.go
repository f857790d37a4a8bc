package main

import (
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEveryContenderAgrees runs every workload once on small sizes: every
// contender must produce the right checksum.
func TestEveryContenderAgrees(t *testing.T) {
	small := sizes{items: 2_000, latItems: 100, latWorkers: 10, latSleep: time.Millisecond}
	if err := compare(io.Discard, workloads(small), 1, ""); err != nil {
		t.Fatal(err)
	}
}
