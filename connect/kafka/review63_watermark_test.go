package kafka_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview63WatermarkEveryEnd attacks the watermark rule of "Offsets"
// under Workers(8) in the three modes (no KeyBy, KeyBy(ByKey),
// KeyBy(ByPartition)), with a mixed workload: records that fail once and
// are tried again (Attempts(2)), records that always fail and go to the
// dead-letter topic, records dropped by a Filter and by a Handle policy,
// and the rest stored by the sink. The first run ends in each of the ways a
// run can end: cancellation, sink.First, a FailFast error in a stage, a
// failed sink callback, a panic in decode, in a stage's function (a Map, a
// Filter), in a Handle policy's function and in the sink's callback, a
// Handle function's error, and a stage.Until drain.
//
// Doc sentences attacked (package doc, "Offsets"):
//   - "The source commits, per partition, the lowest offset whose record is
//     not settled yet (or one past the last record it took, when all are
//     settled): a watermark below which every record was acknowledged by
//     the sink (see stage.Ack), dropped on purpose (a Filter, a Handle
//     policy), or sent to the dead-letter topic": no commit the broker
//     receives (every 20 ms, and at the end) passes a record not settled;
//     the commit at the end is exactly the lowest offset not settled;
//   - "it also commits ... when the run stops" and "a commit cut short by
//     the run's end ... stays uncommitted like any record the run did not
//     finish";
//   - Guarantees: "At-least-once: ... a crash at any point loses nothing":
//     a second run of the group starts each partition exactly at its
//     committed offset, gets every record not committed, and the union of
//     the two runs' commits covers every record;
//   - "Ordering": under ByKey (ByPartition), one record per key (partition)
//     at a time, first tries in offset order.
func TestReview63WatermarkEveryEnd(t *testing.T) {
	ends := []string{"cancel", "first", "failfast", "sinkerr", "decodepanic", "mappanic", "sinkpanic", "filterpanic", "handlepanic", "handleerr", "until"}
	for _, mode := range []string{"none", "key", "partition"} {
		t.Run(mode, func(t *testing.T) {
			for _, end := range ends {
				t.Run(end, func(t *testing.T) {
					runcheck.InChildTest(t, func(t *testing.T) { r63WatermarkEnd(t, mode, end) })
				})
			}
		})
	}
}

