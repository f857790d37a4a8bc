package stage_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
)

// TestReview86RandomPipelines: random pipelines of fusable (and other)
// stages over every kind of source, into every kind of sink, some cut short
// (ErrStop, a break, First, the caller's cancel, a FailFast failure): each
// output expected and at most once, every output when the run was not cut
// short, in order when every stage keeps it, no input called twice, never
// more calls at once than Workers(n), Stats counts matching the calls, and
// no goroutine left when the sink returns.
func TestReview86RandomPipelines(t *testing.T) {
	for seed := range 60 {
		rng := rand.New(rand.NewPCG(uint64(seed), 86))
		p := r86random(rng, true)
		label := fmt.Sprintf("seed=%d %v", seed, p)
		var problem string
		runcheck.Run(t, label, func() { problem = r86check(p) })
		if problem != "" {
			t.Fatalf("%s: %s", label, problem)
		}
	}
}

// TestReview86RecycledRandomPipelines: the same in a child process whose
// runs reuse recycled states (see recycle_internal_test.go): runs cut short
// at random points followed by clean ones, sequentially and many at once.
func TestReview86RecycledRandomPipelines(t *testing.T) {
	outcome, ok := runcheck.InChild(t, func() string {
		for seed := range 80 {
			rng := rand.New(rand.NewPCG(uint64(seed), 8686))
			p := r86random(rng, true)
			if problem := r86check(p); problem != "" {
				return fmt.Sprintf("seed=%d %v: %s", seed, p, problem)
			}
		}
		return runcheck.OnGoroutines(8, func(g int) string {
			for seed := range 20 {
				rng := rand.New(rand.NewPCG(uint64(seed), uint64(1000+g)))
				p := r86random(rng, true)
				if problem := r86check(p); problem != "" {
					return fmt.Sprintf("g=%d seed=%d %v: %s", g, seed, p, problem)
				}
			}
			return ""
		})
	})
	if !ok {
		return
	}
	if outcome != "ok" {
		t.Fatal(outcome)
	}
}
