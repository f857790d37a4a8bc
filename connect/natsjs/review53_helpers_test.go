package natsjs_test

import (
	"testing"
	"time"
)

// r53WaitWork waits until the WORK stream holds want messages (the
// server settles acknowledgements on its own time), failing the test with
// why after a hang watchdog of 30 s.
func r53WaitWork(t *testing.T, w *r14, want uint64, why string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := w.streamMsgs(t, "WORK")
		if left == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("WORK holds %d messages, want %d (%s); consumer %+v", left, want, why, w.info(t))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
