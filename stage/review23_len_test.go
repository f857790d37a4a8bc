package stage_test

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/stage"
)

// Stream.Len: "A run that ends early carries fewer, and so does one in
// which a Map or Concurrent under a Handle or Budget policy dropped items:
// Len is then the most s can carry." (The review found Len promising the
// exact count there; the doc now says what it is.) A run that does not end
// early, under a handler that drops an item, carries fewer items than Len,
// never more, and Len still knows the input's length.
func TestReview23LenOfMapUnderHandleDropsItems(t *testing.T) {
	boom := errors.New("boom")
	for _, policy := range []stage.ErrorPolicy{
		stage.Handle(func(context.Context, *stage.Error) error { return nil }),
		stage.Budget(1, nil),
	} {
		t.Run(policy.String(), func(t *testing.T) {
			s := stage.Map(stage.Indexed(3, func(i int) int { return i }), func(_ context.Context, v int) (int, error) {
				if v == 1 {
					return 0, boom
				}
				return v, nil
			}, stage.OnError(policy))
			n := 0
			if err := stage.Run(context.Background(), s, func(context.Context, int, error) error { n++; return nil }); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if l := s.Len(); l != 3 || n != 2 {
				t.Errorf("Len = %d and the run carried %d items; want Len 3 (the most) and 2 items", l, n)
			}
		})
	}
}
