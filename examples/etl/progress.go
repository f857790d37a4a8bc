package main

import (
	"io"
	"time"

	"github.com/schollz/progressbar/v3"

	"github.com/sluicedev/sluice/stage"
)

// progress is a stage.Observer that draws a progress bar for one stage,
// sized by the stage's expected total.
type progress struct {
	w     io.Writer
	stage string
}

func newProgress(w io.Writer, stageName string) *progress { return &progress{w: w, stage: stageName} }

func (p *progress) Stage(info stage.Info) stage.Watcher {
	if info.Name != p.stage {
		return nil
	}
	bar := progressbar.NewOptions(info.Total,
		progressbar.OptionSetWriter(p.w),
		progressbar.OptionSetDescription(info.Name),
		progressbar.OptionShowCount(),
		progressbar.OptionThrottle(50*time.Millisecond),
		progressbar.OptionOnCompletion(func() { io.WriteString(p.w, "\n") }),
	)
	return &barObserver{bar: bar}
}

type barObserver struct{ bar *progressbar.ProgressBar }

func (b *barObserver) Received() {}

func (b *barObserver) Finished(time.Duration, error) { b.bar.Add(1) }

func (b *barObserver) Closed() { b.bar.Finish() }
