package kafka

import "time"

// SetDeadLetterWait sets the bound on a dead letter's wait for a test and
// returns what restores it.
func SetDeadLetterWait(d time.Duration) (restore func()) {
	old := deadLetterWait
	deadLetterWait = d
	return func() { deadLetterWait = old }
}
