package stage

import (
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
)

// r61xSource is an Interruptible source for tests decided by the order of
// events. Its next records every call: the calling goroutine's role (see
// as) and whether the context was done (":try") or live (":wait"). A try
// takes an item from items if one is there, else answers the context's
// error; a wait waits for an item or the context's end. The first try made
// by the goroutine named hold says so (closes inTry) and waits at gate,
// holding the source's lock for as long as the test likes; then it does
// what atGate says: "" (nothing: the try goes on as above), "panic", or
// "eof" (returns io.EOF).
type r61xSource struct {
	items  chan int
	hold   string
	atGate string

	mu    sync.Mutex
	roles map[int64]string
	log   []string
	held  bool
	inTry chan struct{}
	gate  chan struct{}
}

func newR61xSource(hold, atGate string) *r61xSource {
	return &r61xSource{
		items: make(chan int, 16), hold: hold, atGate: atGate,
		roles: map[int64]string{}, inTry: make(chan struct{}), gate: make(chan struct{}),
	}
}

// as names the calling goroutine for the log.
func (s *r61xSource) as(role string) {
	s.mu.Lock()
	s.roles[goid()] = role
	s.mu.Unlock()
}

func (s *r61xSource) calls() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.log, " ")
}

func (s *r61xSource) next(ctx context.Context) (int, error) {
	live := ctx.Err() == nil
	s.mu.Lock()
	role := s.roles[goid()]
	kind := ":try"
	if live {
		kind = ":wait"
	}
	s.log = append(s.log, role+kind)
	first := !live && role == s.hold && !s.held
	if first {
		s.held = true
	}
	s.mu.Unlock()
	if first {
		close(s.inTry)
		<-s.gate
		switch s.atGate {
		case "panic":
			panic("r61x: next panicked in a try")
		case "eof":
			return 0, io.EOF
		}
	}
	if !live {
		select {
		case v := <-s.items:
			return v, nil
		default:
			return 0, ctx.Err()
		}
	}
	select {
	case v := <-s.items:
		return v, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func (s *r61xSource) stream() Stream[int] {
	return Interruptible(Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return s.next, nil
	}))
}

type r61xResult struct {
	v         int
	ok, ready bool
}

// r61xDecidingTry sets the scene: a goroutine of the stage (P) pulls p and
// is inside the try it makes before it waits (held at the source's gate,
// holding the lock); a consumer's try (T) has met the lock held and
// decided to wait for it (parked on the lock in tryPull). It returns the
// channels on which P's pull and T's try report.
func r61xDecidingTry(t *testing.T, s *r61xSource, p tryPuller[int]) (pDone, tDone chan r61xResult) {
	t.Helper()
	return review61DecidingTry(t, s.as, s.inTry, p)
}

// review61DecidingTry is r61xDecidingTry for any source whose goroutines
// are named by as and whose P's try closes inTry once it holds the lock.
func review61DecidingTry(t *testing.T, as func(string), inTry <-chan struct{}, p tryPuller[int]) (pDone, tDone chan r61xResult) {
	t.Helper()
	pDone, tDone = make(chan r61xResult, 1), make(chan r61xResult, 1)
	go func() {
		as("P")
		it, _, ok := p.pull()
		pDone <- r61xResult{v: it.v, ok: ok, ready: true}
	}()
	<-inTry
	ids := make(chan int64, 1)
	go func() {
		as("T")
		ids <- goid()
		it, _, ok, ready := p.tryPull()
		tDone <- r61xResult{v: it.v, ok: ok, ready: ready}
	}()
	review61WaitParked(t, <-ids, "tryPull")
	return pDone, tDone
}

