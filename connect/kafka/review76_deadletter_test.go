package kafka_test

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review76: dead letters of records whose commit failed at the sink, to a
// topic the broker does not have, and of records with null keys and values.

var errR76 = errors.New("review76: deliberate failure")

// r76SinkFails runs group "g" over "jobs" (5 records on partition 0) with
// the source read by sink.ForEach directly, whose callback fails the commit
// of offset 2. It returns the run's error.
func r76SinkFails(t *testing.T, addrs []string, opts ...kafka.Option) error {
	t.Helper()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, opts...)
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), src, func(_ context.Context, r kafka.Record[int]) error {
			if r.Offset == 2 {
				return errR76
			}
			return nil
		})
	})
	return waitErr(t, "the run", errc)
}

// Doc (package, Offsets): "A record that failed (a forwarded *stage.Error
// or a failed commit at the sink; ...) holds the watermark: it is tried
// again, up to [Attempts] times, then sent to the [DeadLetter] topic" and
// "(A record that fails its last attempt then goes to the dead-letter
// topic, or fails the run without one, as at any time.)" with "A dead
// letter is written with a synchronous produce from the goroutine that
// settled the record (a worker or the sink's ...) ... a run ends only once
// its dead letters in flight were confirmed or gave up."
//
// With Attempts(1), a commit that fails at the sink is the record's last
// attempt: the record goes to the dead-letter topic (before the sink
// returns), is settled by it, and the stop commit passes it; nothing after
// it was settled, so the commit is exactly 3.
func TestReview76SinkCommitFailureOnLastAttemptGoesToDeadLetter(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs", "dlq")
	produceTo(t, addrs, "jobs", 0, 0, 5)
	err := r76SinkFails(t, addrs, kafka.Attempts(1), kafka.DeadLetter("dlq"))
	var se *stage.Error
	if !errors.Is(err, errR76) || !errors.As(err, &se) {
		t.Fatalf("the run returned %v; want the callback's error in a *stage.Error", err)
	}
	if n := r14EndOffset(t, addrs, "dlq"); n != 1 {
		t.Fatalf("the dead-letter topic holds %d records when the sink returned; want 1 (offset 2, whose commit failed on its last attempt)", n)
	}
	dl := r14ReadTopic(t, addrs, "dlq", 1)[0]
	if got := r14Header(dl, "sluice-offset"); got != "2" {
		t.Errorf("dead letter's sluice-offset = %q, want 2", got)
	}
	if got := r14Header(dl, "sluice-attempts"); got != "1" {
		t.Errorf("dead letter's sluice-attempts = %q, want 1", got)
	}
	if c := r14Committed(t, addrs, "g", "jobs", 0); c != 3 {
		t.Errorf("committed offset %d; want 3 (0 and 1 committed by the sink, 2 dead-lettered, nothing after it settled)", c)
	}
}

// Doc (package, Offsets): "A record that failed (... a failed commit at the
// sink ...) holds the watermark: it is tried again, up to [Attempts]
// times, then sent to the [DeadLetter] topic".
//
// With Attempts(2), the failed commit was not the last attempt: the record
// must not be dead-lettered after one try, and it holds the watermark, so
// the run (ended by the failure) commits exactly 2.
func TestReview76SinkCommitFailureBeforeLastAttemptHoldsTheWatermark(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs", "dlq")
	produceTo(t, addrs, "jobs", 0, 0, 5)
	err := r76SinkFails(t, addrs, kafka.Attempts(2), kafka.DeadLetter("dlq"))
	if !errors.Is(err, errR76) {
		t.Fatalf("the run returned %v; want the callback's error", err)
	}
	if n := r14EndOffset(t, addrs, "dlq"); n != 0 {
		t.Errorf("the dead-letter topic holds %d records; want none (the record was tried once of 2)", n)
	}
	if c := r14Committed(t, addrs, "g", "jobs", 0); c != 2 {
		t.Errorf("committed offset %d; want 2 (the failed record holds the watermark)", c)
	}
}

