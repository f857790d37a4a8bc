package stage

import (
	"testing"
	"time"
)

// The wait before the n-th retry is random in [d/2, d), d = backoff·2^(n-1),
// capped at 64·backoff (Retry's doc).
func TestBackoffRangeAndCap(t *testing.T) {
	c := config{retry: retry{attempts: 20, backoff: 10 * time.Millisecond}}
	for attempt := 1; attempt <= 12; attempt++ {
		d := min(10*time.Millisecond<<(attempt-1), 64*10*time.Millisecond)
		for range 200 {
			if w := c.backoff(attempt); w < d/2 || w >= d {
				t.Fatalf("attempt %d: waited %v, want in [%v, %v)", attempt, w, d/2, d)
			}
		}
	}
}
