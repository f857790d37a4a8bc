package bench

import (
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type noAck struct{}

func (noAck) Done(error) {}

// BenchmarkAck is the cost of acknowledgements: a no-op Map over a
// generator without them (stage.NeverWaits(source.Func)), over a Source
// that may wait (no acknowledgement either, so no stage runs in its
// consumer), and over an AckSource whose every item carries one (also with
// a Buffer of the worker count), beside the hand-written pool fed by a
// function.
func BenchmarkAck(b *testing.B) {
	want := sumOf(items, double)
	next := func() func(context.Context) (int, error) {
		c := counter(items)
		return func(context.Context) (int, error) {
			if v, ok := c(); ok {
				return v, nil
			}
			return 0, io.EOF
		}
	}
	for _, w := range []int{1, 4} {
		b.Run(fmt.Sprintf("workers=%d/hand-written", w), func(b *testing.B) {
			measure(b, items, func() { check(b, HandMap(FeedFunc(counter(items)), w, double), want, nil) })
		})
		sources := []struct {
			name string
			s    func() stage.Stream[int]
		}{
			{"generator", func() stage.Stream[int] { return stage.NeverWaits(source.Func(next())) }},
			{"source", func() stage.Stream[int] {
				return stage.Source(func(context.Context) (func(context.Context) (int, error), func()) { return next(), nil })
			}},
			{"acksource", func() stage.Stream[int] { return ackSource(next) }},
			{"acksource-neverwaits", func() stage.Stream[int] { return stage.NeverWaits(ackSource(next)) }},
		}
		opts := []stage.Option{stage.Workers(w)}
		for _, src := range sources {
			b.Run(fmt.Sprintf("workers=%d/%s", w, src.name), func(b *testing.B) {
				measure(b, items, func() {
					got, err := sink.Reduce(ctx, stage.Map(src.s(), mapDouble, opts...), 0, add)
					check(b, got, want, err)
				})
			})
		}
		// Twice the read-ahead (see bench/README.md).
		b.Run(fmt.Sprintf("workers=%d/acksource-buffer", w), func(b *testing.B) {
			measure(b, items, func() {
				got, err := sink.Reduce(ctx, stage.Map(ackSource(next), mapDouble, stage.Workers(w), stage.Buffer(w)), 0, add)
				check(b, got, want, err)
			})
		})
	}
}

// ackSource is an AckSource over what next makes, each item with an Ack.
func ackSource(next func() func(context.Context) (int, error)) stage.Stream[int] {
	return stage.AckSource(func(context.Context) (func(context.Context) (int, stage.Ack, error), func()) {
		gen := next()
		return func(ctx context.Context) (int, stage.Ack, error) {
			v, err := gen(ctx)
			return v, noAck{}, err
		}, nil
	})
}
