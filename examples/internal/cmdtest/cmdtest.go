// Package cmdtest builds and runs an example's command from its tests, so
// that a scenario that could hang or crash runs in a process of its own.
package cmdtest

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Build builds the command in the test's package directory (the working
// directory of `go test`) into a temporary directory, and returns the
// binary's path. A failed build fails the test.
func Build(t testing.TB) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), filepath.Base(wd))
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Run runs bin with args until it exits, and returns its output (stdout
// and stderr together) and its error. watchdog is a hang watchdog only: a
// command still running after it is killed, and hung reports it.
func Run(t testing.TB, bin string, watchdog time.Duration, args ...string) (out string, err error, hung bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), watchdog)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err = cmd.Run()
	return b.String(), err, ctx.Err() != nil
}

// Refused runs bin with args and fails the test unless the command refuses
// them at once: it exits with status 2 and its output contains want. A
// command still running after the watchdog (a minute, a hang watchdog
// only) fails the test too.
func Refused(t testing.TB, bin, want string, args ...string) {
	t.Helper()
	out, err, hung := Run(t, bin, time.Minute, args...)
	var exit *exec.ExitError
	if hung || !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out, want) {
		t.Errorf("%v: err %v, hung %v; want exit 2 with %q; output:\n%s", args, err, hung, want, out)
	}
}
