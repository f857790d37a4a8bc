package sink_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/sluicedev/sluice/internal/runcheck"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

type c61PanicCtx struct {
	context.Context
	method string
}

func (c c61PanicCtx) Done() <-chan struct{} {
	if c.method == "Done" {
		panic("c61 Done")
	}
	return c.Context.Done()
}

func (c c61PanicCtx) Err() error {
	if c.method == "Err" {
		panic("c61 Err")
	}
	return c.Context.Err()
}

func (c c61PanicCtx) Value(k any) any {
	if c.method == "Value" {
		panic("c61 Value")
	}
	return c.Context.Value(k)
}

// stage (package doc, Leaks): "If the caller's ctx, or the stop context of an
// Until, is a context type of the caller's whose methods panic when the run
// calls them, the run is cancelled and the sink raises that panic again once
// the run is over, in place of its result." stage.PanicError: "a panic in
// user code (a source function, a stage function, a sink callback) turned into
// an error. It reaches the caller wrapped in an *Error". An inner run made by
// an outer stage's function (or an outer sink callback) with such a context
// raises the panic in that function: the outer run must turn it into an
// *Error of the outer stage (or "foreach") at that item wrapping a
// *PanicError with the same value, and the process goes on.
func TestReview61BBCNestedPanickingContext(t *testing.T) {
	runcheck.InChildTest(t, func(t *testing.T) {
		for _, method := range []string{"Done", "Value"} {
			for _, where := range []string{"stop", "ctx"} {
				for _, outerKind := range []string{"map-forward", "map-failfast", "foreach"} {
					if where == "stop" && method == "Value" {
						continue // a stop context's Value is not promised to be called
					}
					t.Run(fmt.Sprintf("%s/%s/%s", method, where, outerKind), func(t *testing.T) {
						inner := func(ctx context.Context) (int, error) {
							s := stage.Map(source.Slice([]int{1, 2, 3}), c61id, stage.Workers(2))
							if where == "stop" {
								s = stage.Until(s, c61PanicCtx{context.Background(), method})
								return sink.Count(ctx, s)
							}
							return sink.Count(c61PanicCtx{ctx, method}, s)
						}
						want := "c61 " + method
						check := func(err error, stageName string, idx int) {
							t.Helper()
							var e *stage.Error
							var pe *stage.PanicError
							if !errors.As(err, &e) || e.Stage != stageName || e.Index != idx || !errors.As(err, &pe) || pe.Value != want {
								t.Fatalf("err = %v (%+v); want a %s *Error at %d wrapping a PanicError of %q", err, e, stageName, idx, want)
							}
						}
						switch outerKind {
						case "map-forward", "map-failfast":
							opts := []stage.Option{stage.Name("outer"), stage.Workers(1)}
							if outerKind == "map-forward" {
								opts = append(opts, stage.OnError(stage.Forward))
							}
							outer := stage.Map(source.Slice([]int{0, 1, 2}), func(ctx context.Context, k int) (int, error) {
								if k != 1 {
									return k, nil
								}
								return inner(ctx)
							}, opts...)
							var got []int
							var err error
							runcheck.Run(t, "run", func() { got, err = sink.Slice(context.Background(), outer) })
							if outerKind == "map-forward" {
								var fe *sink.ForwardedError
								if !errors.As(err, &fe) || fe.Count != 1 || len(got) != 2 {
									t.Fatalf("Slice = %v, %v; want 2 values and 1 forwarded", got, err)
								}
								check(fe.Sample[0], "outer", 1)
							} else {
								check(err, "outer", 1)
							}
						case "foreach":
							var err error
							runcheck.Run(t, "run", func() {
								err = sink.ForEach(context.Background(), source.Slice([]int{0, 1, 2}), func(ctx context.Context, k int) error {
									if k != 1 {
										return nil
									}
									_, err := inner(ctx)
									return err
								})
							})
							check(err, "foreach", 1)
						}
					})
				}
			}
		}
	})
}
