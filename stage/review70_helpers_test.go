package stage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

// r70gid returns the id of the calling goroutine.
func r70gid() int64 {
	var buf [64]byte
	n := runtime.Stack(buf[:], false)
	b := bytes.TrimPrefix(buf[:n], []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		panic("r70gid: " + err.Error())
	}
	return id
}

// r70kind classifies an error a Watcher's Finished got, as the Watcher's
// documentation lists the three cases.
func r70kind(err error) string {
	if err == nil {
		return "ok"
	}
	if _, ok := err.(*stage.Error); ok {
		return "failed"
	}
	var e *stage.Error
	if errors.Is(err, context.Canceled) && !errors.As(err, &e) {
		return "cut"
	}
	return fmt.Sprintf("unclassified(%T %v)", err, err)
}

// r70obs is an Observer that records what it is told and checks the
// invariants every run must keep, whatever ends it.
type r70obs struct {
	mu         sync.Mutex
	sinkG      atomic.Int64 // the goroutine that calls the sink; 0: not checked
	before     map[int64]string
	infos      []stage.Info
	watchers   []*r70watch
	violations []string
	// stageHook, if set, runs inside Stage before the watcher is returned.
	stageHook func(stage.Info)
	// armW, if set, is given each watcher before Stage returns it.
	armW func(*r70watch)
}

func (o *r70obs) violate(format string, args ...any) {
	o.mu.Lock()
	o.violations = append(o.violations, fmt.Sprintf(format, args...))
	o.mu.Unlock()
}

// arm records the calling goroutine as the sink's and the goroutines alive now.
func (o *r70obs) arm() {
	id, before := runcheck.Goroutines()
	o.sinkG.Store(id)
	o.mu.Lock()
	o.before = before
	o.mu.Unlock()
}

func (o *r70obs) Stage(info stage.Info) stage.Watcher {
	if g := o.sinkG.Load(); g != 0 && r70gid() != g {
		o.violate("Stage(%s) called from goroutine %d, not the sink's %d", info.Name, r70gid(), g)
	}
	if o.stageHook != nil {
		o.stageHook(info)
	}
	w := &r70watch{o: o, info: info}
	if o.armW != nil {
		o.armW(w)
	}
	o.mu.Lock()
	o.infos = append(o.infos, info)
	o.watchers = append(o.watchers, w)
	o.mu.Unlock()
	return w
}

// snapshot returns the watchers and violations recorded so far.
func (o *r70obs) snapshot() ([]*r70watch, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]*r70watch(nil), o.watchers...), append([]string(nil), o.violations...)
}

// check reports every violated invariant once the sink has returned.
func (o *r70obs) check() []string {
	ws, vs := o.snapshot()
	for _, w := range ws {
		if c := w.closed.Load(); c != 1 {
			vs = append(vs, fmt.Sprintf("stage %s: Closed called %d times by the time the sink returned, want 1", w.info.Name, c))
		}
		if r, f := w.recv.Load(), w.fin.Load(); r != f && !w.panicked.Load() {
			vs = append(vs, fmt.Sprintf("stage %s: Received %d, Finished %d after the run", w.info.Name, r, f))
		}
	}
	return vs
}

func (o *r70obs) byName(name string) *r70watch {
	ws, _ := o.snapshot()
	for _, w := range ws {
		if w.info.Name == name {
			return w
		}
	}
	return nil
}

// r70watch is a Watcher that counts and checks.
type r70watch struct {
	o      *r70obs
	info   stage.Info
	recv   atomic.Int64
	fin    atomic.Int64
	closed atomic.Int64
	// panicked is set by a test whose hook panics: the watcher is then told
	// nothing more, so Received and Finished need not balance.
	panicked atomic.Bool

	mu      sync.Mutex
	kinds   map[string]int
	errs    []*stage.Error
	cuts    []error
	latency []time.Duration

	// hooks, if set, run inside the methods (after the bookkeeping).
	onReceived func()
	onFinished func(time.Duration, error)
	onClosed   func()
}

func (w *r70watch) Received() {
	if w.closed.Load() != 0 {
		w.o.violate("stage %s: Received after Closed", w.info.Name)
	}
	w.recv.Add(1)
	if w.onReceived != nil {
		w.onReceived()
	}
}

