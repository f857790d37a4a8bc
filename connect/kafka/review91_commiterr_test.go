package kafka_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review91: the error of a refused commit names the broker's error.

// Doc (package, Offsets): "A commit the broker refuses does not fail the
// run: the [Committed] event (see [OnEvent]) carries its error, and the
// next commit tries the watermark again"; DESIGN: every error the library
// creates is a wrapped error that errors.Is sees through.
//
// The broker refuses the first commit partition by partition (a response
// whose partition carries kerr.OffsetMetadataTooLarge, not a failed
// request). Its Committed event's Err is that kerr error under errors.Is;
// the run goes on, and a later commit makes the watermark once every
// record was stored.
func TestReview91RefusedCommitEventWrapsTheBrokerError(t *testing.T) {
	c, addrs := newCluster(t, 1, "jobs")
	const n = 3
	produceTo(t, addrs, "jobs", 0, 0, n)
	var refused atomic.Bool
	c.ControlKey(int16(kmsg.OffsetCommit), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !refused.CompareAndSwap(false, true) {
			return nil, nil, false
		}
		return refuseCommit(kr.(*kmsg.OffsetCommitRequest), kerr.OffsetMetadataTooLarge.Code), nil, true
	})
	var mu sync.Mutex
	var failed []error // the Errs of the Committed events
	sawRefusal := make(chan struct{})
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(10*time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		if e.Kind != kafka.Committed || e.Err == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if failed = append(failed, e.Err); len(failed) == 1 {
			close(sawRefusal)
		}
	}))
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	allStored := make(chan struct{})
	stored := 0
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(context.Context, kafka.Record[int]) error {
			if stored++; stored == n {
				close(allStored)
			}
			return nil
		})
	})
	for _, w := range []struct {
		c    <-chan struct{}
		what string
	}{{sawRefusal, "a Committed event with an error"}, {allStored, "every record stored"}} {
		select {
		case <-w.c:
		case <-waitHung():
			t.Fatalf("hung: waiting for %s", w.what)
		}
	}
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatalf("the run returned %v; a refused commit does not fail it", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) != 1 || !errors.Is(failed[0], kerr.OffsetMetadataTooLarge) {
		t.Errorf("Committed events' errors %v; want one, wrapping kerr.OffsetMetadataTooLarge", failed)
	}
	if got := r14Committed(t, addrs, "g", "jobs", 0); got != n {
		t.Errorf("committed %d after the drain; want %d", got, n)
	}
}
