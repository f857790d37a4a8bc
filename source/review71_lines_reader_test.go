package source_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// "A read error ends the run with a *stage.SourceError after the complete
// lines before it went through (a partial line before the error is
// dropped). The end of r is io.EOF itself ...: an error that wraps io.EOF is
// a read error ...; once r said io.EOF, a run does not read it again".
//
// Readers that return data and an error together, (0, nil), a wrapped EOF.
func TestReview71LinesReaderResults(t *testing.T) {
	wrappedEOF := fmt.Errorf("truncated: %w", io.EOF)
	type tc struct {
		name  string
		steps []review71Step
		want  []string
		err   error // nil: success
	}
	cases := []tc{
		{"data+err", []review71Step{{data: "a\nb\r\npart", err: errReview71Boom}}, []string{"a", "b"}, errReview71Boom},
		{"data+err-complete", []review71Step{{data: "a\nb\n", err: errReview71Boom}}, []string{"a", "b"}, errReview71Boom},
		{"data-then-err", []review71Step{{data: "a\npa"}, {data: "rt", err: errReview71Boom}}, []string{"a"}, errReview71Boom},
		{"data+eof", []review71Step{{data: "a\nb\r\nlast", err: io.EOF}}, []string{"a", "b", "last"}, nil},
		{"data+eof-newline", []review71Step{{data: "a\n", err: io.EOF}}, []string{"a"}, nil},
		{"zero-nil-reads", []review71Step{{}, {data: "a\n"}, {}, {}, {data: "b"}, {}}, []string{"a", "b"}, nil},
		{"wrapped-eof", []review71Step{{data: "a\nb\n"}, {err: wrappedEOF}}, []string{"a", "b"}, wrappedEOF},
		{"wrapped-eof-with-data", []review71Step{{data: "a\nb", err: wrappedEOF}}, []string{"a"}, wrappedEOF},
		{"err-first", []review71Step{{err: errReview71Boom}}, nil, errReview71Boom},
		{"empty", nil, nil, nil},
	}
	for _, c := range cases {
		for _, workers := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/w%d", c.name, workers), func(t *testing.T) {
				r := &review71Reader{t: t, steps: c.steps}
				s := stage.Map(source.Lines(r), func(_ context.Context, l string) (string, error) { return l, nil },
					stage.Workers(workers), stage.Ordered())
				got, err := review71Collect(t, context.Background(), s)
				if review71Join(got) != review71Join(c.want) || len(got) != len(c.want) {
					t.Fatalf("lines = %s, want %s (err %v)", review71Join(got), review71Join(c.want), err)
				}
				if c.err == nil {
					if err != nil {
						t.Fatalf("err = %v, want nil", err)
					}
				} else {
					var se *stage.SourceError
					if !errors.As(err, &se) || !errors.Is(err, c.err) {
						t.Fatalf("err = %v, want a *stage.SourceError wrapping %v", err, c.err)
					}
				}
				if _, _, after := r.counts(); after != 0 {
					t.Fatalf("r was read %d times after it said io.EOF", after)
				}
			})
		}
	}
}

// "A source's failure (... a read error in Lines, or a panic in any of them)
// ends the run with a *stage.SourceError" and stage.PanicError: "Unwrap
// returns Value when it is an error".
func TestReview71LinesReadPanics(t *testing.T) {
	for _, v := range []any{"read panic", errReview71Boom} {
		r := &review71Reader{t: t, steps: []review71Step{{data: "a\nb\n"}, {data: "c"}, {panicV: v}}}
		s := stage.Map(source.Lines(r), func(_ context.Context, l string) (string, error) { return l, nil }, stage.Workers(2))
		got, err := review71Collect(t, context.Background(), s)
		var se *stage.SourceError
		var pe *stage.PanicError
		if len(got) != 2 || !errors.As(err, &se) || !errors.As(err, &pe) || pe.Value != v {
			t.Fatalf("panic %v: lines %v, err %v; want a, b and a *SourceError wrapping the *PanicError", v, got, err)
		}
		if e, ok := v.(error); ok && !errors.Is(err, e) {
			t.Fatalf("errors.Is does not see the panic's error value through %v", err)
		}
	}
}

// stage.ErrGoexit: "the error of a run one of whose goroutines was ended by
// runtime.Goexit in user code ... the run fails with ErrGoexit", and
// stage.Source: "a stage of more than one worker calls it [next] from
// goroutines of its own".
//
// A Read that calls runtime.Goexit under a Map of 4 workers with a Buffer:
// the sink returns an error that is ErrGoexit.
func TestReview71LinesReadGoexit(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		r := &review71Reader{t: t, steps: []review71Step{{data: "a\n"}, {goexit: true}}}
		s := stage.Map(source.Lines(r), func(_ context.Context, l string) (string, error) { return l, nil },
			stage.Workers(4), stage.Buffer(1))
		_, err := review71Collect(t, context.Background(), s)
		if !errors.Is(err, stage.ErrGoexit) {
			t.Fatalf("err = %v, want stage.ErrGoexit", err)
		}
	})
}

// "A blocked Read cannot be abandoned: when the run is cancelled, the sink
// waits for it to return, and no Read follows it, even within a line (the
// line in progress is dropped ...)".
//
// Read 2 blocks (the line "b..." is in progress); the sink's callback cancels
// the caller's ctx once Read 2 started; Read 2 is let go only after that.
// ForEach returns the cancellation only after Read 2 returned, and no Read
// follows.
func TestReview71LinesCancelDuringBlockedRead(t *testing.T) {
	for round := range 10 {
		started := make(chan struct{})
		release := make(chan struct{})
		r := &review71Reader{t: t, steps: []review71Step{
			{data: "a\nb"},
			{data: "c\nd\ne", gate: release, started: started},
			{data: "f\n"},
		}}
		s := stage.Map(source.Lines(r), func(_ context.Context, l string) (string, error) { return l, nil },
			stage.Workers(2), stage.Buffer(1))
		ctx, cancel := context.WithCancel(context.Background())
		var got []string
		var err error
		var returnedAtEnd int
		runcheck.Run(t, "foreach", func() {
			err = sink.ForEach(ctx, s, func(_ context.Context, l string) error {
				got = append(got, l)
				if l == "a" {
					<-started
					cancel()
					go close(release)
				}
				return nil
			})
			_, returnedAtEnd, _ = r.counts()
		})
		cancel()
		reads, _, _ := r.counts()
		if !errors.Is(err, context.Canceled) || len(got) != 1 {
			t.Fatalf("round %d: ForEach = %v after lines %v, want Canceled after a", round, err, got)
		}
		if returnedAtEnd != 2 {
			t.Fatalf("round %d: ForEach returned when %d Reads had returned, want 2 (it must wait for the blocked Read)", round, returnedAtEnd)
		}
		if reads != 2 {
			t.Fatalf("round %d: %d Reads, want 2: no Read may follow the blocked one", round, reads)
		}
	}
}
