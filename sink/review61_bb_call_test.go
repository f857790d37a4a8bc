package sink_test

import (
	"context"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// sink.All: "Breaking out of the loop stops the run; the loop statement ends
// only once every goroutine of the run has exited. ... The item of the loop
// body that breaks counts as committed (its acknowledgement, if any, is
// released, see stage.Ack). A panic in the loop body stops the run the same
// way and then continues; its item is not committed, and its acknowledgement
// is not told". Two nested loops over two runs; the inner body leaves both
// loops at once (a labeled break, a return) or panics: the current item of
// each loop is committed (or, for the panic, neither is told).
func TestReview61BBCNestedAllLeaveBoth(t *testing.T) {
	for _, how := range []string{"labeled-break", "return", "panic", "inner-break"} {
		for _, w := range []int{1, 3} {
			oa := r61NewAcks(4)
			ia := r61NewAcks(4)
			outer := stage.Map(oa.src(), c61id, stage.Workers(w), stage.Ordered())
			inner := stage.Map(ia.src(), c61id, stage.Workers(w), stage.Ordered())
			var seen [][2]int
			var rec any
			runcheck.Run(t, how, func() {
				defer func() { rec = recover() }()
				func() {
				loop:
					for o, err := range sink.All(context.Background(), outer) {
						if err != nil {
							t.Errorf("outer err %v", err)
							return
						}
						for i, err := range sink.All(context.Background(), inner) {
							if err != nil {
								t.Errorf("inner err %v", err)
								return
							}
							seen = append(seen, [2]int{o, i})
							if o == 1 && i == 2 {
								switch how {
								case "labeled-break":
									break loop
								case "return":
									return
								case "panic":
									panic("c61 body")
								case "inner-break":
									// leaves the inner loop only; the outer goes on
								}
								break
							}
						}
					}
				}()
			})
			if how == "panic" {
				if rec != "c61 body" {
					t.Fatalf("%s: recovered %v; want the body's panic", how, rec)
				}
			} else if rec != nil {
				t.Fatalf("%s: panic %v", how, rec)
			}
			oa.mu.Lock()
			ia.mu.Lock()
			wantOuter := []int{1, 1, 0, 0}
			if how == "panic" {
				wantOuter = []int{1, 0, 0, 0}
			}
			if how == "inner-break" {
				wantOuter = []int{1, 1, 1, 1}
			}
			for k := range 4 {
				if oa.done[k] != wantOuter[k] || oa.errs[k] != nil {
					t.Errorf("%s w%d: outer item %d told %d times (%v); want %d. %s", how, w, k, oa.done[k], oa.errs[k], wantOuter[k], oa.stateLocked())
				}
			}
			// the inner source's acks: per run; the last inner run stopped at item 2
			ia.mu.Unlock()
			oa.mu.Unlock()
			if len(seen) == 0 || seen[len(seen)-1] != [2]int{1, 2} && how != "inner-break" {
				t.Fatalf("%s: seen %v", how, seen)
			}
		}
	}
}
