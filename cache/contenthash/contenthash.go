// Package contenthash computes content digests of files in a build context:
// a merkle hash over each entry's relative path, type, mode, owner, content
// sha256 and link target — never mtimes or inode numbers — so that two
// machines with the same files compute the same digest. A stat cache
// (size, mtime, ctime, inode → sha256) only avoids re-reading files that did
// not change; it never defines a digest.
package contenthash

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"

	"github.com/kiln-build/kiln/internal/atomicfile"
	digest "github.com/opencontainers/go-digest"
)

// Options select which metadata is part of a digest. COPY --chmod makes the
// source mode irrelevant, and COPY from a context always writes root-owned
// files, so the caller leaves out what cannot change the result.
type Options struct {
	IgnoreMode  bool
	IgnoreOwner bool
	// Exclude, if set, leaves out more paths (COPY --exclude) on top of the
	// hasher's own filter.
	Exclude Excluder
}

// Excluder reports whether a context-relative path is excluded (.dockerignore).
type Excluder func(rel string) bool

// Hasher hashes files below root.
type Hasher struct {
	root     string
	excluded Excluder
	memoPath string
	treeDir  string

	mu    sync.Mutex
	memo  map[string]statEntry
	dirty bool
}

type statEntry struct {
	Size  int64  `json:"s"`
	Mtime int64  `json:"m"`
	Ctime int64  `json:"c"`
	Ino   uint64 `json:"i"`
	Sum   string `json:"d"`
}

// NewHasher returns a hasher for root whose stat cache lives in cacheDir
// (one file per context directory). excluded may be nil.
func NewHasher(root, cacheDir string, excluded Excluder) (*Hasher, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if excluded == nil {
		excluded = func(string) bool { return false }
	}
	h := &Hasher{root: abs, excluded: excluded, memo: map[string]statEntry{}}
	if cacheDir != "" {
		sum := sha256.Sum256([]byte(abs))
		h.memoPath = filepath.Join(cacheDir, hex.EncodeToString(sum[:8])+".json")
		if b, err := os.ReadFile(h.memoPath); err == nil {
			json.Unmarshal(b, &h.memo) // a damaged memo is just empty
		}
	}
	return h, nil
}

// Save writes the stat cache back if it changed.
func (h *Hasher) Save() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.memoPath == "" || !h.dirty {
		return nil
	}
	b, err := json.Marshal(h.memo)
	if err != nil {
		return err
	}
	h.dirty = false
	return atomicfile.WriteFile(h.memoPath, b, 0o600)
}

// Digest returns the digest of rel (a file, symlink or directory, taken
// recursively, without following symlinks) relative to the root.
func (h *Hasher) Digest(rel string, opts Options) (digest.Digest, error) {
	rel = filepath.Clean("/" + rel)[1:]
	hs := sha256.New()
	var w io.Writer = hs
	var tree bytes.Buffer
	if h.treeDir != "" {
		w = io.MultiWriter(hs, &tree)
	}
	if err := h.hashTree(w, rel, "", opts); err != nil {
		return "", err
	}
	d := digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(hs.Sum(nil)))
	if h.treeDir != "" {
		h.keepTree(d, tree.Bytes())
	}
	return d, nil
}

// hashTree writes one record per entry below rel, named relative to rel.
func (h *Hasher) hashTree(w io.Writer, rel, name string, opts Options) error {
	abs := filepath.Join(h.root, rel)
	fi, err := os.Lstat(abs)
	if err != nil {
		return err
	}
	st := fi.Sys().(*syscall.Stat_t)
	mode := uint32(0)
	if !opts.IgnoreMode {
		mode = uint32(fi.Mode().Perm() | fi.Mode()&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky))
	}
	uid, gid := st.Uid, st.Gid
	if opts.IgnoreOwner {
		uid, gid = 0, 0
	}
	head := func(kind, extra string) {
		fmt.Fprintf(w, "%d:%s\x00%s\x00%o\x00%d:%d\x00%d:%s\n", len(name), name, kind, mode, uid, gid, len(extra), extra)
	}
	switch {
	case fi.Mode().IsRegular():
		sum, err := h.fileSum(rel, abs, fi, st)
		if err != nil {
			return err
		}
		head("file", sum)
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(abs)
		if err != nil {
			return err
		}
		head("symlink", target)
	case fi.IsDir():
		head("dir", "")
		ents, err := os.ReadDir(abs)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(ents))
		for _, e := range ents {
			child := filepath.Join(rel, e.Name())
			if e.IsDir() || !h.excluded(child) && (opts.Exclude == nil || !opts.Exclude(child)) {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			if err := h.hashTree(w, filepath.Join(rel, n), pathJoin(name, n), opts); err != nil {
				return err
			}
		}
	default:
		head(fmt.Sprintf("special:%o", fi.Mode().Type()), "")
	}
	return nil
}

func pathJoin(a, b string) string {
	if a == "" {
		return b
	}
	return a + "/" + b
}

func (h *Hasher) fileSum(rel, abs string, fi os.FileInfo, st *syscall.Stat_t) (string, error) {
	cur := statEntry{Size: fi.Size(), Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Ino: st.Ino}
	h.mu.Lock()
	old, ok := h.memo[rel]
	h.mu.Unlock()
	if ok && old.Size == cur.Size && old.Mtime == cur.Mtime && old.Ctime == cur.Ctime && old.Ino == cur.Ino {
		return old.Sum, nil
	}
	f, err := os.Open(abs)
	if err != nil {
		return "", err
	}
	defer f.Close()
	hs := sha256.New()
	if _, err := io.Copy(hs, f); err != nil {
		return "", fmt.Errorf("read %s: %w", rel, err)
	}
	cur.Sum = hex.EncodeToString(hs.Sum(nil))
	h.mu.Lock()
	h.memo[rel] = cur
	h.dirty = true
	h.mu.Unlock()
	return cur.Sum, nil
}

// IsExcluded exposes the hasher's filter to callers that walk the same tree.
func (h *Hasher) IsExcluded(rel string) bool {
	return h.excluded(strings.TrimPrefix(filepath.Clean("/"+rel), "/"))
}

// Root is the directory being hashed.
func (h *Hasher) Root() string { return h.root }
