//go:build race

package sink_test

// r68Race is true when the tests run under the race detector, where
// allocation counts are not the program's.
const r68Race = true
