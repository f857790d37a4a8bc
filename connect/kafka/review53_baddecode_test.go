package kafka_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview53UndecodableNoDeadLetter: a record decode rejects, without a
// dead-letter topic.
//
// Doc sentences checked: Source "A record that decode rejects goes to the
// DeadLetter topic at once (without one, the run fails with a
// *stage.SourceError)"; package doc "so that nothing is ever skipped
// silently" and the watermark: the committed offset of its partition must not
// pass it, and a second run (with a decode that accepts it) must get it.
func TestReview53UndecodableNoDeadLetter(t *testing.T) {
	const badOff = 3
	_, addrs := newCluster(t, 1, "t")
	var recs []*kgo.Record
	for i := range 8 {
		v := []byte{byte('0' + i)}
		if i == badOff {
			v = []byte("garbage")
		}
		recs = append(recs, &kgo.Record{Topic: "t", Partition: 0, Value: v})
	}
	produceRecs(t, addrs, recs...)
	decodeErr := errors.New("review53: undecodable")
	strict := func(r *kgo.Record) (int, error) {
		if string(r.Value) == "garbage" {
			return 0, decodeErr
		}
		return decodeInt(r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	seen1 := map[int64]bool{}
	err := sink.ForEach(ctx, kafka.Source(memberOpts(addrs, "g", "t"), strict), func(ctx context.Context, r kafka.Record[int]) error {
		seen1[r.Offset] = true
		return nil
	})
	var se *stage.SourceError
	if !errors.As(err, &se) || !errors.Is(err, decodeErr) {
		t.Fatalf("run 1: got %v, want a *stage.SourceError wrapping the decode error", err)
	}
	if seen1[badOff] {
		t.Errorf("the undecodable record reached the sink")
	}
	got := committedNow(t, addrs, "g", "t", 1)
	if got[0] > badOff {
		t.Fatalf("committed %d, past the undecodable record at %d: it was skipped", got[0], badOff)
	}
	lenient := func(r *kgo.Record) (int, error) {
		if string(r.Value) == "garbage" {
			return -1, nil
		}
		return decodeInt(r)
	}
	err = sink.ForEach(ctx, kafka.Source(memberOpts(addrs, "g", "t"), lenient), func(ctx context.Context, r kafka.Record[int]) error {
		if r.Offset == badOff {
			return stage.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatalf("run 2 (the record at %d must come again): %v", badOff, err)
	}
}
