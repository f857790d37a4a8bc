package metricstest

import (
	"context"
	"errors"
	"testing"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// RunSquare7 runs, observed by obs, the run of the adapters' own review7
// checks of their backend's form: six items in stage "square" of kind
// map, the three odd ones failing (forwarded).
func RunSquare7(t *testing.T, obs stage.Observer) {
	t.Helper()
	s := stage.Map(source.Slice(Ints(6)), func(_ context.Context, v int) (int, error) {
		if v%2 == 1 {
			return 0, errors.New("odd")
		}
		return v, nil
	}, stage.Name("square"), stage.OnError(stage.Forward))
	_, err := sink.Count(stage.Observe(context.Background(), obs), s)
	var fe *sink.ForwardedError
	if !errors.As(err, &fe) || fe.Count != 3 {
		t.Fatalf("run: %v, want a *sink.ForwardedError of 3", err)
	}
}

// CheckSquare7 checks the series RunSquare7 leaves: 6 received, 3 ok, 3
// errors, none in flight, 6 durations.
func CheckSquare7(t testing.TB, pts []Point7) {
	t.Helper()
	Expect7(t, pts, "received", "square", "map", "", 6)
	Expect7(t, pts, "finished", "square", "map", "ok", 3)
	Expect7(t, pts, "finished", "square", "map", "error", 3)
	Expect7(t, pts, "in_flight", "square", "map", "", 0)
	Expect7(t, pts, "duration", "square", "map", "", 6)
}
