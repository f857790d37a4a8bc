package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// r63Out is a record's output from one branch of a Tee.
type r63Out struct {
	r      kafka.Record[int]
	branch int
}

// TestReview63TeeBranchesHoldTheWatermark: the source's records go through
// a Tee of two branches merged again: branch 0 holds offset 3 (a gate the
// test controls); branch 1 drops the odd offsets with a Filter and fails
// offset 6's first try (forwarded); Attempts(2).
//
// Doc sentences attacked:
//   - Offsets: the watermark is the lowest offset "whose record is not
//     settled yet", with stage.Ack: "An item that fans out (FlatMap, Tee)
//     is done when all its outputs are" and "Done(err) as soon as its way
//     failed": offset 3, whose branch-1 output was dropped (done) but whose
//     branch-0 output is held, holds the watermark: the group's offset
//     reaches 3 while the run goes on and never passes it; offset 6 is
//     tried again (both branches see its second try) and settles only when
//     both outputs of that try are done;
//   - "Every CommitInterval ... the source commits the watermarks that
//     moved": once offset 3 is released, the group's offset reaches the
//     end while the run goes on.
func TestReview63TeeBranchesHoldTheWatermark(t *testing.T) {
	const n, held, flaky = 20, 3, 6
	c, addrs := newCluster(t, 1, "jobs", "dlq")
	b := newR63Book(c)
	produceTo(t, addrs, "jobs", 0, 0, n)
	release := newR63Gate()
	defer release.open()
	var mu sync.Mutex
	done := map[[2]int64]int{} // (offset, attempt) -> outputs done
	var flakyTries [2][]int    // per branch, the tries of offset 6 seen
	outputDone := func(r kafka.Record[int]) {
		mu.Lock()
		defer mu.Unlock()
		k := [2]int64{r.Offset, int64(r.Attempts)}
		if done[k]++; done[k] == 2 {
			b.settleRec(r)
		}
	}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.Attempts(2), kafka.DeadLetter("dlq"), kafka.CommitInterval(10*time.Millisecond))
	br := stage.Tee(stage.Until(src, stop), 2)
	b0 := stage.Map(br[0], func(ctx context.Context, r kafka.Record[int]) (r63Out, error) {
		if r.Offset == flaky {
			mu.Lock()
			flakyTries[0] = append(flakyTries[0], r.Attempts)
			mu.Unlock()
		}
		if r.Offset == held {
			if err := release.wait(ctx); err != nil {
				return r63Out{}, err
			}
		}
		return r63Out{r, 0}, nil
	}, stage.Workers(4))
	kept := stage.Filter(br[1], func(_ context.Context, r kafka.Record[int]) (bool, error) {
		if r.Offset%2 == 1 {
			outputDone(r)
			return false, nil
		}
		return true, nil
	}, stage.Workers(4))
	b1 := stage.Map(kept, func(_ context.Context, r kafka.Record[int]) (r63Out, error) {
		if r.Offset == flaky {
			mu.Lock()
			flakyTries[1] = append(flakyTries[1], r.Attempts)
			mu.Unlock()
			if r.Attempts == 1 {
				return r63Out{}, fmt.Errorf("offset %d, first try: %w", r.Offset, errR63)
			}
		}
		return r63Out{r, 1}, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Merge(b0, b1), func(_ context.Context, o r63Out) error {
			outputDone(o.r)
			return nil
		})
	})
	waitFor(t, "every record but offset 3 to settle", func() bool {
		return b.allSettled("jobs", 0, 0, held) && b.allSettled("jobs", 0, held+1, n)
	})
	waitFor(t, "the group's offset to reach offset 3", func() bool { return r14Committed(t, addrs, "g", "jobs", 0) == held })
	mu.Lock()
	if fmt.Sprint(flakyTries) != "[[1 2] [1 2]]" {
		t.Errorf("offset 6 (its branch-1 output failed on its first try) was seen as tries %v by branch 0 and branch 1, want [1 2] in each", flakyTries)
	}
	mu.Unlock()
	release.open()
	waitFor(t, "the group's offset to reach the end while the run goes on", func() bool { return r14Committed(t, addrs, "g", "jobs", 0) == n })
	drain()
	if err := waitErr(t, "the run", errc); !r63OnlyForwarded(err) {
		t.Errorf("drained run: %v, want a *sink.ForwardedError (offset 6's first try)", err)
	}
	b.verify(t)
	if t.Failed() {
		t.Logf("commits:\n%s", b.dumpCommits())
	}
}
