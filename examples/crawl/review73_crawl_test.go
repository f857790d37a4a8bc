package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// review73Site is a hostile site of the test's own: each path has a
// handler; it counts requests per path, the most at once, and when each
// request arrived.
type review73Site struct {
	*httptest.Server
	mu       sync.Mutex
	requests map[string]int
	arrivals map[string][]time.Time
	now, max int
	total    int
	onEnter  func(n int) // called with the number running, under no lock
	handlers map[string]http.HandlerFunc
}

func newReview73Site(handlers map[string]http.HandlerFunc) *review73Site {
	s := &review73Site{requests: map[string]int{}, arrivals: map[string][]time.Time{}, handlers: handlers}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *review73Site) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests[r.URL.Path]++
	s.arrivals[r.URL.Path] = append(s.arrivals[r.URL.Path], time.Now())
	s.now++
	s.total++
	s.max = max(s.max, s.now)
	n := s.now
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.now--
		s.mu.Unlock()
	}()
	if s.onEnter != nil {
		s.onEnter(n)
	}
	h, ok := s.handlers[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h(w, r)
}

func (s *review73Site) counts() (map[string]int, int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := map[string]int{}
	for k, v := range s.requests {
		req[k] = v
	}
	return req, s.max, s.total
}

func review73Links(links ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var b strings.Builder
		b.WriteString("<html><body>")
		for _, l := range links {
			fmt.Fprintf(&b, `<a href="%s">x</a> `, l)
		}
		b.WriteString("</body></html>")
		w.Write([]byte(b.String()))
	}
}

func review73Status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", code) }
}

