package main

import (
	"context"
	"fmt"
	"net/http/httptrace"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
)

// timing holds the checks of a test whose crawl runs with a short
// per-request timeout (short because a page of its site never answers, and
// each attempt at that page lasts one timeout): on a loaded machine the
// timeout can cut short a request to a page that does answer, which the
// crawl then rightly retries or puts in the dead letters, and such checks
// (how often a path was requested, what the output lists) come out
// otherwise. The test reports those checks' failures to a timing (Errorf)
// and the checks no timeout can change (the bound on requests at once, the
// output's format) to t as ever; at the end, verdict: no failure passes; a
// failure with evidence that the crawl gave up on a request before its
// answer skips the test, saying so (it checks nothing then); any other
// failure stands. For a crawl in the test's process no verdict depends on
// how long anything took; and a run on a quiet machine, where no answered
// request outlives the timeout, checks everything.
//
// The evidence, for a crawl in the test's process, comes from the client's
// side (an httptrace.ClientTrace on the crawl's ctx, which reaches each
// request, see ctx) and the server's counts (see cut). For the command run
// in a process of its own (the binary tests), which the test cannot trace,
// it is a stall of the test's process (runcheck.Stalls) long enough to
// have let a timeout fire ahead of an answer, or a dead letter that only a
// timeout explains (see cutInOutput).
type timing struct {
	t       *testing.T
	timeout time.Duration
	stalls  *runcheck.Stalls
	began   atomic.Int64 // requests the crawl's transport began (asked for a connection)
	read    atomic.Int64 // answers it read to the end (it took the connection back)
	fails   []string
}

// newTiming starts a timing for a test whose crawl runs with timeout.
func newTiming(t *testing.T, timeout time.Duration) *timing {
	return &timing{t: t, timeout: timeout, stalls: runcheck.WatchStalls(t)}
}

// ctx returns parent with a trace that counts the requests that the
// crawl's transport begins and the answers it reads to the end. The trace
// is a value of the context, which the stage's per-attempt contexts (and
// so each request) inherit. The transport takes the connection back
// (PutIdleConn, with or without room in its pool) before the body's reader
// sees the end, so every answer read is counted before the crawl returns;
// a request cut short (its context done before its answer's end) never
// gives its connection back.
func (c *timing) ctx(parent context.Context) context.Context {
	return httptrace.WithClientTrace(parent, &httptrace.ClientTrace{
		GetConn:     func(string) { c.began.Add(1) },
		PutIdleConn: func(error) { c.read.Add(1) },
	})
}

// Errorf records the failure of a check that a timeout cutting short an
// answered request could change.
func (c *timing) Errorf(format string, args ...any) {
	c.t.Helper()
	c.fails = append(c.fails, fmt.Sprintf(format, args...))
}

// cut returns the evidence, if any, that the crawl (traced by c.ctx) gave
// up on a request before its answer, given the requests per path that the
// server saw after the crawl returned (served), the paths that never
// answer (hang) and the crawl's dead letters on the site at base:
//   - the transport began more requests than it read answers to the end,
//     beyond the requests to pages that never answer that the server saw: a
//     request (to a page that answers, or one that never reached the
//     server) ended without its answer;
//   - a dead letter counts more attempts than the server saw requests for
//     its path: an attempt ended before its request reached the server.
//
// Both are facts of the order of events; neither asks how long anything
// took. (An attempt whose context expires at the very moment its answer's
// last byte is handed over may still succeed, uncounted as read: a near
// miss of the same timeout.)
func (c *timing) cut(base string, served map[string]int, hang []string, dead []string) string {
	var why []string
	hung := 0
	for _, p := range hang {
		hung += served[p]
	}
	if began, read := c.began.Load(), c.read.Load(); began-read > int64(hung) {
		why = append(why, fmt.Sprintf("the crawl began %d requests and read %d answers to the end, and the server saw only %d requests to pages that never answer (%v)", began, read, hung, hang))
	}
	for _, d := range dead {
		path, _, ok := strings.Cut(strings.TrimPrefix(d, base), ": ")
		m := deadAttempts.FindStringSubmatch(d)
		if !ok || m == nil {
			continue // a format the test checks elsewhere
		}
		if n, _ := strconv.Atoi(m[1]); n > served[path] {
			why = append(why, fmt.Sprintf("dead letter %s: %d attempts, but the server saw %d requests", path, n, served[path]))
		}
	}
	return strings.Join(why, "; ")
}

var deadAttempts = regexp.MustCompile(`\((\d+) attempts?\)$`)

// cutInOutput returns the evidence, in the output of a crawl of the
// default site (the command's), that a timeout cut short a request to a
// page that answers: a dead letter for a path other than /slow whose
// reason is the deadline. (A page's request cut short and then retried
// with success leaves no trace there, and changes nothing there either.)
func cutInOutput(out string) string {
	var why []string
	for _, l := range strings.Split(out, "\n") {
		path, reason, ok := strings.Cut(strings.TrimPrefix(l, "  "), ": ")
		if ok && strings.HasPrefix(path, "/") && path != "/slow" && (strings.Contains(reason, "deadline exceeded") || strings.Contains(reason, "timeout")) {
			why = append(why, "dead letter "+strings.TrimSpace(l))
		}
	}
	return strings.Join(why, "; ")
}

// stalled returns the evidence, for a crawl run in a process of its own,
// that the machine stalled long enough to let its timeout cut short an
// answered request: a stall of the test's process of half the timeout or
// more (runcheck.Stalls.Excuse; the command's process, on the same
// machine, is not watched itself), or such a dead letter in its output.
func (c *timing) stalled(out string) string {
	if why := cutInOutput(out); why != "" {
		return why
	}
	if c.stalls.Excuse(c.timeout) {
		return fmt.Sprintf("the test's process stalled for %v", c.stalls.Longest().Round(time.Millisecond))
	}
	return ""
}

// verdict ends the timing's checks: none failed, it passes; some failed
// and evidence (from cut or stalled) says a timeout cut short a request,
// it skips the test, which then checks nothing; else the failures stand.
func (c *timing) verdict(evidence string) {
	c.t.Helper()
	if len(c.fails) == 0 {
		return
	}
	if evidence != "" {
		c.t.Skipf("evidence that the %v timeout cut short a request to a page that answers (%s; longest stall of the test's process %v) explains what failed: %s; the test checks nothing then",
			c.timeout, evidence, c.stalls.Longest().Round(time.Millisecond), strings.Join(c.fails, "; "))
	}
	for _, f := range c.fails {
		c.t.Error(f)
	}
	c.t.Fatalf("no evidence that a timeout cut short a request (longest stall of the test's process %v)", c.stalls.Longest().Round(time.Millisecond))
}
