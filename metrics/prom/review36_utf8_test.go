package prom_test

import (
	"testing"

	"github.com/sluicedev/sluice/internal/metricstest"
)

// New: invalid UTF-8 in a stage name is recorded with each run of invalid
// bytes replaced by one U+FFFD (see metricstest.InvalidUTF8Names).
func TestReview36PromInvalidUTF8Names(t *testing.T) {
	metricstest.InvalidUTF8Names(t, newEnv(t))
}
