package content

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Manifests for the index tests. Tagging does not look at blobs, so these
// need not exist.
var (
	manA = manifestDesc("A")
	manB = manifestDesc("B")
	manC = manifestDesc("C")
)

func manifestDesc(s string) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString(s), Size: 100}
}

// label names the test manifests in failure messages.
func label(d digest.Digest) string {
	for _, m := range []struct {
		name string
		d    digest.Digest
	}{{"A", manA.Digest}, {"B", manB.Digest}, {"C", manC.Digest}} {
		if m.d == d {
			return m.name
		}
	}
	return string(d)
}

// entries describes index.json as sorted "name=manifest" strings, with
// "<none>" for a dangling entry.
func entries(t *testing.T, s *Store) []string {
	t.Helper()
	imgs, err := s.Images()
	must(t, err)
	var out []string
	for _, im := range imgs {
		name := im.Name
		if name == "" {
			name = "<none>"
		}
		out = append(out, name+"="+label(im.Descriptor.Digest))
	}
	sort.Strings(out)
	return out
}

// readIndexFile parses index.json as any OCI reader would.
func readIndexFile(t *testing.T, s *Store) ocispec.Index {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir(), "index.json"))
	must(t, err)
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		t.Fatalf("index.json is not valid JSON: %v\n%s", err, b)
	}
	if idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex {
		t.Errorf("index.json schemaVersion %d mediaType %q", idx.SchemaVersion, idx.MediaType)
	}
	return idx
}

type step func(*Store) error

func tag(name string, d ocispec.Descriptor) step {
	return func(s *Store) error { return s.Tag(name, d) }
}

func addUntagged(d ocispec.Descriptor) step {
	return func(s *Store) error { return s.AddUntagged(d) }
}

func untagName(name string, keepImage bool) step {
	return func(s *Store) error { return s.Untag(name, keepImage) }
}

func removeImage(d ocispec.Descriptor) step {
	return func(s *Store) error { return s.RemoveImage(d.Digest) }
}

func TestIndexUpdates(t *testing.T) {
	for _, tc := range []struct {
		name  string
		steps []step
		want  []string
	}{
		{
			name:  "TagAddsNamedEntry",
			steps: []step{tag("x", manA)},
			want:  []string{"x=A"},
		},
		{
			name:  "TagIsIdempotent",
			steps: []step{tag("x", manA), tag("x", manA)},
			want:  []string{"x=A"},
		},
		{
			name:  "TagMovesNameAndLeavesOldImageDangling",
			steps: []step{tag("x", manA), tag("x", manB)},
			want:  []string{"<none>=A", "x=B"},
		},
		{
			name:  "TagMovingTwiceLeavesEachOldImageDanglingOnce",
			steps: []step{tag("x", manA), tag("x", manB), tag("x", manC)},
			want:  []string{"<none>=A", "<none>=B", "x=C"},
		},
		{
			name:  "TagMovingBackRemovesTheDanglingEntry",
			steps: []step{tag("x", manA), tag("x", manB), tag("x", manA)},
			want:  []string{"<none>=B", "x=A"},
		},
		{
			name:  "TagOfUntaggedImageThenMoveLeavesItDanglingOnce",
			steps: []step{addUntagged(manA), tag("x", manA), tag("x", manB)},
			want:  []string{"<none>=A", "x=B"},
		},
		{
			name:  "TagMoveAfterSecondDanglingAddKeepsOneDanglingEntry",
			steps: []step{tag("x", manA), tag("x", manB), addUntagged(manA)},
			want:  []string{"<none>=A", "x=B"},
		},
		{
			name:  "TagMoveOfImageWithAnotherNameLeavesNoDanglingEntry",
			steps: []step{tag("x", manA), tag("y", manA), tag("x", manB)},
			want:  []string{"x=B", "y=A"},
		},
		{
			name:  "TagSecondNameForSameImageLeavesNoDanglingEntry",
			steps: []step{tag("x", manA), tag("y", manA)},
			want:  []string{"x=A", "y=A"},
		},
		{
			name:  "TagOfDanglingImageReplacesItsNamelessEntry",
			steps: []step{addUntagged(manA), tag("x", manA)},
			want:  []string{"x=A"},
		},
		{
			name:  "AddUntaggedAddsNamelessEntry",
			steps: []step{addUntagged(manA)},
			want:  []string{"<none>=A"},
		},
		{
			name:  "AddUntaggedTwiceAddsOneEntry",
			steps: []step{addUntagged(manA), addUntagged(manA)},
			want:  []string{"<none>=A"},
		},
		{
			name:  "AddUntaggedOfTaggedImageChangesNothing",
			steps: []step{tag("x", manA), addUntagged(manA)},
			want:  []string{"x=A"},
		},
		{
			name:  "UntagKeepingImageLeavesItDangling",
			steps: []step{tag("x", manA), untagName("x", true)},
			want:  []string{"<none>=A"},
		},
		{
			name:  "UntagWithoutKeepingImageRemovesLastEntry",
			steps: []step{tag("x", manA), untagName("x", false)},
			want:  nil,
		},
		{
			name:  "UntagOfOneOfTwoNamesKeepsTheOther",
			steps: []step{tag("x", manA), tag("y", manA), untagName("x", false)},
			want:  []string{"y=A"},
		},
		{
			name:  "UntagKeepingImageOfOneOfTwoNamesLeavesNoDanglingEntry",
			steps: []step{tag("x", manA), tag("y", manA), untagName("x", true)},
			want:  []string{"y=A"},
		},
		{
			name:  "UntagLeavesOtherImagesAlone",
			steps: []step{tag("x", manA), tag("y", manB), addUntagged(manC), untagName("x", false)},
			want:  []string{"<none>=C", "y=B"},
		},
		{
			name:  "RemoveImageDropsEveryEntryOfTheManifest",
			steps: []step{tag("x", manA), tag("y", manA), tag("z", manB), removeImage(manA)},
			want:  []string{"z=B"},
		},
		{
			name:  "RemoveImageDropsDanglingEntry",
			steps: []step{tag("x", manA), tag("x", manB), removeImage(manA)},
			want:  []string{"x=B"},
		},
		{
			name:  "RemoveImageOfUnknownManifestChangesNothing",
			steps: []step{tag("x", manA), removeImage(manC)},
			want:  []string{"x=A"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			for i, st := range tc.steps {
				if err := st(s); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				readIndexFile(t, s) // valid after every update
			}
			if got := entries(t, s); fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("index = %q, want %q", got, tc.want)
			}
			assertNoTempFiles(t, s)
		})
	}
}

