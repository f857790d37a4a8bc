package kafka_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// Review76: runtime.Goexit in the user functions the docs name: the sink's
// callback (the sink's own goroutine), a stage's function (a worker), and
// Publish's record function.

// r76GroupMembers is the number of members group "g" has now.
func r76GroupMembers(t testing.TB, addrs []string) int {
	t.Helper()
	adm := kadm.NewClient(client(t, addrs))
	gs, err := adm.DescribeGroups(context.Background(), "g")
	if err != nil {
		t.Fatal(err)
	}
	g, ok := gs["g"]
	if !ok {
		return 0
	}
	if g.Err != nil {
		t.Fatal(g.Err)
	}
	return len(g.Members)
}

// Doc (stage.ErrGoexit): "A function that calls Goexit on the sink's own
// goroutine ends that goroutine: the sink does not return, as with any
// function, and the run's goroutines exit. The functions that run on the
// sink's goroutine: the sink's callback, ..."
// Doc (Source): "when the run ends, it commits what is settled, leaves the
// group and closes the client."
//
// The sink's callback calls Goexit at offset 3: the run's goroutines exit,
// the records 0..2 the sink committed are committed (exactly 3: offset 3's
// fate is unknown), the member left the group, and no goroutine of sluice's
// is left.
func TestReview76GoexitInTheSinkCallback(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		_, addrs := newCluster(t, 1, "jobs")
		produceTo(t, addrs, "jobs", 0, 0, 6)
		src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(1<<40))
		_, before := runcheck.Goroutines()
		done := make(chan struct{})
		returned := false
		go func() {
			defer close(done)
			sink.ForEach(context.Background(), src, func(_ context.Context, r kafka.Record[int]) error {
				if r.Offset == 3 {
					runtime.Goexit()
				}
				return nil
			})
			returned = true
		}()
		select {
		case <-done:
		case <-waitHung():
			t.Fatal("hung: the sink's goroutine did not end")
		}
		if returned {
			t.Fatal("the sink returned after its callback called Goexit")
		}
		waitFor(t, "the run's goroutines of sluice to exit", func() bool { return len(sluiceGoroutines()) == 0 })
		checkNoLeakSince(t, "after Goexit in the sink's callback", before)
		if got := r14Committed(t, addrs, "g", "jobs", 0); got != 3 {
			t.Errorf("committed offset %d; want 3 (0..2 committed by the sink, 3 cut short)", got)
		}
		if n := r76GroupMembers(t, addrs); n != 0 {
			t.Errorf("group g still has %d members once the run's goroutines exited; the run should have left it", n)
		}
	})
}

// Doc (stage.ErrGoexit): "ErrGoexit is the error of a run one of whose
// goroutines was ended by runtime.Goexit in user code (... a stage's
// function, which may run on a goroutine of the run): the item it held is
// lost, so the run fails with ErrGoexit".
// Doc (package): "a record is committed only after what it led to was
// committed".
//
// Goexit in a stage's worker at offset 3 (ByPartition, so 0..2 went first):
// the run fails with ErrGoexit, offset 3 is never committed, and nothing of
// sluice's is left when the sink returns.
func TestReview76GoexitInAStageFunction(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		_, addrs := newCluster(t, 1, "jobs")
		produceTo(t, addrs, "jobs", 0, 0, 8)
		src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt)
		out := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
			if r.Offset == 3 {
				runtime.Goexit()
			}
			return r, nil
		}, stage.Workers(4), stage.KeyBy(kafka.ByPartition[int]))
		_, before := runcheck.Goroutines()
		errc := goRun(func() error {
			return sink.ForEach(context.Background(), out, func(context.Context, kafka.Record[int]) error { return nil })
		})
		err := waitErr(t, "the run", errc)
		checkNoLeakSince(t, "after Goexit in a stage's function", before)
		if !errors.Is(err, stage.ErrGoexit) {
			t.Errorf("the run returned %v; want ErrGoexit", err)
		}
		if got := r14Committed(t, addrs, "g", "jobs", 0); got > 3 {
			t.Errorf("committed offset %d passes offset 3, whose worker was ended by Goexit", got)
		}
	})
}

// Doc (Publish): "Publish is written with sink.ForEach and reports as it
// does" and (stage.ErrGoexit) "A function that calls Goexit on the sink's
// own goroutine ends that goroutine: the sink does not return ... and the
// run's goroutines exit."; (Publish) "An item is committed ... only once
// its record was confirmed."; (Published) "records the brokers confirmed".
//
// record calls Goexit for the third item: the goroutine ends, the run's
// goroutines exit, counts says 2 and the topic holds exactly the 2 confirmed
// records; the caller's client still works.
func TestReview76GoexitInPublishRecordFunction(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		_, addrs := newCluster(t, 1, "out")
		cl := client(t, addrs, kgo.DefaultProduceTopic("out"))
		var counts kafka.Published
		_, before := runcheck.Goroutines()
		done := make(chan struct{})
		go func() {
			defer close(done)
			kafka.Publish(context.Background(), cl, source.Slice([]int{0, 1, 2, 3, 4}), func(v int) (*kgo.Record, error) {
				if v == 2 {
					runtime.Goexit()
				}
				return &kgo.Record{Value: []byte(strconv.Itoa(v))}, nil
			}, &counts)
			t.Error("Publish returned after record called Goexit")
		}()
		select {
		case <-done:
		case <-waitHung():
			t.Fatal("hung: Publish's goroutine did not end")
		}
		waitFor(t, "the run's goroutines of sluice to exit", func() bool { return len(sluiceGoroutines()) == 0 })
		checkNoLeakSince(t, "after Goexit in Publish's record function", before)
		if n := counts.Records.Load(); n != 2 {
			t.Errorf("counts.Records = %d; want 2", n)
		}
		if n := r14EndOffset(t, addrs, "out"); n != 2 {
			t.Errorf("topic out holds %d records; want 2", n)
		}
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("after")}).FirstErr(); err != nil {
			t.Errorf("the caller's client fails after the run: %v", err)
		}
	})
}
