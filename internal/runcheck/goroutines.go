package runcheck

import (
	"fmt"
	"strings"
	"sync"
)

// OnGoroutines runs f(0), ..., f(n-1) at once, each on a goroutine of its
// own, and returns "ok" when every one returned "", else what they
// returned, joined: the result of a scenario that drives many runs at once
// (as InChild's body, whose result the parent compares with "ok"). Each f
// returns at its first problem; OnGoroutines returns when all have.
func OnGoroutines(n int, f func(g int) string) string {
	var wg sync.WaitGroup
	bad := make([]string, n)
	for g := range n {
		wg.Go(func() { bad[g] = f(g) })
	}
	wg.Wait()
	var msgs []string
	for g, msg := range bad {
		if msg != "" {
			msgs = append(msgs, fmt.Sprintf("goroutine %d: %s", g, msg))
		}
	}
	if len(msgs) > 0 {
		return strings.Join(msgs, "; ")
	}
	return "ok"
}
