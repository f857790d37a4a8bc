package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Member 0 crashes once it has stored min(500, n/(2×members)) orders, which
// it may not reach when the others take nearly all the work (its share is
// not promised). Every run
// must end with each item stored exactly once; the run is repeated, up to
// 3 times, until one of them has crashed.
func TestMembersWithACrash(t *testing.T) {
	for try := 1; ; try++ {
		var out bytes.Buffer
		if err := run(context.Background(), config{n: 3000, members: 3, crash: true}, &out); err != nil {
			t.Fatal(err)
		}
		if want := "database: 3000 rows, 3000 distinct orders; offsets committed to the end: true; every record committed exactly once: true"; !strings.Contains(out.String(), want) {
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