func (w *r70watch) Finished(latency time.Duration, err error) {
	if w.closed.Load() != 0 {
		w.o.violate("stage %s: Finished after Closed", w.info.Name)
	}
	if f, r := w.fin.Add(1), w.recv.Load(); f > r {
		w.o.violate("stage %s: Finished number %d before its Received (%d received)", w.info.Name, f, r)
	}
	if latency < 0 {
		w.o.violate("stage %s: negative latency %v", w.info.Name, latency)
	}
	k := r70kind(err)
	w.mu.Lock()
	if w.kinds == nil {
		w.kinds = map[string]int{}
	}
	w.kinds[k]++
	switch k {
	case "failed":
		w.errs = append(w.errs, err.(*stage.Error))
	case "cut":
		w.cuts = append(w.cuts, err)
	case "ok":
	default:
		w.mu.Unlock()
		w.o.violate("stage %s: Finished with an error of none of the documented kinds: %s", w.info.Name, k)
		w.mu.Lock()
	}
	w.latency = append(w.latency, latency)
	w.mu.Unlock()
	if w.onFinished != nil {
		w.onFinished(latency, err)
	}
}

func (w *r70watch) Closed() {
	if g := w.o.sinkG.Load(); g != 0 && r70gid() != g {
		w.o.violate("stage %s: Closed from goroutine %d, not the sink's %d", w.info.Name, r70gid(), g)
	}
	if n := w.closed.Add(1); n > 1 {
		w.o.violate("stage %s: Closed called %d times", w.info.Name, n)
	}
	if r, f := w.recv.Load(), w.fin.Load(); r != f && !w.panicked.Load() {
		w.o.violate("stage %s: at Closed, Received %d but Finished %d", w.info.Name, r, f)
	}
	w.o.mu.Lock()
	before := w.o.before
	w.o.mu.Unlock()
	if before != nil {
		if left := runcheck.LeakedSince(before); len(left) > 0 {
			w.o.violate("stage %s: at Closed, %d goroutines of the run still alive:\n%s", w.info.Name, len(left), left[0])
		}
	}
	if w.onClosed != nil {
		w.onClosed()
	}
}

func (w *r70watch) kindCount(k string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.kinds[k]
}

func (w *r70watch) failedErrs() []*stage.Error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*stage.Error(nil), w.errs...)
}

func (w *r70watch) cutErrs() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.cuts...)
}

// r70handler is a slog.Handler that keeps every record (attributes flattened,
// groups included), and optionally panics.
type r70handler struct {
	mu      *sync.Mutex
	recs    *[]r70rec
	attrs   []slog.Attr
	panicAt func(slog.Record) bool
}

type r70rec struct {
	level slog.Level
	msg   string
	attrs []slog.Attr // flattened: group members follow, with their keys
}

func newR70handler() *r70handler {
	return &r70handler{mu: &sync.Mutex{}, recs: &[]r70rec{}}
}

func (h *r70handler) Enabled(context.Context, slog.Level) bool { return true }

func (h *r70handler) Handle(_ context.Context, r slog.Record) error {
	if h.panicAt != nil && h.panicAt(r) {
		panic("r70handler: panic in Handle")
	}
	rec := r70rec{level: r.Level, msg: r.Message}
	var flat func(a slog.Attr)
	flat = func(a slog.Attr) {
		a.Value = a.Value.Resolve()
		if a.Value.Kind() == slog.KindGroup {
			for _, g := range a.Value.Group() {
				flat(g)
			}
			return
		}
		rec.attrs = append(rec.attrs, a)
	}
	for _, a := range h.attrs {
		flat(a)
	}
	r.Attrs(func(a slog.Attr) bool { flat(a); return true })
	h.mu.Lock()
	*h.recs = append(*h.recs, rec)
	h.mu.Unlock()
	return nil
}

func (h *r70handler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *r70handler) WithGroup(string) slog.Handler { return h }

func (h *r70handler) records() []r70rec {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]r70rec(nil), *h.recs...)
}

// hasValue reports whether some attribute of r has a value that prints as s.
func (r r70rec) hasValue(s string) bool {
	for _, a := range r.attrs {
		if a.Value.String() == s {
			return true
		}
		if a.Value.Kind() == slog.KindDuration || a.Value.Kind() == slog.KindAny {
			if fmt.Sprint(a.Value.Any()) == s {
				return true
			}
		}
	}
	return false
}

// hasValueContaining reports whether some attribute of r prints with s in it.
func (r r70rec) hasValueContaining(s string) bool {
	for _, a := range r.attrs {
		if bytes.Contains([]byte(a.Value.String()), []byte(s)) {
			return true
		}
	}
	return false
}

func (r r70rec) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%v %q", r.level, r.msg)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	return b.String()
}

// r70gate is a counter others can wait on.
type r70gate struct {
	mu sync.Mutex
	n  int
	ch chan struct{}
	at int
}

// newR70gate returns a gate that opens once Arrive was called at times.
func newR70gate(at int) *r70gate { return &r70gate{ch: make(chan struct{}), at: at} }

func (g *r70gate) Arrive() {
	g.mu.Lock()
	g.n++
	if g.n == g.at {
		close(g.ch)
	}
	g.mu.Unlock()
}

func (g *r70gate) Wait() <-chan struct{} { return g.ch }
