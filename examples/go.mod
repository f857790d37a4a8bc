module github.com/sluicedev/sluice/examples

go 1.26.0

require (
	github.com/sluicedev/sluice v0.0.0
	go.uber.org/goleak v1.3.0
)

require github.com/sourcegraph/conc v0.3.0 // indirect

replace github.com/sluicedev/sluice => ../
