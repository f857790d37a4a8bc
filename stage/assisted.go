package stage

import "runtime"

// assisted is the handle of a consumer goroutine that is one of the workers
// of the stage it pulls from (see fuse). It takes what the stage's own
// goroutines have queued; when nothing is queued, it runs the stage's
// function on the next input item itself instead of sleeping.
type assisted[In, Out any] struct {
	out     *pipe[Out]
	own     *fused[In, Out]
	ownDone bool // the input has ended (or the run stopped) for own
}

func (a *assisted[In, Out]) pull() (item[Out], int, bool) {
	if !a.ownDone && a.out.ready.Load() == 0 {
		if it, idx, ok := a.own.pull(); ok {
			return it, idx, true
		}
		a.ownDone = true
	}
	it, _, ok := a.out.pull()
	if !ok {
		return it, 0, false
	}
	return it, int(a.own.count.Add(1) - 1), true
}

// pullAll serves the sink: what is queued, or else one item of its own.
func (a *assisted[In, Out]) pullAll(dst []item[Out]) ([]item[Out], bool) {
	if !a.ownDone && a.out.ready.Load() == 0 {
		// The sink has consumed its previous batch: its tokens go back.
		if a.out.releaseHeld() {
			// A producer woke up on this processor, where it would wait
			// behind the call we are about to make; let it go first, so
			// that the scheduler moves one of us to the other processor.
			runtime.Gosched()
		}
		if it, _, ok := a.own.pull(); ok {
			return append(dst, it), true
		}
		a.ownDone = true
	}
	return a.out.pullAll(dst)
}
