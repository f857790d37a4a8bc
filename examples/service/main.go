// Command service is sluice running in a long-lived service: a worker that
// takes jobs from a queue, processes them on a few workers with a timeout
// and retries, and stores the results in batches, while it serves
// Prometheus metrics. The queue here is a channel fed by a producer that
// never stops, standing in for a broker.
//
// On SIGTERM (or Ctrl-C) it drains: it takes no new job, finishes the jobs
// in flight, stores the last partial batch, reports that every job it took
// was stored, and exits 0. If draining takes longer than -grace, or a second
// signal arrives, it aborts instead: it cancels the run and exits 1.
//
//	go -C examples run ./service -addr 127.0.0.1:9090
//	curl -s 127.0.0.1:9090/metrics | grep sluice_
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluicedev/sluice/metrics/prom"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/source"
	"github.com/sluicedev/sluice/stage"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "where to serve /metrics")
	work := flag.Duration("work", 2*time.Millisecond, "how long a job takes")
	grace := flag.Duration("grace", 10*time.Second, "how long draining may take before the service aborts")
	flag.Parse()

	// readme:begin
	// The first signal drains; the second one, or the grace period, aborts.
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, os.Interrupt)
	stop, drain := context.WithCancel(context.Background())
	ctx, abort := context.WithCancel(context.Background())
	go func() {
		<-signals
		drain()
		select {
		case <-signals:
		case <-time.After(*grace):
		}
		abort()
	}()
	// readme:end

	if err := run(ctx, stop, *addr, *work, os.Stdout); err != nil {
		fmt.Fprintln(os.Stdout, "aborted:", err)
		os.Exit(1)
	}
}

// Job is one unit of work from the queue.
type Job struct{ ID int }

// run serves metrics on addr and processes jobs until stop is done (drain:
// returns nil once everything taken is stored) or ctx is (abort: returns
// the cancellation).
func run(ctx, stop context.Context, addr string, work time.Duration, out io.Writer) error {
	reg := prometheus.NewRegistry()
	metrics, err := prom.New(reg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{})}
	go srv.Serve(ln)
	defer srv.Close()

	// The queue: a producer that never stops, standing in for a broker.
	queue := make(chan Job)
	feed, stopFeed := context.WithCancel(context.Background())
	defer stopFeed()
	go func() {
		for id := 0; ; id++ {
			select {
			case queue <- Job{ID: id}:
			case <-feed.Done():
				return
			}
		}
	}()
	var taken, stored atomic.Int64
	fmt.Fprintf(out, "ready: metrics on http://%s/metrics\n", ln.Addr())

	// readme:begin
	// The pipeline: drained by stop, aborted by ctx.
	jobs := stage.Until(source.Func(func(ctx context.Context) (Job, error) {
		select {
		case j := <-queue:
			taken.Add(1)
			return j, nil
		case <-ctx.Done(): // drained (or aborted): take nothing more
			return Job{}, ctx.Err()
		}
	}), stop)
	results := stage.Map(jobs, func(ctx context.Context, j Job) (string, error) {
		select {
		case <-time.After(work):
			return fmt.Sprintf("job %d done", j.ID), nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}, stage.Name("process"), stage.Workers(8), stage.Timeout(time.Minute), stage.Retry(3, 10*time.Millisecond))
	batches := stage.Batch(results, 100, 50*time.Millisecond)
	err = sink.ForEach(stage.Observe(ctx, metrics), batches, func(_ context.Context, b []string) error {
		stored.Add(int64(len(b))) // a real service writes the batch here
		return nil
	})
	// readme:end
	if err != nil {
		return err
	}
	stopFeed()
	fmt.Fprintf(out, "drained: took %d jobs, stored %d\n", taken.Load(), stored.Load())
	if taken.Load() != stored.Load() {
		return errors.New("lost jobs")
	}
	return nil
}
