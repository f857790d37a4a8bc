package kafka_test

// Review 64: the API surface of package kafka, from its documentation
// only: OnEvent's "one call at a time" (a callback without a lock of its
// own, under the race detector), the events it is given (kept by the
// callback, they do not change afterwards), and EventKind's String.

import (
	"context"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// OnEvent: "Within a run, f is called from the source's goroutines one
// call at a time ..., each call on a goroutine of its own that the source
// waits for". f appends to a plain slice with no lock; the race detector
// is the verdict for overlap. f keeps each Event as it is given, with a
// deep copy made during the call: an Event is a value whose maps the
// callback receives, and nothing in the doc says they are lent only for
// the call, so a kept Event must still read as it did.
func TestReview64APIOnEventOneAtATimeAndKeepable(t *testing.T) {
	_, addrs := newCluster(t, 3, "t64")
	const n = 60
	produce(t, addrs, "t64", n, func(i int) string { return strconv.Itoa(i % 7) })

	type kept struct {
		ev   kafka.Event
		copy kafka.Event
	}
	var events []kept // no lock: f is called one call at a time
	f := func(ev kafka.Event) {
		c := ev
		c.Partitions = maps.Clone(ev.Partitions)
		for k, v := range c.Partitions {
			c.Partitions[k] = append([]int32(nil), v...)
		}
		if ev.Offsets != nil {
			c.Offsets = map[string]map[int32]int64{}
			for k, v := range ev.Offsets {
				c.Offsets[k] = maps.Clone(v)
			}
		}
		events = append(events, kept{ev, c})
	}
	src := kafka.Source(memberOpts(addrs, "g64", "t64"), decodeInt,
		kafka.OnEvent(f), kafka.CommitInterval(20*time.Millisecond))
	work := stage.Map(src, func(_ context.Context, r kafka.Record[int]) (kafka.Record[int], error) { return r, nil },
		stage.Workers(4), stage.KeyBy(kafka.ByKey[int]))
	seen := 0
	err := sink.ForEach(context.Background(), work, func(context.Context, kafka.Record[int]) error {
		seen++
		if seen == n {
			return stage.ErrStop
		}
		return nil
	})
	if err != nil || seen != n {
		t.Fatalf("the run: %d records, %v", seen, err)
	}
	var assigned, committed bool
	for i, k := range events {
		switch k.ev.Kind {
		case kafka.Assigned:
			assigned = true
		case kafka.Committed:
			committed = true
		}
		if !reflect.DeepEqual(k.ev, k.copy) {
			t.Errorf("event %d (%v) changed after OnEvent returned:\n  during the call %+v\n  after the run   %+v", i, k.ev.Kind, k.copy, k.ev)
		}
	}
	if !assigned || !committed {
		t.Fatalf("events %v: want an Assigned and a Committed one", events)
	}
}

// EventKind "String" for every kind, the zero EventKind included (the zero
// Event's Kind), must not panic and must say something.
func TestReview64APIEventKindString(t *testing.T) {
	for _, k := range []kafka.EventKind{0, kafka.Assigned, kafka.Revoked, kafka.Lost, kafka.Committed, 99, -1} {
		if s := k.String(); s == "" || (k >= kafka.Assigned && k <= kafka.Committed && strings.Contains(s, "(")) {
			t.Errorf("EventKind(%d).String() = %q", int(k), s)
		}
	}
}
