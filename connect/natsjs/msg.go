package natsjs

import (
	"errors"
	"fmt"
)

// Msg is a decoded message and its JetStream metadata.
type Msg[T any] struct {
	Value      T
	Subject    string
	Sequence   uint64 // the message's sequence in its stream
	Deliveries uint64 // 1 on the first delivery
	ID         string // its Nats-Msg-Id header, if it has one
}

// ErrPermanent marks an error that a redelivery cannot cure; wrap one with
// [Permanent].
var ErrPermanent = errors.New("sluice: natsjs: permanent failure")

// Permanent wraps err so that the message it concerns is terminated (and
// dead-lettered) instead of redelivered. Permanent(nil) is nil, as no
// failure is no permanent one: `return v, natsjs.Permanent(err)` after a
// call that succeeded is a success.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrPermanent, err)
}