// Source: "The run calls next only when a stage (or the sink) is ready to
// work on an item, never concurrently, and never once the run is cancelled
// or its input has ended." And puller's contract (engine.go): pull
// "returns ok == false once the run is cancelled".
//
// The run is cancelled while a stage goroutine's try holds the source's
// lock and a consumer's try has decided to wait for that lock. Once the
// held try returns, neither the consumer's try nor the pull (which would
// otherwise ask again and wait with the live context) calls next: the only
// call is the one in progress at the cancel. Both report the end.
func TestReview61TryXCancelWhileATryDecides(t *testing.T) {
	s := newR61xSource("P", "")
	r := newRun(context.Background())
	defer r.finish()
	p := s.stream().open.open(r).(tryPuller[int])
	p.willTry()
	// Items are ready: the held try takes one once the run is cancelled
	// (not delivered: the run is cancelled), and the source has not ended;
	// only the run's state keeps the others from being asked for more.
	s.items <- 7
	s.items <- 8
	pDone, tDone := r61xDecidingTry(t, s, p)

	r.cancelRun(errors.New("r61x: cancelled"))
	close(s.gate)
	var pr, tr r61xResult
	runcheck.NoHang(t, "pull and try after the cancel", func() { pr, tr = <-pDone, <-tDone })
	if got := s.calls(); got != "P:try" {
		t.Errorf("calls of next: %s; want only P:try, the call in progress when the run was cancelled", got)
	}
	if pr.ok {
		t.Errorf("the pull took an item (%d) from a cancelled run", pr.v)
	}
	if tr.ok || !tr.ready {
		t.Errorf("the try: ok %v, ready %v; want the end (false, true) once the run is cancelled", tr.ok, tr.ready)
	}
}

// Until: "Once stop is done, no source upstream is asked for another
// item", and the sink returns nil ("as at the end of the input"); Source:
// "an error next returns once stop is done ends the stream quietly,
// whether or not its context has ended yet."
//
// Stop comes while a stage goroutine's try holds the source's lock and a
// consumer's try has decided to wait for it. Whatever the held try
// returns, nobody asks next again: neither the consumer's try (which
// reports the end), nor the pull (no second try, no wait with the live
// context). The run records no failure.
func TestReview61TryXUntilStopWhileATryDecides(t *testing.T) {
	s := newR61xSource("P", "")
	r := newRun(context.Background())
	defer r.finish()
	stop, stopNow := context.WithCancel(context.Background())
	defer stopNow()
	p := Until(s.stream(), stop).open.open(r).(tryPuller[int])
	p.willTry()
	// Items are ready, so that the held try returns one (the call was in
	// progress when stop came) and the source does not end by itself:
	// only stop keeps the others from asking for more.
	s.items <- 7
	s.items <- 8
	pDone, tDone := r61xDecidingTry(t, s, p)

	stopNow()
	close(s.gate)
	var pr, tr r61xResult
	runcheck.NoHang(t, "pull and try after stop", func() { pr, tr = <-pDone, <-tDone })
	if got := s.calls(); got != "P:try" {
		t.Errorf("calls of next: %s; want only P:try, the call in progress when stop came", got)
	}
	if tr.ok || !tr.ready {
		t.Errorf("try ok %v ready %v (%d); want the end: stop was done before it got the lock", tr.ok, tr.ready, tr.v)
	}
	_ = pr // the held call's item may or may not be taken: it was in progress when stop came
	r.mu.Lock()
	srcErr := r.srcErr
	r.mu.Unlock()
	if srcErr != nil {
		t.Errorf("the run recorded %v; a stop while a try decides must end the stream quietly", srcErr)
	}
}

// Source: "any other error (or a panic in open, next or stop) becomes a
// *[SourceError] that ends the run", and next is never called "once ...
// its input has ended"; io.EOF "ends the stream".
//
// The stage goroutine's held try panics (or returns io.EOF) while a
// consumer's try has decided to wait for the lock. The consumer's try must
// then get the lock (not left behind a lock the panic unwound past) and
// report the end without calling next; the pull reports the end too
// without asking again. A panic is recorded as a *SourceError; io.EOF as
// nothing.
func TestReview61TryXHeldTryEndsWhileATryDecides(t *testing.T) {
	for _, atGate := range []string{"panic", "eof"} {
		t.Run(atGate, func(t *testing.T) {
			s := newR61xSource("P", atGate)
			r := newRun(context.Background())
			defer r.finish()
			p := s.stream().open.open(r).(tryPuller[int])
			p.willTry()
			s.items <- 7 // ready, but the held try ends the stream first
			pDone, tDone := r61xDecidingTry(t, s, p)

			close(s.gate)
			var pr, tr r61xResult
			runcheck.NoHang(t, "pull and try after the held try ended the stream", func() { pr, tr = <-pDone, <-tDone })
			if got := s.calls(); got != "P:try" {
				t.Errorf("calls of next: %s; want only P:try: the input ended there", got)
			}
			if pr.ok || tr.ok || !tr.ready {
				t.Errorf("pull ok %v; try ok %v ready %v; want both to report the end", pr.ok, tr.ok, tr.ready)
			}
			r.mu.Lock()
			srcErr := r.srcErr
			r.mu.Unlock()
			var se *SourceError
			switch atGate {
			case "panic":
				if !errors.As(srcErr, &se) {
					t.Errorf("the run recorded %v; want a *SourceError for the panic in next", srcErr)
				}
			case "eof":
				if srcErr != nil {
					t.Errorf("the run recorded %v; io.EOF ends the stream quietly", srcErr)
				}
			}
		})
	}
}

