package stage

import "github.com/sourcegraph/conc/panics"

// try calls f and returns its panic, if any, as a *PanicError. Unlike
// panics.Try, it allocates nothing when f does not panic: this is on every
// item's path.
func try(f func()) (pe *PanicError) {
	defer func() {
		if v := recover(); v != nil {
			rec := panics.NewRecovered(1, v)
			pe = panicError(&rec)
		}
	}()
	f()
	return nil
}
