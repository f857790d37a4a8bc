package natsjs_test

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/natsjs"
)

// Invalid options panic when they are made, naming the function.
func TestOptionsMisusePanics(t *testing.T) {
	cases := map[string]func(){
		"natsjs.KeepAlive":  func() { natsjs.KeepAlive(0) },
		"natsjs.ReadAhead":  func() { natsjs.ReadAhead(natsjs.MaxReadAhead + 1) },
		"natsjs.Backoff":    func() { natsjs.Backoff(time.Second, time.Millisecond) },
		"natsjs.OnAckError": func() { natsjs.OnAckError(nil) },
		"natsjs.DeadLetter": func() { natsjs.DeadLetter(nil, "dlq") },
		"natsjs.Source":     func() { natsjs.Source[int](nil, nil) },
	}
	for name, f := range cases {
		msg := func() (msg string) {
			defer func() { msg = fmt.Sprint(recover()) }()
			f()
			return ""
		}()
		if !strings.HasPrefix(msg, "sluice: "+name+":") {
			t.Errorf("%s: panic %q, want one starting with %q", name, msg, "sluice: "+name+":")
		}
	}
}

// Backoff: "base·2^(n-1) after its n-th delivery, capped at max", at every
// n, for every base: no overflow to a short or negative delay.
func TestNakDelay(t *testing.T) {
	for _, c := range []struct {
		base, max time.Duration
		n         uint64
		want      time.Duration
	}{
		{time.Second, time.Minute, 1, time.Second},
		{time.Second, time.Minute, 6, 32 * time.Second},
		{time.Second, time.Minute, 7, time.Minute},
		{time.Millisecond, time.Hour, 70, time.Hour},
		{1, time.Hour, 40, 1 << 39},
		{1, time.Hour, 64, time.Hour},
		{1, time.Hour, math.MaxUint64, time.Hour},
		{0, time.Hour, 5, 0},
		{0, 0, math.MaxUint64, 0},
		{3 * time.Hour, 10 * time.Hour, 3, 10 * time.Hour},
		{3 * time.Hour, 10 * time.Hour, 21, 10 * time.Hour},
		{math.MaxInt64, math.MaxInt64, 2, math.MaxInt64},
		{math.MaxInt64 / 2, math.MaxInt64, 2, math.MaxInt64 - 1},
	} {
		if got := natsjs.NakDelay(c.base, c.max, c.n); got != c.want {
			t.Errorf("base %v max %v delivery %d: %v, want %v", c.base, c.max, c.n, got, c.want)
		}
	}
}
