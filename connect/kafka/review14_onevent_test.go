package kafka_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// OnEvent: "A panic in f fails the run ... (unless the run's result was
// decided first: the sink stopped it with ErrStop ...), and f is called no
// more in that run." The panic comes at the commit of the stop.
func TestReview14KafkaOnEventPanicAfterErrStop(t *testing.T) {
	_, addrs := newCluster(t, 1, "t")
	r14Produce(t, addrs, "t", r14Values(5)...)
	var panicked atomic.Bool
	var after atomic.Int32
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.CommitInterval(time.Hour), kafka.OnEvent(func(e kafka.Event) {
		if panicked.Load() {
			after.Add(1)
			return
		}
		if e.Kind == kafka.Committed {
			panicked.Store(true)
			panic("OnEvent exploded")
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := sink.ForEach(ctx, src, func(_ context.Context, r kafka.Record[int]) error {
		if r.Offset == 2 {
			return stage.ErrStop
		}
		return nil
	})
	if err != nil {
		t.Fatalf("err = %v, want nil: the sink's ErrStop decided the result first", err)
	}
	if !panicked.Load() {
		t.Fatal("no commit was reported")
	}
	if n := after.Load(); n != 0 {
		t.Fatalf("f called %d times after its panic", n)
	}
	if got := r14Committed(t, addrs, "g", "t", 0); got != 3 {
		t.Fatalf("committed %d, want 3", got)
	}
}

// OnEvent: a panic mid-run "fails the run with a *stage.SourceError wrapping
// a *stage.PanicError ... and f is called no more in that run".
func TestReview14KafkaOnEventPanicOnAssigned(t *testing.T) {
	_, addrs := newCluster(t, 1, "t")
	r14Produce(t, addrs, "t", r14Values(5)...)
	var panicked atomic.Bool
	var after atomic.Int32
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.OnEvent(func(e kafka.Event) {
		if panicked.Load() {
			after.Add(1)
			return
		}
		if e.Kind == kafka.Assigned {
			panicked.Store(true)
			panic("OnEvent exploded")
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	err := sink.ForEach(ctx, stage.Until(src, stop), func(context.Context, kafka.Record[int]) error { return nil })
	var se *stage.SourceError
	var pe *stage.PanicError
	if !errors.As(err, &se) || !errors.As(err, &pe) {
		t.Fatalf("err = %v", err)
	}
	if n := after.Load(); n != 0 {
		t.Fatalf("f called %d times after its panic", n)
	}
}

// Offsets: "A record that does not decode goes to the dead-letter topic at
// once (or fails the run)"; Source: "without one, the run fails with a
// *stage.SourceError". The records before it are committed, it is not.
func TestReview14KafkaUndecodableRecord(t *testing.T) {
	for _, dlq := range []bool{false, true} {
		t.Run(strconv.FormatBool(dlq), func(t *testing.T) {
			_, addrs := newCluster(t, 1, "t", "dlq")
			recs := r14Values(6)
			recs[3].Value = []byte("not a number")
			r14Produce(t, addrs, "t", recs...)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			opts := []kafka.Option{kafka.CommitInterval(time.Millisecond)}
			if dlq {
				opts = append(opts, kafka.DeadLetter("dlq"), kafka.OnEvent(func(e kafka.Event) {
					if e.Kind == kafka.Committed && e.Offsets["t"][0] == 6 {
						drain()
					}
				}))
			}
			var sawBad atomic.Bool
			err := sink.ForEach(ctx, stage.Until(kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, opts...), stop), func(_ context.Context, r kafka.Record[int]) error {
				if r.Offset == 3 {
					sawBad.Store(true)
				}
				return nil
			})
			if sawBad.Load() {
				t.Fatal("the undecodable record entered the pipeline")
			}
			if !dlq {
				var se *stage.SourceError
				if !errors.As(err, &se) {
					t.Fatalf("err = %v, want a *stage.SourceError", err)
				}
				if got := r14Committed(t, addrs, "g", "t", 0); got != 3 {
					t.Fatalf("committed %d, want 3", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			dl := r14ReadTopic(t, addrs, "dlq", 1)[0]
			if string(dl.Value) != "not a number" || r14Header(dl, "sluice-offset") != "3" || r14Header(dl, "sluice-reason") == "" {
				t.Fatalf("dead letter %q %v", dl.Value, dl.Headers)
			}
		})
	}
}
