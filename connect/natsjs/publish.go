package natsjs

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// ErrNilMsg is the item error of [Publish] when its msg function returns
// a nil message and no error.
var ErrNilMsg = errors.New("sluice: natsjs.Publish: msg returned a nil message")

// Published counts what [Publish] did; it may be read while the run goes
// on (its fields are atomic).
type Published struct {
	Stored     atomic.Int64 // messages the stream stored
	Duplicates atomic.Int64 // messages the stream had already (same message id)
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
// Publish is written with sink.ForEach, and reports as it does: a failed
// publish, or an error or panic in msg or id, ends the run with a
// *stage.Error (Stage "foreach") wrapping it; forwarded errors come back in
// a *sink.ForwardedError (a count and a sample); a msg that returns a nil
// message and no error fails the same way, with [ErrNilMsg]. Items are
// published one at a time. counts may be nil.
// Publish panics, before it runs s, if js, msg or id is nil.
func Publish[T any](ctx context.Context, js jetstream.JetStream, s stage.Stream[T], msg func(T) (*nats.Msg, error), id func(T) string, counts *Published) error {
	if js == nil || msg == nil || id == nil {
		panic("sluice: natsjs.Publish: nil JetStream, msg or id function")
	}
	if counts == nil {
		counts = &Published{}
	}
	return sink.ForEach(ctx, s, func(ctx context.Context, v T) error {
		m, err := msg(v)
		if err != nil {
			return err
		}
		if m == nil {
			return ErrNilMsg
		}
		ack, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(id(v)))
		if err != nil {
			return err
		}
		if ack.Duplicate {
			counts.Duplicates.Add(1)
		} else {
			counts.Stored.Add(1)
		}
		return nil
	})
}
