package stage

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
)

// review61Script is an Interruptible source whose next records every call
// (who made it, and whether with a done context) and answers a done
// context with its error (the source is empty), the live context with an
// item at once. The first try of the goroutine named hold waits at gate
// (it says so by closing inTry), holding the source's lock for as long as
// the test likes: a stage's pull in the middle of the try it makes before
// it waits.
type review61Script struct {
	mu    sync.Mutex
	roles map[int64]string
	log   []string
	hold  string
	held  bool
	inTry chan struct{}
	gate  chan struct{}
}

func newReview61Script(hold string) *review61Script {
	return &review61Script{roles: map[int64]string{}, hold: hold, inTry: make(chan struct{}), gate: make(chan struct{})}
}

// as names the calling goroutine.
func (s *review61Script) as(role string) {
	s.mu.Lock()
	s.roles[goid()] = role
	s.mu.Unlock()
}

func (s *review61Script) calls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.log...)
}

func (s *review61Script) stream() Stream[int] {
	return Interruptible(Source(func(context.Context) (func(context.Context) (int, error), func()) {
		return func(ctx context.Context) (int, error) {
			live := ctx.Err() == nil
			s.mu.Lock()
			role := s.roles[goid()]
			kind := ":try"
			if live {
				kind = ":wait"
			}
			s.log = append(s.log, role+kind)
			first := role == s.hold && !live && !s.held
			if first {
				s.held = true
			}
			s.mu.Unlock()
			if first {
				close(s.inTry)
				<-s.gate
			}
			if live {
				return 42, nil // the wait: an item came
			}
			return 0, ctx.Err() // nothing ready
		}, nil
	}))
}

// review61WaitParked waits until goroutine id is parked in (or spinning
// for) the source's lock, called from fn (tryPull or pullAfterTry): an
// order of events, read off the goroutine's stack.
func review61WaitParked(t *testing.T, id int64, fn string) {
	t.Helper()
	runcheck.NoHang(t, "waiting for goroutine to block on the source's lock in "+fn, func() {
		for {
			_, all := runcheck.Goroutines()
			st := all[id]
			if strings.Contains(st, "sync.(*Mutex).Lock") && strings.Contains(st, "sourcePuller[...])."+fn+"(") {
				return
			}
			runtime.Gosched()
		}
	})
}

// The second half of the handshake, which no test forced before. The
// Interruptible doc: "So that a consumer goroutine that finds another call
// of next in progress can tell an empty source from one taking a ready item
// (it then waits for that call), the stage's own goroutines also ask with a
// done context first, and call next with the run's context only when that
// found nothing ready: over an empty source each wait costs one more call
// of next, and one more when a consumer goroutine asks at that moment (the
// stage's goroutine then lets it go first and asks again)." And tryPull's
// own comment: "a try that saw waiting unset waits only for a holder that
// will not wait in next".
//
// Ordered by gates, not time: a stage goroutine (P) pulls an empty source
// and is inside its try (done context), holding the lock; a consumer's try
// (T) then misses the lock and has decided to wait for it (it is parked in
// the lock inside tryPull, so it read waiting unset). P's try then finds
// nothing. P must let T go first: T's try (a call of next with a done
// context) comes before P's wait (a call with the live context), and P
// asks once more before it waits. The calls must be exactly
// P:try, T:try, P:try, P:wait. A pull that ignored contenders would wait in
// next holding the lock, and T (a consumer goroutine, whose outputs wait
// for it) would sit behind the wait for as long as the source stays empty:
// the calls would be P:try, P:wait, T:try.
func TestReview61TryPullLetsADecidedTryGoFirst(t *testing.T) {
	s := newReview61Script("P")
	r := newRun(context.Background())
	defer r.finish()
	p := s.stream().open.open(r).(tryPuller[int])
	p.willTry()

	pDone, tDone := review61DecidingTry(t, s.as, s.inTry, p)
	close(s.gate)
	var pr, tr r61xResult
	runcheck.NoHang(t, "pull and try", func() { pr, tr = <-pDone, <-tDone })

	if got, want := strings.Join(s.calls(), " "), "P:try T:try P:try P:wait"; got != want {
		t.Errorf("calls of next: %s, want %s: the pull must let the try that decided to wait for the lock go first, and wait in next only after it", got, want)
	}
	if tr.ready || tr.ok {
		t.Errorf("the try: ok %v, ready %v; want nothing ready (the source was empty)", tr.ok, tr.ready)
	}
	if !pr.ok || pr.v != 42 {
		t.Errorf("the pull: %d, %v; want the item its wait got (42, true)", pr.v, pr.ok)
	}
}

// As above with two consumers' tries deciding at once, and another of the
// stage's goroutines (B) queued on the lock before them. The same comment:
// "While a try is deciding (it may have seen waiting unset and wait for the
// lock), let it have the lock: first, so that the stage's goroutines queued
// on the lock do not each call next meanwhile". So no goroutine of the
// stage calls next until both tries have; then one of them tries and waits,
// then the other (each wait costs one more call). At most 2 waits, 3 stage
// tries: one per wait, one per consumer try met at most.
func TestReview61TryPullQueuedPullsLetDecidedTriesGoFirst(t *testing.T) {
	s := newReview61Script("P")
	r := newRun(context.Background())
	defer r.finish()
	p := s.stream().open.open(r).(tryPuller[int])
	p.willTry()

	done := make(chan bool, 4)
	ids := make(chan int64, 1)
	start := func(role string, try bool) int64 {
		go func() {
			s.as(role)
			ids <- goid()
			if try {
				_, _, ok, ready := p.tryPull()
				done <- !ok && !ready
				return
			}
			it, _, ok := p.pull()
			done <- ok && it.v == 42
		}()
		return <-ids
	}
	start("P", false)
	<-s.inTry
	review61WaitParked(t, start("B", false), "pullAfterTry")
	review61WaitParked(t, start("T1", true), "tryPull")
	review61WaitParked(t, start("T2", true), "tryPull")
	close(s.gate)
	runcheck.NoHang(t, "pulls and tries", func() {
		for range 4 {
			if !<-done {
				t.Errorf("a pull did not get its wait's item, or a try found something (the source was empty)")
			}
		}
	})
	calls := s.calls()
	got := strings.Join(calls, " ")
	if len(calls) != 7 {
		t.Fatalf("calls of next: %s; want 7: P's try, the two consumers' tries, and a try and a wait for each pull", got)
	}
	if calls[0] != "P:try" {
		t.Fatalf("calls of next: %s; P's try first", got)
	}
	if tries := map[string]bool{calls[1]: true, calls[2]: true}; !tries["T1:try"] || !tries["T2:try"] {
		t.Errorf("calls of next: %s; want the two consumers' tries right after P's: they decided to wait for the lock, and no goroutine of the stage calls next meanwhile", got)
	}
	x, y := strings.TrimSuffix(calls[3], ":try"), strings.TrimSuffix(calls[5], ":try")
	if want := x + ":try " + x + ":wait " + y + ":try " + y + ":wait"; strings.Join(calls[3:], " ") != want || x == y {
		t.Errorf("calls of next: %s; want then each pull's try and wait in turn", got)
	}
}
