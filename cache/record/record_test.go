package record

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "cache"))
	must(t, err)
	return s
}

func newRecord(components ...Component) *Record {
	k := NewKey(components)
	return &Record{
		Key:        k.Digest,
		Components: k.Components,
		Layers: []Layer{
			{DiffID: digest.FromString("base"), Size: 1024},
			{DiffID: digest.FromString("step"), Size: 2048},
		},
		Created: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC),
	}
}

var baseComponents = []Component{
	{Name: "op", Value: "run"},
	{Name: "cmd", Value: "echo hi"},
	{Name: "input", Value: "sha256:0123"},
}

func TestNewKeyIsDeterministic(t *testing.T) {
	a := NewKey(baseComponents)
	b := NewKey(append([]Component(nil), baseComponents...))
	if a.Digest != b.Digest {
		t.Errorf("same components gave %s and %s", a.Digest, b.Digest)
	}
	if err := a.Digest.Validate(); err != nil || a.Digest.Algorithm() != digest.SHA256 {
		t.Errorf("key %q is not a sha256 digest: %v", a.Digest, err)
	}
	if !reflect.DeepEqual(a.Components, baseComponents) {
		t.Errorf("key keeps components %v, want %v", a.Components, baseComponents)
	}
}

func TestNewKeyChangesWithEveryComponent(t *testing.T) {
	base := NewKey(baseComponents).Digest
	for i := range baseComponents {
		for _, field := range []string{"name", "value"} {
			changed := append([]Component(nil), baseComponents...)
			if field == "name" {
				changed[i].Name += "x"
			} else {
				changed[i].Value += "x"
			}
			if NewKey(changed).Digest == base {
				t.Errorf("changing the %s of component %d (%v) kept the key", field, i, changed[i])
			}
		}
	}
}

func TestNewKeyIsNotFooledByAmbiguousEncodings(t *testing.T) {
	for _, tc := range []struct {
		name string
		a, b []Component
	}{
		{"name/value boundary", []Component{{"ab", "c"}}, []Component{{"a", "bc"}}},
		{"value moves to next name", []Component{{"x", "ab"}, {"c", ""}}, []Component{{"x", "a"}, {"bc", ""}}},
		{"component split in two", []Component{{"ab", "cd"}}, []Component{{"a", "b"}, {"c", "d"}}},
		{"order", []Component{{"a", "1"}, {"b", "2"}}, []Component{{"b", "2"}, {"a", "1"}}},
		{"empty component", []Component{{"a", "1"}}, []Component{{"a", "1"}, {"", ""}}},
		{"name and value swapped", []Component{{"a", "b"}}, []Component{{"b", "a"}}},
		// A value that spells out the encoding of a second component.
		{"value mimics encoding", []Component{{"a", "1"}, {"b", "2"}}, []Component{{"a", "11:b1:2"}}},
		{"digits in names", []Component{{"1", "2:ab"}}, []Component{{"1", "2"}, {"ab", ""}}},
		{"none vs empty", nil, []Component{{"", ""}}},
	} {
		if NewKey(tc.a).Digest == NewKey(tc.b).Digest {
			t.Errorf("%s: %v and %v have the same key", tc.name, tc.a, tc.b)
		}
	}
}

func TestPutThenGetRoundTrips(t *testing.T) {
	s := openStore(t)
	r := newRecord(baseComponents...)
	must(t, s.Put(r))
	got, err := s.Get(r.Key)
	must(t, err)
	if !reflect.DeepEqual(got, r) {
		t.Errorf("Get = %+v, want %+v", got, r)
	}
}

func TestPutReplacesRecordWithSameKey(t *testing.T) {
	s := openStore(t)
	r := newRecord(baseComponents...)
	must(t, s.Put(r))
	r2 := *r
	r2.Layers = []Layer{{DiffID: digest.FromString("other"), Size: 1}}
	must(t, s.Put(&r2))
	got, err := s.Get(r.Key)
	must(t, err)
	if !reflect.DeepEqual(got.Layers, r2.Layers) {
		t.Errorf("layers = %v, want the replacement %v", got.Layers, r2.Layers)
	}
	all, err := s.All()
	must(t, err)
	if len(all) != 1 {
		t.Errorf("All has %d records, want 1", len(all))
	}
}

