package main

import (
	"testing"

	"github.com/sluicedev/sluice/examples/internal/cmdtest"
)

// Review80: "-scale: multiplies every sleep"; the doc: each task sleeps "a
// random time up to 5 s" times the scale. A scale whose sleeps do not fit
// in a time.Duration (+Inf, or 1e10: up to 5e10 s > 292 years) cannot be
// honoured: like a negative or NaN scale (TestReview73BadFlagsRefused), it
// is refused with status 2, not run with waits that overflow.
func TestReview80ScaleTooLargeRefused(t *testing.T) {
	bin := cmdtest.Build(t)
	for _, s := range []string{"Inf", "+Inf", "1e10"} {
		cmdtest.Refused(t, bin, "want -limit 1 or more", "-scale", s, "-seed", "1")
	}
}
