package kafka_test

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Review91: Source keeps the options it was given.

// Doc (Source): "Source returns a stream of the records of a consumer
// group ... when the pipeline first asks for a record, it makes a client
// from kopts". The kopts are the ones given to Source: a caller that
// reuses its slice once Source returned (a loop that builds the options of
// several sources in one buffer) does not change the group its runs join.
//
// The slice's last option names the group "g"; once Source returned, the
// test overwrites it with group "other", then runs the stream: its records
// are committed for group "g", and group "other" has no offsets.
func TestReview91SourceKeepsItsOwnKopts(t *testing.T) {
	_, addrs := newCluster(t, 1, "jobs")
	const n = 3
	produceTo(t, addrs, "jobs", 0, 0, n)
	kopts := append(memberOpts(addrs, "g", "jobs"), kgo.ConsumerGroup("g"))
	src := kafka.Source(kopts, decodeInt)
	kopts[len(kopts)-1] = kgo.ConsumerGroup("other") // the caller reuses its slice

	stop, drain := context.WithCancel(context.Background())
	defer drain()
	done := 0
	errc := goRun(func() error {
		return sink.ForEach(context.Background(), stage.Until(src, stop), func(context.Context, kafka.Record[int]) error {
			if done++; done == n {
				drain()
			}
			return nil
		})
	})
	if err := waitErr(t, "the run", errc); err != nil {
		t.Fatal(err)
	}
	if got := r91Committed(t, addrs, "g"); got != n {
		t.Errorf("group g committed %d; want %d: the run did not join the group Source was given", got, n)
	}
	if got := r91Committed(t, addrs, "other"); got != -1 {
		t.Errorf("group other committed %d: the run used the caller's slice as it was changed after Source returned", got)
	}
}

// r91Committed is group's committed offset of partition 0 of "jobs": -1
// when it has none, or when the group does not exist.
func r91Committed(t testing.TB, addrs []string, group string) int64 {
	t.Helper()
	offs, err := kadm.NewClient(client(t, addrs)).FetchOffsets(context.Background(), group)
	if errors.Is(err, kerr.GroupIDNotFound) {
		return -1
	}
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("jobs", 0); ok {
		return o.At
	}
	return -1
}
