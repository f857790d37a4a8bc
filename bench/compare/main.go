// Command compare runs the same pipelines on sluice, destel/rill,
// sourcegraph/conc, golang.org/x/sync/errgroup and hand-written Go, checks
// every result, and prints a markdown table of medians and ratios.
//
//	go run ./bench/compare                    # print the table
//	go run ./bench/compare -readme bench/README.md  # also rewrite bench/README.md
//	go run ./bench/compare -only "mall runs" -reps 9  # only the workloads whose name has this
//
// -reps must be at least 1; -only must match a workload, and cannot be
// given with -readme (which rewrites every table at once).
//
// Contenders are interleaved: each repetition runs every contender once, in
// a new random order, so that a noisy machine slows them all alike.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	reps := flag.Int("reps", 15, "repetitions of each contender per workload")
	readme := flag.String("readme", "", "rewrite the table between the compare markers of this file")
	only := flag.String("only", "", "run only the workloads whose name contains this")
	flag.Parse()
	if err := checkFlags(*reps, *only, *readme, workloads(full)); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	var buf bytes.Buffer
	if err := compare(io.MultiWriter(os.Stdout, &buf), workloads(full), *reps, *only); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
	if *readme != "" {
		if err := rewrite(*readme, buf.String()); err != nil {
			fmt.Fprintln(os.Stderr, "compare:", err)
			os.Exit(1)
		}
	}
}

// checkFlags refuses flags that would measure nothing, or rewrite the
// README with some of its tables missing.
func checkFlags(reps int, only, readme string, ws []workload) error {
	switch {
	case reps < 1:
		return fmt.Errorf("-reps %d: need at least 1", reps)
	case only != "" && readme != "":
		return errors.New("-only with -readme would drop the other tables from the README: run without -only to rewrite it")
	case only != "" && !slices.ContainsFunc(ws, func(w workload) bool { return strings.Contains(w.name, only) }):
		return fmt.Errorf("-only %q matches no workload", only)
	}
	return nil
}

// result is one contender's measurements on one workload.
type result struct {
	name   string
	times  []time.Duration
	allocs []float64 // per item
}

func (r *result) median() time.Duration {
	ts := slices.Clone(r.times)
	slices.Sort(ts)
	return ts[len(ts)/2]
}

func (r *result) medianAllocs() float64 {
	as := slices.Clone(r.allocs)
	slices.Sort(as)
	return as[len(as)/2]
}

// compare runs every workload and writes its table to w.
func compare(w io.Writer, ws []workload, reps int, only string) error {
	fmt.Fprintf(w, "Machine: %d cores, %s %s/%s. Medians of %d interleaved runs; ratio < 1 is faster than the baseline.\n\n",
		runtime.NumCPU(), runtime.Version(), runtime.GOOS, runtime.GOARCH, reps)
	for _, wl := range ws {
		if only != "" && !strings.Contains(wl.name, only) {
			continue
		}
		results, err := measure(wl, reps)
		if err != nil {
			return err
		}
		table(w, wl, results)
	}
	return nil
}

// measure runs each contender of wl reps times, interleaved, checking each
// result.
func measure(wl workload, reps int) ([]*result, error) {
	var results []*result
	for name := range wl.runs {
		results = append(results, &result{name: name})
	}
	slices.SortFunc(results, func(a, b *result) int { return strings.Compare(a.name, b.name) })
	var before, after runtime.MemStats
	for rep := -1; rep < reps; rep++ { // rep -1 warms up and is not kept
		order := slices.Clone(results)
		rand.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, r := range order {
			run := wl.runs[r.name]
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			got := run()
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			want := wl.want
			if slices.Contains(wl.inOrder, r.name) {
				want = wl.wantOrder
			}
			if got != want {
				return nil, fmt.Errorf("%s on %q: checksum %d, want %d", r.name, wl.name, got, want)
			}
			if rep < 0 {
				continue
			}
			r.times = append(r.times, elapsed)
			r.allocs = append(r.allocs, float64(after.Mallocs-before.Mallocs)/float64(wl.items))
		}
	}
	return results, nil
}

func table(w io.Writer, wl workload, results []*result) {
	base := find(results, wl.baseline)
	rill := find(results, "rill")
	fmt.Fprintf(w, "**%s**\n\n", wl.name)
	if wl.ideal > 0 {
		fmt.Fprintf(w, "| contender | median | efficiency (ideal %v / actual) |\n| --- | --- | --- |\n", wl.ideal)
	} else {
		fmt.Fprintf(w, "| contender | ns/item | × %s | × rill | allocs/item |\n| --- | --- | --- | --- | --- |\n", wl.baseline)
	}
	slices.SortFunc(results, func(a, b *result) int { return int(a.median() - b.median()) })
	for _, r := range results {
		m := r.median()
		if wl.ideal > 0 {
			fmt.Fprintf(w, "| %s | %v | %.2f |\n", r.name, m.Round(100*time.Microsecond), float64(wl.ideal)/float64(m))
			continue
		}
		perItem := float64(m.Nanoseconds()) / float64(wl.items)
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %.2f |\n", r.name, perItem, ratio(m, base), ratio(m, rill), r.medianAllocs())
	}
	fmt.Fprintln(w)
}

func find(results []*result, name string) *result {
	for _, r := range results {
		if r.name == name {
			return r
		}
	}
	return nil
}

func ratio(m time.Duration, base *result) string {
	if base == nil {
		return "–"
	}
	return fmt.Sprintf("%.2f", float64(m)/float64(base.median()))
}

func itoa(n int) string { return strconv.Itoa(n) }

const (
	beginMarker = "<!-- compare:begin (go run ./bench/compare -readme bench/README.md) -->"
	endMarker   = "<!-- compare:end -->"
)

// rewrite replaces what stands between the compare markers of path with table.
func rewrite(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return errors.New(path + ": no compare markers")
	}
	s = s[:i+len(beginMarker)] + "\n\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