func TestGetOfUnknownKeyIsErrNotFound(t *testing.T) {
	s := openStore(t)
	if _, err := s.Get(NewKey(baseComponents).Digest); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get = %v, want ErrNotFound", err)
	}
}

func TestGetOfDamagedRecordIsAMissNeverAWrongHit(t *testing.T) {
	other := newRecord(Component{"op", "other"})
	for _, tc := range []struct {
		name    string
		content func(t *testing.T, good []byte) []byte
	}{
		{"empty", func(*testing.T, []byte) []byte { return nil }},
		{"truncated", func(_ *testing.T, good []byte) []byte { return good[:len(good)/2] }},
		{"garbage", func(*testing.T, []byte) []byte { return []byte("\x00\x01garbage") }},
		{"JSON null", func(*testing.T, []byte) []byte { return []byte("null") }},
		{"JSON of another type", func(*testing.T, []byte) []byte { return []byte(`["a"]`) }},
		{"record of another key", func(t *testing.T, _ []byte) []byte {
			t.Helper()
			b, err := jsonOf(other)
			must(t, err)
			return b
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			r := newRecord(baseComponents...)
			must(t, s.Put(r))
			p := filepath.Join(s.dir, r.Key.Encoded())
			good, err := os.ReadFile(p)
			must(t, err)
			must(t, os.WriteFile(p, tc.content(t, good), 0o600))
			got, err := s.Get(r.Key)
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Get of a damaged record = %+v, %v, want ErrNotFound", got, err)
			}
			if got != nil {
				t.Errorf("Get of a damaged record returned %+v", got)
			}
		})
	}
}

func TestGetMarksRecordUsed(t *testing.T) {
	s := openStore(t)
	r := newRecord(baseComponents...)
	must(t, s.Put(r))
	p := filepath.Join(s.dir, r.Key.Encoded())
	old := time.Now().Add(-48 * time.Hour)
	must(t, os.Chtimes(p, old, old))
	_, err := s.Get(r.Key)
	must(t, err)
	fi, err := os.Stat(p)
	must(t, err)
	if !fi.ModTime().After(old.Add(time.Hour)) {
		t.Errorf("mtime after Get = %v, want about now (LRU clock)", fi.ModTime())
	}
}

func TestAllListsRecordsAndSkipsTempAndDamagedFiles(t *testing.T) {
	s := openStore(t)
	a := newRecord(Component{"op", "a"})
	b := newRecord(Component{"op", "b"})
	must(t, s.Put(a))
	must(t, s.Put(b))
	// A temp file holding a valid record, as a killed Put leaves it.
	tmp, err := jsonOf(newRecord(Component{"op", "tmp"}))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(s.dir, ".tmp-"+a.Key.Encoded()+"-123"), tmp, 0o600))
	must(t, os.WriteFile(filepath.Join(s.dir, "damaged"), []byte("{"), 0o600))
	must(t, os.Mkdir(filepath.Join(s.dir, "somedir"), 0o700))

	all, err := s.All()
	must(t, err)
	var keys []string
	for _, r := range all {
		keys = append(keys, string(r.Key))
	}
	sort.Strings(keys)
	want := []string{string(a.Key), string(b.Key)}
	sort.Strings(want)
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("All keys = %v, want %v", keys, want)
	}
}

func TestDeleteRemovesRecord(t *testing.T) {
	s := openStore(t)
	r := newRecord(baseComponents...)
	must(t, s.Put(r))
	must(t, s.Delete(r.Key))
	if _, err := s.Get(r.Key); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete = %v, want ErrNotFound", err)
	}
	must(t, s.Delete(r.Key)) // a missing record is not an error
}

func TestPutLeavesNoTempFiles(t *testing.T) {
	s := openStore(t)
	for i := 0; i < 3; i++ {
		must(t, s.Put(newRecord(Component{"i", string(rune('a' + i))})))
	}
	ents, err := os.ReadDir(s.dir)
	must(t, err)
	if len(ents) != 3 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("cache dir holds %q, want 3 records", names)
	}
}

func jsonOf(r *Record) ([]byte, error) { return json.Marshal(r) }

