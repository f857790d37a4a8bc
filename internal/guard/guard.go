// Package guard calls user code and recovers its panics.
package guard

import (
	"runtime"

	"github.com/sourcegraph/conc/panics"
)

// Call calls f and returns its panic, if any, with the value and the stack
// (conc's panics.Recovered). Unlike panics.Try it allocates nothing when f
// does not panic: it sits on every item's path.
//
// A panic(nil) is a panic too: its value is a *runtime.PanicNilError even
// under GODEBUG=panicnil=1, where recover returns nil for it (f did not
// return, so it panicked). A runtime.Goexit in f is not recovered: it
// goes on ending the goroutine (the run's goroutines notice, see
// stage.ErrGoexit).
func Call(f func()) (rec *panics.Recovered) {
	returned := false
	defer func() {
		if v := recover(); v != nil || !returned {
			if v == nil {
				v = new(runtime.PanicNilError)
			}
			r := panics.NewRecovered(1, v)
			rec = &r
		}
	}()
	f()
	returned = true
	return nil
}
