package stage_test

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// rvWatchdog is the only duration the contract tests use: a hang watchdog.
const rvWatchdog = 20 * time.Second

// rvWait waits for ch to be closed; false after the watchdog.
func rvWait(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-time.After(rvWatchdog):
		return false
	}
}

// rvAcks records every Done call of the acknowledgements of an AckSource
// whose item ids are the values.
type rvAcks struct {
	mu      sync.Mutex
	calls   map[int][]error
	first   map[int]chan struct{}
	panicOn func(id int, err error) bool
	nexts   int // items handed out
}

func newRvAcks() *rvAcks {
	return &rvAcks{calls: map[int][]error{}, first: map[int]chan struct{}{}}
}

type rvAck struct {
	a  *rvAcks
	id int
}

func (k rvAck) Done(err error) {
	a := k.a
	a.mu.Lock()
	a.calls[k.id] = append(a.calls[k.id], err)
	n := len(a.calls[k.id])
	ch := a.chLocked(k.id)
	p := a.panicOn
	a.mu.Unlock()
	if n == 1 {
		close(ch)
	}
	if p != nil && p(k.id, err) {
		panic(fmt.Sprintf("Done panics for item %d", k.id))
	}
}

func (a *rvAcks) chLocked(id int) chan struct{} {
	ch, ok := a.first[id]
	if !ok {
		ch = make(chan struct{})
		a.first[id] = ch
	}
	return ch
}

// done returns a channel closed at item id's first Done call.
func (a *rvAcks) done(id int) <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.chLocked(id)
}

// fate is "none", "nil", "err: msg" or "DUP(n): ...".
func (a *rvAcks) fate(id int) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := a.calls[id]
	switch {
	case len(c) == 0:
		return "none"
	case len(c) > 1:
		return fmt.Sprintf("DUP(%d): %v", len(c), c)
	case c[0] == nil:
		return "nil"
	}
	return "err: " + c[0].Error()
}

func (a *rvAcks) err(id int) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.calls[id]) == 0 {
		return nil
	}
	return a.calls[id][0]
}

func (a *rvAcks) count(id int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls[id])
}

// source is an AckSource of vals, each with its own acknowledgement.
func (a *rvAcks) source(vals []int) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i == len(vals) {
				return 0, nil, io.EOF
			}
			i++
			a.mu.Lock()
			a.nexts++
			a.mu.Unlock()
			return vals[i-1], rvAck{a, vals[i-1]}, nil
		}, nil
	})
}

// fates returns a compact summary id->fate for ids 0..n-1.
func (a *rvAcks) fates(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "%d:%s ", i, a.fate(i))
	}
	return b.String()
}

// rvNames records the Info of every Stage call.
type rvObserver struct {
	mu    sync.Mutex
	infos []stage.Info
	hook  func(stage.Info)
}

func (o *rvObserver) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	o.infos = append(o.infos, info)
	h := o.hook
	o.mu.Unlock()
	if h != nil {
		h(info)
	}
	return nil
}

func (o *rvObserver) names() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var ns []string
	for _, i := range o.infos {
		ns = append(ns, i.Name)
	}
	return ns
}

func rvSorted(xs []int) []int {
	ys := append([]int(nil), xs...)
	sort.Ints(ys)
	return ys
}

// rvRun runs f under the hang watchdog of the test.
func rvRun(t *testing.T, f func()) { t.Helper(); hangGuard(t, f) }