// The other order of the handshake. Interruptible: "the stage's own
// goroutines also ask with a done context first, and call next with the
// run's context only when that found nothing ready: over an empty source
// each wait costs one more call of next". Here a consumer's try (T) holds
// the lock (held at the gate) when the stage goroutine (P) comes to pull,
// and P waits for the lock in pullAfterTry. Once T finds nothing, P asks
// once with a done context, then waits with the live context, and gets
// the item that comes: the calls are exactly T:try P:try P:wait. And a try
// that comes while P waits in next (waiting set) does not wait for the
// lock: it answers "nothing ready" at once, without calling next.
func TestReview61TryXPullBehindATryThenAWaitingPullTurnsTriesAway(t *testing.T) {
	s := newR61xSource("T", "")
	r := newRun(context.Background())
	defer r.finish()
	p := s.stream().open.open(r).(tryPuller[int])
	p.willTry()

	tDone, pDone := make(chan r61xResult, 1), make(chan r61xResult, 1)
	go func() {
		s.as("T")
		it, _, ok, ready := p.tryPull()
		tDone <- r61xResult{v: it.v, ok: ok, ready: ready}
	}()
	<-s.inTry
	ids := make(chan int64, 1)
	go func() {
		s.as("P")
		ids <- goid()
		it, _, ok := p.pull()
		pDone <- r61xResult{v: it.v, ok: ok, ready: true}
	}()
	pid := <-ids
	review61WaitParked(t, pid, "pullAfterTry")
	close(s.gate)
	var tr r61xResult
	runcheck.NoHang(t, "the held try", func() { tr = <-tDone })
	if tr.ok || tr.ready {
		t.Errorf("the held try: ok %v ready %v; want nothing ready", tr.ok, tr.ready)
	}
	// P now waits in next with the live context (its stack is in the
	// source's select): a try must not wait for it.
	runcheck.NoHang(t, "the pull waits in next", func() {
		for {
			_, all := runcheck.Goroutines()
			st := all[pid]
			head, _, _ := strings.Cut(st, "\n")
			if strings.Contains(head, "[select") && strings.Contains(st, "r61xSource).next") {
				return
			}
			runtime.Gosched()
		}
	})
	t2 := make(chan r61xResult, 1)
	go func() {
		s.as("T2")
		_, _, ok, ready := p.tryPull()
		t2 <- r61xResult{ok: ok, ready: ready}
	}()
	var t2r r61xResult
	runcheck.NoHang(t, "a try while the pull waits in next", func() { t2r = <-t2 })
	if t2r.ok || t2r.ready {
		t.Errorf("a try while a pull waits in the empty source: ok %v ready %v; want nothing ready", t2r.ok, t2r.ready)
	}
	s.items <- 42
	var pr r61xResult
	runcheck.NoHang(t, "the pull's wait", func() { pr = <-pDone })
	if !pr.ok || pr.v != 42 {
		t.Errorf("the pull: %d, %v; want the item that came (42, true)", pr.v, pr.ok)
	}
	if got, want := s.calls(), "T:try P:try P:wait"; got != want {
		t.Errorf("calls of next: %s; want %s (a try turned away by a waiting pull calls nothing)", got, want)
	}
}
