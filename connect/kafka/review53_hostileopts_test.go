package kafka_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/stage"
)

// TestReview53OptionPanics: "Options are checked when they are made: an
// invalid one panics there", with each option's documented bound; and
// "Source panics if decode is nil or an option is the zero Option".
func TestReview53OptionPanics(t *testing.T) {
	cases := map[string]func(){
		"Attempts(0)":         func() { kafka.Attempts(0) },
		"Attempts(MinInt)":    func() { kafka.Attempts(math.MinInt) },
		"MaxPending(0)":       func() { kafka.MaxPending(0) },
		"MaxPending(-1)":      func() { kafka.MaxPending(-1) },
		"CommitInterval(0)":   func() { kafka.CommitInterval(0) },
		"CommitInterval(-1)":  func() { kafka.CommitInterval(-1) },
		"DeadLetter(empty)":   func() { kafka.DeadLetter("") },
		"OnEvent(nil)":        func() { kafka.OnEvent(nil) },
		"Source(nil decode)":  func() { kafka.Source[int](nil, nil) },
		"Source(zero Option)": func() { kafka.Source(nil, decodeInt, kafka.Option{}) },
		"Publish(nil client)": func() { _ = kafka.Publish[int](context.Background(), nil, stage.Stream[int]{}, nil, nil) },
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		})
	}
	kafka.Attempts(1)
	kafka.MaxPending(1)
	kafka.CommitInterval(time.Nanosecond)
}

// TestReview53MaxPendingOneRetry: hostile but valid values: MaxPending(1)
// (a partition's fetches pause at every record), CommitInterval(1 ns), four
// workers without KeyBy, and a record that fails once (Forward) and must be
// tried again while it alone fills its partition's MaxPending.
//
// Doc sentences checked: MaxPending "A full partition's fetches pause until
// its oldest record is settled"; "A record that failed ... is tried again, up
// to Attempts times"; "it also commits ... when the run stops" with "one past
// the last record it took, when all are settled". Every record must reach the
// sink (no deadlock: the watchdog is 90 s), and the drained run must commit
// every partition to its end.
func TestReview53MaxPendingOneRetry(t *testing.T) {
	const parts, perPart = 2, 8
	_, addrs := newCluster(t, parts, "t")
	for p := range int32(parts) {
		produceTo(t, addrs, "t", p, int(p)*perPart, perPart)
	}
	stopCtx, drain := context.WithCancel(context.Background())
	defer drain()
	src := stage.Until(kafka.Source(memberOpts(addrs, "g", "t"), decodeInt,
		kafka.MaxPending(1), kafka.CommitInterval(time.Nanosecond), kafka.Attempts(2)), stopCtx)
	failing := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Partition == 0 && r.Offset == 3 && r.Attempts == 1 {
			return r, errR53Boom
		}
		return r, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
	seen := map[string]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := stage.Run(ctx, failing, func(ctx context.Context, r kafka.Record[int], err error) error {
		if err != nil {
			return nil
		}
		seen[place(r.Partition, r.Offset)] = true
		if len(seen) == parts*perPart {
			drain()
		}
		return nil
	})
	if err != nil {
		t.Fatalf("run: %v (seen %d of %d)", err, len(seen), parts*perPart)
	}
	got := committedNow(t, addrs, "g", "t", parts)
	for p := range int32(parts) {
		if got[p] != perPart {
			t.Errorf("partition %d: committed %d at the stop, want %d", p, got[p], perPart)
		}
	}
}
