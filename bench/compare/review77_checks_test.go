package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// review77: the checks of compare catch a contender that skips, repeats or
// reorders work, and the flags that would measure nothing are refused.

// review77Small is TestEveryContenderAgrees's sizes.
var review77Small = sizes{items: 2_000, latItems: 100, latWorkers: 10, latSleep: time.Millisecond}

func review77Workload(t *testing.T, name string) workload {
	t.Helper()
	for _, w := range workloads(review77Small) {
		if strings.Contains(w.name, name) {
			return w
		}
	}
	t.Fatalf("no workload %q", name)
	return workload{}
}

// review77Refused runs wl with its baseline and the wrong contender alone:
// measure must refuse the wrong one.
func review77Refused(t *testing.T, wl workload, wrong string, run func() int) {
	t.Helper()
	wl.runs = map[string]func() int{wl.baseline: wl.runs[wl.baseline], wrong: run}
	if _, err := measure(wl, 1); err == nil || !strings.Contains(err.Error(), wrong) {
		t.Errorf("%s on %q: err = %v; want its checksum refused", wrong, wl.name, err)
	}
}

// A contender that runs nothing, or drops one item, or repeats one, fails
// its workload: inputs start at 1, so that every item counts in a sum, and
// each small run's results are counted.
func TestReview77LostOrRepeatedItemRefused(t *testing.T) {
	in := ints(review77Small.items)
	wl := review77Workload(t, "Map unordered, no-op, slice source, 4 workers")
	review77Refused(t, wl, "first item dropped", func() int { return sluiceMap(in[1:], 4, false) })
	review77Refused(t, wl, "last item repeated", func() int { return sluiceMap(append(slices.Clone(in), in[len(in)-1]), 4, false) })
	for _, n := range []int{1, 10} {
		wl := review77Workload(t, "Map over "+itoa(n)+" items")
		review77Refused(t, wl, "runs nothing", func() int { return 0 })
		in := ints(n)
		// Results with the right sum but one too many: a 0 after them.
		review77Refused(t, wl, "one result too many", func() int {
			s := 0
			for range wl.items / n {
				s += runSum(append(sluiceSliceMap(in, 4, false), 0), n, false)
			}
			return s
		})
	}
}

// A contender that promises order and breaks it fails: the ordered
// workloads fold their outputs in the order they come (fold), and a small
// run in input order is checked slot by slot.
func TestReview77OrderBrokenRefused(t *testing.T) {
	in := ints(review77Small.items)
	wl := review77Workload(t, "Map ordered, no-op, slice source, 4 workers")
	rev := slices.Clone(in)
	slices.Reverse(rev)
	for _, c := range wl.inOrder {
		if c == wl.baseline {
			t.Fatalf("the baseline %q is held to order", c)
		}
	}
	// An ordered contender's name, with a run that is not in order.
	wrong := wl.inOrder[0]
	wl.runs = map[string]func() int{wrong: func() int { return sluiceMap(rev, 1, true) }}
	if _, err := measure(wl, 1); err == nil {
		t.Errorf("%s in reverse order on %q: passed", wrong, wl.name)
	}
	swapped := ints(10)
	swapped[0], swapped[1] = swapped[1], swapped[0]
	if runSum(sluiceSliceMap(swapped, 1, true), 10, true) == runSum(sluiceSliceMap(ints(10), 1, true), 10, true) {
		t.Error("two results swapped passed a check in input order")
	}
}

// The flags that would measure nothing, or drop tables from the README,
// are refused before anything runs.
func TestReview77FlagsRefused(t *testing.T) {
	ws := workloads(review77Small)
	for _, c := range []struct {
		reps         int
		only, readme string
	}{
		{0, "", ""},
		{-1, "Merge", ""},
		{15, "Merge", "../README.md"},
		{15, "no such workload", ""},
	} {
		if err := checkFlags(c.reps, c.only, c.readme, ws); err == nil {
			t.Errorf("-reps %d -only %q -readme %q: accepted", c.reps, c.only, c.readme)
		}
	}
	for _, only := range []string{"", "Merge", "mall runs"} {
		if err := checkFlags(1, only, "", ws); err != nil {
			t.Errorf("-only %q: %v", only, err)
		}
	}
	if err := checkFlags(15, "", "../README.md", ws); err != nil {
		t.Errorf("-readme alone: %v", err)
	}
}
