package stage_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/stage"
)

// r35Watchdog is a hang detector only; no verdict depends on it.
const r35Watchdog = 20 * time.Second

func r35Wait(t *testing.T, ch <-chan struct{}, what string) bool {
	t.Helper()
	select {
	case <-ch:
		return true
	case <-time.After(r35Watchdog):
		t.Errorf("hung waiting for %s", what)
		return false
	}
}

// r35Run runs f under the watchdog.
func r35Run(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(r35Watchdog):
		t.Fatal("the pipeline hung")
	}
}

// r35Panics returns the panic value of f (nil if none).
func r35Panics(f func()) (v any) {
	defer func() { v = recover() }()
	f()
	return nil
}

// r35Acks records Done calls of an AckSource of items 0..n-1.
type r35Acks struct {
	mu    sync.Mutex
	calls map[int][]error
}

func newR35Acks() *r35Acks { return &r35Acks{calls: map[int][]error{}} }

type r35Ack struct {
	a  *r35Acks
	id int
}

func (k r35Ack) Done(err error) {
	k.a.mu.Lock()
	k.a.calls[k.id] = append(k.a.calls[k.id], err)
	k.a.mu.Unlock()
}

// source yields 0..n-1, each with an Ack.
func (a *r35Acks) source(n int) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		i := 0
		return func(context.Context) (int, stage.Ack, error) {
			if i >= n {
				return 0, nil, io.EOF
			}
			i++
			return i - 1, r35Ack{a, i - 1}, nil
		}, nil
	})
}

func (a *r35Acks) get(id int) []error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]error(nil), a.calls[id]...)
}

// r35Rec is one slog record, attributes flattened to strings.
type r35Rec struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

func (r r35Rec) all() string {
	var b strings.Builder
	b.WriteString(r.msg)
	for k, v := range r.attrs {
		b.WriteString(" " + k + "=" + v)
	}
	return b.String()
}

type r35Handler struct {
	mu   sync.Mutex
	recs []r35Rec
	pre  []slog.Attr
	min  slog.Level
	root *r35Handler
}

func newR35Handler() *r35Handler { h := &r35Handler{min: slog.LevelDebug}; h.root = h; return h }

func (h *r35Handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.root.min }

func (h *r35Handler) Handle(_ context.Context, r slog.Record) error {
	rec := r35Rec{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	var add func(prefix string, a slog.Attr)
	add = func(prefix string, a slog.Attr) {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			for _, g := range v.Group() {
				add(prefix+a.Key+".", g)
			}
			return
		}
		rec.attrs[prefix+a.Key] = v.String()
	}
	for _, a := range h.pre {
		add("", a)
	}
	r.Attrs(func(a slog.Attr) bool { add("", a); return true })
	h.root.mu.Lock()
	h.root.recs = append(h.root.recs, rec)
	h.root.mu.Unlock()
	return nil
}

func (h *r35Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &r35Handler{pre: append(append([]slog.Attr(nil), h.pre...), as...), root: h.root}
}
func (h *r35Handler) WithGroup(string) slog.Handler { return h }

func (h *r35Handler) records() []r35Rec {
	h.root.mu.Lock()
	defer h.root.mu.Unlock()
	return append([]r35Rec(nil), h.root.recs...)
}

// r35Names is an Observer recording each Info.
type r35Names struct {
	mu    sync.Mutex
	infos []stage.Info
}

func (o *r35Names) Stage(info stage.Info) stage.Watcher {
	o.mu.Lock()
	o.infos = append(o.infos, info)
	o.mu.Unlock()
	return nil
}

func (o *r35Names) get() []stage.Info {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]stage.Info(nil), o.infos...)
}
