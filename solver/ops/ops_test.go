package ops

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/cache/record"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func keyOf(t *testing.T, op definition) record.Key {
	t.Helper()
	comps, err := op.CacheKey(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return record.NewKey(comps)
}

func TestCacheKeyComponents(t *testing.T) {
	cases := []struct {
		name string
		op   definition
		want []record.Component
	}{
		{"exec", &Exec{Args: []string{"/bin/sh", "-c", "make"}, Env: []string{"A=1"}, Cwd: "/src", User: "app", Network: "none"}, []record.Component{
			{Name: "op", Value: "exec"}, {Name: "args", Value: `["/bin/sh","-c","make"]`}, {Name: "env", Value: `["A=1"]`},
			{Name: "cwd", Value: "/src"}, {Name: "user", Value: "app"}, {Name: "network", Value: "none"},
		}},
		{"mkdir", &Mkdir{Path: "/w", User: "1000"}, []record.Component{{Name: "op", Value: "mkdir"}, {Name: "path", Value: "/w"}, {Name: "user", Value: "1000"}}},
		{"image", &Image{Ref: "busybox", Manifest: ocispec.Descriptor{Digest: "sha256:abc"}}, []record.Component{{Name: "op", Value: "image"}, {Name: "manifest", Value: "sha256:abc"}}},
		{"scratch", Scratch{}, []record.Component{{Name: "op", Value: "scratch"}}},
		{"copy from a stage", &Copy{Sources: []string{"/out"}, Dest: "/app/", Chown: "1:2", Chmod: "755"}, []record.Component{
			{Name: "op", Value: "copy"}, {Name: "sources", Value: `["/out"]`}, {Name: "dest", Value: "/app/"},
			{Name: "chown", Value: "1:2"}, {Name: "chmod", Value: "755"},
		}},
		{"add", &Copy{Sources: []string{"a.tar"}, Dest: "/", Add: true}, []record.Component{
			{Name: "op", Value: "add"}, {Name: "sources", Value: `["a.tar"]`}, {Name: "dest", Value: "/"},
			{Name: "chown", Value: ""}, {Name: "chmod", Value: ""},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.op.CacheKey(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("components\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

// The image reference is not part of the key: the manifest digest is the
// image's identity, whatever name it was found under.
func TestImageKeyIsTheManifestDigestOnly(t *testing.T) {
	a := &Image{Ref: "busybox", Manifest: ocispec.Descriptor{Digest: "sha256:abc"}}
	b := &Image{Ref: "docker.io/library/busybox:latest", Manifest: ocispec.Descriptor{Digest: "sha256:abc"}}
	c := &Image{Ref: "busybox", Manifest: ocispec.Descriptor{Digest: "sha256:def"}}
	if keyOf(t, a).Digest != keyOf(t, b).Digest {
		t.Error("the same manifest under two names has two keys")
	}
	if keyOf(t, a).Digest == keyOf(t, c).Digest {
		t.Error("two manifests share a key")
	}
}

func TestExecKeyChangesWithEveryField(t *testing.T) {
	base := Exec{Args: []string{"make"}, Env: []string{"A=1"}, Cwd: "/", User: "", Network: "host"}
	cases := []struct {
		name   string
		change func(e *Exec)
	}{
		{"args", func(e *Exec) { e.Args = []string{"make", "all"} }},
		{"args split differently", func(e *Exec) { e.Args = []string{"ma", "ke"} }},
		{"env", func(e *Exec) { e.Env = []string{"A=2"} }},
		{"cwd", func(e *Exec) { e.Cwd = "/src" }},
		{"user", func(e *Exec) { e.User = "app" }},
		{"network", func(e *Exec) { e.Network = "none" }},
	}
	want := keyOf(t, &base).Digest
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := base
			tc.change(&e)
			if keyOf(t, &e).Digest == want {
				t.Errorf("changing %s keeps the key", tc.name)
			}
		})
	}
}

// writeTree creates files (name → content) under a new dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, data := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestCopyFromContextKeyDependsOnlyOnTheFilesRead(t *testing.T) {
	cases := []struct {
		name    string
		chmod   string
		change  func(t *testing.T, dir string)
		changes bool
	}{
		{"touching a source", "", func(t *testing.T, dir string) {
			future := time.Now().Add(time.Hour)
			if err := os.Chtimes(filepath.Join(dir, "src/a.txt"), future, future); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"changing a file that is not copied", "", func(t *testing.T, dir string) {
			writeFile(t, dir, "other.txt", "changed")
		}, false},
		{"changing an excluded file inside a copied dir", "", func(t *testing.T, dir string) {
			writeFile(t, dir, "src/ignored.log", "changed")
		}, false},
		{"changing a source's content", "", func(t *testing.T, dir string) {
			writeFile(t, dir, "src/a.txt", "A")
		}, true},
		{"adding a file to a copied dir", "", func(t *testing.T, dir string) {
			writeFile(t, dir, "src/new.txt", "new")
		}, true},
		{"changing a source's mode", "", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "src/a.txt"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"changing a source's mode under --chmod", "644", func(t *testing.T, dir string) {
			if err := os.Chmod(filepath.Join(dir, "src/a.txt"), 0o600); err != nil {
				t.Fatal(err)
			}
		}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{"src/a.txt": "a", "src/ignored.log": "x", "other.txt": "o"})
			excluded := func(rel string) bool { return strings.HasSuffix(rel, ".log") }
			key := func() record.Key {
				h, err := contenthash.NewHasher(dir, "", excluded)
				if err != nil {
					t.Fatal(err)
				}
				return keyOf(t, &Copy{Context: h, Sources: []string{"src"}, Dest: "/app/", Chmod: tc.chmod})
			}
			before := key()
			tc.change(t, dir)
			after := key()
			if changed := before.Digest != after.Digest; changed != tc.changes {
				t.Errorf("key changed = %v, want %v\nbefore %v\nafter  %v", changed, tc.changes, before.Components, after.Components)
			}
		})
	}
}

func TestCopyFromContextKeyIgnoresOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	dir := writeTree(t, map[string]string{"a.txt": "a"})
	key := func() record.Key {
		h, err := contenthash.NewHasher(dir, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		return keyOf(t, &Copy{Context: h, Sources: []string{"a.txt"}, Dest: "/"})
	}
	before := key()
	if err := os.Chown(filepath.Join(dir, "a.txt"), 1234, 5678); err != nil {
		t.Fatal(err)
	}
	if after := key(); after.Digest != before.Digest {
		t.Error("a context file's owner changed the key (COPY writes root-owned files)")
	}
}

func TestCopyFromContextMissingSourceFailsTheKey(t *testing.T) {
	h, err := contenthash.NewHasher(t.TempDir(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Copy{Context: h, Sources: []string{"missing.txt"}, Dest: "/"}).CacheKey(context.Background())
	if err == nil || !strings.Contains(err.Error(), "missing.txt") {
		t.Errorf("error %v, want one naming missing.txt", err)
	}
}

func writeFile(t *testing.T, dir, name, data string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestParseChmod(t *testing.T) {
	mode := func(m os.FileMode) *os.FileMode { return &m }
	cases := []struct {
		in      string
		want    *os.FileMode
		wantErr bool
	}{
		{"", nil, false},
		{"755", mode(0o755), false},
		{"0640", mode(0o640), false},
		{"4755", mode(0o755 | os.ModeSetuid), false},
		{"2775", mode(0o775 | os.ModeSetgid), false},
		{"1777", mode(0o777 | os.ModeSticky), false},
		{"u+x", nil, true},
		{"888", nil, true},
		{"17777", nil, true},
	}
	for _, tc := range cases {
		t.Run("chmod="+tc.in, func(t *testing.T) {
			got, err := parseChmod(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				if !strings.Contains(err.Error(), "--chmod="+tc.in) {
					t.Errorf("error %q does not name the value", err)
				}
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %v, want %v", fmtMode(got), fmtMode(tc.want))
			}
		})
	}
}

func fmtMode(m *os.FileMode) string {
	if m == nil {
		return "nil"
	}
	return m.String()
}

func TestTailBufferKeepsTheLastLines(t *testing.T) {
	cases := []struct {
		name   string
		max    int
		writes []string
		want   []string
	}{
		{"nothing", 3, nil, nil},
		{"fewer than max", 3, []string{"a\nb\n"}, []string{"a", "b"}},
		{"more than max", 2, []string{"1\n2\n3\n4\n"}, []string{"3", "4"}},
		{"lines split across writes", 3, []string{"hel", "lo\nwor", "ld\n"}, []string{"hello", "world"}},
		{"unterminated last line", 2, []string{"1\n2\n3"}, []string{"2", "3"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tb := &tailBuffer{max: tc.max}
			for _, w := range tc.writes {
				if n, err := tb.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			if got := tb.lines(); !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRunErrorMessage(t *testing.T) {
	cases := []struct {
		err  *RunError
		want string
	}{
		{&RunError{Args: []string{"/bin/sh", "-c", "exit 3"}, Code: 3},
			`process "/bin/sh -c exit 3" did not complete successfully: exit code 3`},
		{&RunError{Args: []string{"make"}, Code: 2, Tail: []string{"cc: error", "make: *** [all] Error 1"}},
			"process \"make\" did not complete successfully: exit code 2\n  last output:\n    cc: error\n    make: *** [all] Error 1"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestRemoveStubRemovesOnlyEmptyMountPoints(t *testing.T) {
	dir := writeTree(t, map[string]string{"full/file": "x", "data": "content"})
	for _, name := range []string{"emptydir"} {
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, dir, "emptyfile", "")
	cases := []struct {
		name     string
		survives bool
	}{
		{"emptydir", false},
		{"emptyfile", false},
		{"full", true},
		{"data", true},
		{"absent", false},
	}
	for _, tc := range cases {
		removeStub(filepath.Join(dir, tc.name))
		_, err := os.Lstat(filepath.Join(dir, tc.name))
		if exists := err == nil; exists != tc.survives {
			t.Errorf("%s: exists after removeStub = %v, want %v", tc.name, exists, tc.survives)
		}
	}
}

func TestMkdirAllCreatesMissingDirsOwnedByTheUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("chown needs root")
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "existing"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "file", "x")
	// a symlink pointing outside the rootfs is followed inside it
	if err := os.Symlink("/outside", filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		dir       string
		created   []string // must be new dirs owned 1000:50
		untouched []string // must keep their owner and mode
		wantErr   string
	}{
		{dir: "/", untouched: nil},
		{dir: "/existing/a/b", created: []string{"existing/a", "existing/a/b"}, untouched: []string{"existing"}},
		{dir: "/link/x", created: []string{"outside", "outside/x"}},
		{dir: "/file/x", wantErr: "not a directory"},
	}
	for _, tc := range cases {
		t.Run(tc.dir, func(t *testing.T) {
			err := mkdirAll(root, tc.dir, 1000, 50)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range tc.created {
				fi, err := os.Stat(filepath.Join(root, p))
				if err != nil {
					t.Fatalf("%s: %v", p, err)
				}
				st := fi.Sys().(*syscall.Stat_t)
				if !fi.IsDir() || st.Uid != 1000 || st.Gid != 50 || fi.Mode().Perm() != 0o755 {
					t.Errorf("%s: %v owned %d:%d, want a 0755 dir owned 1000:50", p, fi.Mode(), st.Uid, st.Gid)
				}
			}
			for _, p := range tc.untouched {
				fi, err := os.Stat(filepath.Join(root, p))
				if err != nil {
					t.Fatal(err)
				}
				if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o700 {
					t.Errorf("%s: existing dir changed to %v owned %d", p, fi.Mode(), st.Uid)
				}
			}
		})
	}
	if _, err := os.Stat("/outside"); err == nil {
		t.Error("mkdirAll followed a symlink out of the rootfs")
	}
}
