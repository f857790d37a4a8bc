package stage_test

import (
	"context"
	"log/slog"
	"sync"
)

const (
	slogLevelInfo = slog.LevelInfo
	slogLevelWarn = slog.LevelWarn
)

// r13oLogCapture is a slog.Handler that records the level of each record.
type r13oLogCapture struct {
	mu  sync.Mutex
	lvl []slog.Level
}

func r13oSlog(h *r13oLogCapture) *slog.Logger { return slog.New(h) }

func (h *r13oLogCapture) Enabled(context.Context, slog.Level) bool { return true }

func (h *r13oLogCapture) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.lvl = append(h.lvl, r.Level)
	h.mu.Unlock()
	return nil
}

func (h *r13oLogCapture) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *r13oLogCapture) WithGroup(string) slog.Handler      { return h }

func (h *r13oLogCapture) count(l slog.Level) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, x := range h.lvl {
		if x == l {
			n++
		}
	}
	return n
}

func (h *r13oLogCapture) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.lvl)
}

func (h *r13oLogCapture) levels() []slog.Level {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Level(nil), h.lvl...)
}
