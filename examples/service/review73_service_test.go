package main

import (
	"bufio"
	"errors"
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

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// review73Svc is a started service: its metrics URL, the lines it prints
// after "ready", and its exit.
type review73Svc struct {
	cmd   *exec.Cmd
	url   string
	lines chan string
	done  chan error
}

func review73Start(t *testing.T, bin string, args ...string) *review73Svc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &review73Svc{cmd: cmd, lines: make(chan string, 1000), done: make(chan error, 1)}
	go func() {
		err := cmd.Wait()
		pw.Close()
		s.done <- err
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-s.done
		s.done <- nil
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		first := true
		for sc.Scan() {
			if first {
				ready <- sc.Text()
				first = false
				continue
			}
			s.lines <- sc.Text()
		}
		close(s.lines)
		if first {
			close(ready)
		}
	}()
	select {
	case line, ok := <-ready:
		m := regexp.MustCompile(`^ready: metrics on (http://\S+/metrics)$`).FindStringSubmatch(line)
		if !ok || m == nil {
			t.Fatalf("first line %q, want ready: metrics on http://.../metrics", line)
		}
		s.url = m[1]
	case <-time.After(time.Minute): // watchdog only
		t.Fatal("no ready line")
	}
	return s
}

// scrape returns the metrics text.
func (s *review73Svc) scrape(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(s.url)
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %v %s", err, resp.Status)
	}
	return string(b)
}

