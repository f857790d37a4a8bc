module github.com/sluicedev/sluice

go 1.26.8

require github.com/sourcegraph/conc v0.3.0
