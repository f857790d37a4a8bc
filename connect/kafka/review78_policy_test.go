package kafka_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

var errR78 = errors.New("review78: the policy ends the run here")

// r78FailFastAt runs group "g" over "jobs" (5 records on partition 0)
// through a Map of one worker whose call fails offset 2 (FailFast), into a
// sink.ForEach. The call for offset 2 waits until the sink has committed
// offsets 0 and 1, so that the watermark can only be held by offset 2.
func r78FailFastAt(t *testing.T, addrs []string, opts ...kafka.Option) error {
	t.Helper()
	committed := make(chan struct{})
	var once sync.Once
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, opts...)
	s := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 2 {
			select {
			case <-committed:
			case <-time.After(2 * time.Minute): // watchdog
				t.Error("the sink never committed offsets 0 and 1")
			}
			return r, errR78
		}
		return r, nil
	}, stage.Workers(1), stage.OnError(stage.FailFast))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), s, func(_ context.Context, r kafka.Record[int]) error {
			if r.Offset == 1 {
				once.Do(func() { close(committed) })
			}
			return nil
		})
	})
	return waitErr(t, "the run", errc)
}

// Doc (package, Offsets): "A record that failed (..., or a stage's policy
// that ended the run at it: a FailFast error, ...) holds the watermark ...
// A failure that ends the run ... leaves no run to try the record again: on
// its last attempt it goes to the dead-letter topic, which settles it;
// otherwise it stays uncommitted, and the next owner of its partition gets
// it again." Option: "of two that set the same thing, the last wins".
func TestReview78PolicyFailureEndsTheRun(t *testing.T) {
	for _, c := range []struct {
		name      string
		opts      []kafka.Option
		dead      int64 // dead letters written
		committed int64
	}{
		{"last attempt", []kafka.Option{kafka.Attempts(1), kafka.DeadLetter("dlq")}, 1, 3},
		{"not the last", []kafka.Option{kafka.Attempts(3), kafka.DeadLetter("dlq")}, 0, 2},
		{"last of two Attempts wins", []kafka.Option{kafka.Attempts(3), kafka.DeadLetter("dlq"), kafka.Attempts(1)}, 1, 3},
		{"last of two DeadLetters wins", []kafka.Option{kafka.DeadLetter("other"), kafka.Attempts(1), kafka.DeadLetter("dlq")}, 1, 3},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, addrs := newCluster(t, 1, "jobs", "dlq", "other")
			produceTo(t, addrs, "jobs", 0, 0, 5)
			err := r78FailFastAt(t, addrs, c.opts...)
			var se *stage.Error
			if !errors.Is(err, errR78) || !errors.As(err, &se) {
				t.Fatalf("the run returned %v; want the FailFast *stage.Error", err)
			}
			if n := r14EndOffset(t, addrs, "dlq"); n != c.dead {
				t.Errorf("the dead-letter topic holds %d records; want %d", n, c.dead)
			}
			if n := r14EndOffset(t, addrs, "other"); n != 0 {
				t.Errorf("the first DeadLetter's topic holds %d records; want none (the last option wins)", n)
			}
			if c.dead == 1 {
				if got := r14Header(r14ReadTopic(t, addrs, "dlq", 1)[0], "sluice-offset"); got != "2" {
					t.Errorf("dead letter's sluice-offset = %q, want 2", got)
				}
			}
			// 0 and 1 committed by the sink; 2 settled by its dead letter
			// or holding the watermark; nothing after it was taken.
			if got := r14Committed(t, addrs, "g", "jobs", 0); got != c.committed {
				t.Errorf("committed offset %d; want %d", got, c.committed)
			}
		})
	}
}
