package kafka_test

import (
	"context"
	"errors"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/stage"
)

func r14Ints(n int) stage.Stream[int] {
	return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) {
		i := 0
		return func(context.Context) (int, error) {
			if i == n {
				return 0, io.EOF
			}
			i++
			return i, nil
		}, nil
	})
}

type r14Confirmed struct {
	mu   sync.Mutex
	done map[string]bool
}

func (h *r14Confirmed) OnProduceRecordUnbuffered(r *kgo.Record, err error) {
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.done[string(r.Value)] = true
}

func (h *r14Confirmed) has(v string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.done[v]
}

// Publish: "waiting for the broker to confirm the write before it takes the
// next item". The record function of item i+1 runs only once item i was
// confirmed.
func TestReview14KafkaPublishOneAtATime(t *testing.T) {
	_, addrs := newCluster(t, 3, "out")
	h := &r14Confirmed{done: map[string]bool{}}
	cl := client(t, addrs, kgo.WithHooks(h))
	var counts kafka.Published
	err := kafka.Publish(context.Background(), cl, r14Ints(30), func(v int) (*kgo.Record, error) {
		if v > 1 && !h.has(strconv.Itoa(v-1)) {
			t.Errorf("item %d taken before item %d was confirmed", v, v-1)
		}
		return &kgo.Record{Topic: "out", Key: []byte(strconv.Itoa(v % 3)), Value: []byte(strconv.Itoa(v))}, nil
	}, &counts)
	if err != nil {
		t.Fatal(err)
	}
	if counts.Records.Load() != 30 {
		t.Fatalf("counted %d", counts.Records.Load())
	}
}

// Publish: "a nil record without an error: ErrNilRecord"; "an error or panic
// in record, ends the run with a *stage.Error (Stage "foreach")"; "counts may
// be nil".
func TestReview14KafkaPublishRecordFunctionFailures(t *testing.T) {
	_, addrs := newCluster(t, 1, "out")
	cl := client(t, addrs)
	ctx := context.Background()
	var counts kafka.Published
	err := kafka.Publish(ctx, cl, r14Ints(5), func(v int) (*kgo.Record, error) {
		if v == 3 {
			return nil, nil
		}
		return &kgo.Record{Topic: "out", Value: []byte("x")}, nil
	}, &counts)
	var se *stage.Error
	if !errors.Is(err, kafka.ErrNilRecord) || !errors.As(err, &se) || se.Stage != "foreach" {
		t.Fatalf("nil record: %v", err)
	}
	if counts.Records.Load() != 2 {
		t.Fatalf("nil record: %d confirmed, want 2", counts.Records.Load())
	}
	err = kafka.Publish(ctx, cl, r14Ints(5), func(v int) (*kgo.Record, error) {
		if v == 2 {
			panic("record exploded")
		}
		return &kgo.Record{Topic: "out", Value: []byte("x")}, nil
	}, nil)
	var pe *stage.PanicError
	if !errors.As(err, &se) || se.Stage != "foreach" || !errors.As(err, &pe) {
		t.Fatalf("panic: %v", err)
	}
	// A produce the broker refuses (a topic that does not exist, with no
	// auto-creation): a *stage.Error too.
	cl2 := client(t, addrs, kgo.RecordDeliveryTimeout(5*time.Second))
	err = kafka.Publish(ctx, cl2, r14Ints(1), func(int) (*kgo.Record, error) {
		return &kgo.Record{Topic: "no-such-topic", Value: []byte("x")}, nil
	}, nil)
	if !errors.As(err, &se) || se.Stage != "foreach" {
		t.Fatalf("refused produce: %v", err)
	}
}

// Publish: "Give cl kgo.AllowIdempotentProduceCancellation ... for a Publish
// that returns at once" when ctx is cancelled while the broker holds the
// produce; without it, Publish waits for the broker's answer.
func TestReview14KafkaPublishCancelledWhileTheBrokerHoldsTheProduce(t *testing.T) {
	for _, allow := range []bool{true, false} {
		t.Run(strconv.FormatBool(allow), func(t *testing.T) {
			c, addrs := newCluster(t, 1, "out")
			g := newR14Gate()
			g.holdProduce(c, "out", nil)
			opts := []kgo.Opt{}
			if allow {
				opts = append(opts, kgo.AllowIdempotentProduceCancellation())
			}
			cl := client(t, addrs, opts...)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var counts kafka.Published
			errc := goRun(func() error {
				return kafka.Publish(ctx, cl, r14Ints(1), func(int) (*kgo.Record, error) {
					return &kgo.Record{Topic: "out", Value: []byte("x")}, nil
				}, &counts)
			})
			select {
			case <-g.entered:
			case err := <-errc:
				t.Fatalf("Publish returned (%v) before producing", err)
			}
			cancel()
			if allow {
				select {
				case err := <-errc:
					close(g.open)
					if !errors.Is(err, context.Canceled) {
						t.Logf("err = %v", err)
					}
					if err == nil {
						t.Fatal("a cancelled publish reported success")
					}
				case <-time.After(30 * time.Second): // a hang bound
					close(g.open)
					<-errc
					t.Fatal("Publish did not return while the broker held the produce")
				}
				return
			}
			select {
			case err := <-errc:
				held := g.holding()
				close(g.open)
				if held > 0 {
					t.Fatalf("Publish returned (%v) while an idempotent produce was unanswered", err)
				}
			case <-time.After(2 * time.Second):
				close(g.open)
				t.Logf("after the answer: %v, %d confirmed", waitErr(t, "Publish", errc), counts.Records.Load())
			}
		})
	}
}

// Publish as the sink of a kafka.Source: "An item is committed (and its
// source's acknowledgement released) only once its record was confirmed."
// While the broker holds the produce of the item from offset 3, no commit
// passes 3 (the items before it were confirmed: the watermark reaches 3).
func TestReview14KafkaPublishHoldsTheSourceWatermark(t *testing.T) {
	c, addrs := newCluster(t, 1, "t", "out", "held")
	r14Produce(t, addrs, "t", r14Values(8)...)
	g := newR14Gate()
	g.holdProduce(c, "held", nil)
	var mu sync.Mutex
	released := false
	var passed []int64
	reached := make(chan struct{})
	var reachedOnce sync.Once
	src := kafka.Source(memberOpts(addrs, "g", "t"), decodeInt, kafka.CommitInterval(time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		if e.Kind != kafka.Committed || e.Err != nil {
			return
		}
		off, ok := e.Offsets["t"][0]
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !released && off > 3 {
			passed = append(passed, off)
		}
		if off == 3 {
			reachedOnce.Do(func() { close(reached) })
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := client(t, addrs)
	errc := goRun(func() error {
		return kafka.Publish(ctx, cl, src, func(r kafka.Record[int]) (*kgo.Record, error) {
			topic := "out"
			if r.Offset == 3 {
				topic = "held"
			}
			return &kgo.Record{Topic: topic, Value: []byte(strconv.Itoa(r.Value))}, nil
		}, nil)
	})
	<-g.entered
	select {
	case <-reached:
	case <-waitHung():
		t.Fatal("the watermark never reached the held item")
	}
	got := r14Committed(t, addrs, "g", "t", 0)
	cancel()
	mu.Lock()
	released = true
	mu.Unlock()
	close(g.open)
	t.Logf("run: %v", waitErr(t, "the run", errc))
	if got > 3 || len(passed) > 0 {
		t.Fatalf("committed %d (events %v) while the produce of offset 3's item was unconfirmed", got, passed)
	}
}
