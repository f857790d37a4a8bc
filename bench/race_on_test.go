//go:build race

package bench

// raceEnabled: the test binary runs under the race detector, which drops a
// quarter of what goes back to a sync.Pool.
const raceEnabled = true
