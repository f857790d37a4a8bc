package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
)

// site is a small web site served on loopback, with the troubles a crawler
// meets: a page that fails twice before it works, one that never answers in
// time, one that does not exist. It counts requests and how many ran at once.
type site struct {
	*httptest.Server
	mu       sync.Mutex
	requests map[string]int
	now, max int
}

// pages maps a path to the paths it links to.
var pages = map[string][]string{
	"/":            {"/docs", "/blog", "/about"},
	"/docs":        {"/docs/start", "/docs/api", "/flaky"},
	"/docs/start":  {"/docs/api", "/"},
	"/docs/api":    {"/docs/start", "/missing"},
	"/blog":        {"/blog/1", "/blog/2", "/blog/3"},
	"/blog/1":      {"/blog/2", "/slow"},
	"/blog/2":      {"/blog/3"},
	"/blog/3":      {"/blog/1", "/about"},
	"/about":       {"/"},
	"/flaky":       {"/flaky/found"},
	"/flaky/found": nil,
}

func newSite() *site {
	s := &site{requests: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

func (s *site) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests[r.URL.Path]++
	n := s.requests[r.URL.Path]
	s.now++
	s.max = max(s.max, s.now)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.now--
		s.mu.Unlock()
	}()
	switch {
	case r.URL.Path == "/slow":
		<-r.Context().Done() // never answers before the client gives up
		return
	case r.URL.Path == "/flaky" && n <= 2:
		http.Error(w, "try again", http.StatusServiceUnavailable)
		return
	}
	links, ok := pages[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<html><title>%s</title><body>", r.URL.Path)
	for _, l := range links {
		fmt.Fprintf(&b, `<a href="%s">%s</a> `, l, l)
	}
	b.WriteString("</body></html>")
	w.Write([]byte(b.String()))
}

// stats returns the requests per path and the most that ran at once.
func (s *site) stats() (map[string]int, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req := map[string]int{}
	for k, v := range s.requests {
		req[k] = v
	}
	return req, s.max
}
