package otelmetric_test

// Review34: adversarial tests of package otelmetric, written from the
// documentation of otelmetric and stage only. The scenarios are shared with
// the other adapters (internal/metricstest's Review34); review34_otel_test.go
// holds otelmetric's own.

import (
	"testing"

	"github.com/sluicedev/sluice/internal/metricstest"
)

func TestReview34Otel(t *testing.T) {
	metricstest.Review34(t, func(t testing.TB) metricstest.Env34 { return newEnv(t).Env34() })
}

// New: whatever the stage name, the reader collects and every sluice.stage
// attribute is valid UTF-8; review36 checks the names recorded.
func TestReview34OtelInvalidUTF8Names(t *testing.T) {
	metricstest.LabelsValidUTF8(t, newEnv(t))
}
