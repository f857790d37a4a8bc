package stage

import (
	"os"
	"strings"
)

// In this package's tests, a run's recycled states are zeroed but never
// reused, so that a use of one after its run finished fails the test that
// did it instead of quietly corrupting another run: a use through one of
// its pointers dereferences nil, and a use of only its locks or counters
// races with the zeroing, which -race reports. Only the child process of a
// test whose name holds "Recycled" (runcheck names the test it re-runs)
// reuses them: such a test checks that runs sharing recycled states stay
// apart.
func init() {
	if !strings.Contains(os.Getenv("SLUICE_RUNCHECK_CHILD"), "Recycled") {
		recycleReuse = false
	}
}
