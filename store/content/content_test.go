package content

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-build/kiln/internal/atomicfile"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "content"))
	must(t, err)
	return s
}

// blobsDir lists the names in blobs/sha256, temp files included.
func blobsDir(t *testing.T, s *Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Dir(), "blobs", "sha256"))
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func assertNoTempFiles(t *testing.T, s *Store) {
	t.Helper()
	for _, dir := range []string{s.Dir(), filepath.Join(s.Dir(), "blobs", "sha256")} {
		ents, err := os.ReadDir(dir)
		must(t, err)
		for _, e := range ents {
			if atomicfile.IsTemp(e.Name()) {
				t.Errorf("temp file %s left in %s", e.Name(), dir)
			}
		}
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	must(t, err)
	return fi.Sys().(*syscall.Stat_t).Ino
}

// failingReader fails the test if anything reads it.
type failingReader struct{ t *testing.T }

func (r failingReader) Read([]byte) (int, error) {
	r.t.Error("reader was read")
	return 0, errors.New("must not be read")
}

func TestOpenCreatesAnOCILayout(t *testing.T) {
	s := openStore(t)

	b, err := os.ReadFile(filepath.Join(s.Dir(), "oci-layout"))
	must(t, err)
	var layout ocispec.ImageLayout
	must(t, json.Unmarshal(b, &layout))
	if layout.Version != ocispec.ImageLayoutVersion {
		t.Errorf("oci-layout version = %q, want %q", layout.Version, ocispec.ImageLayoutVersion)
	}

	idx := readIndexFile(t, s)
	if len(idx.Manifests) != 0 {
		t.Errorf("new index has %d manifests", len(idx.Manifests))
	}
	// "manifests": [] rather than null: some readers insist on an array.
	raw, err := os.ReadFile(filepath.Join(s.Dir(), "index.json"))
	must(t, err)
	if !bytes.Contains(raw, []byte(`"manifests": []`)) {
		t.Errorf("index.json has no empty manifests array:\n%s", raw)
	}
	if fi, err := os.Stat(filepath.Join(s.Dir(), "blobs", "sha256")); err != nil || !fi.IsDir() {
		t.Errorf("blobs/sha256 is not a directory: %v", err)
	}
}

func TestReopenKeepsTagsAndBlobs(t *testing.T) {
	s := openStore(t)
	desc, err := s.Write(context.Background(), strings.NewReader("blob"), "")
	must(t, err)
	must(t, s.Tag("docker.io/library/app:latest", desc))

	s2, err := Open(s.Dir())
	must(t, err)
	got, err := s2.Resolve("docker.io/library/app:latest")
	must(t, err)
	if got.Digest != desc.Digest {
		t.Errorf("after reopen the tag points at %s, want %s", got.Digest, desc.Digest)
	}
	if _, ok := s2.Has(desc.Digest); !ok {
		t.Error("blob gone after reopen")
	}
}

func TestWriterCommitStoresBlobUnderItsDigest(t *testing.T) {
	s := openStore(t)
	data := []byte("some layer bytes")
	want := digest.FromBytes(data)

	w, err := s.NewWriter()
	must(t, err)
	// Written in pieces, as a streaming tar writer would.
	for _, p := range [][]byte{data[:4], data[4:9], data[9:]} {
		_, err := w.Write(p)
		must(t, err)
	}
	if w.Digest() != want {
		t.Errorf("Digest() before commit = %s, want %s", w.Digest(), want)
	}
	desc, err := w.Commit(want, int64(len(data)))
	must(t, err)
	if desc.Digest != want || desc.Size != int64(len(data)) {
		t.Errorf("Commit = %s/%d, want %s/%d", desc.Digest, desc.Size, want, len(data))
	}
	got, err := os.ReadFile(s.BlobPath(want))
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Errorf("blob content = %q, want %q", got, data)
	}
	fi, err := os.Stat(s.BlobPath(want))
	must(t, err)
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("blob mode = %v, want read-only 0444", fi.Mode().Perm())
	}
	if size, ok := s.Has(want); !ok || size != int64(len(data)) {
		t.Errorf("Has = %d, %v", size, ok)
	}
	if names := blobsDir(t, s); len(names) != 1 || names[0] != want.Encoded() {
		t.Errorf("blobs dir holds %q, want only %s", names, want.Encoded())
	}
	// Closing after a commit must not remove the committed blob.
	must(t, w.Close())
	if _, ok := s.Has(want); !ok {
		t.Error("Close after Commit removed the blob")
	}
}