func r63WatermarkEnd(t *testing.T, mode, end string) {
	const parts, perPart, trigger = 4, 30, 30
	c, addrs := newCluster(t, parts, "jobs", "dlq")
	b := newR63Book(c)
	r63Produce(t, addrs, parts, perPart)
	const group = "g63"

	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()

	var decodes atomic.Int64
	decode := func(r *kgo.Record) (int, error) {
		if end == "decodepanic" && decodes.Add(1) == trigger {
			panic("review63: decode panic")
		}
		return decodeInt(r)
	}
	var triggers atomic.Int64
	last := func(_ context.Context, r kafka.Record[int]) error {
		if end == "first" {
			b.mayBeSettled(r) // First's item counts as committed; only known after
		}
		if n := triggers.Add(1); n == trigger {
			switch end {
			case "failfast":
				return errR63Trigger
			case "mappanic":
				panic("review63: stage panic")
			}
		}
		return nil
	}
	ord := newR63Order()
	// One batch (here: one record) per partition per fetch, so that the
	// partitions' records interleave.
	kopts := append(memberOpts(addrs, group, "jobs"), kgo.FetchMaxPartitionBytes(1))
	src := kafka.Source(kopts, decode, kafka.Attempts(2), kafka.DeadLetter("dlq"), kafka.CommitInterval(20*time.Millisecond))
	var filters, handles atomic.Int64
	inner := func(where string, r kafka.Record[int]) error {
		switch {
		case where == "filter" && end == "filterpanic" && filters.Add(1) == trigger:
			panic("review63: filter panic")
		case where == "handle" && end == "handlepanic" && handles.Add(1) == 2:
			panic("review63: handle panic")
		case where == "handle" && end == "handleerr" && handles.Add(1) == 2:
			return errR63Trigger
		}
		return nil
	}
	out := r63Mixed(b, stage.Until(src, stop), mode, ord, nil, last, 0, inner)

	var stored atomic.Int64
	var errc <-chan error
	var firstRec kafka.Record[int]
	var firstOK bool
	if end == "first" {
		errc = goRun(func() error {
			r, ok, err := sink.First(parent, out)
			firstRec, firstOK = r, ok
			return err
		})
	} else {
		errc = goRun(func() error {
			return sink.ForEach(parent, out, func(ctx context.Context, r kafka.Record[int]) error {
				if n := stored.Add(1); n == trigger {
					switch end {
					case "cancel":
						cancel()
						<-ctx.Done()
						return ctx.Err()
					case "sinkerr":
						return errR63Trigger
					case "sinkpanic":
						panic("review63: sink panic")
					case "until":
						drain()
					}
				}
				b.settleRec(r)
				return nil
			})
		})
	}
	err := waitErr(t, "the first run", errc)
	if end == "first" && firstOK {
		b.settleRec(firstRec)
	}

	// The run's result, by the way it ended.
	var se *stage.Error
	var pe *stage.PanicError
	var sre *stage.SourceError
	switch end {
	case "cancel":
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled run: %v, want context.Canceled", err)
		}
	case "first":
		if err != nil && !errors.As(err, &se) {
			t.Errorf("sink.First: %v, want nil or a forwarded *stage.Error", err)
		}
		if err == nil && !firstOK {
			t.Errorf("sink.First returned no item and no error from a topic of %d records", parts*perPart)
		}
	case "handleerr":
		if !errors.Is(err, errR63Trigger) {
			t.Errorf("run: %v, want the Handle function's error", err)
		}
	case "failfast", "sinkerr":
		if !errors.Is(err, errR63Trigger) || !errors.As(err, &se) {
			t.Errorf("run: %v, want a *stage.Error wrapping the deliberate failure", err)
		}
	case "decodepanic":
		if !errors.As(err, &sre) || !errors.As(err, &pe) {
			t.Errorf("run: %v, want a *stage.SourceError wrapping a *stage.PanicError", err)
		}
	case "mappanic", "sinkpanic", "filterpanic", "handlepanic":
		if !errors.As(err, &se) || !errors.As(err, &pe) {
			t.Errorf("run: %v, want a *stage.Error wrapping a *stage.PanicError", err)
		}
	case "until":
		if !r63OnlyForwarded(err) {
			t.Errorf("drained run: %v, want nil or a *sink.ForwardedError", err)
		}
	}
	b.verify(t)
	ord.verify(t)

	// The commit at the end is the watermark: exactly the lowest offset not
	// settled (below it: a settled record repeated needlessly, and the
	// promise "commits what is settled" broken; above it: a loss).
	got := committedNow(t, addrs, group, "jobs", parts)
	for p := range int32(parts) {
		want := b.firstUnsettled("jobs", p)
		if got[p] > want {
			t.Errorf("partition %d: committed %d after the run, but offset %d was never settled (a loss)", p, got[p], want)
		} else if got[p] != want && !(want == 0 && got[p] == -1) {
			t.Errorf("partition %d: committed %d after the run, want %d: every record below it was settled", p, got[p], want)
		}
	}
	if t.Failed() {
		t.Logf("commits:\n%s", b.dumpCommits())
		return
	}

	// The second run starts at the committed offsets and gets everything
	// not committed; together the two runs commit every record.
	seen := r63Resume(t, b, addrs, group, parts, perPart, got)
	for p := range int32(parts) {
		if s := seen[p]; len(s) > 0 && s[0] != max(got[p], 0) {
			t.Errorf("partition %d: the second run started at offset %d, want the committed offset %d", p, s[0], max(got[p], 0))
		}
		for o := range int64(perPart) {
			if !b.isSettled("jobs", p, o) {
				t.Errorf("partition %d: offset %d settled by neither run", p, o)
			}
		}
	}
	checkCommitted(t, addrs, group, "jobs")
	b.verify(t)
}

// errR63Trigger is the failure that ends a run (the workload's own
// failures wrap errR63).
var errR63Trigger = errors.New("review63: the failure that ends the run")
