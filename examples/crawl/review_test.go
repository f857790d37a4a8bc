package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// Review tests: promises of main.go's doc comment, flag help and the
// README's "A crawler" that main_test.go does not check.

// -attempts 1: nothing is retried; the flaky page is a dead letter after one
// attempt (so the page behind it is never found), and so is the slow one.
// (The timeout is short for /slow's sake; see TestCrawl.)
func TestReviewAttemptsOneRetriesNothing(t *testing.T) {
	s := newSite()
	defer s.Close()
	cfg := config{workers: 4, rate: 1000, timeout: 100 * time.Millisecond, attempts: 1}
	c := newTiming(t, cfg.timeout)
	res, err := crawl(c.ctx(context.Background()), s.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := s.stats()
	var out bytes.Buffer
	res.print(&out, s.URL)
	want := `crawled 9 pages:
  /
  /about
  /blog
  /blog/1
  /blog/2
  /blog/3
  /docs
  /docs/api
  /docs/start
dead letters (3):
  /flaky: 503 Service Unavailable (1 attempts)
  /missing: permanent: 404 Not Found (1 attempts)
  /slow: Get "/slow": context deadline exceeded (1 attempts)
`
	if out.String() != want {
		c.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	for path, n := range map[string]int{"/flaky": 1, "/slow": 1, "/missing": 1} {
		if req[path] != n {
			c.Errorf("%s requested %d times, want %d", path, req[path], n)
		}
	}
	c.verdict(c.cut(s.URL, req, []string{"/slow"}, res.dead))
}

// -workers 1: "fetched by at most -workers requests at once".
// (The timeout is short for /slow's sake; see TestCrawl.)
func TestReviewOneWorkerNeverOverlaps(t *testing.T) {
	s := newSite()
	defer s.Close()
	cfg := config{workers: 1, rate: 1000, timeout: 100 * time.Millisecond, attempts: 3}
	c := newTiming(t, cfg.timeout)
	res, err := crawl(c.ctx(context.Background()), s.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, most := s.stats()
	if most != 1 {
		t.Errorf("%d requests at once, want 1", most)
	}
	total := 0
	for _, n := range req {
		total += n
	}
	if total != 11+2+3+1 { // 11 pages, /flaky twice more, /slow 3 times, /missing once
		c.Errorf("%d requests, want 17: %v", total, req)
	}
	c.verdict(c.cut(s.URL, req, []string{"/slow"}, res.dead))
}

// The binary with its default flags prints the crawl and the dead letters
// and exits 0.
//
// The command's default timeout (200 ms) is short, for /slow's sake, and
// the command runs in a process of its own: an output that differs is
// excused only by a stall of the test's process or a dead letter that only
// a timeout explains (timing.stalled).
func TestReviewBinaryDefaultOutput(t *testing.T) {
	bin := cmdtest.Build(t)
	c := newTiming(t, 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang watchdog only
	defer cancel()
	out, err := exec.CommandContext(ctx, bin).Output()
	if err != nil {
		t.Fatalf("exit %v; output:\n%s", err, out)
	}
	want := `crawled 11 pages:
  /
  /about
  /blog
  /blog/1
  /blog/2
  /blog/3
  /docs
  /docs/api
  /docs/start
  /flaky
  /flaky/found
dead letters (2):
  /missing: permanent: 404 Not Found (1 attempts)
  /slow: Get "/slow": context deadline exceeded (3 attempts)
`
	if string(out) != want {
		c.Errorf("got\n%s\nwant\n%s", out, want)
	}
	c.verdict(c.stalled(string(out)))
}

// "-rate: requests per second, at most" (and the doc comment: "at most -rate
// per second"). With a rate of 1 per second and the burst of -workers (4)
// that crawl gives the limiter, a limit over the whole crawl lets the 6th
// request through no sooner than (6-4)/1 = 2 s after the bucket was made,
// which is after the test began. (The crawl used to build a RateLimit,
// hence a full token bucket, for every level of links: levels 1, 2 and 3
// made 1+3+4 = 8 requests at once.) The test fails only if requests come
// too fast (a loaded machine can only slow them down); it stops the crawl
// at the 6th request.
func TestReviewRateLimitHoldsAcrossLevels(t *testing.T) {
	s := &site{requests: map[string]int{}}
	var mu sync.Mutex
	var times []time.Time
	sixth := make(chan struct{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		times = append(times, time.Now())
		if len(times) == 6 {
			close(sixth)
		}
		mu.Unlock()
		s.serve(w, r)
	}))
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	began := time.Now()
	go func() {
		defer close(done)
		// The timeout is a hang watchdog only: the 6th request comes
		// before /slow's level, and a page that took long on a loaded
		// machine must not end the crawl before it.
		crawl(ctx, s.URL, config{workers: 4, rate: 1, timeout: time.Minute, attempts: 1})
	}()
	select {
	case <-sixth:
	case <-time.After(2 * time.Minute): // hang watchdog only
		t.Fatal("fewer than 6 requests in 2 minutes")
	}
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if d := times[5].Sub(began); d < 2*time.Second {
		t.Fatalf("6 requests within %v at -rate 1 (burst 4): a crawl-wide limit needs 2 s; the limiter starts afresh at every level", d.Round(time.Millisecond))
	}
}

// Flags that would make the crawl wait for ever (no token, no worker) are
// refused at once with exit 2.
func TestReviewImpossibleFlagsAreRefused(t *testing.T) {
	bin := cmdtest.Build(t)
	for _, args := range [][]string{{"-rate", "0"}, {"-rate", "-5"}, {"-workers", "0"}, {"-attempts", "0"}, {"-timeout", "0s"}} {
		cmdtest.Refused(t, bin, "", args...)
	}
}
