package contenthash

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/kiln-build/kiln/internal/atomicfile"
	digest "github.com/opencontainers/go-digest"
)

// A tree is the preimage of a content digest: the entry lines hashTree
// wrote, kept as a file named by the digest's hex so that a changed digest
// can be explained file by file. It is the digest's own input, so it is
// content-addressed: reading it back verifies it.

// KeepTrees makes Digest keep each digest's tree in dir (created if
// needed) unless a file of that name is already there: one stat for a
// digest seen before, one small write for a new one, never extra hashing.
// Trees are an explanation, not data a build needs: a failed write is
// ignored.
func (h *Hasher) KeepTrees(dir string) { h.treeDir = dir }

func (h *Hasher) keepTree(d digest.Digest, tree []byte) {
	p := filepath.Join(h.treeDir, d.Encoded())
	if _, err := os.Lstat(p); err == nil {
		return
	}
	if os.MkdirAll(h.treeDir, 0o700) == nil {
		atomicfile.WriteFile(p, tree, 0o600)
	}
}

// Entry is one line of a tree: a file, directory, symlink or special file
// below the digested path, as it counted in the digest.
type Entry struct {
	// Name is relative to the digested path; "" is the path itself.
	Name string `json:"name"`
	// Type is file, dir, symlink or special:<mode>.
	Type string `json:"type"`
	// Mode is the permission bits (with setuid, setgid, sticky); 0 when the
	// digest ignored modes.
	Mode uint32 `json:"mode"`
	UID  uint32 `json:"uid"`
	GID  uint32 `json:"gid"`
	// Content is a file's sha256 (hex) or a symlink's target.
	Content string `json:"content,omitempty"`
}

// ErrNoTree means no tree is kept for a digest.
var ErrNoTree = errors.New("no tree kept for this digest")

// ReadTree reads the tree of d from dir and checks that it hashes to d.
func ReadTree(dir string, d digest.Digest) ([]Entry, error) {
	if d.Validate() != nil {
		return nil, fmt.Errorf("tree %q: not a digest", d)
	}
	b, err := os.ReadFile(filepath.Join(dir, d.Encoded()))
	if os.IsNotExist(err) {
		return nil, ErrNoTree
	}
	if err != nil {
		return nil, err
	}
	if digest.SHA256.FromBytes(b) != d {
		return nil, fmt.Errorf("tree %s: damaged", d)
	}
	return ParseTree(b)
}

// ParseTree parses the lines hashTree writes:
// len:name NUL type NUL mode(octal) NUL uid:gid NUL len:content LF.
func ParseTree(b []byte) ([]Entry, error) {
	var out []Entry
	for len(b) > 0 {
		var e Entry
		var err error
		var mode, owner string
		if e.Name, b, err = counted(b); err == nil {
			if e.Type, b, err = field(b); err == nil {
				if mode, b, err = field(b); err == nil {
					owner, b, err = field(b)
				}
			}
		}
		if err == nil {
			e.Content, b, err = counted(b)
		}
		if err == nil && (len(b) == 0 || b[0] != '\n') {
			err = errors.New("missing end of line")
		}
		if err != nil {
			return nil, fmt.Errorf("tree entry %d: %w", len(out)+1, err)
		}
		b = b[1:]
		m, err := strconv.ParseUint(mode, 8, 32)
		if err != nil {
			return nil, fmt.Errorf("tree entry %q: mode %q", e.Name, mode)
		}
		e.Mode = uint32(m)
		if _, err := fmt.Sscanf(owner, "%d:%d", &e.UID, &e.GID); err != nil {
			return nil, fmt.Errorf("tree entry %q: owner %q", e.Name, owner)
		}
		out = append(out, e)
	}
	return out, nil
}

// counted reads "len:bytes" and the NUL after it, if any.
func counted(b []byte) (string, []byte, error) {
	i := bytes.IndexByte(b, ':')
	if i < 0 {
		return "", nil, errors.New("missing length")
	}
	n, err := strconv.Atoi(string(b[:i]))
	if err != nil || n < 0 || i+1+n > len(b) {
		return "", nil, fmt.Errorf("bad length %q", b[:i])
	}
	s, rest := string(b[i+1:i+1+n]), b[i+1+n:]
	if len(rest) > 0 && rest[0] == 0 {
		rest = rest[1:]
	}
	return s, rest, nil
}

// field reads up to the next NUL.
func field(b []byte) (string, []byte, error) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return "", nil, errors.New("missing field")
	}
	return string(b[:i]), b[i+1:], nil
}
