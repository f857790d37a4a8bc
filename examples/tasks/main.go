// Command tasks is the Python original's README example in Go: ten tasks
// that each sleep a random time, run at most three at a time, reported as
// they finish.
//
//	go -C examples run ./tasks            # sleeps up to 5 s per task
//	go -C examples run ./tasks -scale 0.1 # ten times faster
//
// Each "starting" line shows how many tasks were running as that task
// started, itself included, so the output shows that no more than three
// ever run at once. It is a count at that instant, not a tally of the
// lines above it: tasks that start at the same moment may print their
// lines in either order.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func main() {
	scale := flag.Float64("scale", 1, "multiplies every sleep (0.1 runs ten times faster)")
	seed := flag.Uint64("seed", 0, "random seed (0: a new one each time)")
	limit := flag.Int("limit", 3, "how many tasks may run at once")
	flag.Parse()
	if *limit < 1 || !(*scale >= 0 && *scale <= maxScale) {
		fmt.Fprintf(os.Stderr, "tasks: want -limit 1 or more and -scale from 0 to %.3g (a longer sleep does not fit in a time.Duration)\n", maxScale)
		os.Exit(2)
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	if err := run(context.Background(), os.Stdout, 10, *limit, *scale, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "tasks:", err)
		os.Exit(1)
	}
}

// maxScale is the largest -scale whose sleeps (up to 5 s times the scale)
// fit in a time.Duration: about 292 years.
const maxScale = float64(math.MaxInt64) / float64(5*time.Second)

// result is what one task returns: its id and how long it waited.
type result struct {
	id     int
	waited time.Duration
}

// run starts n tasks, at most limit at a time, and prints each as it starts
// and finishes.
func run(ctx context.Context, w io.Writer, n, limit int, scale float64, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 0))
	var running atomic.Int64

	tasks := make([]func(context.Context) (result, error), n)
	for i := range tasks {
		sleep := time.Duration(rng.Float64() * scale * float64(5*time.Second))
		tasks[i] = func(ctx context.Context) (result, error) {
			fmt.Fprintf(w, "%d starting (%d running)\n", i, running.Add(1))
			defer running.Add(-1)
			select {
			case <-time.After(sleep):
				return result{id: i, waited: sleep}, nil
			case <-ctx.Done():
				return result{}, ctx.Err()
			}
		}
	}

	results := stage.Concurrent(source.Slice(tasks), stage.Workers(limit))
	for r, err := range sink.All(ctx, results) {
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%d waited %.2fs\n", r.id, r.waited.Seconds())
	}
	return nil
}
