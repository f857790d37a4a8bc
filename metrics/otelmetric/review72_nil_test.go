package otelmetric_test

import (
	"strings"
	"testing"

	"github.com/sluicedev/sluice/metrics/otelmetric"
)

// "New panics if meter is nil (a programmer error; the message starts with
// "sluice:")."
func TestReview72NewNilMeterPanics(t *testing.T) {
	defer func() {
		msg, _ := recover().(string)
		if !strings.HasPrefix(msg, "sluice:") {
			t.Fatalf("New(nil) panicked with %q, want a message starting with sluice:", msg)
		}
	}()
	otelmetric.New(nil)
}
