package kafka_test

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review76: every way a run of the source can end, each checked the moment
// the sink returns for a goroutine of sluice's left behind (franz-go's
// connection goroutines may still be closing: the documented exception,
// honoured by checkNoLeakSince), and for the kind of error the docs give.
//
// Doc (package, Guarantees and limits): "A run makes its own client, at its
// first take, and closes it before the sink returns (see Source). ...
// every goroutine of sluice's has exited."
// Doc (sink): "returns only when every goroutine of the run has exited: on
// success, on error, on an early exit (sink.First, a break out of
// sink.All), on cancellation of ctx, and when a user callback panics."

type r76Exit struct {
	name  string
	empty bool // produce nothing to "jobs"
	run   func(t *testing.T, addrs []string) error
	check func(err error) string // "" when err is what the docs promise
}

func r76IsPanicIn[E error](err error) bool {
	var e E
	var pe *stage.PanicError
	return errors.As(err, &e) && errors.As(err, &pe)
}

func r76Src(addrs []string, decode func(*kgo.Record) (int, error), opts ...kafka.Option) stage.Stream[kafka.Record[int]] {
	return kafka.Source(memberOpts(addrs, "g", "jobs"), decode, opts...)
}

func r76ForEachNil(ctx context.Context, s stage.Stream[kafka.Record[int]]) error {
	return sink.ForEach(ctx, s, func(context.Context, kafka.Record[int]) error { return nil })
}