func TestUntagOfUnknownNameIsErrNotFound(t *testing.T) {
	for _, keepImage := range []bool{false, true} {
		t.Run(fmt.Sprint("keepImage=", keepImage), func(t *testing.T) {
			s := openStore(t)
			must(t, s.Tag("x", manA))
			if err := s.Untag("y", keepImage); !errors.Is(err, ErrNotFound) {
				t.Errorf("Untag of an unknown name = %v, want ErrNotFound", err)
			}
			if got := entries(t, s); fmt.Sprint(got) != "[x=A]" {
				t.Errorf("index = %q, want [x=A]", got)
			}
		})
	}
}

func TestTagAnnotatesNameAndRefName(t *testing.T) {
	for _, tc := range []struct {
		name, ref string
	}{
		{"docker.io/library/app:1.0", "1.0"},
		{"localhost:5000/x/y:1", "1"},
		{"localhost:5000/x/y", "latest"},
		{"docker.io/library/app", "latest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t)
			must(t, s.Tag(tc.name, manA))
			idx := readIndexFile(t, s)
			if len(idx.Manifests) != 1 {
				t.Fatalf("index has %d entries", len(idx.Manifests))
			}
			ann := idx.Manifests[0].Annotations
			if ann[AnnotationImageName] != tc.name || ann[AnnotationRefName] != tc.ref {
				t.Errorf("annotations = %v, want name %q and ref %q", ann, tc.name, tc.ref)
			}
			if idx.Manifests[0].Digest != manA.Digest || idx.Manifests[0].MediaType != manA.MediaType {
				t.Errorf("entry = %+v, want the tagged descriptor", idx.Manifests[0])
			}
		})
	}
}

func TestTagDoesNotKeepCallersAnnotations(t *testing.T) {
	s := openStore(t)
	d := manA
	d.Annotations = map[string]string{AnnotationImageName: "other", "k": "v"}
	must(t, s.Tag("x", d))
	if got := entries(t, s); fmt.Sprint(got) != "[x=A]" {
		t.Errorf("index = %q, want [x=A]", got)
	}
	if d.Annotations[AnnotationImageName] != "other" {
		t.Error("Tag changed the caller's descriptor annotations")
	}
}