func TestWriterCommitRejectsDigestMismatch(t *testing.T) {
	s := openStore(t)
	w, err := s.NewWriter()
	must(t, err)
	_, err = w.Write([]byte("actual"))
	must(t, err)
	expected := digest.FromString("expected")
	if _, err := w.Commit(expected, UnknownSize); err == nil {
		t.Fatal("Commit with a wrong expected digest succeeded")
	}
	for _, d := range []digest.Digest{expected, digest.FromString("actual")} {
		if _, ok := s.Has(d); ok {
			t.Errorf("blob %s exists after a failed commit", d)
		}
	}
	if names := blobsDir(t, s); len(names) != 0 {
		t.Errorf("blobs dir holds %q after a failed commit, want nothing", names)
	}
}

func TestWriterCommitRejectsSizeMismatch(t *testing.T) {
	s := openStore(t)
	for _, size := range []int64{0, 5, 7} { // "actual" is 6 bytes
		w, err := s.NewWriter()
		must(t, err)
		_, err = w.Write([]byte("actual"))
		must(t, err)
		_, err = w.Commit(digest.FromString("actual"), size)
		if err == nil || !strings.Contains(err.Error(), "size mismatch") {
			t.Errorf("Commit of 6 bytes expecting %d: %v, want a size mismatch", size, err)
		}
	}
	if names := blobsDir(t, s); len(names) != 0 {
		t.Errorf("blobs dir holds %q after failed commits, want nothing", names)
	}
}

func TestWriteSizedRefusesABlobOfAnotherSize(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	d := digest.FromString("config")
	if _, err := s.WriteSized(ctx, strings.NewReader("config"), d, 7); err == nil || !strings.Contains(err.Error(), "size mismatch") {
		t.Errorf("WriteSized of 6 bytes said to be 7: %v, want a size mismatch", err)
	}
	if _, ok := s.Has(d); ok {
		t.Error("the refused blob is in the store")
	}
	desc, err := s.WriteSized(ctx, strings.NewReader("config"), d, 6)
	if err != nil || desc.Digest != d || desc.Size != 6 {
		t.Fatalf("WriteSized with the right size = %v, %v", desc, err)
	}
	// Present already: the size still has to agree.
	if _, err := s.WriteSized(ctx, strings.NewReader("config"), d, 5); err == nil {
		t.Error("WriteSized of a stored blob with a wrong size succeeded")
	}
}

func TestWriterCloseAbandonsIngest(t *testing.T) {
	s := openStore(t)
	w, err := s.NewWriter()
	must(t, err)
	_, err = w.Write([]byte("half"))
	must(t, err)
	if names := blobsDir(t, s); len(names) != 1 || !atomicfile.IsTemp(names[0]) {
		t.Fatalf("during ingest blobs dir holds %q, want one temp file", names)
	}
	must(t, w.Close())
	if names := blobsDir(t, s); len(names) != 0 {
		t.Errorf("blobs dir holds %q after Close, want nothing", names)
	}
	if _, err := w.Commit("", UnknownSize); err == nil {
		t.Error("Commit after Close succeeded")
	}
}

func TestWriteOfAnExistingBlobIsANoop(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	desc, err := s.Write(ctx, strings.NewReader("hello"), "")
	must(t, err)
	ino := inode(t, s.BlobPath(desc.Digest))

	again, err := s.Write(ctx, failingReader{t}, desc.Digest)
	must(t, err)
	if again.Digest != desc.Digest || again.Size != desc.Size {
		t.Errorf("second Write = %s/%d, want %s/%d", again.Digest, again.Size, desc.Digest, desc.Size)
	}
	if inode(t, s.BlobPath(desc.Digest)) != ino {
		t.Error("second Write replaced the blob file")
	}
	assertNoTempFiles(t, s)
}

func TestWriteVerifiesExpectedDigest(t *testing.T) {
	s := openStore(t)
	wrong := digest.FromString("something else")
	if _, err := s.Write(context.Background(), strings.NewReader("hello"), wrong); err == nil {
		t.Fatal("Write with a wrong expected digest succeeded")
	}
	if names := blobsDir(t, s); len(names) != 0 {
		t.Errorf("blobs dir holds %q, want nothing", names)
	}
}

func TestWriteStopsWhenContextIsCancelled(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Write(ctx, strings.NewReader("hello"), "")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Write with a cancelled context = %v, want context.Canceled", err)
	}
	if names := blobsDir(t, s); len(names) != 0 {
		t.Errorf("blobs dir holds %q, want nothing", names)
	}
}

func TestReadBlobDetectsCorruptedBlob(t *testing.T) {
	s := openStore(t)
	desc, err := s.Write(context.Background(), strings.NewReader(`{"a":1}`), "")
	must(t, err)
	got, err := s.ReadBlob(desc.Digest)
	must(t, err)
	if string(got) != `{"a":1}` {
		t.Fatalf("ReadBlob = %q", got)
	}

	p := s.BlobPath(desc.Digest)
	must(t, os.Chmod(p, 0o644))
	must(t, os.WriteFile(p, []byte(`{"a":2}`), 0o644))
	if b, err := s.ReadBlob(desc.Digest); err == nil {
		t.Errorf("ReadBlob of a corrupted blob returned %q and no error", b)
	}
}

