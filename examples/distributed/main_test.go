package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestReplicasWithACrash(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), config{n: 600, replicas: 2, crash: true}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"crashed mid-run", "database: 600 rows, 600 distinct jobs: every job exactly once: true"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}
