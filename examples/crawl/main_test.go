package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The timeout is short because /slow never answers (each of its attempts
// lasts one timeout); the checks that a timeout cutting short another
// page's request could change go through a timing (see stall_test.go).
func TestCrawl(t *testing.T) {
	s := newSite()
	defer s.Close()
	cfg := config{workers: 3, rate: 1000, timeout: 100 * time.Millisecond, attempts: 3}
	c := newTiming(t, cfg.timeout)
	res, err := crawl(c.ctx(context.Background()), s.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, most := s.stats()
	var out bytes.Buffer
	res.print(&out, s.URL)
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
	if out.String() != want {
		c.Errorf("got\n%s\nwant\n%s", out.String(), want)
	}
	for path, n := range map[string]int{"/flaky": 3, "/slow": 3, "/missing": 1, "/": 1, "/blog/1": 1} {
		if req[path] != n {
			c.Errorf("%s requested %d times, want %d (retries on 5xx and timeouts only, each page once)", path, req[path], n)
		}
	}
	if most > cfg.workers {
		t.Errorf("%d requests at once, want at most %d", most, cfg.workers)
	}
	if !strings.Contains(out.String(), "dead letters") {
		t.Error("no dead-letter list")
	}
	c.verdict(c.cut(s.URL, req, []string{"/slow"}, res.dead))
}

func TestCrawlCancelled(t *testing.T) {
	s := newSite()
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := crawl(ctx, s.URL, config{workers: 2, rate: 10, timeout: time.Second, attempts: 2}); err == nil {
		t.Fatal("a cancelled crawl returned nil")
	}
}
