package main

import (
	"context"
	"strings"
	"testing"
)

// Review80: README: the transform "derives host, major version,
// pseudo-version"; Module's doc: "Pseudo bool // a pseudo-version (an
// untagged commit)", in the go command's sense (the forms below).

// On the real dataset, every row's Pseudo, Major and Host agree with the
// go command's definitions (README: "942 pseudo-versions").
func TestReview80DerivedFieldsOnTheDataset(t *testing.T) {
	in, err := zipSums()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := readCSV(in)
	if err != nil {
		t.Fatal(err)
	}
	pseudos := 0
	for i, row := range rows {
		m, err := parse(context.Background(), row)
		if err != nil {
			t.Fatalf("row %d: %v", i+1, err)
		}
		if m.Pseudo {
			pseudos++
		}
		major, _, _ := strings.Cut(strings.TrimPrefix(m.Version, "v"), ".")
		if m.Major != "v"+major {
			t.Errorf("row %d: %s Major %q", i+1, m.Version, m.Major)
		}
		if host, _, _ := strings.Cut(m.Path, "/"); m.Host != host {
			t.Errorf("row %d: %s Host %q", i+1, m.Path, m.Host)
		}
	}
	if pseudos != 942 {
		t.Errorf("%d pseudo-versions, the README says 942", pseudos)
	}
}

// Versions that are valid semver tags, and each form of a pseudo-version:
// Pseudo follows the go command's definition.
func TestReview80PseudoVersionForms(t *testing.T) {
	for v, want := range map[string]bool{
		"v0.0.0-20190101120000-abcdefabcdef":              true, // no base version
		"v2.0.0-20190101120000-abcdefabcdef+incompatible": true, // the same, +incompatible
		"v1.2.4-0.20190101120000-abcdefabcdef":            true, // after the release v1.2.3
		"v1.2.3-pre.0.20190101120000-abcdefabcdef":        true, // after the prerelease v1.2.3-pre
		"v1.2.3":                             false, // a tag
		"v1.0.0-rc.1":                        false, // a prerelease tag
		"v1.2.3-20190101120000-abcdefabcdef": false, // a tag that looks like one
		"v1.5.0-beta.20190101120000-abcdefabcdef":         false, // a tag: no ".0." before the time
		"v3.1.0-20190101120000-abcdefabcdef+incompatible": false, // a tag: Y.Z is not 0.0
	} {
		row := []string{"example.com/m", v, reviewH1, reviewZip}
		m, err := parse(context.Background(), row)
		if err != nil {
			t.Errorf("%s: %v", v, err)
			continue
		}
		if m.Pseudo != want {
			t.Errorf("%s: Pseudo %v, the go command says %v", v, m.Pseudo, want)
		}
	}
}
