package guard

import (
	"errors"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// Call's doc: a panic(nil) is a panic even under GODEBUG=panicnil=1, where
// recover returns nil for it; before, Call took it for a return and the
// caller used f's zero results as a success. The child runs with the
// legacy setting (it is read at start, so only a new process can have it).
func TestCallPanicNilLegacy(t *testing.T) {
	if os.Getenv("SLUICE_GUARD_PANICNIL_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCallPanicNilLegacy$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), "SLUICE_GUARD_PANICNIL_CHILD=1", "GODEBUG=panicnil=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "--- PASS: TestCallPanicNilLegacy") {
			t.Fatalf("child: %v\n%s", err, out)
		}
		return
	}
	var legacy bool
	func() {
		defer func() { legacy = recover() == nil }()
		panic(nil)
	}()
	if !legacy {
		t.Fatal("GODEBUG=panicnil=1 is not in effect in the child")
	}
	rec := Call(func() { panic(nil) })
	var pn *runtime.PanicNilError
	if rec == nil || !errors.As(rec.AsError(), &pn) {
		t.Fatalf("Call(panic(nil)) under panicnil=1 = %+v, want a *runtime.PanicNilError", rec)
	}
}

// Without the legacy setting, panic(nil) panics with a *runtime.PanicNilError.
func TestCallPanicNil(t *testing.T) {
	rec := Call(func() { panic(nil) })
	var pn *runtime.PanicNilError
	if rec == nil || !errors.As(rec.AsError(), &pn) {
		t.Fatalf("Call(panic(nil)) = %+v, want a *runtime.PanicNilError", rec)
	}
}
