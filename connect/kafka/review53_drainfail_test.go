package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview53FailDuringDrain: a record fails (Forward) after the drain
// started.
//
// Doc sentences checked (package doc, "Offsets"): "A record that fails while
// the run drains (stage.Until) is not tried again ... It stays uncommitted,
// and the next owner of its partition gets it again. The source adds no error
// of its own for it: the run's result is what the sink makes of the failure
// (under stage.Forward, the sink's *sink.ForwardedError ...)", with its
// exception: "a record that fails in that moment may be handed to that call
// and tried once more; it is committed only if that try succeeds".
func TestReview53FailDuringDrain(t *testing.T) {
	const n, bad = 10, 5
	_, addrs := newCluster(t, 1, "t")
	produceTo(t, addrs, "t", 0, 0, n)
	stopCtx, drain := context.WithCancel(context.Background())
	defer drain()
	src := stage.Until(kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.Attempts(3)), stopCtx)
	retried := false
	failing := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == bad {
			if r.Attempts == 1 {
				drain() // the drain has started before this record fails
				return r, errR53Boom
			}
			retried = true // only the documented exception; the success commits it
		}
		return r, nil
	}, stage.OnError(stage.Forward), stage.Workers(1))
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := sink.ForEach(ctx, failing, func(ctx context.Context, r kafka.Record[int]) error { return nil })
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run hung (watchdog): %v", err)
	}
	got := committedNow(t, addrs, "g", "t", 1)
	if retried {
		t.Logf("record %d was tried once more (the documented exception)", bad)
		if err != nil {
			t.Errorf("run: %v; a forwarded error arrived, so want a *sink.ForwardedError", err)
		}
		return
	}
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || !errors.Is(err, errR53Boom) || fe.Count != 1 {
		t.Errorf("run: got %v, want a *sink.ForwardedError with the one failure and no error of the source", err)
	}
	var se *stage.SourceError
	if errors.As(err, &se) {
		t.Errorf("run: the source added an error of its own: %v", se)
	}
	if got[0] > bad {
		t.Errorf("committed %d, past the record %d that failed during the drain", got[0], bad)
	}
	if got[0] != bad {
		t.Errorf("committed %d at the stop, want %d (every record before it was committed)", got[0], bad)
	}
	// The next owner gets it again.
	err = sink.ForEach(ctx, kafka.Source(memberOpts(addrs, "g", "t"), decodeInt), func(ctx context.Context, r kafka.Record[int]) error {
		if r.Offset == bad {
			return stage.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatalf("run 2 (record %d must come again): %v", bad, err)
	}
}
