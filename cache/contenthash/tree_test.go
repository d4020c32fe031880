package contenthash

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

func TestKeptTreeListsEveryEntryOfTheDigest(t *testing.T) {
	dir, trees := t.TempDir(), t.TempDir()
	buildTree(t, dir)
	must(t, os.Symlink("src/main.go", filepath.Join(dir, "link2")))
	h, err := NewHasher(dir, "", nil)
	must(t, err)
	h.KeepTrees(trees)
	d, err := h.Digest(".", Options{})
	must(t, err)
	es, err := ReadTree(trees, d)
	must(t, err)
	byName := map[string]Entry{}
	for _, e := range es {
		byName[e.Name] = e
	}
	if e := byName["src/run.sh"]; e.Type != "file" || e.Mode != 0o755 || len(e.Content) != 64 {
		t.Errorf("src/run.sh: %+v", e)
	}
	if e := byName["link2"]; e.Type != "symlink" || e.Content != "src/main.go" {
		t.Errorf("link2: %+v", e)
	}
	if e, ok := byName[""]; !ok || e.Type != "dir" {
		t.Errorf("root entry: %+v", e)
	}
	if e := byName["empty"]; e.Type != "dir" {
		t.Errorf("empty: %+v", e)
	}
}

// keptSrc hashes src of a fresh context with trees kept.
func keptSrc(t *testing.T) (*Hasher, string, digest.Digest) {
	t.Helper()
	dir, trees := t.TempDir(), t.TempDir()
	buildTree(t, dir)
	h, err := NewHasher(dir, "", nil)
	must(t, err)
	h.KeepTrees(trees)
	d, err := h.Digest("src", Options{})
	must(t, err)
	return h, trees, d
}

func TestKeptTreeIsWrittenOnceAndOnlyStatted(t *testing.T) {
	h, trees, d := keptSrc(t)
	p := filepath.Join(trees, d.Encoded())
	old := time.Unix(1000, 0)
	must(t, os.Chtimes(p, old, old))
	if _, err := h.Digest("src", Options{}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	must(t, err)
	if !fi.ModTime().Equal(old) {
		t.Errorf("the tree of a digest seen before was rewritten")
	}
}

func TestReadTreeRejectsDamageAndSaysWhenMissing(t *testing.T) {
	_, trees, d := keptSrc(t)
	must(t, os.WriteFile(filepath.Join(trees, d.Encoded()), []byte("1:x\x00file\x00644\x000:0\x000:\n"), 0o600))
	if _, err := ReadTree(trees, d); err == nil {
		t.Error("a damaged tree was read")
	}
	must(t, os.Remove(filepath.Join(trees, d.Encoded())))
	if _, err := ReadTree(trees, d); err != ErrNoTree {
		t.Errorf("missing tree: %v", err)
	}
}

func TestParseTreeRejectsTruncatedLines(t *testing.T) {
	for _, b := range []string{"3:ab", "1:a\x00file", "1:a\x00file\x00xx\x000:0\x000:\n", "1:a\x00file\x00644\x000:0\x000:"} {
		if _, err := ParseTree([]byte(b)); err == nil {
			t.Errorf("%q parsed", b)
		}
	}
}
