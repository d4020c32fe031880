package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/cache/record"
)

func TestCollectKeepsTreesThatARecordOrAJournalNames(t *testing.T) {
	f := newFixture(t)
	s := f.exclusive()
	hex := func(c byte) string { return strings.Repeat(string(c), 64) }
	must(t, os.MkdirAll(s.TreesDir(), 0o700))
	for _, c := range []byte("abc") {
		must(t, os.WriteFile(filepath.Join(s.TreesDir(), hex(c)), []byte("tree"), 0o600))
	}
	key := record.NewKey([]record.Component{{Name: "op", Value: "copy"}, {Name: "src:.", Value: "sha256:" + hex('a')}})
	must(t, s.Records.Put(&record.Record{Key: key.Digest, Components: key.Components}))
	writeFile(t, filepath.Join(s.BuildsDir(), "20260101T000000Z-00000000", "build.json"),
		`{"id":"x","steps":[{"name":"[1/2] COPY . /","components":[{"name":"bind:/src","value":"sha256:`+hex('b')+`"}]}]}`)

	rep := f.collect(GCOptions{})
	for c, want := range map[byte]bool{'a': true, 'b': true, 'c': false} {
		_, err := os.Stat(filepath.Join(s.TreesDir(), hex(c)))
		if (err == nil) != want {
			t.Errorf("tree %c kept: %v, want %v", c, err == nil, want)
		}
	}
	if rep.Objects < 1 {
		t.Errorf("report counts %d objects", rep.Objects)
	}

	f.collect(GCOptions{Records: true, All: true})
	if _, err := os.Stat(filepath.Join(s.TreesDir(), hex('a'))); err == nil {
		t.Error("the tree of a pruned record is still there")
	}
}

func TestUsageAndTheBudgetCountTrees(t *testing.T) {
	f := newFixture(t)
	s := f.s
	hex := func(c byte) string { return strings.Repeat(string(c), 64) }
	must(t, os.MkdirAll(s.TreesDir(), 0o700))
	const size = 10000
	for _, c := range []byte("abc") {
		must(t, os.WriteFile(filepath.Join(s.TreesDir(), hex(c)), []byte(strings.Repeat("t", size)), 0o600))
	}
	key := record.NewKey([]record.Component{{Name: "op", Value: "copy"}, {Name: "src:.", Value: "sha256:" + hex('a')}})
	must(t, s.Records.Put(&record.Record{Key: key.Digest, Components: key.Components}))
	writeFile(t, filepath.Join(s.BuildsDir(), "20260101T000000Z-00000000", "build.json"),
		`{"id":"x","steps":[{"name":"[1/2] COPY . /","components":[{"name":"bind:/src","value":"sha256:`+hex('b')+`"}]}]}`)
	before := f.usage()
	if before.HistorySize < size || before.CacheSize < 2*size || before.Unreferenced < size || before.Budgeted < 3*size {
		t.Errorf("usage leaves trees out: history %d, cache %d, unreferenced %d, budgeted %d", before.HistorySize, before.CacheSize, before.Unreferenced, before.Budgeted)
	}
	if len(before.Builds) != 1 || before.Builds[0].Size >= size {
		t.Errorf("a build's size counts the trees builds share: %+v", before.Builds)
	}
	f.exclusive()
	rep := f.collect(GCOptions{})
	if rep.Reclaimed < size {
		t.Errorf("collecting the unnamed tree reclaimed %d bytes", rep.Reclaimed)
	}
	if _, err := os.Stat(filepath.Join(s.TreesDir(), hex('c'))); err == nil {
		t.Error("the unnamed tree is still there")
	}
}
