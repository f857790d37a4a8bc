package metricstest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

// BesideAPanickingObserver: another observer of the same run panics in
// its Received while three calls are in flight; the adapter's observer
// must still be told that every call it saw start finished (a panic
// silences the watcher that panicked, not its neighbours), so after the
// sink returned nothing is in flight and the received items are all
// finished, each with a duration.
func BesideAPanickingObserver(t *testing.T, obs stage.Observer, read Read) {
	started := make(chan struct{}, 4)
	bad := &panicky{before: func() {
		for range 3 {
			Recv(t, "a call in flight", started)
		}
	}}
	s := stage.Map(source.Slice(Ints(4)), func(ctx context.Context, x int) (int, error) {
		started <- struct{}{}
		<-ctx.Done()
		return 0, ctx.Err()
	}, stage.Workers(4), stage.Buffer(1), stage.Name("m"))
	errc := make(chan error, 1)
	go func() {
		_, err := sink.Count(stage.Observe(stage.Observe(context.Background(), bad), obs), s)
		errc <- err
	}()
	var pe *stage.PanicError
	if err := Recv(t, "the run", errc); !errors.As(err, &pe) {
		t.Fatalf("the sink returned %v, want a *stage.PanicError", err)
	}
	all := MustRead(t, read)
	recv, ok, failed := Val(all, Received, "m", ""), Val(all, Finished, "m", "ok"), Val(all, Finished, "m", "error")
	if recv < 3 || ok+failed != recv || Val(all, Duration, "m", "") != recv || Val(all, InFlight, "m", "") != 0 {
		t.Errorf("received %v, finished ok %v + error %v, durations %v, in flight %v: want at least 3 received, all finished with a duration, none in flight",
			recv, ok, failed, Val(all, Duration, "m", ""), Val(all, InFlight, "m", ""))
	}
}

// panicky is an observer whose watcher panics in its fourth Received,
// after before returned.
type panicky struct {
	before func()
	n      atomic.Int64
}

func (p *panicky) Stage(stage.Info) stage.Watcher { return p }

func (p *panicky) Received() {
	if p.n.Add(1) == 4 {
		p.before()
		panic("metricstest: a neighbouring observer panics")
	}
}

func (p *panicky) Finished(time.Duration, error) {}
func (p *panicky) Closed()                       {}
