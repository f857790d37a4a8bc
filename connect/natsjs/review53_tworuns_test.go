package natsjs_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

var errR53Boom = errors.New("review53: boom")

// TestReview53TwoRuns checks, for several ways of ending a first run early,
// that a second run on the same durable consumer gets every message the first
// run did not commit, and none that it did commit.
//
// Doc sentences checked (package doc, "Outcomes"; Source; stage.Run):
//   - "committed by the sink ...: Ack" (so not delivered again: AckWait is an
//     hour, so only a Nak or a lost ack brings it back);
//   - "failed with a retryable error (... a failed commit, a FailFast error at
//     this message): Nak with a delay" (Backoff(0,0): at once);
//   - "the run ended first (cancelled, a FailFast error at another message,
//     drained before the message was handed to the pipeline ...): Nak, when
//     the run stops, so that another consumer gets it at once";
//   - "a panic in decode ends the run with a *stage.SourceError wrapping a
//     *stage.PanicError, and its message is nak'ed with the others";
//   - stage.Run: "An item for which f returned nil or ErrStop is committed".
//
// Any message lost by run 1 (neither acked after a commit nor nak'ed) makes
// run 2 hang until the 60 s watchdog, reported as missing values.
func TestReview53TwoRuns(t *testing.T) {
	const n, k = 40, 7 // k: the sink call (1-based) at which run 1 ends
	modes := []string{"sinkerr", "stop", "cancel", "until", "sinkpanic", "decodepanic", "mapfail", "mapcancel"}
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			w := r14World(t, jetstream.ConsumerConfig{})
			w.pubN(t, n)

			var decodePanicked atomic.Bool
			decode := func(b []byte) (string, error) {
				if mode == "decodepanic" && string(b) == strconv.Itoa(k) && decodePanicked.CompareAndSwap(false, true) {
					panic("review53 decode panic")
				}
				return string(b), nil
			}

			// Run 1.
			var mu sync.Mutex
			committed1 := map[string]bool{}
			parent, cancelParent := context.WithCancel(context.Background())
			defer cancelParent()
			stopCtx, drain := context.WithCancel(context.Background())
			defer drain()
			var mapCalls atomic.Int64
			src := stage.Until(natsjs.Source(w.cons, decode, natsjs.Backoff(0, 0), natsjs.ReadAhead(10)), stopCtx)
			mapped := stage.Map(src, func(ctx context.Context, m natsjs.Msg[string]) (natsjs.Msg[string], error) {
				c := mapCalls.Add(1)
				if c == k && mode == "mapfail" {
					return m, errR53Boom
				}
				if c == k && mode == "mapcancel" {
					cancelParent()
					<-ctx.Done()
					return m, ctx.Err()
				}
				return m, nil
			}, stage.Workers(3))
			calls := 0
			watchdog1, cancelW1 := context.WithTimeout(parent, 60*time.Second)
			defer cancelW1()
			err1 := sink.ForEach(watchdog1, mapped, func(ctx context.Context, m natsjs.Msg[string]) error {
				calls++
				if calls == k {
					switch mode {
					case "sinkerr":
						return errR53Boom
					case "stop":
						mu.Lock()
						committed1[m.Value] = true
						mu.Unlock()
						return stage.ErrStop
					case "cancel":
						cancelParent()
						return ctx.Err()
					case "until":
						drain()
					case "sinkpanic":
						panic("review53 sink panic")
					}
				}
				mu.Lock()
				committed1[m.Value] = true
				mu.Unlock()
				return nil
			})
			if errors.Is(err1, context.DeadlineExceeded) {
				t.Fatalf("run 1 hung (watchdog): %v", err1)
			}
			switch mode {
			case "sinkerr", "mapfail":
				var se *stage.Error
				if !errors.Is(err1, errR53Boom) || !errors.As(err1, &se) {
					t.Errorf("run 1: got %v, want a *stage.Error wrapping errR53Boom", err1)
				}
			case "stop", "until":
				if err1 != nil {
					t.Errorf("run 1: got %v, want nil", err1)
				}
			case "cancel", "mapcancel":
				if !errors.Is(err1, context.Canceled) {
					t.Errorf("run 1: got %v, want context.Canceled", err1)
				}
			case "sinkpanic":
				var se *stage.Error
				if !errors.As(err1, &se) {
					t.Errorf("run 1: got %v, want a *stage.Error", err1)
				}
			case "decodepanic":
				var se *stage.SourceError
				var pe *stage.PanicError
				if !errors.As(err1, &se) || !errors.As(err1, &pe) {
					t.Errorf("run 1: got %v, want a *stage.SourceError wrapping a *stage.PanicError", err1)
				}
				if !decodePanicked.Load() {
					t.Errorf("decode never panicked")
				}
			}
			if err := w.nc.Flush(); err != nil {
				t.Fatal(err)
			}

			// Run 2: must receive exactly the values run 1 did not commit.
			want := map[string]bool{}
			for i := range n {
				if v := strconv.Itoa(i); !committed1[v] {
					want[v] = true
				}
			}
			if len(want) == 0 {
				t.Fatalf("run 1 committed everything; the test proves nothing")
			}
			got := map[string]int{}
			var again []string
			ctx2, cancel2 := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel2()
			remaining := len(want)
			err2 := sink.ForEach(ctx2, natsjs.Source(w.cons, decode, natsjs.Backoff(0, 0), natsjs.ReadAhead(10)), func(ctx context.Context, m natsjs.Msg[string]) error {
				got[m.Value]++
				if committed1[m.Value] {
					again = append(again, fmt.Sprintf("%s(deliveries %d)", m.Value, m.Deliveries))
				}
				if want[m.Value] && got[m.Value] == 1 {
					remaining--
				}
				if remaining == 0 {
					return stage.ErrStop
				}
				return nil
			})
			var missing []string
			for v := range want {
				if got[v] == 0 {
					missing = append(missing, v)
				}
			}
			sort.Strings(missing)
			if err2 != nil || len(missing) > 0 {
				t.Errorf("run 2 (after run 1 ended by %s with %v, %d committed): err %v; never redelivered: %v", mode, err1, len(committed1), err2, missing)
			}
			if len(again) > 0 {
				t.Errorf("run 2 got messages run 1 committed (and so should have acked): %v", again)
			}
		})
	}
}
