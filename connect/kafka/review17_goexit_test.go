package kafka_test

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

// A runtime.Goexit (t.Fatal) in decode, a user function of the run called
// from the source's next on a worker's goroutine: the run fails with
// stage.ErrGoexit (as for a Goexit in any user function of a run, README
// and stage.ErrGoexit), the record is not committed (Source: "a panic in
// decode ... the record is not committed"; a Goexit must not do better),
// and the client is closed (goleak as the child exits). Regression test:
// passes today.
func TestReview17GoexitInDecodeFailsTheRun(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		_, addrs := newCluster(t, 1, "t")
		r14Produce(t, addrs, "t", r14Values(5)...)
		decode := func(r *kgo.Record) (int, error) {
			if r.Offset == 2 {
				runtime.Goexit()
			}
			return decodeInt(r)
		}
		src := kafka.Source(memberOpts(addrs, "g", "t"), decode, kafka.CommitInterval(time.Hour))
		work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) { return r, nil }, stage.Workers(2))
		errc := goRun(func() error {
			return sink.ForEach(context.Background(), work, func(context.Context, kafka.Record[int]) error { return nil })
		})
		err := waitErr(t, "the run", errc)
		if !errors.Is(err, stage.ErrGoexit) {
			t.Fatalf("run: %v, want stage.ErrGoexit", err)
		}
		if got := r14Committed(t, addrs, "g", "t", 0); got > 2 {
			t.Errorf("committed %d, past offset 2 whose decode never returned", got)
		}
	})
}
