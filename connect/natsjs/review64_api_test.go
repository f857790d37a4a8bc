package natsjs_test

// Review 64: the API surface of package natsjs, from its documentation
// only: the zero SourceOption and nil arguments, a run at the documented
// MaxReadAhead, and Permanent's errors.Is promise.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

func r64Decode(b []byte) (string, error) { return string(b), nil }

// r64Take runs s until it has committed n messages, then stops the run.
func r64Take(s stage.Stream[natsjs.Msg[string]], n int) ([]string, error) {
	var got []string
	err := sink.ForEach(context.Background(), s, func(_ context.Context, m natsjs.Msg[string]) error {
		got = append(got, m.Value)
		if len(got) == n {
			return stage.ErrStop
		}
		return nil
	})
	return got, err
}

// Source: "Source panics if cons or decode is nil, or if an option is the
// zero SourceOption (programmer errors; the message starts with
// "sluice:")" (what `var o natsjs.SourceOption` gives, as kafka.Source
// refuses the zero kafka.Option).
func TestReview64APISourceRefusesNilsAndZeroOption(t *testing.T) {
	w := r14World(t, jetstream.ConsumerConfig{})
	for name, call := range map[string]func(){
		"nil cons":           func() { natsjs.Source(nil, r64Decode) },
		"nil decode":         func() { natsjs.Source[string](w.cons, nil) },
		"zero SourceOption":  func() { natsjs.Source(w.cons, r64Decode, natsjs.SourceOption{}) },
		"zero option second": func() { natsjs.Source(w.cons, r64Decode, natsjs.ReadAhead(1), natsjs.SourceOption{}) },
	} {
		msg := func() (msg string) {
			defer func() { msg, _ = recover().(string) }()
			call()
			return ""
		}()
		if !strings.HasPrefix(msg, "sluice: natsjs.Source") {
			t.Errorf("%s: panic %q, want one that starts with %q", name, msg, "sluice: natsjs.Source")
		}
	}
}

// "MaxReadAhead is the largest ReadAhead: ... a buffer of 8 MiB." and
// "ReadAhead panics if n < 1 or n > MaxReadAhead": at the limit, a run
// works.
func TestReview64APIRunAtMaxReadAhead(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		w := r14World(t, jetstream.ConsumerConfig{})
		w.pub(t, "a", "b", "c")
		got, err := r64Take(natsjs.Source(w.cons, r64Decode, natsjs.ReadAhead(natsjs.MaxReadAhead)), 3)
		if err != nil || len(got) != 3 {
			t.Fatalf("a run with ReadAhead(MaxReadAhead): %v, %v", got, err)
		}
	})
}

// "ErrPermanent marks an error that a redelivery cannot cure; wrap one
// with Permanent." and "Permanent wraps err": both the mark and the
// original error are seen by errors.Is, also through a stage's *Error.
func TestReview64APIPermanentWraps(t *testing.T) {
	cause := errors.New("review64 cause")
	p := natsjs.Permanent(cause)
	if !errors.Is(p, natsjs.ErrPermanent) || !errors.Is(p, cause) {
		t.Fatalf("Permanent(cause) = %v: Is ErrPermanent %v, Is cause %v", p,
			errors.Is(p, natsjs.ErrPermanent), errors.Is(p, cause))
	}
	wrapped := &stage.Error{Stage: "map#1", Err: fmt.Errorf("ctx: %w", p)}
	if !errors.Is(wrapped, natsjs.ErrPermanent) {
		t.Fatalf("%v does not match ErrPermanent through an *Error", wrapped)
	}
	if errors.Is(cause, natsjs.ErrPermanent) {
		t.Fatal("Permanent changed its argument")
	}
	// "Permanent(nil) is nil": a call that succeeded stays a success.
	if err := natsjs.Permanent(nil); err != nil {
		t.Fatalf("Permanent(nil) = %v, want nil", err)
	}
}
