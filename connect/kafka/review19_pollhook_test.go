package kafka_test

// Review 19: kgo.BlockRebalanceOnPoll leaves the poll counted until next
// calls AllowRebalance, and next calls it only when PollRecords returns.
// PollRecords runs user code of kopts (kgo.WithHooks: a
// HookFetchRecordUnbuffered runs on the polling goroutine once the poll
// holds its records, before PollRecords returns). A panic there (or a
// t.Fatal) leaves the poll counted; close's kgo.Client.Close then leaves
// the group, which waits for polls to allow rebalancing: for ever. Before
// BlockRebalanceOnPoll the run failed and returned.

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

type r19PanicHook struct{ goexit bool }

func (h r19PanicHook) OnFetchRecordUnbuffered(r *kgo.Record, polled bool) {
	if polled && r.Offset == 2 {
		if h.goexit {
			runtime.Goexit()
		}
		panic("r19: hook panicked")
	}
}

func r19HookRun(t *testing.T, goexit bool) {
	_, addrs := newCluster(t, 1, "t")
	r14Produce(t, addrs, "t", r14Values(5)...)
	kopts := append(memberOpts(addrs, "g", "t"), kgo.WithHooks(r19PanicHook{goexit: goexit}))
	src := kafka.Source(kopts, decodeInt, kafka.CommitInterval(time.Hour))
	// A stage with workers of its own: next (and the poll) runs on a
	// goroutine of the run, not on the sink's (see stage.ErrGoexit).
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) { return r, nil }, stage.Workers(2))
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), work, func(context.Context, kafka.Record[int]) error { return nil })
	})
	// The watchdog is runcheck's (30s), well below waitHung.
	err := <-errc
	var se *stage.SourceError
	switch {
	case goexit && !errors.Is(err, stage.ErrGoexit):
		t.Fatalf("run: %v, want stage.ErrGoexit", err)
	case !goexit && !errors.As(err, &se):
		t.Fatalf("run: %v, want a *stage.SourceError (the hook's panic)", err)
	}
	t.Logf("run: %v", err)
}

// A panic in a hook that PollRecords runs (user code of kopts) must fail
// the run, not hang its close.
func TestReview19PanicInPollHookDoesNotHangClose(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) { r19HookRun(t, false) })
}

// The same with runtime.Goexit (t.Fatal in the hook): the run fails with
// stage.ErrGoexit and returns.
func TestReview19GoexitInPollHookDoesNotHangClose(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) { r19HookRun(t, true) })
}
