package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview63AttemptsHugeNeverGivesUp: Attempts(math.MaxInt), a dead-letter
// topic, and offset 3 of partition 0 failing on every try (forwarded),
// under KeyBy(ByKey) and Workers(8). In a child process.
//
// Doc sentences attacked:
//   - Attempts: "Attempts sets how many times a record is tried before it
//     goes to the dead-letter topic": at the hostile value math.MaxInt the
//     record is tried again and again (Record.Attempts "1 on the first try;
//     more when a failed record is tried again": 1, 2, 3, ... with none
//     skipped or repeated) and never dead-lettered;
//   - Offsets: "A record that failed ... holds the watermark: it is tried
//     again": while it is tried, the group's committed offset of partition 0
//     reaches 3 (every record before it was stored) and never passes it;
//     partition 1 is committed to its end meanwhile;
//   - cancelling the run returns context.Canceled, the commit at the stop
//     is exactly 3, and a second run of the group starts partition 0 at 3.
func TestReview63AttemptsHugeNeverGivesUp(t *testing.T) {
	runcheck.InChildTest(t, r63AttemptsHuge)
}

func r63AttemptsHuge(t *testing.T) {
	const parts, perPart, bad, tries = 2, 10, 3, 50
	c, addrs := newCluster(t, parts, "jobs", "dlq")
	b := newR63Book(c)
	r63Produce(t, addrs, parts, perPart)

	var mu sync.Mutex
	var attempts []int
	enough := make(chan struct{})
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(math.MaxInt), kafka.DeadLetter("dlq"), kafka.CommitInterval(10*time.Millisecond), kafka.MaxPending(4))
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Partition == 0 && r.Offset == bad {
			mu.Lock()
			attempts = append(attempts, r.Attempts)
			if len(attempts) == tries {
				close(enough)
			}
			mu.Unlock()
			return r, errR63
		}
		return r, nil
	}, stage.Workers(8), stage.KeyBy(kafka.ByKey[int]), stage.OnError(stage.Forward), stage.Buffer(4))
	errc := goRun(func() error {
		return sink.ForEach(parent, work, func(_ context.Context, r kafka.Record[int]) error {
			b.settleRec(r)
			return nil
		})
	})
	select {
	case <-enough:
	case err := <-errc:
		t.Fatalf("the run ended before the record was tried %d times: %v", tries, err)
	case <-time.After(r63Watchdog):
		t.Fatalf("hung: the record was not tried %d times", tries)
	}
	waitFor(t, "the group to commit partition 0 at 3 and partition 1 to its end while the record is tried again", func() bool {
		got := committedNow(t, addrs, "g", "jobs", parts)
		return got[0] == bad && got[1] == perPart
	})
	cancel()
	err := waitErr(t, "the run", errc)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v, want context.Canceled", err)
	}
	mu.Lock()
	for i, a := range attempts {
		if a != i+1 {
			t.Errorf("try %d of the failing record had Record.Attempts %d (all: %v)", i+1, a, attempts)
			break
		}
	}
	mu.Unlock()
	b.mu.Lock()
	dead := fmt.Sprint(b.dead)
	nDead := len(b.dead)
	b.mu.Unlock()
	if nDead > 0 {
		t.Errorf("Attempts(math.MaxInt): dead letters were written: %s", dead)
	}
	got := committedNow(t, addrs, "g", "jobs", parts)
	if got[0] != bad || got[1] != perPart {
		t.Errorf("committed %v after the cancellation, want 0:%d 1:%d", got, bad, perPart)
	}
	b.verify(t)
	seen := r63Resume(t, b, addrs, "g", parts, perPart, got)
	if s := seen[0]; len(s) == 0 || s[0] != bad {
		t.Errorf("the second run got partition 0 as %v, want it to start at %d", s, bad)
	}
}

// TestReview63HugeWindowTinyInterval: MaxPending(math.MaxInt) and
// CommitInterval(time.Nanosecond), the mixed workload without KeyBy,
// Workers(8); offset 4 is held in the stage's function.
//
// Doc sentences attacked:
//   - MaxPending bounds nothing at the hostile value math.MaxInt, but the
//     watermark still rules: "The source commits, per partition, the lowest
//     offset whose record is not settled yet": every other record settles,
//     and the group's offset reaches 4 while the run goes on, never more;
//   - "Every CommitInterval (1 s by default) the source commits the
//     watermarks that moved": at 1 ns, once offset 4 is released, the
//     group's offset reaches the end while the run goes on (no stop, no
//     revoke);
//   - Guarantees: at-least-once: no commit the broker receives passes a
//     record not settled.
func TestReview63HugeWindowTinyInterval(t *testing.T) {
	const n, held = 40, 4
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	b := newR63Book(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	release := newR63Gate()
	defer release.open()
	hook := func(ctx context.Context, r kafka.Record[int]) error {
		if r.Offset == held && r.Attempts == 1 {
			if err := release.wait(ctx); err != nil {
				return err
			}
		}
		return nil
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.MaxPending(math.MaxInt), kafka.CommitInterval(time.Nanosecond), kafka.Attempts(2), kafka.DeadLetter("dlq"))
	out := r63Mixed(b, stage.Until(src, stop), "none", nil, hook, nil, 0)
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), out, func(_ context.Context, r kafka.Record[int]) error {
			b.settleRec(r)
			return nil
		})
	})
	waitFor(t, "every record but the held one to settle", func() bool {
		return b.allSettled("jobs", 0, 0, held) && b.allSettled("jobs", 0, held+1, n)
	})
	waitFor(t, "the group's offset to reach the held record", func() bool { return r14Committed(t, addrs, "g", "jobs", 0) == held })
	release.open()
	waitFor(t, "the group's offset to reach the end while the run goes on", func() bool { return r14Committed(t, addrs, "g", "jobs", 0) == n })
	select {
	case err := <-errc:
		t.Fatalf("the run ended before it was drained: %v", err)
	default:
	}
	drain()
	if err := waitErr(t, "the run", errc); !r63OnlyForwarded(err) {
		t.Errorf("drained run: %v, want nil or a *sink.ForwardedError", err)
	}
	b.verify(t)
}
