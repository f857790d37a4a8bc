package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// "An item is committed (and its source's acknowledgement released) only
// once its record was confirmed": the broker holds each produce request a
// while before it writes it; a source record counts as settled only when
// its result is about to be written, after the hold. No commit may pass a
// record whose result was not written.
func TestAttackPublishCommitsOnlyAfterTheWrite(t *testing.T) {
	const n = 60
	c, addrs := newCluster(t, 2, "in", "out")
	l := newLedger()
	l.watch(c)
	names := topicNames(c)
	c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		recs := producedRecords(names, kreq.(*kmsg.ProduceRequest), "out")
		if len(recs) == 0 {
			return nil, nil, false
		}
		c.SleepControl(func() { time.Sleep(15 * time.Millisecond) }) // perturbation only
		for _, r := range recs {
			var p int32
			var off int64
			if _, err := fmt.Sscanf(string(r.Value), "%d/%d", &p, &off); err == nil {
				l.settle("in", p, off)
			}
		}
		return nil, nil, false
	})
	produceTo(t, addrs, "in", 0, 0, n/2)
	produceTo(t, addrs, "in", 1, n/2, n/2)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	recs := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(2*time.Millisecond), l.option())
	rows := stage.Map(stage.Until(recs, stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]))
	var counts kafka.Published
	cl := client(t, addrs, kgo.ProducerBatchCompression(kgo.NoCompression()))
	errc := goRun(func() error {
		return kafka.Publish(context.Background(), cl, rows, func(r kafka.Record[int]) (*kgo.Record, error) {
			return &kgo.Record{Topic: "out", Key: r.Key, Value: []byte(fmt.Sprintf("%d/%d", r.Partition, r.Offset))}, nil
		}, &counts)
	})
	waitFor(t, "every result published", func() bool { return counts.Records.Load() == n })
	checkCommitted(t, addrs, "g", "in")
	drain()
	if err := waitErr(t, "Publish", errc); err != nil {
		t.Fatal(err)
	}
	if got := counts.Records.Load(); got != n {
		t.Errorf("Published.Records %d, want %d", got, n)
	}
	l.verify(t)
}

// "a failed produce ... ends the run with a *stage.Error (Stage
// "foreach") wrapping it", and the source record is not committed: the
// output topic does not exist and the cluster does not create topics.
func TestAttackPublishProduceFailure(t *testing.T) {
	c, addrs := newCluster(t, 1, "in")
	l := newLedger()
	l.watch(c)
	produceTo(t, addrs, "in", 0, 0, 20)
	recs := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(2*time.Millisecond), l.option())
	cl := client(t, addrs, kgo.UnknownTopicRetries(1))
	var counts kafka.Published
	err := waitErr(t, "Publish", goRun(func() error {
		return kafka.Publish(context.Background(), cl, recs, func(r kafka.Record[int]) (*kgo.Record, error) {
			return &kgo.Record{Topic: "does-not-exist", Value: []byte("x")}, nil
		}, &counts)
	}))
	var se *stage.Error
	if !errors.As(err, &se) || se.Stage != "foreach" {
		t.Fatalf("Publish: %v (%T), want a *stage.Error of stage foreach", err, err)
	}
	t.Logf("Publish failed with: %v", err)
	if counts.Records.Load() != 0 {
		t.Errorf("Published.Records %d after a failed produce", counts.Records.Load())
	}
	if got := committedNow(t, addrs, "g", "in", 1)[0]; got > 0 {
		t.Errorf("committed %d although no record was written", got)
	}
	l.verify(t)
}