func r76Exits() []r76Exit {
	want := func(ok bool, what string) string {
		if ok {
			return ""
		}
		return "want " + what
	}
	return []r76Exit{
		{name: "First", run: func(t *testing.T, addrs []string) error {
			v, ok, err := sink.First(context.Background(), r76Src(addrs, decodeInt))
			if err == nil && (!ok || v.Offset != 0) {
				return errors.New("First did not return offset 0")
			}
			return err
		}, check: func(err error) string { return want(err == nil, "nil") }},
		{name: "BreakOutOfAll", run: func(t *testing.T, addrs []string) error {
			for r, err := range sink.All(context.Background(), r76Src(addrs, decodeInt)) {
				if err != nil {
					return err
				}
				if r.Offset == 2 {
					break
				}
			}
			return nil
		}, check: func(err error) string { return want(err == nil, "nil") }},
		{name: "CancelWhileAStageHolds", run: func(t *testing.T, addrs []string) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			out := stage.Map(r76Src(addrs, decodeInt), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
				if r.Offset == 2 {
					cancel()
					<-ctx.Done()
					return r, ctx.Err()
				}
				return r, nil
			}, stage.Workers(4), stage.Buffer(4))
			return r76ForEachNil(ctx, out)
		}, check: func(err error) string { return want(errors.Is(err, context.Canceled), "context.Canceled") }},
		{name: "CancelWhilePollingAnEmptyTopic", empty: true, run: func(t *testing.T, addrs []string) error {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			src := r76Src(addrs, decodeInt, kafka.OnEvent(func(e kafka.Event) {
				if e.Kind == kafka.Assigned && len(e.Partitions) > 0 {
					cancel()
				}
			}))
			return r76ForEachNil(ctx, src)
		}, check: func(err error) string { return want(errors.Is(err, context.Canceled), "context.Canceled") }},
		{name: "DrainWhilePollingAnEmptyTopic", empty: true, run: func(t *testing.T, addrs []string) error {
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			src := r76Src(addrs, decodeInt, kafka.OnEvent(func(e kafka.Event) {
				if e.Kind == kafka.Assigned && len(e.Partitions) > 0 {
					drain()
				}
			}))
			return r76ForEachNil(context.Background(), stage.Until(src, stop))
		}, check: func(err error) string { return want(err == nil, "nil") }},
		{name: "DecodePanics", run: func(t *testing.T, addrs []string) error {
			return r76ForEachNil(context.Background(), r76Src(addrs, func(r *kgo.Record) (int, error) {
				if r.Offset == 1 {
					panic("review76 decode")
				}
				return decodeInt(r)
			}))
		}, check: func(err error) string {
			return want(r76IsPanicIn[*stage.SourceError](err), "a *stage.SourceError wrapping a *stage.PanicError")
		}},
		{name: "UndecodableWithoutDeadLetter", run: func(t *testing.T, addrs []string) error {
			return r76ForEachNil(context.Background(), r76Src(addrs, func(r *kgo.Record) (int, error) {
				if r.Offset == 1 {
					return 0, errR76
				}
				return decodeInt(r)
			}))
		}, check: func(err error) string {
			var se *stage.SourceError
			return want(errors.As(err, &se), "a *stage.SourceError")
		}},
		{name: "OnEventPanicsAtAssigned", run: func(t *testing.T, addrs []string) error {
			return r76ForEachNil(context.Background(), r76Src(addrs, decodeInt, kafka.OnEvent(func(e kafka.Event) {
				if e.Kind == kafka.Assigned {
					panic("review76 onevent")
				}
			})))
		}, check: func(err error) string {
			return want(r76IsPanicIn[*stage.SourceError](err), "a *stage.SourceError wrapping a *stage.PanicError")
		}},
		{name: "SinkCallbackFails", run: func(t *testing.T, addrs []string) error {
			return sink.ForEach(context.Background(), r76Src(addrs, decodeInt), func(_ context.Context, r kafka.Record[int]) error {
				if r.Offset == 2 {
					return errR76
				}
				return nil
			})
		}, check: func(err error) string {
			var e *stage.Error
			return want(errors.Is(err, errR76) && errors.As(err, &e), "the callback's error in a *stage.Error")
		}},
		{name: "SinkCallbackPanics", run: func(t *testing.T, addrs []string) error {
			return sink.ForEach(context.Background(), r76Src(addrs, decodeInt), func(_ context.Context, r kafka.Record[int]) error {
				if r.Offset == 2 {
					panic("review76 sink")
				}
				return nil
			})
		}, check: func(err error) string {
			return want(r76IsPanicIn[*stage.Error](err), "a *stage.Error wrapping a *stage.PanicError")
		}},
		{name: "FailFastStage", run: func(t *testing.T, addrs []string) error {
			out := stage.Map(r76Src(addrs, decodeInt), func(_ context.Context, r kafka.Record[int]) (int, error) {
				if r.Offset == 2 {
					return 0, errR76
				}
				return r.Value, nil
			}, stage.Workers(4))
			return sink.ForEach(context.Background(), out, func(context.Context, int) error { return nil })
		}, check: func(err error) string {
			var e *stage.Error
			return want(errors.Is(err, errR76) && errors.As(err, &e), "the stage's *stage.Error")
		}},
		{name: "StagePanics", run: func(t *testing.T, addrs []string) error {
			out := stage.Map(r76Src(addrs, decodeInt), func(_ context.Context, r kafka.Record[int]) (int, error) {
				if r.Offset == 2 {
					panic("review76 stage")
				}
				return r.Value, nil
			}, stage.Workers(4), stage.KeyBy(kafka.ByKey[int]))
			return sink.ForEach(context.Background(), out, func(context.Context, int) error { return nil })
		}, check: func(err error) string {
			return want(r76IsPanicIn[*stage.Error](err), "a *stage.Error wrapping a *stage.PanicError")
		}},
		{name: "HandlePolicyFails", run: func(t *testing.T, addrs []string) error {
			out := stage.Map(r76Src(addrs, decodeInt), func(_ context.Context, r kafka.Record[int]) (int, error) {
				if r.Offset == 2 {
					return 0, errors.New("item")
				}
				return r.Value, nil
			}, stage.Workers(4), stage.OnError(stage.Handle(func(context.Context, *stage.Error) error { return errR76 })))
			return sink.ForEach(context.Background(), out, func(context.Context, int) error { return nil })
		}, check: func(err error) string { return want(errors.Is(err, errR76), "the Handle function's error") }},
		{name: "AttemptsSpentWithoutDeadLetter", run: func(t *testing.T, addrs []string) error {
			out := stage.Map(r76Src(addrs, decodeInt, kafka.Attempts(2)), func(_ context.Context, r kafka.Record[int]) (int, error) {
				if r.Offset == 2 {
					return 0, errR76
				}
				return r.Value, nil
			}, stage.Workers(4), stage.OnError(stage.Forward))
			return stage.Run(context.Background(), out, func(context.Context, int, error) error { return nil })
		}, check: func(err error) string { return want(err != nil && !errors.Is(err, context.Canceled), "a failure") }},
		{name: "AutoCommitMarksInKopts", run: func(t *testing.T, addrs []string) error {
			src := kafka.Source(append(memberOpts(addrs, "g", "jobs"), kgo.AutoCommitMarks()), decodeInt)
			return r76ForEachNil(context.Background(), src)
		}, check: func(err error) string {
			var se *stage.SourceError
			return want(errors.As(err, &se), "a *stage.SourceError")
		}},
		{name: "NoConsumerGroup", run: func(t *testing.T, addrs []string) error {
			src := kafka.Source([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics("jobs")}, decodeInt)
			return r76ForEachNil(context.Background(), src)
		}, check: func(err error) string {
			var se *stage.SourceError
			return want(errors.As(err, &se), "a *stage.SourceError")
		}},
		{name: "PublishDrained", run: func(t *testing.T, addrs []string) error {
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.DefaultProduceTopic("out"))
			if err != nil {
				return err
			}
			defer cl.Close() // the caller's client: closed before the leak check
			var counts kafka.Published
			src := stage.Map(stage.Until(r76Src(addrs, decodeInt), stop), func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
				return r, nil
			}, stage.Workers(4), stage.KeyBy(kafka.ByKey[int]))
			err = kafka.Publish(context.Background(), cl, src, func(r kafka.Record[int]) (*kgo.Record, error) {
				if r.Offset == 5 {
					drain()
				}
				return &kgo.Record{Key: r.Key, Value: []byte(strconv.Itoa(r.Value))}, nil
			}, &counts)
			if err == nil && counts.Records.Load() < 6 {
				return errors.New("fewer than 6 records confirmed")
			}
			return err
		}, check: func(err error) string { return want(err == nil, "nil") }},
	}
}

func TestReview76EveryExitLeavesNothingOfSluice(t *testing.T) {
	for _, x := range r76Exits() {
		t.Run(x.name, func(t *testing.T) {
			_, addrs := newCluster(t, 2, "jobs", "out")
			if !x.empty {
				produceTo(t, addrs, "jobs", 0, 0, 6)
				produceTo(t, addrs, "jobs", 1, 6, 6)
			}
			_, before := runcheck.Goroutines()
			var err error
			runcheck.NoHang(t, x.name, func() { err = x.run(t, addrs) })
			checkNoLeakSince(t, x.name, before)
			if msg := x.check(err); msg != "" {
				t.Errorf("the run returned %v; %s", err, msg)
			}
		})
	}
}