// value is a sample's value: name{labels} value, labels matching lbl.
func review73Value(text, name, lbl string) (float64, bool) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{([^}]*)\} (\S+)$`)
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		if strings.Contains(m[1], lbl) {
			v, err := strconv.ParseFloat(m[2], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// waitFor scrapes until cond holds on the process stage, under a watchdog;
// it fails the test if the in-flight gauge ever passes 8.
func (s *review73Svc) waitFor(t *testing.T, what string, cond func(text string) bool) string {
	t.Helper()
	watchdog := time.After(time.Minute)
	for {
		text := s.scrape(t)
		if v, ok := review73Value(text, "sluice_stage_in_flight", `stage="process"`); ok && v > 8 {
			t.Errorf("in flight %v: more than the 8 workers", v)
		}
		if cond(text) {
			return text
		}
		select {
		case <-watchdog:
			t.Fatalf("watchdog: never %s; metrics:\n%s", what, text)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitFor8InFlight waits until the process stage has its 8 workers busy
// and returns the metrics that showed it.
func (s *review73Svc) waitFor8InFlight(t *testing.T) string {
	t.Helper()
	return s.waitFor(t, "8 in flight", func(text string) bool {
		v, _ := review73Value(text, "sluice_stage_in_flight", `stage="process"`)
		return v == 8
	})
}

func (s *review73Svc) exit(t *testing.T) (int, []string) {
	t.Helper()
	var err error
	select {
	case err = <-s.done:
		s.done <- err
	case <-time.After(2 * time.Minute): // watchdog only
		t.Fatal("watchdog: the service did not exit")
	}
	var lines []string
	for l := range s.lines {
		lines = append(lines, l)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, lines
	case errors.As(err, &exit):
		return exit.ExitCode(), lines
	}
	t.Fatalf("wait: %v", err)
	return -1, nil
}

var review73Drained = regexp.MustCompile(`^drained: took (\d+) jobs, stored (\d+)$`)

func review73TookStored(t *testing.T, lines []string) (int, int) {
	t.Helper()
	for _, l := range lines {
		if m := review73Drained.FindStringSubmatch(l); m != nil {
			a, _ := strconv.Atoi(m[1])
			b, _ := strconv.Atoi(m[2])
			return a, b
		}
	}
	t.Fatalf("no drained line in %q", lines)
	return 0, 0
}

// Doc: "On SIGTERM (or Ctrl-C) it drains: it takes no new job, finishes the
// jobs in flight, stores the last partial batch, reports that every job it
// took was stored, and exits 0." README: "processes them on 8 workers".
// Jobs of 10 s: when SIGTERM comes, 8 are in flight, and no other may be
// taken (a new job would start only once those end, 10 s on).
func TestReview73DrainFinishesInFlight(t *testing.T) {
	bin := cmdtest.Build(t)
	s := review73Start(t, bin, "-work", "10s", "-grace", "5m")
	s.waitFor8InFlight(t)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// "while it serves Prometheus metrics": draining, it still serves them.
	text := s.scrape(t)
	if _, ok := review73Value(text, "sluice_stage_received_total", `stage="process"`); !ok {
		t.Errorf("metrics while draining lack the process stage:\n%s", text)
	}
	code, lines := s.exit(t)
	if code != 0 {
		t.Fatalf("exit %d, want 0 after a drain; output %q", code, lines)
	}
	took, stored := review73TookStored(t, lines)
	if took != stored {
		t.Errorf("took %d, stored %d", took, stored)
	}
	if took < 8 || took > 9 {
		t.Errorf("took %d jobs: 8 were in flight at SIGTERM, and it takes no new job", took)
	}
}

// Doc: "On SIGTERM (or Ctrl-C) it drains ... and exits 0."
func TestReview73InterruptDrains(t *testing.T) {
	bin := cmdtest.Build(t)
	s := review73Start(t, bin)
	s.waitFor(t, "a job stored", func(text string) bool {
		v, _ := review73Value(text, "sluice_stage_finished_total", `outcome="ok"`)
		return v > 0
	})
	if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	code, lines := s.exit(t)
	if code != 0 {
		t.Fatalf("exit %d after Ctrl-C, want 0; output %q", code, lines)
	}
	if took, stored := review73TookStored(t, lines); took != stored || took == 0 {
		t.Errorf("took %d, stored %d", took, stored)
	}
}

// Doc: "On SIGTERM ... it drains ... exits 0": even before any job
// finished.
func TestReview73SigtermAtOnce(t *testing.T) {
	bin := cmdtest.Build(t)
	s := review73Start(t, bin, "-work", "50ms")
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, lines := s.exit(t)
	if code != 0 {
		t.Fatalf("exit %d, want 0; output %q", code, lines)
	}
	if took, stored := review73TookStored(t, lines); took != stored {
		t.Errorf("took %d, stored %d", took, stored)
	}
}

// Doc: "If draining takes longer than -grace, or a second signal arrives,
// it aborts instead: it cancels the run and exits 1."
func TestReview73SecondSignalAborts(t *testing.T) {
	bin := cmdtest.Build(t)
	s := review73Start(t, bin, "-work", "1h", "-grace", "1h")
	s.waitFor8InFlight(t)
	// Signals sent together may merge into one (POSIX does not queue
	// them): send one until the service exits. With -grace 1h, only a
	// second signal that arrived can end it.
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	watchdog := time.After(2 * time.Minute)
signals:
	for {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-s.done:
			s.done <- err
			break signals
		case <-ticker.C:
		case <-watchdog:
			t.Fatal("watchdog: signals did not end the service")
		}
	}
	code, lines := s.exit(t)
	if code != 1 {
		t.Fatalf("exit %d after a second signal, want 1; output %q", code, lines)
	}
	for _, l := range lines {
		if review73Drained.MatchString(l) {
			t.Errorf("an aborted run reported a drain: %q", l)
		}
	}
}

// Doc: "If draining takes longer than -grace ... it aborts instead: it
// cancels the run and exits 1."
func TestReview73GraceAborts(t *testing.T) {
	bin := cmdtest.Build(t)
	s := review73Start(t, bin, "-work", "1h", "-grace", "300ms")
	s.waitFor8InFlight(t)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, lines := s.exit(t); code != 1 {
		t.Fatalf("exit %d after the grace period, want 1; output %q", code, lines)
	}
}

// README: "metrics/prom (Prometheus client_golang:
// sluice_stage_received_total, _finished_total{outcome}, _in_flight,
// _duration_seconds) ... Labels are per stage, never per item"; "processes
// them on 8 workers".
func TestReview73MetricsServed(t *testing.T) {
	bin := cmdtest.Build(t)
	s := review73Start(t, bin, "-work", "1h", "-grace", "1h")
	text := s.waitFor8InFlight(t)
	for _, name := range []string{"sluice_stage_received_total", "sluice_stage_in_flight", "sluice_stage_duration_seconds_count"} {
		if _, ok := review73Value(text, name, `stage="process"`); !ok {
			t.Errorf("no %s{stage=\"process\"}:\n%s", name, text)
		}
	}
	if !regexp.MustCompile(`(?m)^sluice_stage_finished_total\{[^}]*outcome="(ok|error)"[^}]*\} `).MatchString(text) {
		t.Errorf("no sluice_stage_finished_total{outcome}:\n%s", text)
	}
	// With jobs that never end, the 8 workers take 8 and no more.
	for range 20 {
		text = s.scrape(t)
		if v, _ := review73Value(text, "sluice_stage_received_total", `stage="process"`); v != 8 {
			t.Fatalf("received %v jobs with 8 workers busy for an hour", v)
		}
	}
	for _, l := range regexp.MustCompile(`(?m)^sluice_\S*\{[^}]*\}`).FindAllString(text, -1) {
		if regexp.MustCompile(`"[^"]*job[^"]*"|id=`).MatchString(l) {
			t.Errorf("a per-item label: %s", l)
		}
	}
}

// README: the two blocks shown for the service are its code: "The service
// drains on the first SIGTERM ... :" and "The pipeline (stop drains it, ctx
// aborts it ...):". Compared line by line, indentation aside.
func TestReview73ReadmeBlocksAreTheCode(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	norm := func(s string) string {
		var out []string
		for l := range strings.SplitSeq(s, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	code := norm(string(src))
	for _, start := range []string{"// The first signal drains", "// The pipeline: drained by stop"} {
		m := regexp.MustCompile("(?s)```go\n(" + regexp.QuoteMeta(start) + ".*?)```").FindSubmatch(readme)
		if m == nil {
			t.Errorf("README has no block starting %q", start)
			continue
		}
		if b := norm(string(m[1])); !strings.Contains(code, b) {
			t.Errorf("README block %q is not in main.go:\n%s", start, b)
		}
	}
}
