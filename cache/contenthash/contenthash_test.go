package contenthash

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(path), 0o755))
	must(t, os.WriteFile(path, []byte(content), mode))
	must(t, os.Chmod(path, mode)) // not subject to the umask
}

// buildTree makes a small build context below dir.
func buildTree(t *testing.T, dir string) {
	t.Helper()
	must(t, os.Chmod(dir, 0o755))
	writeFile(t, filepath.Join(dir, "Dockerfile"), "FROM busybox\n", 0o644)
	writeFile(t, filepath.Join(dir, "src", "main.go"), "package main\n", 0o644)
	writeFile(t, filepath.Join(dir, "src", "run.sh"), "#!/bin/sh\necho hi\n", 0o755)
	writeFile(t, filepath.Join(dir, "src", "lib", "lib.go"), "package lib\n", 0o600)
	must(t, os.Mkdir(filepath.Join(dir, "empty"), 0o755))
	must(t, os.Symlink("src/run.sh", filepath.Join(dir, "link")))
	for _, d := range []string{"src", "src/lib"} {
		must(t, os.Chmod(filepath.Join(dir, d), 0o755))
	}
}

func digestOf(t *testing.T, root, rel string, opts Options) digest.Digest {
	t.Helper()
	h, err := NewHasher(root, "", nil)
	must(t, err)
	d, err := h.Digest(rel, opts)
	must(t, err)
	return d
}

func TestDigestIgnoresTimes(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root)
	h, err := NewHasher(root, t.TempDir(), nil)
	must(t, err)
	before, err := h.Digest("", Options{})
	must(t, err)

	// touch: every file and dir gets new times (what a git checkout does).
	later := time.Now().Add(time.Hour)
	must(t, filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		must(t, err)
		ts := []unix.Timespec{unix.NsecToTimespec(later.UnixNano()), unix.NsecToTimespec(later.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	}))

	if after, err := h.Digest("", Options{}); err != nil || after != before {
		t.Errorf("after touch the same hasher gives %s (%v), before %s", after, err, before)
	}
	if after := digestOf(t, root, "", Options{}); after != before {
		t.Errorf("after touch a fresh hasher gives %s, before %s", after, before)
	}
}

func TestDigestUnchangedWhenFileIsRewrittenWithSameContent(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root)
	h, err := NewHasher(root, t.TempDir(), nil)
	must(t, err)
	before, err := h.Digest("", Options{})
	must(t, err)

	p := filepath.Join(root, "src", "main.go")
	var st syscall.Stat_t
	must(t, syscall.Stat(p, &st))
	oldIno := st.Ino
	// An editor's save: write a new file and rename it over the old one.
	writeFile(t, p+".new", "package main\n", 0o644)
	must(t, os.Rename(p+".new", p))
	must(t, syscall.Stat(p, &st))
	if st.Ino == oldIno {
		t.Fatal("test setup: rewritten file kept its inode")
	}

	if after, err := h.Digest("", Options{}); err != nil || after != before {
		t.Errorf("after rewrite with same content: %s (%v), before %s", after, err, before)
	}
}

