package natsjs_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sluicedev/sluice/connect/natsjs"
	"github.com/sluicedev/sluice/sink"
)

// What a run asks the server, read off its pull requests: ReadAhead "asks
// the server for up to n messages at a time" (100 by default), a
// consumer's MaxRequestBatch below n is the read-ahead instead, and (the
// package documentation, "Consumer settings") "a MaxRequestExpires below
// 5 s shortens each pull request's wait": so a pull request waits 5 s at
// the server, or the consumer's MaxRequestExpires if that is shorter. A
// watcher subscribed to the consumer's pull-request subject sees the first
// request of a run that takes one message. (The request's fields are
// settings the run sends, not durations measured.)
func TestReview90PullRequestsAskWhatTheDocsSay(t *testing.T) {
	for _, c := range []struct {
		name        string
		cfg         jetstream.ConsumerConfig
		opts        []natsjs.SourceOption
		batch       int
		expires     time.Duration
		description string
	}{
		{"defaults", jetstream.ConsumerConfig{}, nil, 100, 5 * time.Second, "read-ahead 100, 5 s"},
		{"read-ahead", jetstream.ConsumerConfig{}, []natsjs.SourceOption{natsjs.ReadAhead(7)}, 7, 5 * time.Second, "ReadAhead(7)"},
		{"MaxRequestExpires above 5s", jetstream.ConsumerConfig{MaxRequestExpires: 8 * time.Second}, nil, natsjs.DefaultReadAhead, 5 * time.Second, "5 s, within the limit"},
		{"MaxRequestExpires below 5s", jetstream.ConsumerConfig{MaxRequestExpires: 2 * time.Second}, nil, natsjs.DefaultReadAhead, 2 * time.Second, "the consumer's 2 s"},
		{"MaxRequestBatch below the read-ahead", jetstream.ConsumerConfig{MaxRequestBatch: 3}, nil, 3, 5 * time.Second, "the consumer's batch of 3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			w := r14World(t, c.cfg)
			w.pub(t, "a")
			watcher, _ := connect(t, w.url)
			reqs := make(chan *nats.Msg, 64)
			sub, err := watcher.ChanSubscribe("$JS.API.CONSUMER.MSG.NEXT.WORK.c", reqs)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			if err := watcher.Flush(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := r75HangCtx()
			defer cancel()
			if _, _, err := sink.First(ctx, natsjs.Source(w.cons, r14Str, c.opts...)); err != nil {
				t.Fatal(err)
			}
			var req struct {
				Batch   int           `json:"batch"`
				Expires time.Duration `json:"expires"`
			}
			if err := json.Unmarshal(r75Recv(t, "the run's first pull request", (<-chan *nats.Msg)(reqs)).Data, &req); err != nil {
				t.Fatal(err)
			}
			if req.Batch != c.batch || req.Expires != c.expires {
				t.Fatalf("the first pull request asks for %d messages, waiting %v; want %d, %v (%s)", req.Batch, req.Expires, c.batch, c.expires, c.description)
			}
		})
	}
}