// README: "It prints the pages it crawled and a dead-letter list with each
// failure's reason and attempts; its tests check how often each path was
// requested (the flaky one 3 times, the 404 once)".
// Doc: "timeout, retried with backoff on 5xx and timeouts, and never retried on 4xx.
// URLs that still fail go to a dead-letter list, printed at the end with the reason."
//
// The command's default timeout (200 ms) is short, for /slow's sake: see
// TestReviewBinaryDefaultOutput for what excuses an output that differs.
func TestReview73BinaryPrintsPagesAndDeadLetters(t *testing.T) {
	bin := cmdtest.Build(t)
	c := newTiming(t, 200*time.Millisecond)
	out, err, hung := cmdtest.Run(t, bin, 2*time.Minute)
	if hung || err != nil {
		t.Fatalf("err %v, hung %v; output:\n%s", err, hung, out)
	}
	for _, want := range []string{"crawled 11 pages:\n", "  /flaky/found\n", "  /docs/api\n", "dead letters (2):\n"} {
		if !strings.Contains(out, want) {
			c.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	missing := regexp.MustCompile(`(?m)^  /missing: .*404.*\(1 attempts?\)$`)
	slow := regexp.MustCompile(`(?m)^  /slow: .*\(3 attempts\)$`)
	if !missing.MatchString(out) || !slow.MatchString(out) {
		c.Errorf("dead letters lack reason and attempts (/missing 1, /slow 3):\n%s", out)
	}
	c.verdict(c.stalled(out))
}

// README: "its tests check how often each path was requested (the flaky one
// 3 times, the 404 once), that the server never saw more requests at once
// than the workers". Doc: "retried with backoff on 5xx and timeouts, and
// never retried on 4xx".
// (The timeout is short for /slow's sake; see TestCrawl.)
func TestReview73DefaultSiteRequestCounts(t *testing.T) {
	s := newSite()
	defer s.Close()
	cfg := config{workers: 4, rate: 1000, timeout: 200 * time.Millisecond, attempts: 3}
	c := newTiming(t, cfg.timeout)
	res, err := crawl(c.ctx(context.Background()), s.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, most := s.stats()
	for path := range pages {
		want := 1
		if path == "/flaky" {
			want = 3
		}
		if req[path] != want {
			c.Errorf("%s requested %d times, want %d", path, req[path], want)
		}
	}
	if req["/missing"] != 1 {
		c.Errorf("/missing (404) requested %d times, want 1", req["/missing"])
	}
	if req["/slow"] != 3 {
		c.Errorf("/slow (timeouts) requested %d times, want 3 (retried on timeouts)", req["/slow"])
	}
	if most > cfg.workers {
		t.Errorf("the server saw %d requests at once, workers %d", most, cfg.workers)
	}
	if len(res.pages) != len(pages) || len(res.dead) != 2 {
		c.Errorf("crawled %d pages, %d dead letters; want %d, 2: %v %v", len(res.pages), len(res.dead), len(pages), res.pages, res.dead)
	}
	c.verdict(c.cut(s.URL, req, []string{"/slow"}, res.dead))
}

// Doc: "each with a timeout, retried with backoff on 5xx and timeouts, and
// never retried on 4xx. URLs that still fail go to a dead-letter list,
// printed at the end with the reason."
func TestReview73HostileStatuses(t *testing.T) {
	stall := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	trickle := func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<html><body>"))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // headers and a first byte, then the body never ends
	}
	s := newReview73Site(map[string]http.HandlerFunc{
		"/":        review73Links("/e500", "/e502", "/e599", "/e404", "/e410", "/e429", "/e400", "/hang", "/trickle", "/ok"),
		"/e500":    review73Status(500),
		"/e502":    review73Status(502),
		"/e599":    review73Status(599),
		"/e404":    review73Status(404),
		"/e410":    review73Status(410),
		"/e429":    review73Status(429),
		"/e400":    review73Status(400),
		"/hang":    stall,
		"/trickle": trickle,
		"/ok":      review73Links(),
	})
	defer s.Close()
	// The timeout is short for /hang's and /trickle's sake (each of their
	// attempts lasts one); see TestCrawl.
	cfg := config{workers: 4, rate: 1000, timeout: 150 * time.Millisecond, attempts: 3}
	c := newTiming(t, cfg.timeout)
	res, err := crawl(c.ctx(context.Background()), s.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	req, _, _ := s.counts()
	want := map[string]int{"/": 1, "/ok": 1, "/e500": 3, "/e502": 3, "/e599": 3, "/hang": 3, "/trickle": 3,
		"/e404": 1, "/e410": 1, "/e429": 1, "/e400": 1}
	for p, n := range want {
		if req[p] != n {
			c.Errorf("%s requested %d times, want %d", p, req[p], n)
		}
	}
	if len(res.pages) != 2 {
		c.Errorf("crawled %v, want / and /ok", res.pages)
	}
	if len(res.dead) != len(want)-2 {
		c.Errorf("%d dead letters, want %d: %q", len(res.dead), len(want)-2, res.dead)
	}
	for _, d := range res.dead {
		// "with the reason": something after the URL.
		if _, reason, ok := strings.Cut(d, ": "); !ok || strings.TrimSpace(reason) == "" {
			t.Errorf("dead letter without a reason: %q", d)
		}
	}
	c.verdict(c.cut(s.URL, req, []string{"/hang", "/trickle"}, res.dead))
}

// Doc: "fetched by at most -workers requests at once".
func TestReview73BoundedConcurrency(t *testing.T) {
	for _, workers := range []int{1, 2, 3} {
		links := make([]string, 24)
		handlers := map[string]http.HandlerFunc{}
		for i := range links {
			links[i] = fmt.Sprintf("/p%d", i)
		}
		full := make(chan struct{})
		var once sync.Once
		// A page holds its request until `workers` requests run at once
		// (or a watchdog passes), so that the crawler has every chance to
		// send more than it may.
		hold := func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-full:
			case <-time.After(2 * time.Second): // watchdog only
			case <-r.Context().Done():
			}
			w.Write([]byte("<html></html>"))
		}
		for _, l := range links {
			handlers[l] = hold
		}
		handlers["/"] = review73Links(links...)
		s := newReview73Site(handlers)
		s.onEnter = func(n int) {
			if n >= workers {
				once.Do(func() { close(full) })
			}
		}
		cfg := config{workers: workers, rate: 1e6, timeout: 30 * time.Second, attempts: 1}
		res, err := crawl(context.Background(), s.URL, cfg)
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		_, most, _ := s.counts()
		if most > workers {
			t.Errorf("workers %d: the server saw %d requests at once", workers, most)
		}
		if len(res.pages) != len(links)+1 {
			t.Errorf("workers %d: crawled %d pages, want %d", workers, len(res.pages), len(links)+1)
		}
	}
}

// Doc: "at most -rate per second across the whole crawl (one token bucket
// that every level's run shares)". At 0.001 a second, a test that lasts
// seconds may see no more requests than the bucket holds at the start; a
// bucket per level would let the second level start afresh.
func TestReview73RateSharedAcrossLevels(t *testing.T) {
	s := newReview73Site(map[string]http.HandlerFunc{
		"/":  review73Links("/a", "/b", "/c", "/d"),
		"/a": review73Links("/a1", "/a2"),
		"/b": review73Links(), "/c": review73Links(), "/d": review73Links(),
		"/a1": review73Links(), "/a2": review73Links(),
	})
	seen := make(chan struct{}, 100)
	s.onEnter = func(int) { seen <- struct{}{} }
	defer s.Close()
	const workers = 2
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		// The timeout is a hang watchdog only: no page here hangs, and one
		// that took a second on a loaded machine must not end the crawl.
		_, err := crawl(ctx, s.URL, config{workers: workers, rate: 0.001, timeout: time.Minute, attempts: 1})
		done <- err
	}()
	watchdog := time.After(time.Minute)
	for range workers { // the bucket's first tokens
		select {
		case <-seen:
		case <-watchdog:
			t.Fatal("hung: fewer requests than the first tokens")
		}
	}
	// Watchdog only: a request more in this while would be one the rate
	// (one per 1000 s) does not allow.
	select {
	case <-seen:
		_, _, total := s.counts()
		t.Errorf("rate 0.001/s, workers %d: the server saw a request beyond the bucket's first %d (%d so far)", workers, workers, total)
	case <-time.After(1500 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Logf("crawl cancelled: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("crawl did not return after its ctx was cancelled")
	}
}

// Doc: "at most -rate per second across the whole crawl". A token bucket of
// at most -workers tokens at the start: R requests take at least
// (R-workers)/rate seconds. (Slowness only lengthens the crawl.)
func TestReview73RateLowerBound(t *testing.T) {
	s := newSite()
	defer s.Close()
	cfg := config{workers: 4, rate: 20, timeout: 100 * time.Millisecond, attempts: 3}
	start := time.Now()
	if _, err := crawl(context.Background(), s.URL, cfg); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	req, _ := s.stats()
	total := 0
	for _, n := range req {
		total += n
	}
	floor := time.Duration(float64(total-cfg.workers) / cfg.rate * float64(time.Second))
	if elapsed < floor-10*time.Millisecond {
		t.Errorf("%d requests in %v at %v/s (workers %d): floor %v", total, elapsed, cfg.rate, cfg.workers, floor)
	}
}

// Doc: "retried with backoff on 5xx". README: stage.RetryIf(3,
// 20*time.Millisecond, notPermanent); stage.Retry's doc: before the n-th
// retry a wait between d/2 and d, d = backoff·2^(n-1).
func TestReview73BackoffBetweenAttempts(t *testing.T) {
	s := newReview73Site(map[string]http.HandlerFunc{
		"/":     review73Links("/e503"),
		"/e503": review73Status(503),
	})
	defer s.Close()
	if _, err := crawl(context.Background(), s.URL, config{workers: 4, rate: 1e6, timeout: time.Minute, attempts: 3}); err != nil { // timeout: a hang watchdog only
		t.Fatal(err)
	}
	s.mu.Lock()
	at := append([]time.Time(nil), s.arrivals["/e503"]...)
	s.mu.Unlock()
	if len(at) != 3 {
		t.Fatalf("/e503 requested %d times, want 3", len(at))
	}
	if g := at[1].Sub(at[0]); g < 10*time.Millisecond {
		t.Errorf("first retry %v after the first attempt: no backoff (want at least 10ms)", g)
	}
	if g := at[2].Sub(at[1]); g < 20*time.Millisecond {
		t.Errorf("second retry %v after the second attempt: no backoff (want at least 20ms)", g)
	}
}

// Doc: "It serves a small site on loopback itself ... and crawls it": a
// link, or a redirect, to another site is not crawled.
func TestReview73OffSiteNotCrawled(t *testing.T) {
	other := newReview73Site(map[string]http.HandlerFunc{"/": review73Links(), "/x": review73Links()})
	defer other.Close()
	s := newReview73Site(map[string]http.HandlerFunc{
		"/":   review73Links(other.URL+"/x", "/away", "/ok"),
		"/ok": review73Links(other.URL + "/"),
		"/away": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/x", http.StatusFound)
		},
	})
	defer s.Close()
	if _, err := crawl(context.Background(), s.URL, config{workers: 2, rate: 1e6, timeout: time.Minute, attempts: 1}); err != nil { // timeout: a hang watchdog only
		t.Fatal(err)
	}
	if req, _, total := other.counts(); total != 0 {
		t.Errorf("another site got %d requests: %v", total, req)
	}
}

// Doc: flags -workers, -rate (the doc names them): a run with them set
// still prints the crawl.
// (The default timeout, 200 ms: see TestReviewBinaryDefaultOutput.)
func TestReview73FlagsRun(t *testing.T) {
	bin := cmdtest.Build(t)
	c := newTiming(t, 200*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // hang watchdog only
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-workers", "1", "-rate", "200").CombinedOutput()
	if err != nil {
		t.Fatalf("err %v; output:\n%s", err, out)
	}
	if !strings.Contains(string(out), "crawled 11 pages:") {
		c.Errorf("output:\n%s", out)
	}
	c.verdict(c.stalled(string(out)))
}

// README: "its tests check how often each path was requested (the flaky
// one 3 times, the 404 once)": a page is fetched once, however its links
// spell it (relative, absolute, with a fragment).
func TestReview73EachPageOnce(t *testing.T) {
	var s *review73Site
	s = newReview73Site(map[string]http.HandlerFunc{
		"/": func(w http.ResponseWriter, r *http.Request) {
			host := strings.TrimPrefix(s.URL, "http://")
			review73Links("/a", "/a#top", "a", "./a", s.URL+"/a", "//"+host+"/a", "/b#x", s.URL, s.URL+"/", "#self", "/")(w, r)
		},
		"/a": review73Links("/", "/a", "b", "../b#y"),
		"/b": review73Links("/a#z", "/"),
	})
	defer s.Close()
	res, err := crawl(context.Background(), s.URL, config{workers: 3, rate: 1e6, timeout: time.Minute, attempts: 1}) // timeout: a hang watchdog only
	if err != nil {
		t.Fatal(err)
	}
	req, _, _ := s.counts()
	for _, p := range []string{"/", "/a", "/b"} {
		if req[p] != 1 {
			t.Errorf("%s requested %d times, want once", p, req[p])
		}
	}
	if len(res.pages) != 3 || len(res.dead) != 0 {
		t.Errorf("crawled %v, dead %v; want 3 pages", res.pages, res.dead)
	}
}

// Doc: "crawls it breadth first: each level of links is one sluice run
// over a slice of URLs". A page two links away is not fetched while one a
// link away is still being fetched.
func TestReview73BreadthFirst(t *testing.T) {
	deep := make(chan struct{})
	var once sync.Once
	var early bool
	var mu sync.Mutex
	s := newReview73Site(map[string]http.HandlerFunc{
		"/":  review73Links("/a", "/b"),
		"/a": review73Links("/a1"),
		"/a1": func(w http.ResponseWriter, r *http.Request) {
			once.Do(func() { close(deep) })
			review73Links()(w, r)
		},
		"/b": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-deep: // level 3 started while level 2 runs
				mu.Lock()
				early = true
				mu.Unlock()
			case <-time.After(time.Second): // watchdog only
			}
			review73Links()(w, r)
		},
	})
	defer s.Close()
	res, err := crawl(context.Background(), s.URL, config{workers: 4, rate: 1e6, timeout: 10 * time.Second, attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if early {
		t.Error("/a1 (level 3) was fetched while /b (level 2) was in flight")
	}
	if len(res.pages) != 4 {
		t.Errorf("crawled %v, want 4 pages", res.pages)
	}
}