func TestReadBlobErrors(t *testing.T) {
	s := openStore(t)
	if _, err := s.ReadBlob(digest.FromString("missing")); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadBlob of a missing blob = %v, want ErrNotFound", err)
	}
	// An invalid digest must not become a path (e.g. "sha256:../../x").
	for _, d := range []digest.Digest{"", "sha256:../../../etc/passwd", "sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e"} {
		if _, err := s.ReadBlob(d); err == nil {
			t.Errorf("ReadBlob(%q) succeeded", d)
		}
	}
}

func TestWriteJSONIsContentAddressedAndIdempotent(t *testing.T) {
	s := openStore(t)
	v := map[string]any{"b": 1, "a": []string{"x"}}
	desc, b, err := s.WriteJSON(v, ocispec.MediaTypeImageConfig)
	must(t, err)
	if desc.Digest != digest.FromBytes(b) || desc.Size != int64(len(b)) || desc.MediaType != ocispec.MediaTypeImageConfig {
		t.Errorf("WriteJSON descriptor %+v does not describe %q", desc, b)
	}
	stored, err := s.ReadBlob(desc.Digest)
	must(t, err)
	if !bytes.Equal(stored, b) {
		t.Errorf("stored %q, returned %q", stored, b)
	}
	ino := inode(t, s.BlobPath(desc.Digest))
	desc2, _, err := s.WriteJSON(v, ocispec.MediaTypeImageConfig)
	must(t, err)
	if desc2.Digest != desc.Digest {
		t.Errorf("same value gave %s then %s", desc.Digest, desc2.Digest)
	}
	if inode(t, s.BlobPath(desc.Digest)) != ino {
		t.Error("second WriteJSON replaced the blob file")
	}
	assertNoTempFiles(t, s)
}

func TestBlobsListsCommittedBlobsOnlyAndDeleteRemovesThem(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	a, err := s.Write(ctx, strings.NewReader("a"), "")
	must(t, err)
	b, err := s.Write(ctx, strings.NewReader("b"), "")
	must(t, err)
	// An ingest in progress (or left by a crash) is not a blob.
	w, err := s.NewWriter()
	must(t, err)
	defer w.Close()

	list, err := s.Blobs()
	must(t, err)
	if len(list) != 2 || !containsDigest(list, a.Digest) || !containsDigest(list, b.Digest) {
		t.Errorf("Blobs = %v, want %s and %s", list, a.Digest, b.Digest)
	}

	must(t, s.Delete(a.Digest))
	if _, ok := s.Has(a.Digest); ok {
		t.Error("blob still there after Delete")
	}
	must(t, s.Delete(a.Digest)) // deleting a missing blob is fine
	list, err = s.Blobs()
	must(t, err)
	if len(list) != 1 || list[0] != b.Digest {
		t.Errorf("Blobs after Delete = %v, want [%s]", list, b.Digest)
	}
}

func containsDigest(list []digest.Digest, d digest.Digest) bool {
	for _, x := range list {
		if x == d {
			return true
		}
	}
	return false
}

func TestOpenOfMissingBlobIsErrNotFound(t *testing.T) {
	s := openStore(t)
	f, err := s.Open(digest.FromString("nope"))
	if !errors.Is(err, ErrNotFound) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("Open of a missing blob = %v, want ErrNotFound", err)
	}
	desc, err := s.Write(context.Background(), strings.NewReader("yes"), "")
	must(t, err)
	f, err = s.Open(desc.Digest)
	must(t, err)
	defer f.Close()
	b, err := io.ReadAll(f)
	must(t, err)
	if string(b) != "yes" {
		t.Errorf("Open read %q, want %q", b, "yes")
	}
}

func TestTarContentSizeCountsLikeDocker(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "dir/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "dir/file", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3},
		{Name: "dir/big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5000},
		{Name: "dir/hard", Typeflag: tar.TypeLink, Linkname: "dir/big"},
		{Name: "link", Typeflag: tar.TypeSymlink, Linkname: "dir/file"},
		{Name: "dir/.wh.gone", Typeflag: tar.TypeReg, Mode: 0o600},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(bytes.Repeat([]byte("x"), int(h.Size)))
	}
	tw.Close()
	// 3 + 5000 file bytes, the hard link once, 8 bytes of symlink target
	if n, err := TarContentSize(bytes.NewReader(buf.Bytes())); err != nil || n != 5011 {
		t.Errorf("TarContentSize = %d, %v; want 5011 (the tar is %d bytes)", n, err, buf.Len())
	}
	if _, err := TarContentSize(bytes.NewReader(buf.Bytes()[:700])); err == nil {
		t.Error("a cut tar gave no error")
	}
}
