package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// The zero ErrorPolicy is FailFast.
func TestZeroErrorPolicyIsFailFast(t *testing.T) {
	if got := (stage.ErrorPolicy{}).String(); got != "FailFast" {
		t.Fatalf("zero policy is %q, want FailFast", got)
	}
	if stage.FailFast != (stage.ErrorPolicy{}) {
		t.Fatal("FailFast is not the zero ErrorPolicy")
	}
	var zero stage.ErrorPolicy
	_, err := sink.Slice(context.Background(), stage.Map(source.Slice(ints(10)), failOn(3), stage.Workers(1), stage.OnError(zero)))
	var se *stage.Error
	if !errors.As(err, &se) || se.Index != 3 {
		t.Fatalf("err = %v, want the FailFast error of item 3", err)
	}
}

// failOn returns a stage function that fails for bad.
func failOn(bad int) func(context.Context, int) (int, error) {
	return func(_ context.Context, x int) (int, error) {
		if x == bad {
			return 0, errBoom
		}
		return x, nil
	}
}

// Stages left unnamed are named by kind and position, so that two of one
// kind never share a name (in errors and in observers), and a pipeline gets
// the same names in every run.
func TestUnnamedStagesGetDistinctNames(t *testing.T) {
	var st stage.Stats
	ctx := stage.Observe(context.Background(), &st)
	build := func() stage.Stream[int] {
		s := stage.Map(source.Slice(ints(10)), double)
		s = stage.Filter(s, func(context.Context, int) (bool, error) { return true, nil }, stage.Name("keep"))
		return stage.Map(s, double)
	}
	for range 2 {
		if n, err := sink.Count(ctx, build()); err != nil || n != 10 {
			t.Fatalf("%d, %v", n, err)
		}
	}
	var names []string
	for _, c := range st.Snapshot() {
		names = append(names, c.Name)
		if c.Finished != 20 {
			t.Errorf("stage %s finished %d calls over two runs, want 20", c.Name, c.Finished)
		}
	}
	if want := []string{"map#1", "keep", "map#3"}; !slices.Equal(names, want) {
		t.Fatalf("stages %v, want %v", names, want)
	}
	_, err := sink.Slice(context.Background(), stage.Map(build(), failOn(8), stage.Workers(1)))
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "map#4" {
		t.Fatalf("err = %v, want the error of stage map#4", err)
	}
}

// A run that leaves a Tee branch unconsumed fails with an error that wraps
// ErrUnconsumedBranch.
func TestTeeUnconsumedBranchIsASentinel(t *testing.T) {
	b := stage.Tee(source.Slice(ints(3)), 3)
	_, err := sink.Slice(context.Background(), stage.Merge(b[0], b[2]))
	if !errors.Is(err, stage.ErrUnconsumedBranch) {
		t.Fatalf("err = %v, want ErrUnconsumedBranch", err)
	}
}

// panicAck panics in Done.
type panicAck struct{}

func (panicAck) Done(error) { panic("broken ack") }

// A panic in Ack.Done ends the run with a *SourceError wrapping a
// *PanicError; the process goes on. It runs in a child process, so that a
// regression fails this test only.
func TestAckDonePanicIsASourceError(t *testing.T) {
	out, ok := inChild(t, func() string {
		s := stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
			i := 0
			return func(context.Context) (int, stage.Ack, error) {
				if i == 5 {
					return 0, nil, errEOF
				}
				i++
				return i, panicAck{}, nil
			}, nil
		})
		_, err := sink.Slice(context.Background(), stage.Map(s, double, stage.Workers(2)))
		var se *stage.SourceError
		var pe *stage.PanicError
		return fmt.Sprint(errors.As(err, &se), errors.As(err, &pe))
	})
	if ok && out != "true true" {
		t.Fatalf("errors.As finds a SourceError, a PanicError: %s; want true true", out)
	}
}

// NeverWaits keeps the stream's items and marks only sources.
func TestNeverWaitsKeepsTheSource(t *testing.T) {
	i := 0
	s := stage.NeverWaits(source.Func(func(context.Context) (int, error) {
		if i == 100 {
			return 0, errEOF
		}
		i++
		return i - 1, nil
	}))
	got, err := sink.Slice(context.Background(), stage.Map(s, double, stage.Workers(4), stage.Ordered()))
	want := make([]int, 100)
	for j := range want {
		want[j] = 2 * j
	}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("got %v, %v", got, err)
	}
}
