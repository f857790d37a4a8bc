module github.com/sluicedev/sluice

go 1.26.0

require github.com/sourcegraph/conc v0.3.0

require go.uber.org/goleak v1.3.0

require golang.org/x/time v0.16.0