func TestDigestChanges(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   Options
		change func(t *testing.T, root string)
	}{
		{"file content", Options{}, func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "src", "main.go"), "package main // changed\n", 0o644)
		}},
		{"file content of same size in place", Options{}, func(t *testing.T, root string) {
			f, err := os.OpenFile(filepath.Join(root, "src", "main.go"), os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt([]byte("P"), 0)
			must(t, err)
			must(t, f.Close())
		}},
		{"file content with IgnoreMode and IgnoreOwner", Options{IgnoreMode: true, IgnoreOwner: true}, func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "Dockerfile"), "FROM alpine\n", 0o644)
		}},
		{"file mode", Options{}, func(t *testing.T, root string) {
			must(t, os.Chmod(filepath.Join(root, "src", "main.go"), 0o755))
		}},
		{"dir mode", Options{}, func(t *testing.T, root string) {
			must(t, os.Chmod(filepath.Join(root, "src", "lib"), 0o700))
		}},
		{"setuid bit", Options{}, func(t *testing.T, root string) {
			must(t, unix.Chmod(filepath.Join(root, "src", "run.sh"), 0o4755))
		}},
		{"symlink target", Options{}, func(t *testing.T, root string) {
			p := filepath.Join(root, "link")
			must(t, os.Remove(p))
			must(t, os.Symlink("src/main.go", p))
		}},
		{"file name", Options{}, func(t *testing.T, root string) {
			must(t, os.Rename(filepath.Join(root, "src", "main.go"), filepath.Join(root, "src", "main2.go")))
		}},
		{"file moved to another dir", Options{}, func(t *testing.T, root string) {
			must(t, os.Rename(filepath.Join(root, "src", "lib", "lib.go"), filepath.Join(root, "src", "lib.go")))
		}},
		{"file added", Options{}, func(t *testing.T, root string) {
			writeFile(t, filepath.Join(root, "src", "new.go"), "", 0o644)
		}},
		{"empty dir added", Options{}, func(t *testing.T, root string) {
			must(t, os.Mkdir(filepath.Join(root, "empty", "sub"), 0o755))
		}},
		{"empty dir removed", Options{}, func(t *testing.T, root string) {
			must(t, os.Remove(filepath.Join(root, "empty")))
		}},
		{"file removed", Options{}, func(t *testing.T, root string) {
			must(t, os.Remove(filepath.Join(root, "src", "run.sh")))
		}},
		{"file becomes symlink to same content", Options{}, func(t *testing.T, root string) {
			p := filepath.Join(root, "Dockerfile")
			writeFile(t, filepath.Join(root, "real"), "FROM busybox\n", 0o644)
			must(t, os.Remove(p))
			must(t, os.Symlink("real", p))
		}},
		{"fifo added", Options{}, func(t *testing.T, root string) {
			p := filepath.Join(root, "empty", "pipe")
			must(t, unix.Mkfifo(p, 0o644))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			buildTree(t, root)
			h, err := NewHasher(root, t.TempDir(), nil)
			must(t, err)
			before, err := h.Digest("", tc.opts)
			must(t, err)
			tc.change(t, root)
			// Both the hasher that memoized the old state and a fresh one.
			after, err := h.Digest("", tc.opts)
			must(t, err)
			if after == before {
				t.Errorf("digest unchanged (%s) by the same hasher", after)
			}
			if fresh := digestOf(t, root, "", tc.opts); fresh != after {
				t.Errorf("fresh hasher gives %s, memoizing hasher %s", fresh, after)
			}
		})
	}
}

func TestDigestIgnoresModeWithIgnoreMode(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root)
	opts := Options{IgnoreMode: true}
	before := digestOf(t, root, "", opts)
	must(t, os.Chmod(filepath.Join(root, "src", "main.go"), 0o700))
	must(t, unix.Chmod(filepath.Join(root, "src", "run.sh"), 0o4755))
	must(t, os.Chmod(filepath.Join(root, "src", "lib"), 0o700))
	if after := digestOf(t, root, "", opts); after != before {
		t.Errorf("mode change with IgnoreMode changed the digest: %s → %s", before, after)
	}
	if digestOf(t, root, "", Options{}) == digestOf(t, root, "", opts) {
		t.Error("IgnoreMode gives the same digest as hashing the modes (modes not hashed at all?)")
	}
}

func TestDigestOwner(t *testing.T) {
	testenv.RequireRoot(t)
	root := t.TempDir()
	buildTree(t, root)
	before := digestOf(t, root, "", Options{})
	beforeIgnored := digestOf(t, root, "", Options{IgnoreOwner: true})
	must(t, os.Lchown(filepath.Join(root, "src", "main.go"), 1234, 5678))
	must(t, os.Lchown(filepath.Join(root, "link"), 1234, 5678))

	if after := digestOf(t, root, "", Options{}); after == before {
		t.Error("chown did not change the digest")
	}
	if after := digestOf(t, root, "", Options{IgnoreOwner: true}); after != beforeIgnored {
		t.Errorf("chown with IgnoreOwner changed the digest: %s → %s", beforeIgnored, after)
	}
}

func TestExcludedFilesDoNotCount(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root)
	excluded := func(rel string) bool {
		return rel == "secret.txt" || strings.HasPrefix(rel, "logs/") || strings.HasSuffix(rel, ".log")
	}
	hash := func() digest.Digest {
		t.Helper()
		h, err := NewHasher(root, "", excluded)
		must(t, err)
		d, err := h.Digest("", Options{})
		must(t, err)
		return d
	}
	before := hash()

	writeFile(t, filepath.Join(root, "secret.txt"), "password", 0o600)
	writeFile(t, filepath.Join(root, "src", "debug.log"), "noise", 0o644)
	if after := hash(); after != before {
		t.Errorf("adding excluded files changed the digest: %s → %s", before, after)
	}
	writeFile(t, filepath.Join(root, "secret.txt"), "another password", 0o644)
	if after := hash(); after != before {
		t.Errorf("changing an excluded file changed the digest: %s → %s", before, after)
	}
	writeFile(t, filepath.Join(root, "src", "main.go"), "package main // changed\n", 0o644)
	if after := hash(); after == before {
		t.Error("changing an included file did not change the digest")
	}
	// The filter is exposed with the same path normalisation.
	h, err := NewHasher(root, "", excluded)
	must(t, err)
	for _, p := range []string{"secret.txt", "/secret.txt", "./secret.txt", "src/../secret.txt"} {
		if !h.IsExcluded(p) {
			t.Errorf("IsExcluded(%q) = false", p)
		}
	}
	if h.IsExcluded("src/main.go") {
		t.Error("IsExcluded(src/main.go) = true")
	}
}

