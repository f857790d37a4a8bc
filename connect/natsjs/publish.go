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
// Nats-Msg-Id header; an empty id leaves the header as msg made it, and
// without one the stream cannot tell a duplicate), and waits for the
// server's acknowledgement. The
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
// message and no error fails the same way, with [ErrNilMsg]. An error of
// msg, id or the publish that wraps stage.ErrStop (from a run of your own
// inside msg, or a JetStream wrapper's) is a failure too, not an early
// stop, since its item was not published: it is wrapped once more, in a
// *stage.Error of Stage "publish" inside the "foreach" one (its Index
// counts only the items msg was called for, the "foreach" one's forwarded
// errors too), so that stage.IsStop does not take it for one. Items are
// published one at a time. counts may be nil.
// Publish panics, before it runs s, if js, msg or id is nil.
func Publish[T any](ctx context.Context, js jetstream.JetStream, s stage.Stream[T], msg func(T) (*nats.Msg, error), id func(T) string, counts *Published) error {
	if js == nil || msg == nil || id == nil {
		panic("sluice: natsjs.Publish: nil JetStream, msg or id function")
	}
	if counts == nil {
		counts = &Published{}
	}
	i := -1 // the item's position among those msg was called for
	return sink.ForEach(ctx, s, func(ctx context.Context, v T) error {
		i++
		m, err := msg(v)
		if err != nil {
			return notStop(err, i, v)
		}
		if m == nil {
			return ErrNilMsg
		}
		ack, err := js.PublishMsg(ctx, m, jetstream.WithMsgID(id(v)))
		if err != nil {
			return notStop(err, i, v)
		}
		if ack.Duplicate {
			counts.Duplicates.Add(1)
		} else {
			counts.Stored.Add(1)
		}
		return nil
	})
}

// notStop returns err, a failure of the item at position i, as a failure:
// one that wraps stage.ErrStop is put in a *stage.Error, which stage.IsStop
// does not see through, so that sink.ForEach does not commit an item that
// was not published.
func notStop(err error, i int, v any) error {
	if stage.IsStop(err) {
		return &stage.Error{Stage: "publish", Index: i, Input: v, Attempts: 1, Err: err}
	}
	return err
}
