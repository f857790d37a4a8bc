package kafka_test

// Review 17 (white box): records of a poll that was in progress while its
// partition was lost (or revoked) and assigned again are added to the NEW
// ownership's part. next looks the partition up in m.parts after the poll
// returned, and only asks whether a part exists and is owned, not whether
// it is the ownership the poll was made for. The new part then holds the
// stale records (offsets past its committed offset) at its head: once they
// settle, its watermark is "one past the last record polled", and the
// source commits past records that the new ownership never took.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/stage"
)

// r17PollHook holds the poll that returns offset holdAt (the first time)
// on the polling goroutine, before PollRecords returns, and counts the
// polls started after it was let go.
type r17PollHook struct {
	holdAt   int64
	once     sync.Once
	stalled  chan struct{}
	resume   chan struct{}
	released atomic.Bool
	after    atomic.Int32
}

func (h *r17PollHook) OnFetchRecordUnbuffered(r *kgo.Record, polled bool) {
	if !polled || r.Offset != h.holdAt {
		return
	}
	first := false
	h.once.Do(func() { first = true })
	if first {
		close(h.stalled)
		<-h.resume
	}
}

func (h *r17PollHook) OnPollStart(context.Context) {
	if h.released.Load() {
		h.after.Add(1)
	}
}

// "When the group session is lost (...), its partitions are let go without
// a commit and the member joins again; the run goes on. A partition newly
// assigned starts from its committed offset." and "a record is committed
// only after what it led to was committed" (doc.go). Offset 0 is in
// flight (and then fails); records 5-9 are in a poll that returns only
// after the partition was lost and assigned again; the new ownership's own
// fetch (from the start) is held at the broker. The run is drained: the
// final commit must not pass offset 0.
func TestReview17StalePollAfterReassignCommitsPastUnsettled(t *testing.T) {
	c, addrs := newCluster(t, 1, "jobs")
	l := newLedger()
	l.watch(c)
	l.dumpOnFailure(t)
	produceTo(t, addrs, "jobs", 0, 0, 5)

	// Fetches are held at the broker once holdFetch is set.
	var holdFetch atomic.Bool
	fetchGate := make(chan struct{})
	var fetchOnce sync.Once
	openFetch := func() { fetchOnce.Do(func() { close(fetchGate) }) }
	defer openFetch()
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if holdFetch.Load() {
			c.SleepControl(func() { <-fetchGate })
		}
		return nil, nil, false
	})

	hook := &r17PollHook{holdAt: 5, stalled: make(chan struct{}), resume: make(chan struct{})}
	var resumeOnce sync.Once
	resume := func() { resumeOnce.Do(func() { hook.released.Store(true); close(hook.resume) }) }
	defer resume()

	var emu sync.Mutex
	var events []kafka.Event
	onEvent := func(e kafka.Event) {
		l.onEvent(e)
		emu.Lock()
		events = append(events, e)
		emu.Unlock()
	}
	// The source keeps rebalances from running while a poll's records are
	// not recorded yet (kgo.BlockRebalanceOnPoll): then the loss below
	// waits for the held poll, and franz-go says so through this signal.
	blocked := make(chan struct{})
	var blockedOnce sync.Once
	kopts := append(memberOpts(addrs, "g", "jobs"), kgo.WithHooks(hook),
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) { blockedOnce.Do(func() { close(blocked) }) }))
	src := kafka.Source(kopts, decodeInt, kafka.CommitInterval(time.Hour), kafka.OnEvent(onEvent))

	zeroIn, releaseZero := make(chan struct{}), make(chan struct{})
	var zeroOnce, releaseZeroOnce sync.Once
	letZeroGo := func() { releaseZeroOnce.Do(func() { close(releaseZero) }) }
	defer letZeroGo()
	errZero := errors.New("offset 0 failed")
	work := stage.Map(src, func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		if r.Offset == 0 {
			first := false
			zeroOnce.Do(func() { first = true })
			if first {
				close(zeroIn)
				<-releaseZero
				return r, errZero
			}
		}
		return r, nil
	}, stage.Workers(4), stage.OnError(stage.Forward))

	var smu sync.Mutex
	seen := map[int64]int{}
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	errc := goRun(func() error {
		return stage.Run(context.Background(), stage.Until(work, stop), func(_ context.Context, r kafka.Record[int], err error) error {
			if err != nil {
				return nil // the failure of offset 0: the run goes on
			}
			l.settleRec(r)
			smu.Lock()
			seen[r.Offset]++
			smu.Unlock()
			return nil
		})
	})
	waitFor(t, "offset 0 in flight and 1-4 at the sink", func() bool {
		select {
		case <-zeroIn:
		default:
			return false
		}
		smu.Lock()
		defer smu.Unlock()
		for o := int64(1); o < 5; o++ {
			if seen[o] == 0 {
				return false
			}
		}
		return true
	})

	produceTo(t, addrs, "jobs", 0, 5, 5)
	select {
	case <-hook.stalled:
	case <-waitHung():
		t.Fatal("hung: no poll returned offset 5")
	}
	holdFetch.Store(true) // the next ownership's fetches wait

	// The session is lost: the next heartbeat answers UNKNOWN_MEMBER_ID.
	c.ControlKey(int16(kmsg.Heartbeat), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.HeartbeatRequest)
		resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
		resp.SetVersion(req.GetVersion())
		resp.ErrorCode = kerr.UnknownMemberID.Code
		return resp, nil, true
	})
	// Before the fix, the loss and the new assignment went through while
	// the poll was held; now the loss waits for the poll (blocked). Either
	// event lets the poll go; the commits are checked either way.
	reassigned := func() bool {
		emu.Lock()
		defer emu.Unlock()
		lost := slices.IndexFunc(events, func(e kafka.Event) bool {
			return e.Kind == kafka.Lost && slices.Contains(e.Partitions["jobs"], 0)
		})
		return lost >= 0 && slices.ContainsFunc(events[lost+1:], func(e kafka.Event) bool {
			return e.Kind == kafka.Assigned && slices.Contains(e.Partitions["jobs"], 0)
		})
	}
	waitFor(t, "jobs/0 lost and assigned again, or the loss blocked by the held poll", func() bool {
		select {
		case <-blocked:
			return true
		default:
			return reassigned()
		}
	})

	// The poll of the lost ownership returns now; the source polls again
	// after it (whatever it made of the records).
	resume()
	waitFor(t, "the source to poll again after the stale poll", func() bool { return hook.after.Load() > 0 })
	letZeroGo()
	drain()
	if err := waitErr(t, "the drained run", errc); err != nil {
		t.Logf("run: %v", err)
	}
	openFetch()
	l.mu.Lock()
	var last []string
	for _, cs := range l.commits {
		last = append(last, fmt.Sprintf("%s/%d@%d", cs.topic, cs.p, cs.off))
	}
	l.mu.Unlock()
	t.Logf("commits seen at the broker: %v", last)
	if got := committedNow(t, addrs, "g", "jobs", 1)[0]; got > 0 {
		t.Errorf("committed jobs/0 at %d, but offset 0 failed and was never tried again: a lost record", got)
	}
	l.verify(t)
}
