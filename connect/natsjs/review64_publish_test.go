package natsjs_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/source"
)

// TestReview64PublishCounts: Publish's "counts may be nil" (every item is
// still published, each id once: a repeated id is the stream's duplicate)
// and Published's "it may be read while the run goes on": a reader
// goroutine loads the counters while the items are published (the race
// detector judges), and they never go down.
func TestReview64PublishCounts(t *testing.T) {
	e := r63New(t, jetstream.ConsumerConfig{})
	items := []string{"a", "b", "c", "a", "d"} // "a" twice: one duplicate
	msg := func(v string) (*nats.Msg, error) { return &nats.Msg{Subject: "out", Data: []byte(v)}, nil }
	id := func(v string) string { return v }

	if err := natsjs.Publish(context.Background(), e.js, source.Slice(items), msg, id, nil); err != nil {
		t.Fatalf("Publish with nil counts: %v", err)
	}
	if n, err := e.count("OUT"); err != nil || n != 4 {
		t.Fatalf("OUT holds %d (%v), want 4: every distinct id once", n, err)
	}

	var counts natsjs.Published
	var stop atomic.Bool
	readerDone := make(chan string)
	go func() {
		var last int64
		why := ""
		for !stop.Load() {
			n := counts.Stored.Load() + counts.Duplicates.Load()
			if n < last && why == "" {
				why = "a counter went down"
			}
			last = n
		}
		readerDone <- why
	}()
	more := []string{"d", "e", "f", "e"} // "d" published above, "e" twice
	err := natsjs.Publish(context.Background(), e.js, source.Slice(more), msg, id, &counts)
	stop.Store(true)
	if why := <-readerDone; why != "" {
		t.Error(why)
	}
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if s, d := counts.Stored.Load(), counts.Duplicates.Load(); s != 2 || d != 2 {
		t.Fatalf("counts %s, want Stored 2 (e, f), Duplicates 2 (d, the second e)", pubCounts(&counts))
	}
}
