package stage_test

import (
	"errors"
	"time"
)

// r41Watchdog is a hang detector only; no verdict depends on it.
const r41Watchdog = 30 * time.Second

var errR41 = errors.New("review41: trigger")

// r41Until polls cond until it holds or the watchdog passes; it reports
// whether cond held. Polling only finds a state sooner or later: no verdict
// depends on how long it took.
func r41Until(cond func() bool) bool {
	deadline := time.Now().Add(r41Watchdog / 2)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(200 * time.Microsecond)
	}
	return true
}

// r41Out is one output: item i's j-th emit (attempt a).
type r41Out struct{ i, j, a int }
