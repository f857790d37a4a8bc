package metricstest_test

// Does each shared scenario still fail when an adapter breaks what the
// scenario checks? A fake adapter (in memory, built like metrics/prom) is
// run through every scenario, once right and once with each mutation, each
// in a child process (a scenario takes a *testing.T and fails it); the
// right one must pass everywhere, and each scenario must fail under the
// mutations of what its documentation says it checks.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicedev/sluice/internal/metricstest"
	"github.com/sluicedev/sluice/stage"
)

const (
	envScenario = "SLUICE_METRICSTEST_SCENARIO"
	envMutation = "SLUICE_METRICSTEST_MUTATION"
)

type fkey struct{ stage, kind string }

type fvals struct {
	received, ok, failed, inFlight, count float64
	sum                                   float64
}

type fakeObs struct {
	mut    string
	mu     sync.Mutex
	series map[fkey]*fvals
}

func (o *fakeObs) Stage(info stage.Info) stage.Watcher {
	k := fkey{info.Name, info.Kind}
	if o.mut == "no-kind" {
		k.kind = ""
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.series[k] == nil || o.mut == "reset-per-run" {
		o.series[k] = &fvals{}
	}
	return &fakeWatcher{o: o, v: o.series[k]}
}

type fakeWatcher struct {
	o *fakeObs
	v *fvals
}

func (w *fakeWatcher) Received() {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	if w.o.mut != "received-at-finish" {
		w.v.received++
	}
	w.v.inFlight++
}

func (w *fakeWatcher) Finished(d time.Duration, err error) {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	if w.o.mut == "received-at-finish" {
		w.v.received++
	}
	if w.o.mut != "inflight-no-dec" {
		w.v.inFlight--
	}
	w.v.count++
	if w.o.mut == "duration-ms" {
		w.v.sum += float64(d.Milliseconds())
	} else {
		w.v.sum += d.Seconds()
	}
	var se *stage.Error
	failed := errors.As(err, &se)
	if w.o.mut == "outcome-swapped" {
		failed = !failed
	}
	if failed {
		w.v.failed++
	} else {
		w.v.ok++
	}
	if w.o.mut == "finished-double" {
		w.v.ok++
	}
}

func (w *fakeWatcher) Closed() {}

func (o *fakeObs) read() ([]metricstest.Point, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []metricstest.Point
	for k, v := range o.series {
		out = append(out,
			metricstest.Point{Metric: metricstest.Received, Stage: k.stage, Kind: k.kind, Value: v.received},
			metricstest.Point{Metric: metricstest.Finished, Stage: k.stage, Kind: k.kind, Outcome: "ok", Value: v.ok},
			metricstest.Point{Metric: metricstest.Finished, Stage: k.stage, Kind: k.kind, Outcome: "error", Value: v.failed},
			metricstest.Point{Metric: metricstest.InFlight, Stage: k.stage, Kind: k.kind, Value: v.inFlight},
			metricstest.Point{Metric: metricstest.Duration, Stage: k.stage, Kind: k.kind, Value: v.count, Sum: v.sum})
	}
	return out, nil
}

var scenarios = map[string]func(*testing.T, stage.Observer, metricstest.Read){
	"InFlightAndSeconds":             metricstest.InFlightAndSeconds,
	"DurationCoversAllAttempts":      metricstest.DurationCoversAllAttempts,
	"OutcomesAndKinds":               metricstest.OutcomesAndKinds,
	"ConcurrentRunsShareTheObserver": metricstest.ConcurrentRunsShareTheObserver,
	"BesideAPanickingObserver":       metricstest.BesideAPanickingObserver,
}

// TestChild runs one scenario with one fake adapter (in a child
// process only).
func TestChild(t *testing.T) {
	name := os.Getenv(envScenario)
	if name == "" {
		t.Skip("child process only")
	}
	o := &fakeObs{mut: os.Getenv(envMutation), series: map[fkey]*fvals{}}
	scenarios[name](t, o, o.read)
}

func TestScenariosCatchBrokenAdapters(t *testing.T) {
	if testing.Short() {
		t.Skip("child processes")
	}
	// What each scenario's documentation says it checks, as mutations of
	// an adapter that it must catch.
	want := map[string][]string{
		"InFlightAndSeconds":             {"inflight-no-dec", "outcome-swapped", "duration-ms", "received-at-finish", "finished-double"},
		"DurationCoversAllAttempts":      {"outcome-swapped", "finished-double"},
		"OutcomesAndKinds":               {"inflight-no-dec", "outcome-swapped", "no-kind", "finished-double", "reset-per-run"},
		"ConcurrentRunsShareTheObserver": {"inflight-no-dec", "outcome-swapped", "no-kind", "finished-double", "reset-per-run"},
		"BesideAPanickingObserver":       {"inflight-no-dec", "finished-double"},
	}
	muts := []string{"", "inflight-no-dec", "outcome-swapped", "duration-ms", "received-at-finish", "finished-double", "no-kind", "reset-per-run"}
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	var matrix []string
	for _, name := range names {
		var caught []string
		for _, mut := range muts {
			cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envScenario+"="+name, envMutation+"="+mut)
			outb, err := cmd.CombinedOutput()
			failed := err != nil
			if mut == "" {
				if failed {
					t.Errorf("%s: fails with a right adapter:\n%s", name, outb)
				}
				continue
			}
			if failed {
				caught = append(caught, mut)
			}
		}
		matrix = append(matrix, fmt.Sprintf("%s catches %v", name, caught))
		for _, m := range want[name] {
			if !strings.Contains(" "+strings.Join(caught, " ")+" ", " "+m+" ") {
				t.Errorf("%s: an adapter that is %q passes it", name, m)
			}
		}
	}
	t.Log("\n" + strings.Join(matrix, "\n"))
}