// Doc (package, Offsets): "One that gives up (the 30 s passed, or the
// broker refused it) fails the run (unless the run was cut short first: a
// cancellation, an early stop), and its record is not committed".
// Doc (DeadLetter): "if that fails, the run fails and the record is not
// committed."
//
// The dead-letter topic does not exist (kfake does not create topics on
// produce): the broker refuses the dead letter of an undecodable record.
func TestReview76DeadLetterToAMissingTopicFailsTheRun(t *testing.T) {
	c, addrs := newCluster(t, 1, "jobs")
	produceRecs(t, addrs,
		&kgo.Record{Topic: "jobs", Value: []byte("0")},
		&kgo.Record{Topic: "jobs", Value: []byte("not a number")},
		&kgo.Record{Topic: "jobs", Value: []byte("2")},
	)
	src := kafka.Source(append(memberOpts(addrs, "g", "jobs"), kgo.UnknownTopicRetries(1)), decodeInt, kafka.DeadLetter("no-such-topic"))
	errc := goRun(func() error {
		return stage.Run(context.Background(), src, func(context.Context, kafka.Record[int], error) error { return nil })
	})
	err := waitErr(t, "the run", errc)
	if err == nil || errors.Is(err, context.Canceled) {
		t.Fatalf("the run returned %v; want a failure (the dead letter was refused)", err)
	}
	t.Logf("the run's error: %v", err)
	if c.TopicInfo("no-such-topic") != nil {
		t.Fatal("the cluster created the dead-letter topic: the scenario does not hold")
	}
	if got := r14Committed(t, addrs, "g", "jobs", 0); got > 1 {
		t.Errorf("committed offset %d: it passes offset 1, whose dead letter was refused", got)
	}
}

// Doc (DeadLetter): "DeadLetter sends a record ... that does not decode, to
// topic (through the source's own client), with its key, value and
// headers".
//
// A record with a null key and a null value (a tombstone) and one with
// empty ones: the dead letters keep each as it was (null stays null, empty
// stays empty), as the source topic itself reads them.
func TestReview76DeadLetterKeepsNullAndEmptyKeyAndValue(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs", "dlq")
	produceRecs(t, addrs,
		&kgo.Record{Topic: "jobs", Key: nil, Value: nil},
		&kgo.Record{Topic: "jobs", Key: []byte{}, Value: []byte{}},
		&kgo.Record{Topic: "jobs", Value: []byte("7")},
	)
	orig := r14ReadTopic(t, addrs, "jobs", 3)
	if orig[0].Key != nil || orig[0].Value != nil || orig[1].Key == nil || orig[1].Value == nil {
		t.Skipf("the client does not tell null from empty on the source topic (key %v/%v, value %v/%v)", orig[0].Key == nil, orig[1].Key == nil, orig[0].Value == nil, orig[1].Value == nil)
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.DeadLetter("dlq"))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(_ context.Context, r kafka.Record[int]) error {
			if r.Offset == 2 {
				drain()
			}
			return nil
		})
	})
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	dls := r14ReadTopic(t, addrs, "dlq", 2)
	for _, dl := range dls {
		switch r14Header(dl, "sluice-offset") {
		case "0":
			if dl.Key != nil || dl.Value != nil {
				t.Errorf("dead letter of the tombstone: key nil %v, value nil %v; want both null", dl.Key == nil, dl.Value == nil)
			}
		case "1":
			if dl.Key == nil || dl.Value == nil {
				t.Errorf("dead letter of the empty record: key nil %v, value nil %v; want both empty, not null", dl.Key == nil, dl.Value == nil)
			}
		default:
			t.Errorf("unexpected dead letter, sluice-offset %q", r14Header(dl, "sluice-offset"))
		}
	}
	if got := r14Committed(t, addrs, "g", "jobs", 0); got != 3 {
		t.Errorf("committed offset %d; want 3", got)
	}
}
