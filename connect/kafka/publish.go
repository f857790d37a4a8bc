package kafka

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Published counts what [Publish] did; it may be read while the run goes
// on.
type Published struct {
	Records atomic.Int64 // records the brokers confirmed
}

// ErrNilRecord is the error of an item for which Publish's record function
// returned neither a record nor an error.
var ErrNilRecord = errors.New("sluice: kafka.Publish: the record function returned a nil record and no error")

// Publish is a sink: it runs s and produces each item with cl, as the
// record that record makes of it (give it a Key to keep a key's items in
// one partition, in order), waiting for the broker to confirm the write
// before it takes the next item. An item is committed (and its source's
// acknowledgement released) only once its record was confirmed. Publish is
// written with sink.ForEach and reports as it does: a failed produce, or an
// error or panic in record, ends the run with a *stage.Error (Stage
// "foreach") wrapping it (a nil record without an error: [ErrNilRecord]);
// forwarded errors come back in a *sink.ForwardedError. counts may be nil.
// Publish panics if cl or record is nil (and, as every sink, in stage.Run,
// if s is the zero Stream).
//
// Cancelling ctx fails a record cl has not sent yet; one it has sent is
// given up only if cl may fail a sent record. A client that produces
// idempotently (franz-go's default) waits for the broker's answer, and
// Publish with it: for as long as a broker that took the request stays
// silent, with no bound (kgo.RecordDeliveryTimeout does not apply to a
// record sent and not answered). Give cl
// kgo.AllowIdempotentProduceCancellation (or kgo.DisableIdempotentWrite)
// for a Publish that returns at once; a record cancelled in flight may
// still be written, as at-least-once allows.
func Publish[T any](ctx context.Context, cl *kgo.Client, s stage.Stream[T], record func(T) (*kgo.Record, error), counts *Published) error {
	if cl == nil || record == nil {
		panic("sluice: kafka.Publish: nil client or record function")
	}
	if counts == nil {
		counts = &Published{}
	}
	return sink.ForEach(ctx, s, func(ctx context.Context, v T) error {
		r, err := record(v)
		if err != nil {
			return err
		}
		if r == nil {
			return ErrNilRecord
		}
		if err := cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			return err
		}
		counts.Records.Add(1)
		return nil
	})
}