func TestResolve(t *testing.T) {
	s := openStore(t)
	if _, err := s.Resolve("x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve in an empty store = %v, want ErrNotFound", err)
	}
	must(t, s.Tag("x", manA))
	must(t, s.AddUntagged(manB))
	d, err := s.Resolve("x")
	must(t, err)
	if d.Digest != manA.Digest {
		t.Errorf("Resolve(x) = %s, want A", label(d.Digest))
	}
	if _, err := s.Resolve("y"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve of an unknown name = %v, want ErrNotFound", err)
	}
}

func TestConcurrentTagsAreAllKept(t *testing.T) {
	const writers, tagsEach = 8, 10
	dir := openStore(t).Dir()
	var wg sync.WaitGroup
	errs := make(chan error, writers*tagsEach)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine has its own Store, as separate processes would.
			s, err := Open(dir)
			if err != nil {
				errs <- err
				return
			}
			for i := 0; i < tagsEach; i++ {
				if err := s.Tag(fmt.Sprintf("w%d-%d", w, i), manifestDesc(fmt.Sprint(w))); err != nil {
					errs <- err
				}
			}
		}()
	}
	// Readers take no lock and must never see a partial index.
	stop := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		s, err := Open(dir)
		if err != nil {
			errs <- err
			return
		}
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Images(); err != nil {
				errs <- fmt.Errorf("reader: %w", err)
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-readerDone
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	s, err := Open(dir)
	must(t, err)
	imgs, err := s.Images()
	must(t, err)
	names := map[string]digest.Digest{}
	for _, im := range imgs {
		names[im.Name] = im.Descriptor.Digest
	}
	if len(imgs) != writers*tagsEach {
		t.Errorf("index has %d entries, want %d", len(imgs), writers*tagsEach)
	}
	for w := 0; w < writers; w++ {
		for i := 0; i < tagsEach; i++ {
			n := fmt.Sprintf("w%d-%d", w, i)
			if names[n] != digest.FromString(fmt.Sprint(w)) {
				t.Errorf("tag %s missing or wrong (%q)", n, names[n])
			}
		}
	}
	readIndexFile(t, s)
	assertNoTempFiles(t, s)
}

func TestConcurrentTagOfEightNamesKeepsAllEight(t *testing.T) {
	s := openStore(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Tag(fmt.Sprintf("name%d", i), manA)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Tag name%d: %v", i, err)
		}
	}
	got := entries(t, s)
	want := []string{"name0=A", "name1=A", "name2=A", "name3=A", "name4=A", "name5=A", "name6=A", "name7=A"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("index = %q, want %q", got, want)
	}
}

func TestImagesOfDamagedIndexIsAnError(t *testing.T) {
	s := openStore(t)
	must(t, os.WriteFile(filepath.Join(s.Dir(), "index.json"), []byte(`{"manifests": [`), 0o644))
	if _, err := s.Images(); err == nil {
		t.Error("Images of a truncated index.json succeeded")
	}
	// An update must not turn a damaged index into an empty one.
	if err := s.Tag("x", manA); err == nil {
		t.Error("Tag over a truncated index.json succeeded (tags would be lost)")
	}
}

func TestRecordRepoDigestAnnotatesOnlyANameOfThatManifest(t *testing.T) {
	s := openStore(t)
	must(t, s.Tag("docker.io/library/app:1", manA))
	must(t, s.Tag("docker.io/library/other:1", manB))
	const rd = "registry.example/app@sha256:0123"
	must(t, s.RecordRepoDigest("app:1", manA.Digest, rd))
	must(t, s.RecordRepoDigest("other:1", manA.Digest, rd)) // names B: untouched
	must(t, s.RecordRepoDigest("missing:1", manA.Digest, rd))
	must(t, s.RecordRepoDigest("NOT A NAME", manA.Digest, rd))
	imgs, err := s.Images()
	must(t, err)
	if len(imgs) != 2 {
		t.Fatalf("index = %d entries, want 2", len(imgs))
	}
	for _, im := range imgs {
		got := im.Descriptor.Annotations[AnnotationRepoDigest]
		want := ""
		if im.Name == "docker.io/library/app:1" {
			want = rd
		}
		if got != want || im.Descriptor.Digest != map[string]digest.Digest{"docker.io/library/app:1": manA.Digest, "docker.io/library/other:1": manB.Digest}[im.Name] {
			t.Errorf("%s → %s, repo digest %q; want %q", im.Name, label(im.Descriptor.Digest), got, want)
		}
	}
}
