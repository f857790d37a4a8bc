package stage_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// inChild runs scenario in a child process (see runcheck.InChild), so
// that a scenario that crashes the process or deadlocks fails the calling
// test only.
func inChild(t *testing.T, scenario func() string) (outcome string, ok bool) {
	t.Helper()
	return runcheck.InChild(t, scenario)
}

// TestKeyByKeyPanicBecomesAnError pins: a panic in a KeyBy key function is a
// panic in user code like any other: it does not crash the process or hang the
// sink; the run fails and the sink returns an error in which errors.As finds a
// *stage.PanicError.
func TestKeyByKeyPanicBecomesAnError(t *testing.T) {
	out, parent := inChild(t, func() string {
		key := func(x int) int {
			if x == 7 {
				panic("bad key")
			}
			return x % 3
		}
		s := stage.Map(source.Slice(ints(50)), double, stage.Workers(4), stage.KeyBy(key))
		_, err := sink.Count(context.Background(), s)
		var pe *stage.PanicError
		return fmt.Sprintf("failed=%v panicError=%v (err: %v)", err != nil, errors.As(err, &pe), err)
	})
	if !parent {
		return
	}
	if !strings.HasPrefix(out, "failed=true panicError=true") {
		t.Fatalf("child outcome %q, want the run failed with a *stage.PanicError", out)
	}
}

// TestBatchOfMaxIntSize pins: Batch accepts any size >= 1, math.MaxInt
// included: over 3 items with a timeout, it delivers the one partial batch
// [0 1 2] when the input ends, and the run succeeds (no crash).
func TestBatchOfMaxIntSize(t *testing.T) {
	out, parent := inChild(t, func() string {
		got, err := sink.Slice(context.Background(), stage.Batch(source.Slice(ints(3)), math.MaxInt, time.Hour))
		return fmt.Sprintf("%v %v", got, err)
	})
	if !parent {
		return
	}
	if out != "[[0 1 2]] <nil>" {
		t.Fatalf("child outcome %q, want \"[[0 1 2]] <nil>\"", out)
	}
}

// TestBatchLargeSizeAllocatesForWhatItHolds pins: a Batch's memory follows the
// items it holds, not its size bound. With size 1<<24 over 3 items it asserts
// (1) the delivered batch's capacity is small (at most 1024, against 1<<24),
// and (2) the whole run allocates less than 16 MiB in total (runtime.MemStats
// TotalAlloc; one batch of 1<<24 ints would be 128 MiB).
func TestBatchLargeSizeAllocatesForWhatItHolds(t *testing.T) {
	const size = 1 << 24
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	got, err := sink.Slice(context.Background(), stage.Batch(source.Slice(ints(3)), size, time.Hour))
	runtime.ReadMemStats(&after)
	if err != nil || len(got) != 1 || len(got[0]) != 3 {
		t.Fatalf("got %v, %v; want one batch [0 1 2]", got, err)
	}
	if c := cap(got[0]); c > 1024 {
		t.Errorf("the 3-item batch has capacity %d: memory follows the size bound, not the items", c)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 16<<20 {
		t.Errorf("a run of 3 items in a Batch of size %d allocated %d MiB", size, grew>>20)
	}
}
