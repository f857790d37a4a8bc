package natsjs_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Package doc, Consumer settings: "MaxRequestMaxBytes: any (the source asks
// by messages, not by bytes)". A consumer that allows at most 1 byte per
// pull request: the run takes every message all the same.
func TestReview78MaxRequestMaxBytesAny(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{MaxRequestMaxBytes: 1})
	w.pub(t, "a", "b", "c")
	stop, drain := context.WithCancel(context.Background())
	defer drain()
	ctx, cancel := r75HangCtx()
	defer cancel()
	got := 0
	err := sink.ForEach(ctx, stage.Until(natsjs.Source(w.cons, r14Str), stop), func(context.Context, natsjs.Msg[string]) error {
		if got++; got == 3 {
			drain()
		}
		return nil
	})
	if err != nil || got != 3 {
		t.Fatalf("took %d messages, err %v; want 3, nil", got, err)
	}
}
