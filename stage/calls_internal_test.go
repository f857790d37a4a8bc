package stage

import (
	"math"
	"testing"
	"time"
)

// The wait before the n-th retry is random in [d/2, d), d = backoff·2^(n-1),
// capped at 64·backoff (Retry's doc).
func TestBackoffRangeAndCap(t *testing.T) {
	c := callOptions{retry: retry{attempts: 20, backoff: 10 * time.Millisecond}}
	for attempt := 1; attempt <= 12; attempt++ {
		d := min(10*time.Millisecond<<(attempt-1), 64*10*time.Millisecond)
		for range 200 {
			if w := c.backoff(attempt); w < d/2 || w >= d {
				t.Fatalf("attempt %d: waited %v, want in [%v, %v)", attempt, w, d/2, d)
			}
		}
	}
}

// A first wait so long that 64 times it overflows saturates at the longest
// Duration: never a short or negative wait (an immediate retry).
func TestBackoffSaturates(t *testing.T) {
	for _, b := range []time.Duration{math.MaxInt64 / 64, math.MaxInt64/64 + 1, math.MaxInt64 / 2, math.MaxInt64} {
		c := callOptions{retry: retry{attempts: 20, backoff: b}}
		for attempt := 1; attempt <= 12; attempt++ {
			d := time.Duration(math.MaxInt64)
			if k := min(attempt-1, 6); b <= d>>k {
				d = b << k
			}
			if d < b {
				t.Fatalf("backoff %v, attempt %d: cap %v below the first wait", b, attempt, d)
			}
			for range 50 {
				if w := c.backoff(attempt); w < d/2 || w >= d {
					t.Fatalf("backoff %v, attempt %d: waited %v, want in [%v, %v)", b, attempt, w, d/2, d)
				}
			}
		}
	}
}
