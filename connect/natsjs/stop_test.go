package natsjs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// A run that stops early leaves no message waiting for AckWait (an hour
// here): what it held and did not settle, received ahead of the pipeline or
// cut short in it, is nak'ed when it stops, and the next run gets every
// message that was not committed at once. Both ways to stop: abort
// (cancel) and drain (Until).
func TestEarlyStopStrandsNothing(t *testing.T) {
	for _, how := range []string{"cancel", "drain"} {
		t.Run(how, func(t *testing.T) {
			const n, first = 500, 100
			_, js := connect(t, startServer(t))
			cons := newWorkWait(t, js, "W"+how, n, time.Hour)
			var mu sync.Mutex
			seen := map[string]int{}
			commit := func(id string) {
				mu.Lock()
				seen[id]++
				mu.Unlock()
			}
			ctx, cancel := context.WithCancel(context.Background())
			stop, drain := context.WithCancel(context.Background())
			defer drain()
			msgs := natsjs.Source(cons, func(b []byte) (string, error) { return string(b), nil }, natsjs.ReadAhead(50))
			work := stage.Map(stage.Until(msgs, stop), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
				return m.Value, nil
			}, stage.Workers(4), stage.Buffer(4))
			done := 0
			err := sink.ForEach(ctx, work, func(_ context.Context, id string) error {
				commit(id)
				if done++; done == first {
					if how == "cancel" {
						cancel()
					} else {
						drain()
					}
				}
				return nil
			})
			cancel()
			if how == "drain" && err != nil {
				t.Fatalf("drained run: %v", err)
			}
			// The next run gets every message that was not committed at
			// once: none waits for AckWait (an hour), so the run ends well
			// within its watchdog.
			rest := n - len(seen)
			ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
			defer cancel2()
			got := 0
			err = sink.ForEach(ctx2, stage.Map(natsjs.Source(cons, func(b []byte) (string, error) { return string(b), nil }), func(_ context.Context, m natsjs.Msg[string]) (string, error) {
				return m.Value, nil
			}, stage.Workers(4)), func(_ context.Context, id string) error {
				commit(id)
				if got++; got == rest {
					cancel2()
				}
				return nil
			})
			if got < rest {
				t.Fatalf("the next run got %d of the %d messages left (%v): some wait for AckWait", got, rest, err)
			}
			checkDrained(t, how, cons, seen, n)
		})
	}
}
