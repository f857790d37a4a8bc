package stage

import "os"

// In this package's tests, a run's recycled states are zeroed but never
// reused: any use of one after its run finished dereferences nil and fails
// the test that did it, instead of quietly corrupting another run. Only
// the child process of TestRecycledStatesServeConcurrentRuns reuses them.
func init() {
	if os.Getenv("SLUICE_RUNCHECK_CHILD") != "TestRecycledStatesServeConcurrentRuns" {
		recycleReuse = false
	}
}
