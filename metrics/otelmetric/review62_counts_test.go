package otelmetric_test

import (
	"testing"

	"github.com/sluicedev/sluice/internal/metricstest"
)

// TestReview62 runs the review62 counting scenarios (adversarial, from the
// documentation alone) against a real backend.
func TestReview62(t *testing.T) { metricstest.Review62(t, newEnv) }
