package kafka_test

import (
	"context"
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicedev/sluice/connect/kafka"
	"github.com/sluicedev/sluice/sink"
	"github.com/sluicedev/sluice/stage"
)

// Source: "kgo.AutoCommitMarks and kgo.GreedyAutoCommit in kopts make the
// run fail as it starts, with a *stage.SourceError, before it takes
// anything (franz-go refuses them beside DisableAutoCommit)". (Found by
// review39 against the doc as it was, which said options of kopts for
// auto-commit are overridden.)
func TestReview39AutoCommitModesInKoptsFailTheRun(t *testing.T) {
	for _, mode := range []string{"marks", "greedy"} {
		t.Run(mode, func(t *testing.T) {
			_, addrs := newCluster(t, 1, "jobs")
			produceTo(t, addrs, "jobs", 0, 0, 3)
			kopts := memberOpts(addrs, "g", "jobs")
			switch mode {
			case "marks":
				kopts = append(kopts, kgo.AutoCommitMarks())
			case "greedy":
				kopts = append(kopts, kgo.GreedyAutoCommit())
			}
			src := kafka.Source(kopts, decodeInt)
			var ok bool
			err := waitErr(t, "sink.First", goRun(func() (err error) {
				_, ok, err = sink.First(context.Background(), src)
				return err
			}))
			var se *stage.SourceError
			if !errors.As(err, &se) || ok {
				t.Fatalf("with kgo option %q in kopts, sink.First returned ok %v, %v; want nothing taken and a *stage.SourceError", mode, ok, err)
			}
		})
	}
}
