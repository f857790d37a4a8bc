package prom_test

// Review34: adversarial tests of package prom, written from the
// documentation of prom and stage only. The scenarios are shared with the
// other adapters (internal/metricstest's Review34).

import (
	"testing"

	"github.com/sluicedev/sluice/internal/metricstest"
)

func TestReview34Prom(t *testing.T) {
	metricstest.Review34(t, func(t testing.TB) metricstest.Env34 { return newEnv(t).Env34() })
}

// New: "A stage name that is not valid UTF-8, which a label cannot hold,
// is recorded with each run of invalid bytes replaced by one U+FFFD."
// Whatever the name, gathering on a pedantic registry succeeds and every
// label is valid UTF-8; review36 checks the names recorded.
func TestReview34PromInvalidUTF8Names(t *testing.T) {
	metricstest.LabelsValidUTF8(t, newEnv(t))
}
