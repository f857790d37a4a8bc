package kafka_test

// Review 16 (white box) found that runtime.Goexit (t.Fatal) in the OnEvent
// function ended whichever goroutine called it: the periodic committer
// (no more commits, and the run returned nil), a rebalance callback
// holding the commit lock (the drained run hung), the sink's goroutine at
// the final commit (the client was never closed), franz-go's assign
// goroutine (unnoticed). OnEvent now runs on a goroutine of its own,
// waited for: a Goexit ends only that one, and the run fails with
// stage.ErrGoexit, as for Goexit in any user function of a run.

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

func TestReview16GoexitInOnEventFailsTheRun(t *testing.T) {
	for _, kind := range []kafka.EventKind{kafka.Assigned, kafka.Committed} {
		t.Run(kind.String(), func(t *testing.T) {
			runcheck.InChildTest(t, func(t *testing.T) {
				_, addrs := newCluster(t, 1, "t")
				r14Produce(t, addrs, "t", r14Values(3)...)
				var once sync.Once
				fired := make(chan struct{})
				src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.CommitInterval(20*time.Millisecond),
					kafka.OnEvent(func(e kafka.Event) {
						if e.Kind != kind {
							return
						}
						fire := false
						once.Do(func() { fire = true })
						if fire {
							close(fired)
							runtime.Goexit() // what t.FailNow does
						}
					}))
				stop, drain := context.WithCancel(context.Background())
				defer drain()
				got := 0
				errc := goRun(func() error {
					return sink.ForEach(context.Background(), stage.Until(src, stop), func(context.Context, kafka.Record[int]) error {
						if got++; got == 3 {
							go func() { <-fired; drain() }() // the commit needs this callback to return
						}
						return nil
					})
				})
				err := waitErr(t, "the run", errc)
				if !errors.Is(err, stage.ErrGoexit) {
					t.Fatalf("run: %v, want stage.ErrGoexit", err)
				}
				// goleak, as the child exits: the client and its
				// goroutines were closed.
			})
		})
	}
}
