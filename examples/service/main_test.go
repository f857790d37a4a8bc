package main

import (
	"bufio"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// start builds and starts the service with args, and returns it, its
// metrics URL, and the rest of its output.
func start(t *testing.T, args ...string) (*exec.Cmd, string, *bufio.Scanner) {
	t.Helper()
	bin := cmdtest.Build(t)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		t.Fatal("the service printed nothing")
	}
	url, ok := strings.CutPrefix(lines.Text(), "ready: metrics on ")
	if !ok {
		t.Fatalf("first line %q, want ready", lines.Text())
	}
	return cmd, url, lines
}

// waitForJobs polls the metrics until the process stage has received n
// jobs. It waits for progress; it measures no duration.
func waitForJobs(t *testing.T, url string, n float64) {
	t.Helper()
	re := regexp.MustCompile(`sluice_stage_received_total\{kind="map",stage="process"\} (\S+)`)
	for range 2000 {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if m := re.FindSubmatch(body); m != nil {
				if v, _ := strconv.ParseFloat(string(m[1]), 64); v >= n {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the process stage never reached %v jobs", n)
}

func rest(lines *bufio.Scanner) string {
	var b strings.Builder
	for lines.Scan() {
		b.WriteString(lines.Text() + "\n")
	}
	return b.String()
}

func TestSIGTERMDrains(t *testing.T) {
	cmd, url, lines := start(t)
	waitForJobs(t, url, 50)
	cmd.Process.Signal(syscall.SIGTERM)
	out := rest(lines)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v, want 0; output:\n%s", err, out)
	}
	m := regexp.MustCompile(`drained: took (\d+) jobs, stored (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] != m[2] {
		t.Fatalf("output %q, want every job taken to be stored", out)
	}
}

func TestGraceExpiredAborts(t *testing.T) {
	// Each job takes an hour: the drain cannot finish, the grace period ends
	// it, and the run is cancelled.
	cmd, url, lines := start(t, "-work", "1h", "-grace", "100ms")
	waitForJobs(t, url, 8)
	cmd.Process.Signal(syscall.SIGTERM)
	out := rest(lines)
	err := cmd.Wait()
	if exit, ok := err.(*exec.ExitError); !ok || exit.ExitCode() != 1 || !strings.Contains(out, "aborted: context canceled") {
		t.Fatalf("exit %v, output %q; want exit 1 and the cancellation", err, out)
	}
}

// The README's "Running it in a service" shows this example's code, word for
// word (one tab less).
func TestReadmeShowsTheService(t *testing.T) {
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(string(src), "// readme:begin\n")[1:]
	if len(parts) != 2 {
		t.Fatalf("%d readme blocks in main.go, want 2", len(parts))
	}
	for _, p := range parts {
		block, _, _ := strings.Cut(p, "\t// readme:end")
		lines := strings.Split(block, "\n")
		for i, l := range lines {
			lines[i] = strings.TrimPrefix(l, "\t")
		}
		if want := "```go\n" + strings.Join(lines, "\n") + "```\n"; !strings.Contains(string(readme), want) {
			t.Fatalf("README.md does not show:\n%s", want)
		}
	}
}
