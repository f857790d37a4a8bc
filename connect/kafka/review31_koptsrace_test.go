package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Two runs of one Source at the same time are two members of the group
// (OnEvent: "runs of one Source at the same time are several members").
// Each run adds the source's own options (its partition callbacks among
// them) to kopts when it makes its client (source.go, member.open). With
// kopts long enough that the Source's copy of them has spare capacity (48
// options: append rounds the copy's capacity up to 55), every run appends
// into that one copy's backing array: a data race (reported under -race),
// and a member's client may get another member's partition callbacks;
// that member then owns no partition, drops every record it polls as "not
// ours", and its run never takes one (a hang, seen about 1 round in 10).
func TestReview31ConcurrentRunsShareKoptsBackingArray(t *testing.T) {
	r31ConcurrentRuns(t, 48)
}

// The control: the same runs with kopts whose copy has no spare capacity
// (8 options) never race and never hang.
func TestReview31ConcurrentRunsControl(t *testing.T) {
	r31ConcurrentRuns(t, 0)
}

func r31ConcurrentRuns(t *testing.T, pad int) {
	const runs = 3
	_, addrs := newCluster(t, 3, "in")
	produce(t, addrs, "in", 60, keyOf)
	kopts := memberOpts(addrs, "g", "in")
	for len(kopts) < pad {
		kopts = append(kopts, kgo.FetchMaxWait(200*time.Millisecond)) // harmless padding
	}
	src := kafka.Source(kopts, decodeInt, kafka.CommitInterval(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, runs)
	for range runs {
		go func() {
			// Each run takes one record and stops.
			errc <- sink.ForEach(ctx, src, func(context.Context, kafka.Record[int]) error { return stage.ErrStop })
		}()
	}
	hang := time.After(45 * time.Second) // a hang watchdog: a run stops at its first record
	for i := range runs {
		select {
		case err := <-errc:
			if err != nil {
				t.Errorf("a run: %v", err)
			}
		case <-hang:
			cancel()
			for range runs - i {
				<-errc
			}
			t.Fatalf("hung: %d of %d runs of one Source took no record", runs-i, runs)
		}
	}
}