// "an error or panic in record ends the run with a *stage.Error (Stage
// "foreach") wrapping it"; the record is not committed.
func TestAttackPublishRecordFuncFails(t *testing.T) {
	for _, how := range []string{"error", "panic"} {
		t.Run(how, func(t *testing.T) {
			const x = 7
			c, addrs := newCluster(t, 1, "in", "out")
			l := newLedger()
			l.watch(c)
			names := topicNames(c)
			c.ControlKey(int16(kmsg.Produce), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
				c.KeepControl()
				for _, r := range producedRecords(names, kreq.(*kmsg.ProduceRequest), "out") {
					var off int64
					if _, err := fmt.Sscanf(string(r.Value), "%d", &off); err == nil {
						l.settle("in", 0, off)
					}
				}
				return nil, nil, false
			})
			produceTo(t, addrs, "in", 0, 0, 20)
			recs := kafka.Source(memberOpts(addrs, "g", "in"), decodeInt, kafka.CommitInterval(2*time.Millisecond), l.option())
			cl := client(t, addrs, kgo.ProducerBatchCompression(kgo.NoCompression()))
			bad := errors.New("cannot encode")
			err := waitErr(t, "Publish", goRun(func() error {
				return kafka.Publish(context.Background(), cl, recs, func(r kafka.Record[int]) (*kgo.Record, error) {
					if r.Offset == x {
						if how == "panic" {
							panic("record exploded")
						}
						return nil, bad
					}
					return &kgo.Record{Topic: "out", Value: []byte(fmt.Sprint(r.Offset))}, nil
				}, nil)
			}))
			var se *stage.Error
			if !errors.As(err, &se) || se.Stage != "foreach" {
				t.Fatalf("Publish: %v, want a *stage.Error of stage foreach", err)
			}
			if how == "error" && !errors.Is(err, bad) {
				t.Errorf("Publish: %v does not wrap the record function's error", err)
			}
			var pe *stage.PanicError
			if how == "panic" && !errors.As(err, &pe) {
				t.Errorf("Publish: %v does not wrap a *stage.PanicError", err)
			}
			if got := committedNow(t, addrs, "g", "in", 1)[0]; got > x {
				t.Errorf("committed %d, past the record %d whose record function failed", got, x)
			}
			l.verify(t)
		})
	}
}

// Misuse panics are named "sluice: kafka.X:" (the zero stream, as for every
// sink, "sluice: stage.Run:"), and happen when the option or call is made.
func TestAttackMisusePanics(t *testing.T) {
	dec := func(*kgo.Record) (int, error) { return 0, nil }
	rec := func(int) (*kgo.Record, error) { return nil, nil }
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	good := stage.Map(kafka.Source[int]([]kgo.Opt{kgo.ConsumerGroup("g")}, dec), func(_ context.Context, r kafka.Record[int]) (int, error) { return 0, nil })
	cases := []struct {
		name string
		f    func()
	}{
		{"kafka.MaxPending", func() { kafka.MaxPending(0) }},
		{"kafka.MaxPending", func() { kafka.MaxPending(-5) }},
		{"kafka.CommitInterval", func() { kafka.CommitInterval(0) }},
		{"kafka.CommitInterval", func() { kafka.CommitInterval(-time.Second) }},
		{"kafka.Attempts", func() { kafka.Attempts(0) }},
		{"kafka.Attempts", func() { kafka.Attempts(-1) }},
		{"kafka.DeadLetter", func() { kafka.DeadLetter("") }},
		{"kafka.OnEvent", func() { kafka.OnEvent(nil) }},
		{"kafka.Source", func() { kafka.Source[int](nil, nil) }},
		{"kafka.Publish", func() { _ = kafka.Publish(context.Background(), nil, good, rec, nil) }},
		{"kafka.Publish", func() { _ = kafka.Publish[int](context.Background(), cl, good, nil, nil) }},
		// The zero stream panics where every sink's does: in stage.Run.
		{"stage.Run", func() { _ = kafka.Publish(context.Background(), cl, stage.Stream[int]{}, rec, nil) }},
	}
	for i, tc := range cases {
		msg := func() (msg string) {
			defer func() { msg = fmt.Sprint(recover()) }()
			tc.f()
			return "<no panic>"
		}()
		if !strings.HasPrefix(msg, "sluice: "+tc.name+":") {
			t.Errorf("case %d (%s): panic %q", i, tc.name, msg)
		}
	}
	// Valid options do not panic.
	_ = []kafka.Option{kafka.MaxPending(1), kafka.CommitInterval(time.Nanosecond), kafka.Attempts(1), kafka.DeadLetter("d"), kafka.OnEvent(func(kafka.Event) {})}
}

// A Source whose kopts name no consumer group cannot commit: the docs say
// Source is "a stream of the records of a consumer group" and kopts "name
// ... the group". What happens without one?
func TestAttackSourceWithoutGroup(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, 5)
	var got string
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				got = fmt.Sprint(r)
			}
		}()
		recs := kafka.Source([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("jobs")}, decodeInt)
		stop, drain := context.WithCancel(context.Background())
		defer drain()
		n := 0
		return waitErr(t, "a run without a group", goRun(func() error {
			return kafkaForEach(stage.Until(recs, stop), func() {
				if n++; n == 5 {
					drain()
				}
			})
		}))
	}()
	switch {
	case got != "":
		t.Logf("panics: %s", got)
	case err != nil:
		t.Logf("the run fails: %v", err)
	default:
		t.Errorf("a Source without a consumer group ran and returned nil: its records are never committed, and nothing said so")
	}
}

func kafkaForEach(s stage.Stream[kafka.Record[int]], each func()) error {
	return sink.ForEach(context.Background(), s, func(context.Context, kafka.Record[int]) error {
		each()
		return nil
	})
}
