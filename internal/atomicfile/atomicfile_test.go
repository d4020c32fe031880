package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileCreatesFileWithContentAndMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	must(t, WriteFile(path, []byte("hello"), 0o640))
	got, err := os.ReadFile(path)
	must(t, err)
	if string(got) != "hello" {
		t.Errorf("content = %q, want %q", got, "hello")
	}
	fi, err := os.Stat(path)
	must(t, err)
	// The mode is set with chmod, so the umask does not apply.
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", fi.Mode().Perm())
	}
	if names := dirNames(t, filepath.Dir(path)); len(names) != 1 {
		t.Errorf("dir holds %q, want only the file", names)
	}
}

func TestWriteFileReplacesExistingFileWithNewInode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	must(t, os.WriteFile(path, []byte("a much longer old content"), 0o644))
	// A reader that opened the old file keeps seeing it whole.
	old, err := os.Open(path)
	must(t, err)
	defer old.Close()

	must(t, WriteFile(path, []byte("new"), 0o644))

	got, err := os.ReadFile(path)
	must(t, err)
	if string(got) != "new" {
		t.Errorf("content = %q, want %q", got, "new")
	}
	oldContent, err := io.ReadAll(old)
	must(t, err)
	if string(oldContent) != "a much longer old content" {
		t.Errorf("open reader of the old file sees %q", oldContent)
	}
}

func TestFailingFillLeavesOldFileUntouchedAndNoTempFile(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name   string
		exists bool
	}{
		{"existing file", true},
		{"no file yet", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tc.exists {
				must(t, os.WriteFile(path, []byte("old"), 0o600))
			}
			err := Write(path, 0o644, func(w io.Writer) error {
				if _, err := w.Write([]byte("partial new content")); err != nil {
					return err
				}
				return boom
			})
			if !errors.Is(err, boom) {
				t.Fatalf("Write error = %v, want the fill's error", err)
			}
			got, err := os.ReadFile(path)
			switch {
			case tc.exists && err != nil:
				t.Fatal(err)
			case tc.exists && string(got) != "old":
				t.Errorf("content = %q, want the old %q", got, "old")
			case !tc.exists && !os.IsNotExist(err):
				t.Errorf("file exists after a failed first write (err %v, content %q)", err, got)
			}
			want := 0
			if tc.exists {
				want = 1
			}
			if names := dirNames(t, dir); len(names) != want {
				t.Errorf("dir holds %q, want %d entries (no temp file)", names, want)
			}
		})
	}
}

func TestWriteIntoMissingDirectoryFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "f")
	if err := WriteFile(path, []byte("x"), 0o644); err == nil {
		t.Fatal("WriteFile into a missing directory succeeded")
	}
}

func TestTempFilesAreRecognisedByIsTemp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "index.json")
	var tmp string
	err := Write(path, 0o644, func(io.Writer) error {
		names := dirNames(t, dir)
		if len(names) != 1 {
			t.Fatalf("during fill dir holds %q, want one temp file", names)
		}
		tmp = names[0]
		return errors.New("stop")
	})
	if err == nil {
		t.Fatal("Write succeeded although fill failed")
	}
	if !IsTemp(tmp) || !IsTemp(filepath.Join(dir, tmp)) {
		t.Errorf("IsTemp(%q) = false for Write's own temp file", tmp)
	}
}

func TestIsTemp(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{".tmp-index.json-123", true},
		{".tmp-", true},
		{"/var/lib/kiln/content/blobs/sha256/.tmp-4711", true},
		{"index.json", false},
		{"tmp-index.json", false},
		{".tmpx", false},
		{"", false},
		// Only the base name counts, not a directory on the way.
		{"/x/.tmp-dir/index.json", false},
		{"a.tmp-b", false},
	} {
		if got := IsTemp(tc.name); got != tc.want {
			t.Errorf("IsTemp(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestErrorNamesThePathNotTheTempFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "no", "such", "dir", "x.tar")
	err := WriteFile(p, []byte("x"), 0o644)
	if err == nil || err.Error() != "create "+p+": no such file or directory" {
		t.Errorf("error %v, want one naming %s", err, p)
	}
}

func TestRenameMovesIntoPlaceAndSyncsTheDirectory(t *testing.T) {
	dir := t.TempDir()
	old, dst := filepath.Join(dir, TempPrefix+"x"), filepath.Join(dir, "sub", "x")
	if err := os.WriteFile(old, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Rename(old, dst); err == nil {
		t.Fatal("Rename into a missing directory succeeded")
	}
	if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Rename(old, dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(dst); err != nil || string(b) != "data" {
		t.Errorf("after Rename: %q, %v", b, err)
	}
	if err := SyncDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("SyncDir of a missing directory succeeded")
	}
}
