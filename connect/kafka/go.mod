module github.com/sluicedev/sluice/connect/kafka

go 1.26.0

replace github.com/sluicedev/sluice => ../../

require (
	github.com/sluicedev/sluice v0.0.0
	github.com/twmb/franz-go v1.22.3
	github.com/twmb/franz-go/pkg/kadm v1.20.0
	github.com/twmb/franz-go/pkg/kfake v0.0.0-20260918054303-01f206a7e32c
	github.com/twmb/franz-go/pkg/kmsg v1.15.1
	go.uber.org/goleak v1.3.0
)

require (
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/pierrec/lz4/v4 v4.1.33 // indirect
	github.com/sourcegraph/conc v0.3.0 // indirect
	golang.org/x/time v0.16.0 // indirect
)