func TestSameTreeAtTwoPathsHasSameDigest(t *testing.T) {
	a := filepath.Join(t.TempDir(), "ctx")
	b := filepath.Join(t.TempDir(), "somewhere", "else", "entirely")
	for _, dir := range []string{a, b} {
		must(t, os.MkdirAll(dir, 0o755))
		buildTree(t, dir)
	}
	da, db := digestOf(t, a, "", Options{}), digestOf(t, b, "", Options{})
	if da != db {
		t.Errorf("same tree at %s and %s: %s vs %s", a, b, da, db)
	}
	// Sub-paths are named relative to themselves, not to the root.
	if x, y := digestOf(t, a, "src", Options{}), digestOf(t, filepath.Join(b, "src"), "", Options{}); x != y {
		t.Errorf("src below a root (%s) and src as the root (%s) differ", x, y)
	}
}

func TestDigestCleansRelativePath(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root)
	want := digestOf(t, root, "src", Options{})
	for _, rel := range []string{"/src", "src/", "./src", "src/lib/..", "../src", "../../src/"} {
		if got := digestOf(t, root, rel, Options{}); got != want {
			t.Errorf("Digest(%q) = %s, want Digest(src) = %s", rel, got, want)
		}
	}
	if digestOf(t, root, "src/main.go", Options{}) == want {
		t.Error("a file and its directory have the same digest")
	}
}

func TestDigestOfMissingPathIsAnError(t *testing.T) {
	h, err := NewHasher(t.TempDir(), "", nil)
	must(t, err)
	if d, err := h.Digest("nope", Options{}); err == nil {
		t.Errorf("Digest of a missing path = %s", d)
	}
}

func TestDigestDoesNotFollowSymlinks(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root)
	before := digestOf(t, root, "link", Options{})
	writeFile(t, filepath.Join(root, "src", "run.sh"), "#!/bin/sh\necho changed\n", 0o755)
	if after := digestOf(t, root, "link", Options{}); after != before {
		t.Errorf("changing a symlink's target file changed the symlink's digest: %s → %s", before, after)
	}
}

