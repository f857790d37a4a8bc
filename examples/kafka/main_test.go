package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMembersWithACrash(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), config{n: 3000, members: 3, crash: true}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"crashed mid-run", "database: 3000 rows, 3000 distinct orders; offsets committed to the end: true; every record committed exactly once: true"} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
	t.Log("\n" + out.String())
}
