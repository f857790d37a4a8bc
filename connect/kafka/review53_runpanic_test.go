package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview53RunCallbackPanic: the callback of stage.Run panics (Run "lets the
// panic continue" once the run ended).
//
// Doc sentences checked: Source "when the run ends, it commits what is
// settled, leaves the group and closes the client"; package doc: the commit is
// "the lowest offset whose record is not settled yet". The committed offset
// must be exactly the first record the callback did not commit (the records
// are handed to the sink in offset order: one partition, one worker); and a
// second member of the group must get that record at once (the first left the
// group).
func TestReview53RunCallbackPanic(t *testing.T) {
	const n, k = 12, 5
	_, addrs := newCluster(t, 1, "t")
	produceTo(t, addrs, "t", 0, 0, n)
	var recovered any
	committedUpTo := int64(0)
	func() {
		defer func() { recovered = recover() }()
		calls := 0
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		mapped := stage.Map(kafka.Source(memberOpts(addrs, "g", "t"), decodeInt), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
			return r, nil
		}, stage.Workers(1))
		_ = stage.Run(ctx, mapped, func(ctx context.Context, r kafka.Record[int], err error) error {
			calls++
			if calls == k {
				panic("review53 raw panic")
			}
			if r.Offset == committedUpTo {
				committedUpTo++
			}
			return nil
		})
	}()
	if recovered == nil {
		t.Fatalf("the callback's panic did not come out of stage.Run")
	}
	got := committedNow(t, addrs, "g", "t", 1)
	if got[0] != committedUpTo {
		t.Errorf("committed %d after the panic, want %d (the records before it were committed by the sink)", got[0], committedUpTo)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	first := int64(-1)
	err := sink.ForEach(ctx, kafka.Source(memberOpts(addrs, "g", "t"), decodeInt), func(ctx context.Context, r kafka.Record[int]) error {
		first = r.Offset
		return stage.ErrStop
	})
	if err != nil || first > committedUpTo {
		t.Errorf("run 2: err %v, first offset %d, want at most %d", err, first, committedUpTo)
	}
}
