package guard

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestCall(t *testing.T) {
	if rec := Call(func() {}); rec != nil {
		t.Fatalf("Call(no panic) = %v, want nil", rec)
	}
	rec := Call(func() { panic("x") })
	if rec == nil || rec.Value != "x" || len(rec.Stack) == 0 {
		t.Fatalf("Call(panic) = %+v, want value x and a stack", rec)
	}
	if n := testing.AllocsPerRun(100, func() { Call(func() {}) }); n != 0 {
		t.Fatalf("Call allocates %v times without a panic, want 0", n)
	}
}
