package kafka

import "time"

// SetDeadLetterWait sets the bound on a dead letter's wait for a test and
// returns what restores it.
func SetDeadLetterWait(d time.Duration) (restore func()) {
	old := deadLetterWait
	deadLetterWait = d
	return func() { deadLetterWait = old }
}

// SetResumeHook sets a function to run when a settlement gives a full
// partition room again, before the poll in progress is ended; it returns
// what restores the hook.
func SetResumeHook(f func()) (restore func()) {
	old := resumeHook
	resumeHook = f
	return func() { resumeHook = old }
}
