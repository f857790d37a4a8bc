package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/stage"
)

var errR84x = errors.New("review84: item failed")

// TestReview84OrderedMixedOutputs: Ordered FlatMap, Apply, and Map then
// FlatMap, of 1 to 8 workers or Workers(-1), with or without Buffer and
// Forward, over inputs of 0 to 200 items whose items have 0, 1 or many
// outputs (or fail, forwarded), finishing out of order: every run delivers
// exactly its outputs, in input order. (Deterministic in its verdict: the
// seeds fix each run's outputs; only the order in which calls finish
// varies.) In a child process: a hang fails this test only.
func TestReview84OrderedMixedOutputs(t *testing.T) {
	out, parent := runcheck.InChild(t, func() string {
		for seed := range 400 {
			if msg := r84MixedRun(seed); msg != "" {
				return msg
			}
		}
		return "ok"
	})
	if parent && out != "ok" {
		t.Fatal(out)
	}
}

// r84MixedRun runs the shape that seed picks and reports what was wrong.
func r84MixedRun(seed int) string {
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	n := []int{0, 1, 2, 3, 7, 40, 200}[rng.IntN(7)]
	workers := []int{1, 2, 3, 4, 8, -1}[rng.IntN(6)]
	buffer := []int{0, 0, 1, 5}[rng.IntN(4)]
	kind := rng.IntN(3)
	fwd := rng.IntN(2) == 0
	outs := make([]int, n)
	fail := make([]bool, n)
	spin := make([]int, n)
	for i := range n {
		outs[i] = []int{0, 1, 1, 1, 2, 3, 5}[rng.IntN(7)]
		fail[i] = fwd && rng.IntN(6) == 0
		spin[i] = rng.IntN(20)
	}
	opts := []stage.Option{stage.Workers(workers), stage.Ordered()}
	if buffer > 0 {
		opts = append(opts, stage.Buffer(buffer))
	}
	if fwd {
		opts = append(opts, stage.OnError(stage.Forward))
	}
	var want []string
	for i := range n {
		if fail[i] {
			want = append(want, fmt.Sprintf("err%d", i))
			continue
		}
		for j := range outs[i] {
			want = append(want, fmt.Sprintf("%d.%d", i, j))
		}
	}
	src := stage.Indexed(n, func(i int) int { return i })
	var s stage.Stream[string]
	switch kind {
	case 0:
		s = stage.FlatMap(src, func(_ context.Context, i int) ([]string, error) {
			for range spin[i] {
				runtime.Gosched()
			}
			if fail[i] {
				return nil, errR84x
			}
			r := make([]string, outs[i])
			for j := range r {
				r[j] = fmt.Sprintf("%d.%d", i, j)
			}
			return r, nil
		}, opts...)
	case 1:
		s = stage.Apply(src, func(_ context.Context, i int, emit func(string) bool) error {
			for j := range outs[i] {
				for range spin[i] / 3 {
					runtime.Gosched()
				}
				if fail[i] {
					break
				}
				emit(fmt.Sprintf("%d.%d", i, j))
			}
			if fail[i] {
				return errR84x
			}
			return nil
		}, opts...)
	case 2:
		s = stage.FlatMap(stage.Map(src, func(_ context.Context, i int) (int, error) {
			for range spin[i] {
				runtime.Gosched()
			}
			return i, nil
		}, opts...), func(_ context.Context, i int) ([]string, error) {
			if fail[i] {
				return nil, errR84x
			}
			r := make([]string, outs[i])
			for j := range r {
				r[j] = fmt.Sprintf("%d.%d", i, j)
			}
			return r, nil
		}, stage.Workers(1), stage.OnError(stage.Forward))
	}
	var got []string
	err := stage.Run(context.Background(), s, func(_ context.Context, v string, err error) error {
		if err != nil {
			var e *stage.Error
			if errors.As(err, &e) {
				got = append(got, fmt.Sprintf("err%d", e.Index))
				return nil
			}
			return err
		}
		got = append(got, v)
		return nil
	})
	if err != nil || !slices.Equal(got, want) {
		return fmt.Sprintf("seed %d n=%d w=%d b=%d kind=%d: err %v\n got %v\nwant %v", seed, n, workers, buffer, kind, err, got, want)
	}
	return ""
}
