package stage_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func TestBatchBySize(t *testing.T) {
	for _, size := range []int{1, 3, 10, 11} {
		got, err := sink.Slice(context.Background(), stage.Batch(source.Slice(ints(10)), size, 0))
		if err != nil {
			t.Fatal(err)
		}
		var want [][]int
		for i := 0; i < 10; i += size {
			want = append(want, ints(10)[i:min(i+size, 10)])
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("size %d: got %v, want %v", size, got, want)
		}
		flat, err := sink.Slice(context.Background(), stage.Unbatch(stage.Batch(source.Slice(ints(10)), size, 0)))
		if err != nil || !slices.Equal(flat, ints(10)) {
			t.Fatalf("size %d: Unbatch gave %v, %v; want 0..9", size, flat, err)
		}
	}
}

// A batch that is not full leaves when its timer fires. Only the timer can
// flush items 1 and 2 (the batch holds 10 and the input has not ended), so
// the test waits for them to arrive, however long the timer takes, before it
// sends 3; how the timer splits 1 and 2 is up to the machine's speed.
func TestBatchLeavesOnTimeout(t *testing.T) {
	ch := make(chan int)
	flushed := make(chan struct{})
	go func() {
		ch <- 1
		ch <- 2
		<-flushed
		ch <- 3
		close(ch)
	}()
	var got [][]int
	n := 0
	hangGuard(t, func() {
		err := stage.Run(context.Background(), stage.Batch(source.Chan(ch), 10, time.Millisecond), func(_ context.Context, b []int, err error) error {
			got = append(got, b)
			if n += len(b); n == 2 {
				close(flushed)
			}
			return err
		})
		if err != nil {
			t.Errorf("err = %v", err)
		}
	})
	if fmt.Sprint(slices.Concat(got...)) != "[1 2 3]" || len(got) < 2 || fmt.Sprint(got[len(got)-1]) != "[3]" {
		t.Fatalf("got %v; want 1 and 2 flushed by the timer, then [3]", got)
	}
}

func TestBatchForwardedErrorIsABoundary(t *testing.T) {
	failOn4 := func(_ context.Context, x int) (int, error) {
		if x == 4 {
			return 0, errBoom
		}
		return x, nil
	}
	s := stage.Batch(stage.Map(source.Slice(ints(10)), failOn4, stage.Workers(1), stage.OnError(stage.Forward)), 100, time.Hour)
	var got []string
	for b, err := range sink.All(context.Background(), s) {
		if err != nil {
			if !errors.Is(err, errBoom) {
				t.Fatalf("err = %v, want errBoom", err)
			}
			got = append(got, "err")
			continue
		}
		got = append(got, fmt.Sprint(b))
	}
	if want := []string{"[0 1 2 3]", "err", "[5 6 7 8 9]"}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestBatchFlushesBeforeASourceError(t *testing.T) {
	n := 0
	src := source.Func(func(context.Context) (int, error) {
		if n == 5 {
			return 0, errBoom
		}
		n++
		return n, nil
	})
	got, err := sink.Slice(context.Background(), stage.Batch(src, 3, 0))
	var se *stage.SourceError
	if !errors.As(err, &se) || fmt.Sprint(got) != "[[1 2 3] [4 5]]" {
		t.Fatalf("got %v, %v; want [[1 2 3] [4 5]] and the SourceError", got, err)
	}
}

func TestBatchCancelledMidBatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan int)
	go func() {
		for i := 0; ; i++ {
			select {
			case ch <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	hangGuard(t, func() {
		seen := 0
		err := stage.Run(ctx, stage.Batch(source.Chan(ch), 4, 0), func(context.Context, []int, error) error {
			if seen++; seen == 3 {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
	})
}

func TestBatchHoldsABoundedNumberOfItems(t *testing.T) {
	// The source runs at most size+1 items (the batch being filled and the
	// one the reader holds) plus one finished batch ahead of the sink.
	const size = 5
	var produced, over int64
	var consumed atomic.Int64
	i := 0
	src := source.Func(func(context.Context) (int, error) {
		if i == 300 {
			return 0, errEOF
		}
		i++
		produced++
		if ahead := produced - consumed.Load(); ahead > 2*size+1 {
			over = ahead
		}
		return i, nil
	})
	err := stage.Run(context.Background(), stage.Batch(src, size, 0), func(_ context.Context, b []int, err error) error {
		consumed.Add(int64(len(b)))
		return err
	})
	if err != nil || over != 0 {
		t.Fatalf("err %v; the source ran %d items ahead of the sink, want at most %d", err, over, 2*size+1)
	}
}
