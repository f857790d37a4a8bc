package stage

import (
	"context"
	"errors"
)

// Until is graceful drain: the returned stream is in, until stop is done.
// Then the sources upstream of Until take no new item (a source blocked
// waiting for one, such as source.Chan, sees its context end and stops
// quietly), while every item they already produced goes on through the
// stages: calls in flight finish, [Batch] flushes its partial batch, and the
// sink returns nil once the last of them has arrived, as at the end of the
// input.
//
// Cancelling the run's context (the ctx given to the sink) is the other way
// to stop, and it aborts: calls in flight see ctx.Done(), nothing more is
// delivered, and the sink returns the cancellation error. A service passes
// its shutdown signal as stop and keeps ctx for a hard deadline:
//
//	stop, _ := signal.NotifyContext(ctx, syscall.SIGTERM)
//	err := sink.ForEach(ctx, stage.Until(in, stop), store)
//
// Until drains only the sources it is built on; in a [Merge] of an Until
// branch and another, the other branch runs on. Put Until before a [Tee]
// (or over a stream that reads all its branches), not on one of its
// branches: the branches share one source. Once stop is done, no source
// upstream is asked for another item. Until costs almost nothing per item:
// a source looks at stop.Done() before it takes an item. Until panics if
// in is the zero Stream, if stop is nil, or if in reads some branches of a
// Tee but not all.
func Until[T any](in Stream[T], stop context.Context) Stream[T] {
	in.check("stage.Until")
	checkFunc(stop == nil, "stage.Until", "stop context")
	checkWholeTees("stage.Until", in.n)
	out := Stream[T]{
		n: &node{kind: "until", inputs: []*node{in.n}, known: in.n.known, total: in.n.total, waits: in.n.waits, tries: in.n.tries},
		open: openFunc[T](func(r *run) puller[T] {
			defer r.enterScope(stop)()
			return in.open.open(r)
		}),
	}
	if in.fuse != nil {
		out.fuseConsumers = in.fuseConsumers
		out.fuse = fuseFunc[T](func(r *run) handles[T] {
			defer r.enterScope(stop)()
			return in.fuse.fuse(r)
		})
	}
	return out
}

// drained is an Until's hook: its stop is done, and its scope's context
// ends, which wakes a source waiting in next.
func drained(h *ctxHook) { h.cancel(errDrained) }

// errDrained is the cause with which a drain scope's context ends.
var errDrained = errors.New("sluice: drained")

// drainScope is the part of a run upstream of an Until: its sources see its
// context, and look at its stop context before they take an item.
type drainScope struct {
	ctx    context.Context
	parent *drainScope
	stop   <-chan struct{} // the stop context's Done
	hook   ctxHook         // on the stop context: ends ctx
	watch  watched         // the stop context, as hook watches it
}

// stopped reports whether the sources of the scope should take no new
// item: the stop context of the scope, or of a scope around it, is done.
// It looks at the stop contexts themselves, so that once one is done no
// source takes another item.
func (s *drainScope) stopped() bool {
	for ; s != nil; s = s.parent {
		select {
		case <-s.stop:
			return true
		default:
		}
	}
	return false
}

// context is the context for the sources of the scope.
func (s *drainScope) context(r *run) context.Context {
	if s == nil {
		return r.sourcesContext()
	}
	return s.ctx
}

// enterScope makes the sources opened from now on belong to a new scope
// that stops when stop is done; the function it returns leaves the scope.
func (r *run) enterScope(stop context.Context) (leave func()) {
	parent := r.scope
	ctx, cancel := context.WithCancelCause(parent.context(r))
	s := &drainScope{ctx: ctx, parent: parent, stop: stop.Done()}
	s.hook.f, s.hook.cancel = drained, cancel
	s.watch = watched{Context: stop, r: r}
	if rec := r.hook(&s.hook, &s.watch); rec != nil {
		r.ctxPanicked(rec) // stop's methods panicked (see run_userctx.go)
	} else {
		o := r.opened()
		o.untilHooks = append(o.untilHooks, &s.hook)
	}
	r.onFinish(func() { cancel(errFinished) })
	r.scope = s
	return func() { r.scope = parent }
}