func memoFiles(t *testing.T, cacheDir string) []string {
	t.Helper()
	ents, err := os.ReadDir(cacheDir)
	must(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestSaveWritesStatCacheThatAReloadedHasherUses(t *testing.T) {
	root, cacheDir := t.TempDir(), t.TempDir()
	buildTree(t, root)
	h, err := NewHasher(root, cacheDir, nil)
	must(t, err)
	want, err := h.Digest("", Options{})
	must(t, err)
	if names := memoFiles(t, cacheDir); len(names) != 0 {
		t.Errorf("stat cache written before Save: %q", names)
	}
	must(t, h.Save())
	names := memoFiles(t, cacheDir)
	if len(names) != 1 || !strings.HasSuffix(names[0], ".json") {
		t.Fatalf("after Save the cache dir holds %q, want one .json file", names)
	}
	memoPath := filepath.Join(cacheDir, names[0])
	b, err := os.ReadFile(memoPath)
	must(t, err)
	var memo map[string]statEntry
	must(t, json.Unmarshal(b, &memo))
	for _, rel := range []string{"Dockerfile", "src/main.go", "src/run.sh", "src/lib/lib.go"} {
		if memo[rel].Sum == "" {
			t.Errorf("stat cache has no sum for %s: %s", rel, b)
		}
	}

	h2, err := NewHasher(root, cacheDir, nil)
	must(t, err)
	if got, err := h2.Digest("", Options{}); err != nil || got != want {
		t.Errorf("reloaded hasher gives %s (%v), want %s", got, err, want)
	}

	// Prove the memo is what h2-like hashers read: plant a wrong sum for an
	// unchanged file; a reloaded hasher believes it (no read), ...
	e := memo["Dockerfile"]
	e.Sum = strings.Repeat("0", 64)
	memo["Dockerfile"] = e
	b, err = json.Marshal(memo)
	must(t, err)
	must(t, os.WriteFile(memoPath, b, 0o600))
	h3, err := NewHasher(root, cacheDir, nil)
	must(t, err)
	if got, err := h3.Digest("", Options{}); err != nil || got == want {
		t.Errorf("hasher with a planted memo sum gives %s (%v): the stat cache was not used", got, err)
	}
	// ... but only while the file's stat matches: touch it and the memo is
	// ignored, the file is read again and the right digest comes back.
	later := time.Now().Add(time.Minute)
	must(t, os.Chtimes(filepath.Join(root, "Dockerfile"), later, later))
	if got, err := h3.Digest("", Options{}); err != nil || got != want {
		t.Errorf("after touch the hasher gives %s (%v), want %s", got, err, want)
	}
}

func TestSaveWithoutChangesWritesNothing(t *testing.T) {
	root, cacheDir := t.TempDir(), t.TempDir()
	buildTree(t, root)
	h, err := NewHasher(root, "", nil)
	must(t, err)
	_, err = h.Digest("", Options{})
	must(t, err)
	must(t, h.Save()) // no cache dir: nothing to do, no error

	h, err = NewHasher(root, cacheDir, nil)
	must(t, err)
	must(t, h.Save()) // nothing hashed yet
	if names := memoFiles(t, cacheDir); len(names) != 0 {
		t.Errorf("Save of an unused hasher wrote %q", names)
	}
}

func TestStatCachesOfDifferentRootsDoNotMix(t *testing.T) {
	a, b, cacheDir := t.TempDir(), t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(a, "f"), "aaaa", 0o644)
	writeFile(t, filepath.Join(b, "f"), "bbbb", 0o644)
	for _, root := range []string{a, b} {
		h, err := NewHasher(root, cacheDir, nil)
		must(t, err)
		_, err = h.Digest("", Options{})
		must(t, err)
		must(t, h.Save())
	}
	if names := memoFiles(t, cacheDir); len(names) != 2 {
		t.Errorf("cache dir holds %q, want one stat cache per root", names)
	}
	for root, content := range map[string]string{a: "aaaa", b: "bbbb"} {
		h, err := NewHasher(root, cacheDir, nil)
		must(t, err)
		got, err := h.Digest("f", Options{IgnoreMode: true, IgnoreOwner: true})
		must(t, err)
		other := t.TempDir()
		writeFile(t, filepath.Join(other, "f"), content, 0o644)
		if want := digestOf(t, other, "f", Options{IgnoreMode: true, IgnoreOwner: true}); got != want {
			t.Errorf("%s/f hashed as %s, want the digest of %q %s", root, got, content, want)
		}
	}
}

func TestDamagedStatCacheIsIgnored(t *testing.T) {
	root, cacheDir := t.TempDir(), t.TempDir()
	buildTree(t, root)
	want := digestOf(t, root, "", Options{})
	h, err := NewHasher(root, cacheDir, nil)
	must(t, err)
	_, err = h.Digest("", Options{})
	must(t, err)
	must(t, h.Save())
	names := memoFiles(t, cacheDir)
	if len(names) != 1 {
		t.Fatalf("cache dir holds %q", names)
	}
	must(t, os.WriteFile(filepath.Join(cacheDir, names[0]), []byte(`{"Dockerfile":{"s":`), 0o600))
	h, err = NewHasher(root, cacheDir, nil)
	must(t, err)
	if got, err := h.Digest("", Options{}); err != nil || got != want {
		t.Errorf("with a damaged stat cache: %s (%v), want %s", got, err, want)
	}
}

func TestConcurrentDigestsAgree(t *testing.T) {
	root := t.TempDir()
	buildTree(t, root)
	for i := 0; i < 50; i++ {
		writeFile(t, filepath.Join(root, "many", string(rune('a'+i%26))+strings.Repeat("x", i)), strings.Repeat("y", i), 0o644)
	}
	want := digestOf(t, root, "", Options{})
	h, err := NewHasher(root, t.TempDir(), nil)
	must(t, err)
	var wg sync.WaitGroup
	got := make([]digest.Digest, 8)
	errs := make([]error, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = h.Digest("", Options{})
		}()
	}
	wg.Wait()
	for i := range got {
		if errs[i] != nil || got[i] != want {
			t.Errorf("goroutine %d: %s (%v), want %s", i, got[i], errs[i], want)
		}
	}
	must(t, h.Save())
}

func TestRootIsAbsolute(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	must(t, os.Mkdir("ctx", 0o755))
	h, err := NewHasher("ctx", "", nil)
	must(t, err)
	if h.Root() != filepath.Join(dir, "ctx") {
		t.Errorf("Root() = %q, want %q", h.Root(), filepath.Join(dir, "ctx"))
	}
}
