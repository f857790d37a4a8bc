// Package guard calls user code and recovers its panics.
package guard

import "github.com/sourcegraph/conc/panics"

// Call calls f and returns its panic, if any, with the value and the stack
// (conc's panics.Recovered). Unlike panics.Try it allocates nothing when f
// does not panic: it sits on every item's path.
func Call(f func()) (rec *panics.Recovered) {
	defer func() {
		if v := recover(); v != nil {
			r := panics.NewRecovered(1, v)
			rec = &r
		}
	}()
	f()
	return nil
}
