package natsjs

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/stage"
)

// Published counts what [Publish] did.
type Published struct {
	Stored     int64 // messages the stream stored
	Duplicates int64 // messages the stream had already (same message id)
}

// Publish is a sink: it runs s and publishes each item with js, as the
// message that msg makes of it, with the message id id(item) (the
// Nats-Msg-Id header), and waits for the server's acknowledgement. The
// stream drops a message whose id it has seen within its duplicate window
// and says so; Publish counts it as committed, so a redelivered item that
// was published before is acknowledged, not stored twice. An item is
// committed (and its source message acknowledged) only once its publish is
// acknowledged.
//
// A failed publish (or msg error) ends the run with that error, as a sink
// callback error does; forwarded errors are collected and returned joined,
// as the sinks of package sink do. Items are published one at a time. The
// counters may be read while the run goes on.
func Publish[T any](ctx context.Context, js jetstream.JetStream, s stage.Stream[T], msg func(T) (*nats.Msg, error), id func(T) string, counts *Published) error {
	if counts == nil {
		counts = &Published{}
	}
	var forwarded []error
	err := stage.Run(ctx, s, func(ctx context.Context, v T, err error) error {
		if err != nil {
			forwarded = append(forwarded, err)
			return nil
		}
		m, err := msg(v)
		if err != nil {
			return err
		}
		ack, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(id(v)))
		if err != nil {
			return err
		}
		if ack.Duplicate {
			atomic.AddInt64(&counts.Duplicates, 1)
		} else {
			atomic.AddInt64(&counts.Stored, 1)
		}
		return nil
	})
	if err != nil {
		return errors.Join(append([]error{err}, forwarded...)...)
	}
	return errors.Join(forwarded...)
}
