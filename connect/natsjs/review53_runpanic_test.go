package natsjs_test

import (
	"context"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// TestReview53RunCallbackPanic: the callback of stage.Run panics (not
// recovered by Run: "Run cancels the run, waits for it, and lets the panic
// continue").
//
// Doc sentences checked: Source "every message the run held but did not
// settle (received and not yet taken, or taken and cut short by a
// cancellation) is nak'ed once the run's goroutines have exited, so that
// another consumer gets it at once rather than after AckWait" (AckWait is an
// hour here), and "committed ...: Ack". A second run must get exactly the
// messages the first did not commit.
func TestReview53RunCallbackPanic(t *testing.T) {
	const n, k = 30, 6
	w := r14World(t, jetstream.ConsumerConfig{})
	w.pubN(t, n)
	committed := map[string]bool{}
	mapped := stage.Map(natsjs.Source(w.cons, r14Str, natsjs.ReadAhead(8)), func(ctx context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
		return m, nil
	}, stage.Workers(3))
	var recovered any
	func() {
		defer func() { recovered = recover() }()
		calls := 0
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = stage.Run(ctx, mapped, func(ctx context.Context, m natsjs.Msg[string], err error) error {
			calls++
			if calls == k {
				panic("review53 raw panic")
			}
			committed[m.Value] = true
			return nil
		})
	}()
	if recovered == nil {
		t.Fatalf("the callback's panic did not come out of stage.Run")
	}
	want := map[string]bool{}
	for i := range n {
		if v := strconv.Itoa(i); !committed[v] {
			want[v] = true
		}
	}
	remaining := len(want)
	got := map[string]bool{}
	var again []string
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := sink.ForEach(ctx, natsjs.Source(w.cons, r14Str), func(ctx context.Context, m natsjs.Msg[string]) error {
		if committed[m.Value] {
			again = append(again, m.Value)
		}
		if want[m.Value] && !got[m.Value] {
			remaining--
		}
		got[m.Value] = true
		if remaining == 0 {
			return stage.ErrStop
		}
		return nil
	})
	var missing []string
	for v := range want {
		if !got[v] {
			missing = append(missing, v)
		}
	}
	sort.Strings(missing)
	if err != nil || len(missing) > 0 {
		t.Errorf("run 2: err %v; not redelivered after the panic (AckWait is an hour, so not nak'ed): %v", err, missing)
	}
	if len(again) > 0 {
		t.Errorf("run 2 got committed messages again: %v", again)
	}
}
