package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

var (
	r7Ready   = regexp.MustCompile(`metrics on (http://\S+/metrics)`)
	r7Drained = regexp.MustCompile(`^drained: took (\d+) jobs, stored (\d+)$`)
)

// r7Proc is a started service binary.
type r7Proc struct {
	cmd     *exec.Cmd
	metrics string
	mu      sync.Mutex
	out     bytes.Buffer
	done    chan struct{}
	wait    func() (code int, out string, hung bool)
}

func r7Start(t *testing.T, bin string, args ...string) *r7Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &r7Proc{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := r7Ready.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case ready <- m[1]:
				default:
				}
			}
		}
	}()
	waited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		pw.Close()
		close(waited)
	}()
	t.Cleanup(func() {
		select {
		case <-waited:
		default:
			_ = cmd.Process.Kill()
			<-waited
		}
		<-p.done
	})
	p.wait = func() (int, string, bool) {
		select {
		case <-waited:
		case <-time.After(time.Minute): // hang watchdog only
			_ = cmd.Process.Kill()
			<-waited
			<-p.done
			return -1, p.output(), true
		}
		<-p.done
		code := 0
		var ee *exec.ExitError
		if errors.As(waitErr, &ee) {
			code = ee.ExitCode()
		} else if waitErr != nil {
			t.Fatal(waitErr)
		}
		return code, p.output(), false
	}
	select {
	case p.metrics = <-ready:
	case <-p.done:
		t.Fatalf("exited before it was ready:\n%s", p.output())
	case <-time.After(time.Minute):
		t.Fatalf("not ready (watchdog):\n%s", p.output())
	}
	return p
}

func (p *r7Proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func (p *r7Proc) signal(t *testing.T, s syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatal(err)
	}
}

// r7Metric reads one sample of the process stage from /metrics.
func r7Metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `\{[^}]*stage="process"[^}]*\} (\S+)$`)
	m := re.FindSubmatch(body)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// r7Until polls /metrics until name reaches at least want (a minute's watchdog).
func r7Until(t *testing.T, url, name string, want float64) float64 {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		if v := r7Metric(t, url, name); v >= want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached %v (watchdog)", name, want)
		}
	}
}

func r7DrainedLine(t *testing.T, out string) (took, stored int, ok bool) {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if m := r7Drained.FindStringSubmatch(l); m != nil {
			took, _ = strconv.Atoi(m[1])
			stored, _ = strconv.Atoi(m[2])
			return took, stored, true
		}
	}
	return 0, 0, false
}

// Promise: on SIGTERM (or Ctrl-C) it drains: every job it took is stored,
// it reports so, and exits 0 — including jobs taken before the signal that
// the metrics already counted.
func TestReview7DrainKeepsEveryJob(t *testing.T) {
	bin := cmdtest.Build(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		p := r7Start(t, bin, "-work", "5ms")
		seen := r7Until(t, p.metrics, "sluice_stage_received_total", 50)
		p.signal(t, sig)
		code, out, hung := p.wait()
		if hung || code != 0 {
			t.Fatalf("%v: exit %d (hung %v), want 0\n%s", sig, code, hung, out)
		}
		took, stored, ok := r7DrainedLine(t, out)
		if !ok || took != stored || float64(took) < seen {
			t.Errorf("%v: took %d, stored %d (line found %v), metrics had seen %v received\n%s", sig, took, stored, ok, seen, out)
		}
	}
}

// Promise: the service drains on SIGTERM once it said it is ready: a
// SIGTERM sent as soon as the "ready" line is out is a drain (exit 0,
// every job taken stored), never a death by the signal.
func TestReview7DrainRightAfterReady(t *testing.T) {
	bin := cmdtest.Build(t)
	for i := range 8 {
		p := r7Start(t, bin)
		p.signal(t, syscall.SIGTERM)
		code, out, hung := p.wait()
		if hung || code != 0 {
			t.Fatalf("try %d: exit %d (hung %v), want 0 (a drain)\n%s", i, code, hung, out)
		}
		if took, stored, ok := r7DrainedLine(t, out); !ok || took != stored {
			t.Fatalf("try %d: took %d, stored %d (line found %v)\n%s", i, took, stored, ok, out)
		}
	}
}

// Promise: a second signal aborts a drain that cannot finish: exit 1, no
// "drained" report. Two SIGTERMs sent back to back may reach the process as
// one (POSIX does not queue standard signals), so signals are sent until it
// exits; with -grace 1h only a second signal can end it.
func TestReview7SecondSignalAborts(t *testing.T) {
	bin := cmdtest.Build(t)
	p := r7Start(t, bin, "-work", "1h", "-grace", "1h")
	r7Until(t, p.metrics, "sluice_stage_in_flight", 8) // 8 workers busy
	go func() {
		for {
			select {
			case <-p.done:
				return
			default:
				_ = p.cmd.Process.Signal(syscall.SIGTERM)
				runtime.Gosched()
			}
		}
	}()
	code, out, hung := p.wait()
	if hung || code != 1 {
		t.Fatalf("exit %d (hung %v), want 1\n%s", code, hung, out)
	}
	if _, _, ok := r7DrainedLine(t, out); ok {
		t.Errorf("an abort reported a drain:\n%s", out)
	}
}

// Promise: if draining takes longer than -grace, it aborts: exit 1.
func TestReview7GraceAborts(t *testing.T) {
	bin := cmdtest.Build(t)
	p := r7Start(t, bin, "-work", "1h", "-grace", "100ms")
	r7Until(t, p.metrics, "sluice_stage_in_flight", 8)
	p.signal(t, syscall.SIGTERM)
	code, out, hung := p.wait()
	if hung || code != 1 {
		t.Fatalf("exit %d (hung %v), want 1\n%s", code, hung, out)
	}
	if _, _, ok := r7DrainedLine(t, out); ok {
		t.Errorf("an abort reported a drain:\n%s", out)
	}
}

// r7Lines is an io.Writer that hands the ready URL over.
type r7Lines struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan string
}

func (w *r7Lines) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if m := r7Ready.FindStringSubmatch(w.buf.String()); m != nil {
		select {
		case w.ready <- m[1]:
		default:
		}
	}
	return len(b), nil
}

// Promise (run's doc): run returns nil once everything taken is stored when
// stop is done, and returns the cancellation when ctx is (here while 8 jobs
// that never end are in flight, and stop was done first: abort wins over a
// drain that cannot finish). No goroutine outlives run (goleak: the producer
// "never stops", but it is the run's).
func TestReview7RunInProcess(t *testing.T) {
	w := &r7Lines{ready: make(chan string, 1)}
	ctx, abort := context.WithCancel(context.Background())
	defer abort()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	done := make(chan error, 1)
	go func() { done <- run(ctx, stop, "127.0.0.1:0", time.Hour, w) }()
	var url string
	select {
	case url = <-w.ready:
	case err := <-done:
		t.Fatalf("run returned %v before it was ready", err)
	case <-time.After(time.Minute):
		t.Fatal("not ready (watchdog)")
	}
	r7Until(t, url, "sluice_stage_in_flight", 8)
	drain()
	abort()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run after abort = %v, want context.Canceled", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("run did not return after abort (watchdog)")
	}
}
