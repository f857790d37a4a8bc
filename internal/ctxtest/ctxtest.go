// Package ctxtest holds context types of a caller's own for the tests of
// several packages: the run watches such a context from a goroutine of its
// own, where a standard context (or one wrapping it) is seen into by the
// context package.
package ctxtest

import (
	"context"
	"sync"
	"time"
)

// DoneCtx is a context type of the caller's with its own Done channel
// (neither a standard context nor one wrapping one). It keeps the Context
// contract: Err is non-nil exactly once Done is closed. Its zero value is
// not usable: make it with NewDoneCtx.
type DoneCtx struct {
	done chan struct{}
	mu   sync.Mutex
	err  error
}

// NewDoneCtx returns a live DoneCtx.
func NewDoneCtx() *DoneCtx { return &DoneCtx{done: make(chan struct{})} }

// Deadline reports no deadline.
func (c *DoneCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done is closed by Cancel.
func (c *DoneCtx) Done() <-chan struct{} { return c.done }

// Value holds nothing.
func (c *DoneCtx) Value(any) any { return nil }

// Err is context.Canceled once Cancel was called, else nil.
func (c *DoneCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Cancel ends the context (its Err set, then its Done closed); later calls
// do nothing.
func (c *DoneCtx) Cancel() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = context.Canceled
		close(c.done)
	}
}

// Key is the key of the value WrapCtx adds.
type Key struct{}

// WrapCtx wraps a standard context and adds a value of its own (under
// Key): the context package still finds the standard context inside.
type WrapCtx struct{ context.Context }

// Value answers Key itself and asks the wrapped context the rest.
func (c WrapCtx) Value(k any) any {
	if k == (Key{}) {
		return "ctxtest"
	}
	return c.Context.Value(k)
}

// Error is an error type whose constants compare with ==, as errors.Is
// does: a test's own cause or failure.
type Error string

// Error returns the string itself.
func (e Error) Error() string { return string(e) }

// The kinds of caller's context that New makes.
const (
	Std   = "std"   // context.WithCancel
	Own   = "own"   // a DoneCtx: a type the context package cannot see into
	Wrap  = "wrap"  // a WrapCtx around a context.WithCancel
	Cause = "cause" // context.WithCancelCause, cancelled with Error("ctxtest: cancelled")
)

// New returns a live context of the kind and the function that ends it,
// so that a scenario runs under each kind of caller's context; an unknown
// kind is Std.
func New(kind string) (context.Context, func()) {
	switch kind {
	case Own:
		c := NewDoneCtx()
		return c, c.Cancel
	case Wrap:
		ctx, cancel := context.WithCancel(context.Background())
		return WrapCtx{Context: ctx}, cancel
	case Cause:
		ctx, cancel := context.WithCancelCause(context.Background())
		return ctx, func() { cancel(Error("ctxtest: cancelled")) }
	}
	return context.WithCancel(context.Background())
}
