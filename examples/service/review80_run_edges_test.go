package main

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// r80Buf is a goroutine-safe writer.
type r80Buf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *r80Buf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *r80Buf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func r80Run(t *testing.T, ctx, stop context.Context, work time.Duration) (string, error) {
	t.Helper()
	var w r80Buf
	done := make(chan error, 1)
	go func() { done <- run(ctx, stop, "127.0.0.1:0", work, &w) }()
	select {
	case err := <-done:
		return w.String(), err
	case <-time.After(60 * time.Second): // hang watchdog only
		t.Fatalf("run still running after 60 s; output:\n%s", w.String())
		return "", nil
	}
}

// README: "Drain (stage.Until(in, stop)): when stop is done, the sources
// upstream take no new item ... and the sink returns nil. Nothing taken is
// lost"; Guarantees: "once stop is done, none is asked for another item".
// A drain that came before the run started: run returns nil having taken
// no job and stored none (the queue's producer is always ready, so a
// source asked once anyway would take one). Repeated: the source's select
// would pick the queue half the time.
func TestReview80DrainedBeforeTheRun(t *testing.T) {
	for i := range 20 {
		stop, drain := context.WithCancel(context.Background())
		drain()
		out, err := r80Run(t, context.Background(), stop, time.Millisecond)
		if err != nil {
			t.Fatalf("run %d: drained before it started: %v\n%s", i, err, out)
		}
		if !strings.Contains(out, "drained: took 0 jobs, stored 0\n") {
			t.Fatalf("run %d: output:\n%s", i, out)
		}
	}
}

// README: "Abort (cancel the ctx given to the sink): ... the sink returns the
// cancellation error". Aborted before it started: run returns an error for
// which errors.Is(err, context.Canceled) holds, and never says "drained".
func TestReview80AbortedBeforeTheRun(t *testing.T) {
	for i := range 20 {
		ctx, abort := context.WithCancel(context.Background())
		abort()
		out, err := r80Run(t, ctx, context.Background(), time.Millisecond)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run %d: aborted before it started: err %v, want context.Canceled\n%s", i, err, out)
		}
		if strings.Contains(out, "drained") {
			t.Fatalf("run %d: an aborted run says it drained:\n%s", i, out)
		}
	}
}

var r80Took = regexp.MustCompile(`drained: took (\d+) jobs, stored (\d+)\n`)

// Drain at several points of a run with quick jobs (after the ready line,
// and after the first jobs were taken): every time, run returns nil and
// took == stored (run itself fails with "lost jobs" otherwise).
func TestReview80DrainAtManyPoints(t *testing.T) {
	for i := range 20 {
		stop, drain := context.WithCancel(context.Background())
		w := &r80Gate{after: i % 4, drain: drain}
		done := make(chan error, 1)
		go func() { done <- run(context.Background(), stop, "127.0.0.1:0", 0, w) }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: %v\n%s", i, err, w.String())
			}
		case <-time.After(60 * time.Second): // hang watchdog only
			t.Fatalf("run %d still running 60 s after its drain", i)
		}
		m := r80Took.FindStringSubmatch(w.String())
		if m == nil || m[1] != m[2] {
			t.Fatalf("run %d: output:\n%s", i, w.String())
		}
	}
}

// r80Gate drains the run when it writes its ready line: at once (after
// 0), or from another goroutine after after×1000 yields, so that the drain
// comes at varying points of the run (which point does not matter to the
// checks: only took == stored and a nil error).
type r80Gate struct {
	r80Buf
	after int
	drain context.CancelFunc
	once  sync.Once
}

func (g *r80Gate) Write(p []byte) (int, error) {
	n, err := g.r80Buf.Write(p)
	if bytes.HasPrefix(p, []byte("ready:")) {
		g.once.Do(func() {
			if g.after == 0 {
				g.drain()
				return
			}
			go func() {
				for range g.after * 1000 {
					runtime.Gosched()
				}
				g.drain()
			}()
		})
	}
	return n, err
}
