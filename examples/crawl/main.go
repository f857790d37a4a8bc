// Command crawl is a bounded, rate-limited, retrying web crawler. It serves
// a small site on loopback itself (net/http/httptest, so it runs offline)
// and crawls it breadth first: each level of links is one sluice run over a
// slice of URLs, fetched by at most -workers requests at once, at most -rate
// per second across the whole crawl after a first burst of -workers (one
// token bucket that every level's run shares), each with a timeout, retried with backoff on 5xx and
// timeouts, and never retried on 4xx. URLs that still fail go to a
// dead-letter list, printed at the end with the reason.
//
//	go -C examples run ./crawl
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func main() {
	var cfg config
	flag.IntVar(&cfg.workers, "workers", 4, "requests at once, at most")
	flag.Float64Var(&cfg.rate, "rate", 50, "requests per second, at most")
	flag.DurationVar(&cfg.timeout, "timeout", 200*time.Millisecond, "timeout per request")
	flag.IntVar(&cfg.attempts, "attempts", 3, "attempts per URL")
	flag.Parse()
	if cfg.workers < 1 || !(cfg.rate > 0) || cfg.timeout <= 0 || cfg.attempts < 1 {
		fmt.Fprintln(os.Stderr, "crawl: want -workers, -attempts 1 or more, and -rate, -timeout more than 0")
		os.Exit(2)
	}
	s := newSite()
	defer s.Close()
	res, err := crawl(context.Background(), s.URL, cfg)
	res.print(os.Stdout, s.URL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crawl:", err)
		os.Exit(1)
	}
}

type config struct {
	workers  int
	rate     float64
	timeout  time.Duration
	attempts int
}

// page is a fetched page and the links on it.
type page struct {
	url   string
	links []string
}

// result is what a crawl found.
type result struct {
	pages []string // URLs fetched, sorted
	dead  []string // "URL: reason", sorted
}

// errPermanent marks a failure that a retry cannot cure (a 4xx).
var errPermanent = errors.New("permanent")

var href = regexp.MustCompile(`href="([^"]+)"`)

// crawl fetches the home page of the site at base (scheme and host) and
// every page it leads to on that site.
func crawl(ctx context.Context, base string, cfg config) (result, error) {
	var res result
	site, err := url.Parse(base)
	if err != nil {
		return res, err
	}
	onSite := func(u *url.URL) bool { return u.Scheme == site.Scheme && u.Host == site.Host }
	client := &http.Client{
		Transport: &http.Transport{},
		// A redirect off the site is not followed: its page is not the site's.
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if !onSite(req.URL) || len(via) >= 10 {
				return http.ErrUseLastResponse
			}
			return nil
		},
	}
	defer client.CloseIdleConnections()
	fetch := func(ctx context.Context, addr string) (page, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, addr, nil)
		if err != nil {
			return page{}, fmt.Errorf("%w: %v", errPermanent, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return page{}, err // a timeout or a network error: retry
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		switch {
		case err != nil:
			return page{}, err
		case resp.StatusCode >= 500:
			return page{}, fmt.Errorf("%s", resp.Status)
		case resp.StatusCode >= 400:
			return page{}, fmt.Errorf("%w: %s", errPermanent, resp.Status)
		}
		p := page{url: addr}
		for _, m := range href.FindAllStringSubmatch(string(body), -1) {
			// Relative or absolute, resolved against the page; only links
			// on the site are followed.
			if l, err := resp.Request.URL.Parse(m[1]); err == nil && onSite(l) {
				l.Fragment = ""
				if l.Path == "" {
					l.Path = "/" // the home page, as the crawl's first address
				}
				p.links = append(p.links, l.String())
			}
		}
		return p, nil
	}
	deadLetters := stage.Handle(func(_ context.Context, e *stage.Error) error {
		res.dead = append(res.dead, fmt.Sprintf("%s: %v (%d attempts)", e.Input, e.Err, e.Attempts))
		return nil
	})

	// One bucket for the whole crawl: a RateLimit's would be per run, and
	// each level starts a run of its own.
	limit := rate.NewLimiter(rate.Limit(cfg.rate), cfg.workers)
	seen := map[string]bool{base + "/": true}
	for level := []string{base + "/"}; len(level) > 0; {
		pages, err := sink.Slice(ctx, stage.Map(source.Slice(level), fetch,
			stage.Name("fetch"),
			stage.Workers(cfg.workers),
			stage.SharedRateLimit(limit),
			stage.Timeout(cfg.timeout),
			stage.RetryIf(cfg.attempts, 20*time.Millisecond, func(err error) bool { return !errors.Is(err, errPermanent) }),
			stage.OnError(deadLetters)))
		if err != nil {
			return res, err
		}
		level = nil
		for _, p := range pages {
			res.pages = append(res.pages, p.url)
			for _, l := range p.links {
				if !seen[l] {
					seen[l] = true
					level = append(level, l)
				}
			}
		}
	}
	slices.Sort(res.pages)
	slices.Sort(res.dead)
	return res, nil
}

func (r result) print(w io.Writer, base string) {
	fmt.Fprintf(w, "crawled %d pages:\n", len(r.pages))
	for _, p := range r.pages {
		fmt.Fprintln(w, " ", strings.TrimPrefix(p, base))
	}
	fmt.Fprintf(w, "dead letters (%d):\n", len(r.dead))
	for _, d := range r.dead {
		fmt.Fprintln(w, " ", strings.ReplaceAll(d, base, ""))
	}
}
