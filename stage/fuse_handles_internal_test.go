package stage

import (
	"context"
	"strings"
	"testing"
)

// A fused stage gives out at most one handle per place: a consumer that
// takes more than that (more than it opened the stream for, see
// Stream.openFor) is a bug of the library's, which panics at once instead
// of leaving a handle that sees the stage end while items remain.
func TestFusedStageRefusesAHandleBeyondItsPlaces(t *testing.T) {
	r := newRun(context.Background())
	defer r.finish()
	s := Map(Indexed(10, func(i int) int { return i }), func(_ context.Context, v int) (int, error) { return v, nil }, Workers(2))
	if s.fuse == nil {
		t.Fatal("a Map of 2 workers over Indexed is not fusable")
	}
	h := s.openFor(r, 2)
	if h.fused == nil {
		t.Fatal("opened for 2 consumers, the stream did not fuse")
	}
	h.next()
	h.next() // one per place: fine
	defer func() {
		msg, _ := recover().(string)
		if !strings.HasPrefix(msg, "sluice: a fused stage") {
			t.Fatalf("a third handle of a 2-place fused stage: recovered %q, want the library's panic", msg)
		}
	}()
	h.next()
}
