package natsjs_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
)

// A terminated message's Term carries its reason (the source sends
// TermWithReason, with the failure's text, which the dead letter carries
// as Sluice-Reason): the server's "terminated" advisory, which an operator
// watches, says why, with a dead-letter subject and without one. A run
// whose sink fails a message for good terminates it; the advisory for it
// names a reason, the dead letter's Sluice-Reason where there is one.
func TestReview90TermCarriesTheReason(t *testing.T) {
	for _, withDLQ := range []bool{true, false} {
		name := "dead-letter"
		if !withDLQ {
			name = "no-dead-letter"
		}
		t.Run(name, func(t *testing.T) {
			js, cons := r78Poison(t)
			url := js.Conn().ConnectedUrl()
			watcher, _ := connect(t, url)
			adv := make(chan *nats.Msg, 8)
			sub, err := watcher.ChanSubscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.WORK.c", adv)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := watcher.Flush(); err != nil {
				t.Fatal(err)
			}
			var opts []natsjs.SourceOption
			if withDLQ {
				opts = append(opts, natsjs.DeadLetter(js, "dlq"))
			}
			rctx, cancel := r75HangCtx()
			defer cancel()
			err = sink.ForEach(rctx, natsjs.Source(cons, r14Str, opts...), func(context.Context, natsjs.Msg[string]) error {
				return natsjs.Permanent(errR90)
			})
			if !errors.Is(err, natsjs.ErrPermanent) {
				t.Fatalf("run: %v; want the permanent failure", err)
			}
			var a struct {
				StreamSeq uint64 `json:"stream_seq"`
				Reason    string `json:"reason"`
			}
			if err := json.Unmarshal(r75Recv(t, "the terminated advisory", (<-chan *nats.Msg)(adv)).Data, &a); err != nil {
				t.Fatal(err)
			}
			if a.StreamSeq != 1 || a.Reason == "" {
				t.Fatalf("terminated advisory for stream seq %d with reason %q; want seq 1 and a reason", a.StreamSeq, a.Reason)
			}
			if withDLQ {
				m := r78OneDeadLetter(t, js, cons)
				if got := m.Header.Get("Sluice-Reason"); got != a.Reason {
					t.Fatalf("the Term's reason %q is not the dead letter's Sluice-Reason %q", a.Reason, got)
				}
			}
		})
	}
}
