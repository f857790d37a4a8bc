package kafka_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/stage"
)

// Review76: what the periodic commits carry, and the headers of an
// undecodable record's dead letter.

// Doc (package, Offsets): "Every [CommitInterval] (1 s by default) the
// source commits the watermarks that moved".
// Doc (OnEvent): "... and every commit (with its offsets)"; (Event)
// "Offsets ... Committed: the offsets committed".
//
// Partition 1's watermark is stuck at its first record (held in the stage
// until the end) while partition 0's moves one record at a time (the test
// releases the next one only once a commit carried the last move). The
// periodic commits carry partition 0's new watermarks; none may commit a
// watermark that did not move: no two successful Committed events before
// the drain name the same partition at the same offset. And "the first
// commit of a partition it owns is its watermark as it stands, even if
// nothing was settled yet": partition 1 is committed at 0 once its first
// record is held.
func TestReview76PeriodicCommitsCarryOnlyWatermarksThatMoved(t *testing.T) {
	_, addrs := newCluster(t, 2, "jobs")
	produceTo(t, addrs, "jobs", 0, 0, 8)
	produceTo(t, addrs, "jobs", 1, 8, 8)
	var mu sync.Mutex
	var commits []map[int32]int64
	latest := int64(-1) // partition 0's last committed offset
	gates := make([]*r63Gate, 8)
	for i := range gates {
		gates[i] = newR63Gate()
		defer gates[i].open()
	}
	hold1 := newR63Gate()
	defer hold1.open()
	holding1 := make(chan struct{}) // closed once the stage holds partition 1's first record
	var held1 sync.Once
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.CommitInterval(5*time.Millisecond), kafka.OnEvent(func(e kafka.Event) {
		if e.Kind != kafka.Committed || e.Err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		commits = append(commits, e.Offsets["jobs"])
		if o, ok := e.Offsets["jobs"][0]; ok {
			latest = o
		}
	}))
	out := stage.Map(stage.Until(src, stop), func(ctx context.Context, r kafka.Record[int]) (kafka.Record[int], error) {
		switch {
		case r.Partition == 1 && r.Offset == 0:
			held1.Do(func() { close(holding1) })
			return r, hold1.wait(ctx)
		case r.Partition == 0:
			return r, gates[r.Offset].wait(ctx)
		}
		return r, nil
	}, stage.Workers(-1), stage.Buffer(20))
	errc := goRun(func() error {
		return stage.Run(context.Background(), out, func(context.Context, kafka.Record[int], error) error { return nil })
	})
	for i := range int64(8) {
		gates[i].open()
		waitFor(t, fmt.Sprintf("a commit of partition 0 at %d", i+1), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return latest >= i+1
		})
	}
	<-holding1 // (the gates above wait with a watchdog; so does the run's end below)
	waitFor(t, "a commit of partition 1 at 0, its first record held", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range commits {
			if o, ok := c[1]; ok && o == 0 {
				return true
			}
		}
		return false
	})
	mu.Lock()
	seen := map[string]int{}
	var dup []string
	for _, c := range commits {
		for p, o := range c {
			k := place(p, o)
			if seen[k]++; seen[k] == 2 {
				dup = append(dup, k)
			}
		}
	}
	all := fmt.Sprint(commits)
	mu.Unlock()
	hold1.open()
	drain()
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	t.Logf("Committed events before the drain: %s", all)
	if len(dup) > 0 {
		t.Errorf("periodic commits committed watermarks that did not move (partition/offset committed again): %v; commits: %s", dup, all)
	}
	checkCommitted(t, addrs, "g", "jobs")
}

// Doc (DeadLetter): "DeadLetter sends a record that failed Attempts times,
// or that does not decode, to topic ..., with its key, value and headers
// and these headers added: sluice-reason, sluice-topic, sluice-partition,
// sluice-offset, sluice-attempts."
//
// An undecodable record with headers of its own, one of them named like an
// added one: the dead letter keeps every original header, in order, and
// adds each of the five (non-empty, naming where the record came from).
// DeadLetter: "sluice-attempts (the tries it had: 1 for a record that did
// not decode)", even with Attempts(4).
func TestReview76UndecodableDeadLetterHeaders(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs", "dlq")
	orig := []kgo.RecordHeader{{Key: "a", Value: []byte("1")}, {Key: "sluice-reason", Value: []byte("mine")}, {Key: "a", Value: []byte("2")}}
	produceRecs(t, addrs,
		&kgo.Record{Topic: "jobs", Key: []byte("k"), Value: []byte("x"), Headers: orig},
		&kgo.Record{Topic: "jobs", Value: []byte("1")},
	)
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	src := kafka.Source(memberOpts(addrs, "g", "jobs"), decodeInt, kafka.DeadLetter("dlq"), kafka.Attempts(4))
	errc := goRun(func() error {
		return stage.Run(context.Background(), stage.Until(src, stop), func(_ context.Context, r kafka.Record[int], _ error) error {
			if r.Offset == 1 {
				drain()
			}
			return nil
		})
	})
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	dl := r14ReadTopic(t, addrs, "dlq", 1)[0]
	if string(dl.Key) != "k" || string(dl.Value) != "x" {
		t.Errorf("dead letter key %q value %q; want k, x", dl.Key, dl.Value)
	}
	if len(dl.Headers) < len(orig) {
		t.Fatalf("dead letter has %d headers: %v", len(dl.Headers), dl.Headers)
	}
	for i, h := range orig {
		if dl.Headers[i].Key != h.Key || string(dl.Headers[i].Value) != string(h.Value) {
			t.Errorf("original header %d is %s=%q in the dead letter; want %s=%q", i, dl.Headers[i].Key, dl.Headers[i].Value, h.Key, h.Value)
		}
	}
	added := map[string]string{}
	for _, h := range dl.Headers[len(orig):] {
		added[h.Key] = string(h.Value)
	}
	want := map[string]string{"sluice-topic": "jobs", "sluice-partition": "0", "sluice-offset": "0"}
	for _, k := range []string{"sluice-reason", "sluice-topic", "sluice-partition", "sluice-offset", "sluice-attempts"} {
		v, ok := added[k]
		if !ok || v == "" {
			t.Errorf("added header %s missing or empty (headers: %v)", k, dl.Headers)
			continue
		}
		if w, ok := want[k]; ok && v != w {
			t.Errorf("added header %s = %q; want %q", k, v, w)
		}
	}
	if added["sluice-attempts"] != "1" {
		t.Errorf("undecodable record's sluice-attempts = %q; want 1", added["sluice-attempts"])
	}
	if c := r14Committed(t, addrs, "g", "jobs", 0); c != 2 {
		t.Errorf("committed %d; want 2", c)
	}
}
