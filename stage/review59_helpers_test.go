package stage_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r59Watchdog is the only duration review59's tests use: a hang watchdog,
// never a verdict.
const r59Watchdog = runcheck.Watchdog

// r59Wait waits for ch to be closed (or to deliver); false after the
// watchdog.
func r59Wait(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(r59Watchdog):
		return false
	}
}

// r59Acks records every Done call of the items of an r59Source, by id.
type r59Acks struct {
	mu    sync.Mutex
	calls map[int][]error
}

func newR59Acks() *r59Acks { return &r59Acks{calls: map[int][]error{}} }

type r59Ack struct {
	a  *r59Acks
	id int
}

func (k r59Ack) Done(err error) {
	k.a.mu.Lock()
	k.a.calls[k.id] = append(k.a.calls[k.id], err)
	k.a.mu.Unlock()
}

// fate is "-" (never told), "nil", "err" or "multi" (told more than once).
func (a *r59Acks) fate(id int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.calls[id]
	switch {
	case len(c) == 0:
		return "-"
	case len(c) > 1:
		return "multi"
	case c[0] == nil:
		return "nil"
	}
	return "err"
}

// fates summarises the fates of ids 0..n-1.
func (a *r59Acks) fates(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d:%s ", i, a.fate(i))
	}
	return b.String()
}

// r59Source is an AckSource of 0..n-1, each with its own Ack. Its next
// call after the last item (the n+1th) signals inEnd, then waits for its
// context to end (a source blocked on outside events) or for fail to be
// closed, whichever comes first; it returns the context's error, or err
// once fail is closed.
type r59Source struct {
	n     int
	acks  *r59Acks
	inEnd chan struct{}
	fail  chan struct{}
	err   error
}

func newR59Source(n int, acks *r59Acks) *r59Source {
	return &r59Source{n: n, acks: acks, inEnd: make(chan struct{}), fail: make(chan struct{})}
}

func (s *r59Source) stream() stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(ctx context.Context) (int, stage.Ack, error) {
			if i < s.n {
				i++
				return i - 1, r59Ack{s.acks, i - 1}, nil
			}
			if i == s.n {
				i++
				close(s.inEnd)
			}
			select {
			case <-ctx.Done():
				return 0, nil, ctx.Err()
			case <-s.fail:
				return 0, nil, s.err
			}
		}, nil
	})
}

// r59Sorted returns a sorted copy of xs.
func r59Sorted(xs []int) []int {
	ys := append([]int(nil), xs...)
	sort.Ints(ys)
	return ys
}

// r59Opts is Workers(w), Ordered if ordered, and more.
func r59Opts(w int, ordered bool, more ...stage.Option) []stage.Option {
	opts := []stage.Option{stage.Workers(w)}
	if ordered {
		opts = append(opts, stage.Ordered())
	}
	return append(opts, more...)
}