func TestEntriesTellsRecordsFromEverythingElse(t *testing.T) {
	s := openStore(t)
	good := newRecord(Component{"op", "good"})
	must(t, s.Put(good))
	used := time.Date(2024, 6, 1, 8, 0, 0, 0, time.UTC)
	must(t, os.Chtimes(filepath.Join(s.dir, good.Key.Encoded()), used, used))

	misnamed := newRecord(Component{"op", "misnamed"})
	b, err := jsonOf(misnamed)
	must(t, err)
	other := NewKey([]Component{{"op", "other"}}).Digest.Encoded()
	must(t, os.WriteFile(filepath.Join(s.dir, other), b, 0o600))
	write := func(name, content string) {
		t.Helper()
		must(t, os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o600))
	}
	write("notjson", "{")
	write("empty", "{}")                       // no key at all
	write("null", "null")                      // decodes to nothing
	write("badkey", `{"key":"sha256:badkey"}`) // named after its key, but the key is no digest
	tmpName := ".tmp-" + good.Key.Encoded() + "-123"
	write(tmpName, "{")
	must(t, os.Mkdir(filepath.Join(s.dir, "somedir"), 0o700))

	ents, err := s.Entries()
	must(t, err)
	byName := map[string]Entry{}
	for _, e := range ents {
		if e.Path != filepath.Join(s.dir, e.Name) {
			t.Errorf("%s: path %s", e.Name, e.Path)
		}
		byName[e.Name] = e
	}
	if len(byName) != 8 {
		t.Errorf("Entries has %d names, want 8: %v", len(byName), byName)
	}

	g := byName[good.Key.Encoded()]
	fi, err := os.Stat(g.Path)
	must(t, err)
	if !reflect.DeepEqual(g.Record, good) || g.Err != nil || g.Damaged || g.Temp || g.Dir {
		t.Errorf("the good record's entry is %+v", g)
	}
	if g.Size != fi.Size() || !g.ModTime.Equal(used) {
		t.Errorf("the good record's entry has size %d, mtime %v; want %d, %v", g.Size, g.ModTime, fi.Size(), used)
	}

	for _, name := range []string{other, "notjson", "empty", "null", "badkey"} {
		e := byName[name]
		if e.Record != nil || e.Err == nil || !e.Damaged || e.Temp || e.Dir {
			t.Errorf("%s: entry %+v, want a damaged record with its error", name, e)
		}
	}
	if e := byName[other]; e.Err.Error() != "its key is "+string(misnamed.Key) {
		t.Errorf("misnamed record: error %q", e.Err)
	}

	if e := byName[tmpName]; !e.Temp || e.Record != nil || e.Err != nil || e.Damaged {
		t.Errorf("temp file: entry %+v, want Temp and not read", e)
	}
	if e := byName["somedir"]; !e.Dir || e.Record != nil || e.Err == nil || e.Damaged {
		t.Errorf("directory: entry %+v, want Dir with its read error", e)
	}
}

func TestEntriesTellsUnreadableFromDamaged(t *testing.T) {
	s := openStore(t)
	r := newRecord(baseComponents...)
	must(t, s.Put(r))
	p := filepath.Join(s.dir, r.Key.Encoded())
	// A name whose file cannot be opened: a dangling symlink.
	must(t, os.Remove(p))
	must(t, os.Symlink(filepath.Join(s.dir, "nowhere"), p))
	ents, err := s.Entries()
	must(t, err)
	if len(ents) != 1 {
		t.Fatalf("Entries = %+v, want one", ents)
	}
	if e := ents[0]; e.Record != nil || !errors.Is(e.Err, os.ErrNotExist) || e.Damaged {
		t.Errorf("unreadable file: entry %+v, want its read error and not Damaged", e)
	}
}

func TestEntriesOfNoDirectoryIsAnError(t *testing.T) {
	s := openStore(t)
	must(t, os.Remove(s.dir))
	if _, err := s.Entries(); err == nil {
		t.Error("Entries of a missing directory succeeded")
	}
}

func TestAllListsMisnamedRecordsEntriesCallsDamaged(t *testing.T) {
	s := openStore(t)
	r := newRecord(baseComponents...)
	b, err := jsonOf(r)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(s.dir, "elsewhere"), b, 0o600))
	all, err := s.All()
	must(t, err)
	if len(all) != 1 || !reflect.DeepEqual(all[0], r) {
		t.Errorf("All = %+v, want the record filed under another name", all)
	}
}
