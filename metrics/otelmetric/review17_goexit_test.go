package otelmetric_test

import (
	"testing"

	"github.com/sluicedev/sluice/internal/metricstest"
)

// A stage function's runtime.Goexit ends its call: nothing stays in flight
// (see metricstest.GoexitLeavesNoItemInFlight).
func TestReview17GoexitLeavesNoItemInFlight(t *testing.T) {
	metricstest.GoexitLeavesNoItemInFlight(t, newEnv(t))
}
