package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// r7Site is a site of my own, served on loopback, that counts the requests per
// path and how many ran at once.
type r7Site struct {
	*httptest.Server
	mu        sync.Mutex
	requests  map[string]int
	now, max  int
	links     map[string][]string
	status    map[string]func(n int) int // path -> status of the nth request (1-based)
	hang      map[string]bool            // paths that answer only when the request is cancelled
	entered   chan string                // told (without blocking) when a hanging path is entered
	gate      chan struct{}              // if not nil, closed once gateN requests run at once
	gateN     int
	gateOnce  sync.Once
	gateSlack bool // set when the gate's watchdog fired
}

func newR7Site(links map[string][]string) *r7Site {
	s := &r7Site{requests: map[string]int{}, links: links, status: map[string]func(int) int{}, hang: map[string]bool{}, entered: make(chan string, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *r7Site) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests[r.URL.Path]++
	n := s.requests[r.URL.Path]
	s.now++
	s.max = max(s.max, s.now)
	if s.gate != nil && s.now >= s.gateN {
		s.gateOnce.Do(func() { close(s.gate) })
	}
	gate := s.gate
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.now--
		s.mu.Unlock()
	}()
	if s.hang[r.URL.Path] {
		select {
		case s.entered <- r.URL.Path:
		default:
		}
		<-r.Context().Done()
		return
	}
	if gate != nil && r.URL.Path != "/" {
		select {
		case <-gate:
		case <-time.After(time.Minute): // hang watchdog only
			s.mu.Lock()
			s.gateSlack = true
			s.mu.Unlock()
		}
	}
	if st, ok := s.status[r.URL.Path]; ok {
		if code := st(n); code != http.StatusOK {
			http.Error(w, http.StatusText(code), code)
			return
		}
	}
	links, ok := s.links[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html")
	fmt.Fprint(w, "<html><body>")
	for _, l := range links {
		fmt.Fprintf(w, `<a href="%s">%s</a> `, l, l)
	}
	fmt.Fprint(w, "</body></html>")
}

func (s *r7Site) counts() (map[string]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps2(s.requests), s.max
}

func maps2(m map[string]int) map[string]int {
	c := make(map[string]int, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

var r7Attempts = regexp.MustCompile(`\((\d+) attempts\)$`)

// r7Dead maps a dead-letter's path to its attempts, from "URL: reason (N attempts)".
func r7Dead(t *testing.T, base string, dead []string) map[string]int {
	t.Helper()
	m := map[string]int{}
	for _, d := range dead {
		d = strings.TrimPrefix(d, base)
		path, _, ok := strings.Cut(d, ": ")
		a := r7Attempts.FindStringSubmatch(d)
		if !ok || a == nil {
			t.Fatalf("dead letter %q is not \"URL: reason (N attempts)\"", d)
		}
		m[path], _ = strconv.Atoi(a[1])
	}
	return m
}

func r7Paths(base string, urls []string) []string {
	var ps []string
	for _, u := range urls {
		ps = append(ps, strings.TrimPrefix(u, base))
	}
	slices.Sort(ps)
	return ps
}

// Promises: 5xx retried up to the attempts, 4xx (any, not only 404) never
// retried, a page reached by several links fetched once, a page that recovers within the attempts is crawled and its
// links followed, at most workers requests at once.
func TestReview7CrawlOwnSite(t *testing.T) {
	s := newR7Site(map[string][]string{
		"/":          {"/a", "/b", "/a", "/gone", "/forbidden", "/broken", "/recovers"},
		"/a":         {"/c", "/a"},
		"/b":         {"/c", "/"},
		"/c":         {"/b"},
		"/recovers":  {"/deep"},
		"/deep":      nil,
		"/gone":      nil,
		"/forbidden": nil,
		"/broken":    nil,
	})
	defer s.Close()
	s.status["/gone"] = func(int) int { return http.StatusGone }
	s.status["/forbidden"] = func(int) int { return http.StatusForbidden }
	s.status["/broken"] = func(int) int { return http.StatusInternalServerError }
	s.status["/recovers"] = func(n int) int {
		if n < 3 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	}
	cfg := config{workers: 2, rate: 1000, timeout: time.Minute, attempts: 3}
	res, err := crawl(context.Background(), s.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r7Paths(s.URL, res.pages), []string{"/", "/a", "/b", "/c", "/deep", "/recovers"}; !slices.Equal(got, want) {
		t.Errorf("pages = %v, want %v", got, want)
	}
	dead := r7Dead(t, s.URL, res.dead)
	wantDead := map[string]int{"/gone": 1, "/forbidden": 1, "/broken": 3}
	for p, a := range wantDead {
		if dead[p] != a {
			t.Errorf("dead letter %s: %d attempts, want %d (dead: %v)", p, dead[p], a, res.dead)
		}
	}
	if len(dead) != len(wantDead) {
		t.Errorf("dead letters %v, want only %v", res.dead, wantDead)
	}
	reqs, most := s.counts()
	want := map[string]int{"/": 1, "/a": 1, "/b": 1, "/c": 1, "/deep": 1, "/recovers": 3, "/gone": 1, "/forbidden": 1, "/broken": 3}
	for p, n := range want {
		if reqs[p] != n {
			t.Errorf("%s requested %d times, want %d (all: %v)", p, reqs[p], n, reqs)
		}
	}
	if len(reqs) != len(want) {
		t.Errorf("requests %v, want %v", reqs, want)
	}
	if most > cfg.workers {
		t.Errorf("%d requests at once, workers %d", most, cfg.workers)
	}
}

// Promise: the crawl fetches "every page it leads to on that site" — a link
// written as an absolute URL of the same site is a page of the site — and
// only those: a link to another site is neither fetched nor a failure of
// this site (the dead letters are "URLs that still fail").
func TestReview7CrawlAbsoluteLinks(t *testing.T) {
	other := newR7Site(map[string][]string{"/": nil, "/elsewhere": nil})
	defer other.Close()
	s := newR7Site(map[string][]string{"/": {"/a"}, "/a": nil, "/b": nil})
	defer s.Close()
	s.links["/"] = append(s.links["/"], s.URL+"/b", other.URL+"/elsewhere")
	res, err := crawl(context.Background(), s.URL, config{workers: 2, rate: 1000, timeout: time.Minute, attempts: 3})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := r7Paths(s.URL, res.pages), []string{"/", "/a", "/b"}; !slices.Equal(got, want) {
		t.Errorf("pages = %v, want %v", got, want)
	}
	if len(res.dead) != 0 {
		t.Errorf("dead letters %q, want none (every link of the site works)", res.dead)
	}
	if oreqs, _ := other.counts(); len(oreqs) != 0 {
		t.Errorf("the crawl left the site: the other site saw %v", oreqs)
	}
}

// Promise: at most -workers requests at once, and (bounded concurrency: with
// enough input, exactly n) the level of 12 links does reach that many. Each
// request waits until 3 run at once (a gate, a minute's watchdog only).
func TestReview7CrawlWorkersReached(t *testing.T) {
	links := map[string][]string{"/": nil}
	for i := range 12 {
		p := fmt.Sprintf("/p%d", i)
		links["/"] = append(links["/"], p)
		links[p] = nil
	}
	s := newR7Site(links)
	defer s.Close()
	s.gate, s.gateN = make(chan struct{}), 3
	res, err := crawl(context.Background(), s.URL, config{workers: 3, rate: 1000, timeout: 2 * time.Minute, attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.pages) != 13 {
		t.Errorf("crawled %d pages, want 13: %v (dead %v)", len(res.pages), res.pages, res.dead)
	}
	_, most := s.counts()
	s.mu.Lock()
	slack := s.gateSlack
	s.mu.Unlock()
	if most != 3 || slack {
		t.Errorf("at most %d requests at once (gate watchdog fired: %v), want exactly 3", most, slack)
	}
}

// Promise: timeouts are retried: a page that never answers is requested
// -attempts times and ends in the dead letters with that count. (The
// timeout is short for /hang's sake; see TestCrawl.)
func TestReview7CrawlTimeoutRetried(t *testing.T) {
	s := newR7Site(map[string][]string{"/": {"/hang"}, "/hang": nil})
	defer s.Close()
	s.hang["/hang"] = true
	cfg := config{workers: 2, rate: 1000, timeout: 300 * time.Millisecond, attempts: 2}
	c := newTiming(t, cfg.timeout)
	res, err := crawl(c.ctx(context.Background()), s.URL, cfg)
	if err != nil {
		t.Fatal(err)
	}
	reqs, _ := s.counts()
	if dead := r7Dead(t, s.URL, res.dead); dead["/hang"] != 2 || len(dead) != 1 {
		c.Errorf("dead letters %v, want /hang with 2 attempts", res.dead)
	}
	if reqs["/hang"] != 2 {
		c.Errorf("/hang requested %d times, want 2", reqs["/hang"])
	}
	c.verdict(c.cut(s.URL, reqs, []string{"/hang"}, res.dead))
}

// Promise (core: cancelling ctx makes the sink return an error for which
// errors.Is(err, context.Canceled) holds; a run that failed is never
// reported as a success): cancelling the crawl while a request is in flight
// returns the cancellation, not a crawl that "succeeded" with a dead letter.
func TestReview7CrawlCancelled(t *testing.T) {
	s := newR7Site(map[string][]string{"/": {"/hang"}, "/hang": nil})
	defer s.Close()
	s.hang["/hang"] = true
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type out struct {
		res result
		err error
	}
	done := make(chan out, 1)
	go func() {
		res, err := crawl(ctx, s.URL, config{workers: 2, rate: 1000, timeout: time.Minute, attempts: 3})
		done <- out{res, err}
	}()
	select {
	case <-s.entered:
	case <-time.After(time.Minute):
		t.Fatal("/hang never requested (watchdog)")
	}
	cancel()
	select {
	case o := <-done:
		if !errors.Is(o.err, context.Canceled) {
			t.Errorf("crawl after cancel: err = %v (pages %v, dead %v), want context.Canceled", o.err, o.res.pages, o.res.dead)
		}
	case <-time.After(time.Minute):
		t.Fatal("crawl did not return after cancel (watchdog)")
	}
	if reqs, _ := s.counts(); reqs["/hang"] != 1 {
		t.Errorf("/hang requested %d times after a cancel, want 1 (no retry of a cancelled run)", reqs["/hang"])
	}
}

// r7Output parses the binary's documented output: "crawled N pages:" and its
// list, "dead letters (M):" and "  path: reason (K attempts)" lines.
func r7Output(t *testing.T, out string) (pages []string, dead map[string]int) {
	t.Helper()
	dead = map[string]int{}
	section := ""
	head := regexp.MustCompile(`^crawled (\d+) pages:$`)
	deadHead := regexp.MustCompile(`^dead letters \((\d+)\):$`)
	var nPages, nDead int
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if m := head.FindStringSubmatch(l); m != nil {
			section, nPages = "pages", atoi(m[1])
			continue
		}
		if m := deadHead.FindStringSubmatch(l); m != nil {
			section, nDead = "dead", atoi(m[1])
			continue
		}
		item, ok := strings.CutPrefix(l, "  ")
		if !ok {
			t.Fatalf("unexpected line %q\n%s", l, out)
		}
		switch section {
		case "pages":
			pages = append(pages, item)
		case "dead":
			path, _, _ := strings.Cut(item, ": ")
			a := r7Attempts.FindStringSubmatch(item)
			if a == nil {
				t.Fatalf("dead letter %q without attempts\n%s", item, out)
			}
			dead[path] = atoi(a[1])
		default:
			t.Fatalf("line %q outside a section\n%s", l, out)
		}
	}
	if len(pages) != nPages || len(dead) != nDead {
		t.Fatalf("headers say %d pages, %d dead; lists hold %d, %d\n%s", nPages, nDead, len(pages), len(dead), out)
	}
	return pages, dead
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// Promises of the binary: by default 11 pages and 2 dead letters (/missing once,
// /slow after the attempts); with -attempts 1 the flaky page (fails twice
// before it works) is a dead letter, its link is never reached, and the slow
// page is tried once; -workers 1 crawls the same site. (The default
// timeout, 200 ms: see TestReviewBinaryDefaultOutput.)
func TestReview7CrawlBinaryFlags(t *testing.T) {
	bin := cmdtest.Build(t)
	c := newTiming(t, 200*time.Millisecond)
	var outs strings.Builder
	run := func(args ...string) ([]string, map[string]int) {
		out, err, hung := cmdtest.Run(t, bin, time.Minute, args...)
		if hung || err != nil {
			t.Fatalf("%v: hung=%v err=%v\n%s", args, hung, err, out)
		}
		outs.WriteString(out)
		return r7Output(t, out)
	}
	pages, dead := run("-workers", "1")
	if len(pages) != 11 || dead["/missing"] != 1 || dead["/slow"] != 3 || len(dead) != 2 {
		c.Errorf("-workers 1: pages %v, dead %v", pages, dead)
	}
	pages, dead = run("-attempts", "1")
	if slices.Contains(pages, "/flaky") || slices.Contains(pages, "/flaky/found") || len(pages) != 9 {
		c.Errorf("-attempts 1: pages %v, want the 9 without /flaky and /flaky/found", pages)
	}
	if dead["/flaky"] != 1 || dead["/missing"] != 1 || dead["/slow"] != 1 || len(dead) != 3 {
		c.Errorf("-attempts 1: dead %v, want /flaky, /missing, /slow with 1 attempt each", dead)
	}
	c.verdict(c.stalled(outs.String()))
}

// Promise: the crawl fetches the pages "on that site" only: a page of the
// site that redirects to another site does not lead the crawl there, and
// a link to the home page without its slash is the home page.
func TestReview7CrawlStaysOnSiteThroughRedirects(t *testing.T) {
	var offsite atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		offsite.Add(1)
		fmt.Fprint(w, `<a href="/offsite-page">x</a>`)
	}))
	defer other.Close()
	var site *httptest.Server
	site = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			fmt.Fprintf(w, `<a href="/go">go</a> <a href="%s">home</a>`, site.URL)
		case "/go":
			http.Redirect(w, r, other.URL+"/ext", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer site.Close()
	res, err := crawl(context.Background(), site.URL, config{workers: 2, rate: 1000, timeout: time.Minute, attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if n := offsite.Load(); n != 0 {
		t.Errorf("the other site got %d requests; pages %v", n, res.pages)
	}
	if want := []string{site.URL + "/", site.URL + "/go"}; !slices.Equal(res.pages, want) {
		t.Errorf("pages %v, want %v (the home page once)", res.pages, want)
	}
}
