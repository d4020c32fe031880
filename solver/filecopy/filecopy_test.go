package filecopy

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/moby/patternmatcher"
	"github.com/ulikunitz/xz"
	"golang.org/x/sys/unix"
)

// tree describes files to create: a key ending in "/" is a directory,
// anything else a file with the value as content.
type tree map[string]string

func build(t *testing.T, root string, tr tree) {
	t.Helper()
	for p, content := range tr {
		full := filepath.Join(root, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// roots makes a source root and a destination root with the given trees.
func roots(t *testing.T, src, dst tree) (string, string) {
	t.Helper()
	base := t.TempDir()
	srcRoot := filepath.Join(base, "src")
	dstRoot := filepath.Join(base, "dst")
	for _, d := range []string{srcRoot, dstRoot} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build(t, srcRoot, src)
	build(t, dstRoot, dst)
	return srcRoot, dstRoot
}

// check verifies that each want entry exists: "/"-suffixed keys as
// directories, others as regular files with that content.
func check(t *testing.T, root string, want tree, absent []string) {
	t.Helper()
	for p, content := range want {
		full := filepath.Join(root, p)
		fi, err := os.Lstat(full)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if strings.HasSuffix(p, "/") {
			if !fi.IsDir() {
				t.Errorf("%s: want directory, got %v", p, fi.Mode())
			}
			continue
		}
		if !fi.Mode().IsRegular() {
			t.Errorf("%s: want regular file, got %v", p, fi.Mode())
			continue
		}
		got, err := os.ReadFile(full)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != content {
			t.Errorf("%s: content %q, want %q", p, got, content)
		}
	}
	for _, p := range absent {
		if _, err := os.Lstat(filepath.Join(root, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: should not exist (err=%v)", p, err)
		}
	}
}

func stat(t *testing.T, p string) *syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return &st
}

func wantOwnerMode(t *testing.T, p string, uid, gid int, perm uint32) {
	t.Helper()
	st := stat(t, p)
	if int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", p, st.Uid, st.Gid, uid, gid)
	}
	if got := st.Mode & 0o7777; got != perm {
		t.Errorf("%s: mode %#o, want %#o", p, got, perm)
	}
}

func excluder(t *testing.T, patterns ...string) func(string) bool {
	t.Helper()
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	return func(rel string) bool {
		m, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

func TestCopyLayout(t *testing.T) {
	testenv.RequireRoot(t)
	tests := []struct {
		name    string
		src     tree
		dst     tree
		sources []string
		dest    string
		want    tree
		absent  []string
		wantErr string
	}{
		{
			name:    "directory contents are copied into the destination",
			src:     tree{"dir/a.txt": "a", "dir/sub/b.txt": "b", "dir/empty/": ""},
			sources: []string{"dir"},
			dest:    "/app",
			want:    tree{"app/a.txt": "a", "app/sub/b.txt": "b", "app/empty/": ""},
			absent:  []string{"app/dir"},
		},
		{
			name:    "whole context copied to a new nested directory",
			src:     tree{"a.txt": "a", "sub/b.txt": "b"},
			sources: []string{"."},
			dest:    "/srv/www/",
			want:    tree{"srv/www/a.txt": "a", "srv/www/sub/b.txt": "b"},
		},
		{
			name:    "file with trailing slash goes into the directory",
			src:     tree{"f.txt": "hello"},
			sources: []string{"f.txt"},
			dest:    "/app/",
			want:    tree{"app/f.txt": "hello"},
		},
		{
			name:    "file into an existing directory without trailing slash",
			src:     tree{"f.txt": "hello"},
			dst:     tree{"app/": ""},
			sources: []string{"f.txt"},
			dest:    "/app",
			want:    tree{"app/f.txt": "hello"},
		},
		{
			name:    "file is renamed when dest is not a directory",
			src:     tree{"f.txt": "hello"},
			sources: []string{"f.txt"},
			dest:    "/opt/tool/new.txt",
			want:    tree{"opt/tool/new.txt": "hello"},
			absent:  []string{"opt/tool/f.txt"},
		},
		{
			name:    "file replaces an existing file",
			src:     tree{"f.txt": "new"},
			dst:     tree{"app/f.txt": "old contents"},
			sources: []string{"f.txt"},
			dest:    "/app/",
			want:    tree{"app/f.txt": "new"},
		},
		{
			name:    "file replaces an existing directory",
			src:     tree{"f.txt": "file"},
			dst:     tree{"app/f.txt/inner": "x"},
			sources: []string{"f.txt"},
			dest:    "/app/",
			want:    tree{"app/f.txt": "file"},
		},
		{
			name:    "directory merges into an existing directory",
			src:     tree{"dir/new.txt": "new", "dir/sub/x": "x"},
			dst:     tree{"app/old.txt": "old", "app/sub/y": "y"},
			sources: []string{"dir"},
			dest:    "/app",
			want:    tree{"app/old.txt": "old", "app/new.txt": "new", "app/sub/x": "x", "app/sub/y": "y"},
		},
		{
			name:    "directory replaces an existing file",
			src:     tree{"dir/sub/x": "x"},
			dst:     tree{"app/sub": "i am a file"},
			sources: []string{"dir"},
			dest:    "/app",
			want:    tree{"app/sub/x": "x"},
		},
		{
			name:    "multiple sources need a directory destination",
			src:     tree{"a": "a", "b": "b"},
			sources: []string{"a", "b"},
			dest:    "/app",
			wantErr: "When using COPY with more than one source file, the destination must be a directory and end with a /",
			absent:  []string{"app"},
		},
		{
			name:    "multiple sources into a trailing slash destination",
			src:     tree{"a": "a", "dir/b": "b"},
			sources: []string{"a", "dir"},
			dest:    "/app/",
			want:    tree{"app/a": "a", "app/b": "b"},
		},
		{
			name:    "multiple sources into an existing directory",
			src:     tree{"a": "a", "b": "b"},
			dst:     tree{"app/": ""},
			sources: []string{"a", "b"},
			dest:    "/app",
			want:    tree{"app/a": "a", "app/b": "b"},
		},
		{
			name:    "missing source",
			src:     tree{"a": "a"},
			sources: []string{"app.py"},
			dest:    "/app/",
			wantErr: `"app.py": not found`,
		},
		{
			name:    "no sources is a no-op",
			sources: nil,
			dest:    "/app/",
			absent:  []string{"app"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srcRoot, dstRoot := roots(t, tc.src, tc.dst)
			err := Copy(context.Background(), srcRoot, tc.sources, dstRoot, tc.dest, Options{FollowSourceSymlink: true, ResetOwner: true})
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			check(t, dstRoot, tc.want, tc.absent)
		})
	}
}

func TestExpand(t *testing.T) {
	testenv.RequireRoot(t)
	src := tree{
		"a.txt":             "",
		"b.txt":             "",
		"c.md":              "",
		".hidden.txt":       "",
		"src/one/main.go":   "",
		"src/two/main.go":   "",
		"src/two/other.go":  "",
		"src/main.go":       "",
		"logs/app.log":      "",
		"logs/keep.log":     "",
		"cache/x":           "",
		"weird[1].txt":      "",
		"dir with space/f":  "",
		"nested/deep/x.txt": "",
	}
	tests := []struct {
		name     string
		patterns []string
		excluded []string
		want     []string
		wantErr  string
	}{
		{name: "literal file", patterns: []string{"a.txt"}, want: []string{"a.txt"}},
		{name: "leading slash and dot segments", patterns: []string{"/./nested/../a.txt"}, want: []string{"a.txt"}},
		{name: "whole context", patterns: []string{"."}, want: []string{"."}},
		{name: "star matches dotfiles too", patterns: []string{"*.txt"}, want: []string{".hidden.txt", "a.txt", "b.txt", "weird[1].txt"}},
		{name: "question mark and class", patterns: []string{"[ab].tx?"}, want: []string{"a.txt", "b.txt"}},
		{name: "wildcard in a middle segment", patterns: []string{"src/*/main.go"}, want: []string{"src/one/main.go", "src/two/main.go"}},
		{name: "star does not cross slashes", patterns: []string{"*/x.txt"}, want: nil},
		{name: "escaped bracket", patterns: []string{`weird\[1\].*`}, want: []string{"weird[1].txt"}},
		{name: "sorted and deduplicated", patterns: []string{"c.md", "*.txt", "a.txt"}, want: []string{".hidden.txt", "a.txt", "b.txt", "c.md", "weird[1].txt"}},
		{name: "empty wildcard is not an error", patterns: []string{"*.xyz"}, want: nil},
		{name: "wildcard under a missing directory", patterns: []string{"nope/*.go"}, want: nil},
		{name: "missing literal", patterns: []string{"app.py"}, wantErr: `"app.py": not found`},
		{name: "missing literal with leading slash", patterns: []string{"/app.py"}, wantErr: `"app.py": not found`},
		{name: "excluded matches are filtered", patterns: []string{"*.txt"}, excluded: []string{"b.txt", ".*"}, want: []string{"a.txt", "weird[1].txt"}},
		{name: "excluded literal is not found", patterns: []string{"b.txt"}, excluded: []string{"b.txt"}, wantErr: `"b.txt": not found`},
		{name: "excluded dir with re-included child exists", patterns: []string{"logs"}, excluded: []string{"logs", "!logs/keep.log"}, want: []string{"logs"}},
		{name: "excluded dir with nothing included is not found", patterns: []string{"cache"}, excluded: []string{"cache"}, wantErr: `"cache": not found`},
		{name: "parent excluded file re-included", patterns: []string{"logs/*"}, excluded: []string{"logs", "!logs/keep.log"}, want: []string{"logs/keep.log"}},
	}
	srcRoot, _ := roots(t, src, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ex func(string) bool
			if tc.excluded != nil {
				ex = excluder(t, tc.excluded...)
			}
			got, err := Expand(srcRoot, tc.patterns, ex)
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("error %v does not wrap ErrNotFound", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestWildcardExpansionThenCopy(t *testing.T) {
	testenv.RequireRoot(t)
	srcRoot, dstRoot := roots(t, tree{"a.txt": "a", "b.txt": "b", "c.md": "c"}, nil)
	srcs, err := Expand(srcRoot, []string{"*.txt"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two matches into a non-directory path is the multi-source error.
	if err := Copy(context.Background(), srcRoot, srcs, dstRoot, "/out", Options{}); err == nil || !strings.Contains(err.Error(), "more than one source") {
		t.Fatalf("want multi-source error, got %v", err)
	}
	if err := Copy(context.Background(), srcRoot, srcs, dstRoot, "/out/", Options{}); err != nil {
		t.Fatal(err)
	}
	check(t, dstRoot, tree{"out/a.txt": "a", "out/b.txt": "b"}, []string{"out/c.md"})

	// An empty wildcard copies nothing and creates nothing.
	srcs, err = Expand(srcRoot, []string{"*.none"}, nil)
	if err != nil || len(srcs) != 0 {
		t.Fatalf("got %q, %v", srcs, err)
	}
	if err := Copy(context.Background(), srcRoot, srcs, dstRoot, "/empty/", Options{}); err != nil {
		t.Fatal(err)
	}
	check(t, dstRoot, nil, []string{"empty"})
}

func TestCopyOwnership(t *testing.T) {
	testenv.RequireRoot(t)
	mode0640 := os.FileMode(0o640)
	tests := []struct {
		name            string
		opts            Options
		fileUID, dirUID int
		fileMode        uint32
		dirMode         uint32
	}{
		{name: "chown applies to copied entries", opts: Options{Chown: &Owner{UID: 1000, GID: 1001}}, fileUID: 1000, dirUID: 1000, fileMode: 0o600, dirMode: 0o750},
		{name: "reset owner makes entries root owned", opts: Options{ResetOwner: true}, fileUID: 0, dirUID: 0, fileMode: 0o600, dirMode: 0o750},
		{name: "source owner kept without reset", opts: Options{}, fileUID: 1234, dirUID: 4321, fileMode: 0o600, dirMode: 0o750},
		{name: "chmod applies to files and dirs", opts: Options{Chmod: &mode0640, ResetOwner: true}, fileUID: 0, dirUID: 0, fileMode: 0o640, dirMode: 0o640},
		{name: "chown and chmod together", opts: Options{Chown: &Owner{UID: 7, GID: 7}, Chmod: &mode0640}, fileUID: 7, dirUID: 7, fileMode: 0o640, dirMode: 0o640},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srcRoot, dstRoot := roots(t, tree{"ctx/f": "f", "ctx/sub/g": "g"}, tree{"existing/": ""})
			must(t, os.Chmod(filepath.Join(srcRoot, "ctx/f"), 0o600))
			must(t, os.Chown(filepath.Join(srcRoot, "ctx/f"), 1234, 1234))
			must(t, os.Chmod(filepath.Join(srcRoot, "ctx/sub"), 0o750))
			must(t, os.Chown(filepath.Join(srcRoot, "ctx/sub"), 4321, 4321))
			must(t, os.Chown(filepath.Join(srcRoot, "ctx/sub/g"), 1234, 1234))

			must(t, Copy(context.Background(), srcRoot, []string{"ctx"}, dstRoot, "/existing/new/deep", tc.opts))

			createdUID := 0
			if tc.opts.Chown != nil {
				createdUID = tc.opts.Chown.UID
			}
			createdGID := createdUID
			if tc.opts.Chown != nil {
				createdGID = tc.opts.Chown.GID
			}
			fileGID, dirGID := tc.fileUID, tc.dirUID
			if tc.opts.Chown != nil {
				fileGID, dirGID = tc.opts.Chown.GID, tc.opts.Chown.GID
			}
			// Created parents: 0755; the created destination directory
			// takes --chmod like current BuildKit.
			wantOwnerMode(t, filepath.Join(dstRoot, "existing/new"), createdUID, createdGID, 0o755)
			destMode := uint32(0o755)
			if tc.opts.Chmod != nil {
				destMode = uint32(*tc.opts.Chmod)
			}
			wantOwnerMode(t, filepath.Join(dstRoot, "existing/new/deep"), createdUID, createdGID, destMode)
			// A pre-existing parent is untouched.
			wantOwnerMode(t, filepath.Join(dstRoot, "existing"), 0, 0, 0o755)
			wantOwnerMode(t, filepath.Join(dstRoot, "existing/new/deep/f"), tc.fileUID, fileGID, tc.fileMode)
			wantOwnerMode(t, filepath.Join(dstRoot, "existing/new/deep/sub"), tc.dirUID, dirGID, tc.dirMode)
		})
	}

	t.Run("created parents of a renamed file are 0755 and chowned", func(t *testing.T) {
		srcRoot, dstRoot := roots(t, tree{"f": "f"}, nil)
		must(t, Copy(context.Background(), srcRoot, []string{"f"}, dstRoot, "/a/b/renamed", Options{Chown: &Owner{UID: 55, GID: 66}, Chmod: &mode0640}))
		wantOwnerMode(t, filepath.Join(dstRoot, "a"), 55, 66, 0o755)
		wantOwnerMode(t, filepath.Join(dstRoot, "a/b"), 55, 66, 0o755)
		wantOwnerMode(t, filepath.Join(dstRoot, "a/b/renamed"), 55, 66, 0o640)
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestCopyPreservesModesTimesXattrs(t *testing.T) {
	testenv.RequireRoot(t)
	srcRoot, dstRoot := roots(t, tree{
		"ctx/suid":        "x",
		"ctx/sgid":        "x",
		"ctx/private":     "x",
		"ctx/sticky/":     "",
		"ctx/shared/f":    "x",
		"ctx/deep/dir/f2": "y",
	}, nil)
	modes := map[string]os.FileMode{
		"ctx/suid":    0o755 | os.ModeSetuid,
		"ctx/sgid":    0o755 | os.ModeSetgid,
		"ctx/private": 0o600,
		"ctx/sticky":  0o777 | os.ModeSticky | os.ModeDir,
		"ctx/shared":  0o775 | os.ModeSetgid | os.ModeDir,
	}
	for p, m := range modes {
		must(t, os.Chmod(filepath.Join(srcRoot, p), m))
	}
	old := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	older := time.Date(1999, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, p := range []string{"ctx/suid", "ctx/deep/dir/f2", "ctx/deep/dir", "ctx/deep", "ctx"} {
		must(t, os.Chtimes(filepath.Join(srcRoot, p), older, old))
	}
	xattrs := true
	if err := unix.Setxattr(filepath.Join(srcRoot, "ctx/suid"), "user.kiln", []byte("v1"), 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			xattrs = false
		} else {
			t.Fatal(err)
		}
	}
	// VFS_CAP_REVISION_2 blob granting cap_net_bind_service (bit 10).
	capBlob := []byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	must(t, unix.Setxattr(filepath.Join(srcRoot, "ctx/private"), "security.capability", capBlob, 0))
	must(t, unix.Setxattr(filepath.Join(srcRoot, "ctx/private"), "trusted.kiln", []byte("no"), 0))

	must(t, Copy(context.Background(), srcRoot, []string{"ctx"}, dstRoot, "/out", Options{ResetOwner: true}))

	for p, m := range modes {
		fi, err := os.Lstat(filepath.Join(dstRoot, "out", strings.TrimPrefix(p, "ctx/")))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != m {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), m)
		}
	}
	for _, p := range []string{"out/suid", "out/deep/dir/f2", "out/deep/dir", "out/deep", "out"} {
		st := stat(t, filepath.Join(dstRoot, p))
		if got := time.Unix(st.Mtim.Sec, st.Mtim.Nsec); !got.Equal(old) {
			t.Errorf("%s: mtime %v, want %v", p, got.UTC(), old)
		}
		if got := time.Unix(st.Atim.Sec, st.Atim.Nsec); !got.Equal(older) {
			t.Errorf("%s: atime %v, want %v", p, got.UTC(), older)
		}
	}
	if xattrs {
		buf := make([]byte, 64)
		n, err := unix.Getxattr(filepath.Join(dstRoot, "out/suid"), "user.kiln", buf)
		if err != nil || string(buf[:n]) != "v1" {
			t.Errorf("user.kiln xattr: %q, %v", buf[:n], err)
		}
	}
	buf := make([]byte, 64)
	n, err := unix.Getxattr(filepath.Join(dstRoot, "out/private"), "security.capability", buf)
	if err != nil || !bytes.Equal(buf[:n], capBlob) {
		t.Errorf("security.capability: %x, %v", buf[:n], err)
	}
	if _, err := unix.Getxattr(filepath.Join(dstRoot, "out/private"), "trusted.kiln", buf); !errors.Is(err, unix.ENODATA) {
		t.Errorf("trusted.kiln should not be copied: %v", err)
	}
}

func TestCopySymlinks(t *testing.T) {
	testenv.RequireRoot(t)
	srcRoot, dstRoot := roots(t, tree{"real.txt": "real", "dir/target.txt": "t", "realdir/inner": "in"}, nil)
	must(t, os.Symlink("target.txt", filepath.Join(srcRoot, "dir/rel")))
	must(t, os.Symlink("/etc/passwd", filepath.Join(srcRoot, "dir/abs")))
	must(t, os.Symlink("../../../../../nowhere", filepath.Join(srcRoot, "dir/dangling")))
	must(t, os.Symlink("real.txt", filepath.Join(srcRoot, "link.txt")))
	must(t, os.Symlink("/realdir", filepath.Join(srcRoot, "linkdir")))

	t.Run("symlinks inside a copied directory are copied as symlinks", func(t *testing.T) {
		must(t, Copy(context.Background(), srcRoot, []string{"dir"}, dstRoot, "/d", Options{FollowSourceSymlink: true}))
		for name, want := range map[string]string{"rel": "target.txt", "abs": "/etc/passwd", "dangling": "../../../../../nowhere"} {
			got, err := os.Readlink(filepath.Join(dstRoot, "d", name))
			if err != nil || got != want {
				t.Errorf("%s: readlink %q, %v; want %q", name, got, err, want)
			}
		}
	})
	t.Run("top-level source symlink is followed", func(t *testing.T) {
		must(t, Copy(context.Background(), srcRoot, []string{"link.txt"}, dstRoot, "/f/", Options{FollowSourceSymlink: true}))
		check(t, dstRoot, tree{"f/link.txt": "real"}, nil)
	})
	t.Run("top-level symlink to a directory copies its contents", func(t *testing.T) {
		must(t, Copy(context.Background(), srcRoot, []string{"linkdir"}, dstRoot, "/ld", Options{FollowSourceSymlink: true}))
		check(t, dstRoot, tree{"ld/inner": "in"}, nil)
	})
	t.Run("top-level symlink copied as is when not following", func(t *testing.T) {
		must(t, Copy(context.Background(), srcRoot, []string{"link.txt"}, dstRoot, "/nf/", Options{}))
		if got, err := os.Readlink(filepath.Join(dstRoot, "nf/link.txt")); err != nil || got != "real.txt" {
			t.Fatalf("readlink %q, %v", got, err)
		}
	})
	t.Run("file replaces an existing symlink instead of writing through it", func(t *testing.T) {
		outside := t.TempDir()
		must(t, os.MkdirAll(filepath.Join(dstRoot, "r"), 0o755))
		must(t, os.Symlink(filepath.Join(outside, "victim"), filepath.Join(dstRoot, "r/real.txt")))
		must(t, Copy(context.Background(), srcRoot, []string{"real.txt"}, dstRoot, "/r/", Options{}))
		check(t, dstRoot, tree{"r/real.txt": "real"}, nil)
		check(t, outside, nil, []string{"victim"})
	})
}

func TestCopyHardlinks(t *testing.T) {
	testenv.RequireRoot(t)
	srcRoot, dstRoot := roots(t, tree{"dir/a": "shared", "dir/other": "o"}, nil)
	must(t, os.MkdirAll(filepath.Join(srcRoot, "dir/sub"), 0o755))
	must(t, os.Link(filepath.Join(srcRoot, "dir/a"), filepath.Join(srcRoot, "dir/b")))
	must(t, os.Link(filepath.Join(srcRoot, "dir/a"), filepath.Join(srcRoot, "dir/sub/c")))

	must(t, Copy(context.Background(), srcRoot, []string{"dir"}, dstRoot, "/out", Options{}))
	a := stat(t, filepath.Join(dstRoot, "out/a"))
	b := stat(t, filepath.Join(dstRoot, "out/b"))
	c := stat(t, filepath.Join(dstRoot, "out/sub/c"))
	o := stat(t, filepath.Join(dstRoot, "out/other"))
	if a.Ino != b.Ino || a.Ino != c.Ino {
		t.Fatalf("hardlinks not preserved: %d %d %d", a.Ino, b.Ino, c.Ino)
	}
	if a.Nlink != 3 {
		t.Fatalf("nlink %d, want 3", a.Nlink)
	}
	if o.Ino == a.Ino || a.Ino == stat(t, filepath.Join(srcRoot, "dir/a")).Ino {
		t.Fatal("unrelated files linked together")
	}
	check(t, dstRoot, tree{"out/sub/c": "shared"}, nil)
}

func TestCopySpecialFiles(t *testing.T) {
	testenv.RequireRoot(t)
	srcRoot, dstRoot := roots(t, tree{"dir/": ""}, nil)
	must(t, unix.Mkfifo(filepath.Join(srcRoot, "dir/fifo"), 0o640))
	must(t, unix.Mknod(filepath.Join(srcRoot, "dir/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, Copy(context.Background(), srcRoot, []string{"dir"}, dstRoot, "/dev2", Options{}))
	fifo := stat(t, filepath.Join(dstRoot, "dev2/fifo"))
	if fifo.Mode&unix.S_IFMT != unix.S_IFIFO || fifo.Mode&0o777 != 0o640 {
		t.Errorf("fifo mode %#o", fifo.Mode)
	}
	null := stat(t, filepath.Join(dstRoot, "dev2/null"))
	if null.Mode&unix.S_IFMT != unix.S_IFCHR || null.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("char device mode %#o rdev %d", null.Mode, null.Rdev)
	}
}

func TestCopyExcluded(t *testing.T) {
	testenv.RequireRoot(t)
	srcRoot, dstRoot := roots(t, tree{
		"keep.txt":        "k",
		"secret.txt":      "s",
		"logs/app.log":    "a",
		"logs/keep.log":   "kl",
		"logs/sub/x.log":  "x",
		"cache/blob":      "b",
		"cache/sub/":      "",
		"src/main.go":     "m",
		"src/main_test.x": "t",
	}, nil)
	ex := excluder(t, "secret.txt", "logs", "!logs/keep.log", "cache", "**/*.x")
	srcs, err := Expand(srcRoot, []string{"."}, ex)
	must(t, err)
	must(t, Copy(context.Background(), srcRoot, srcs, dstRoot, "/app", Options{Excluded: ex}))
	check(t, dstRoot,
		tree{"app/keep.txt": "k", "app/logs/keep.log": "kl", "app/src/main.go": "m"},
		[]string{"app/secret.txt", "app/logs/app.log", "app/logs/sub", "app/cache", "app/src/main_test.x"})

	// Excluded entries are skipped when copying a named subdirectory too.
	must(t, Copy(context.Background(), srcRoot, []string{"logs"}, dstRoot, "/logs", Options{Excluded: ex}))
	check(t, dstRoot, tree{"logs/keep.log": "kl"}, []string{"logs/app.log", "logs/sub"})
}

func TestCopyEscapeAttempts(t *testing.T) {
	testenv.RequireRoot(t)

	t.Run("dest through an absolute symlink stays in destRoot", func(t *testing.T) {
		outside := t.TempDir()
		srcRoot, dstRoot := roots(t, tree{"f.txt": "f"}, nil)
		must(t, os.Symlink(outside, filepath.Join(dstRoot, "link")))
		must(t, os.Symlink("/", filepath.Join(dstRoot, "rootlink")))
		must(t, Copy(context.Background(), srcRoot, []string{"f.txt"}, dstRoot, "/link/evil.txt", Options{}))
		must(t, Copy(context.Background(), srcRoot, []string{"f.txt"}, dstRoot, "/link/sub/", Options{}))
		must(t, Copy(context.Background(), srcRoot, []string{"f.txt"}, dstRoot, "/rootlink/rooted.txt", Options{}))
		assertEmpty(t, outside)
		check(t, dstRoot, tree{
			filepath.Join(outside, "evil.txt"):  "f",
			filepath.Join(outside, "sub/f.txt"): "f",
			"rooted.txt":                        "f",
		}, nil)
	})

	t.Run("dest through a relative ../.. symlink stays in destRoot", func(t *testing.T) {
		base := t.TempDir()
		srcRoot := filepath.Join(base, "src")
		dstRoot := filepath.Join(base, "a/b/dst")
		build(t, srcRoot, tree{"f.txt": "f", "dir/g": "g"})
		must(t, os.MkdirAll(dstRoot, 0o755))
		must(t, os.Symlink("../../..", filepath.Join(dstRoot, "up")))
		must(t, Copy(context.Background(), srcRoot, []string{"f.txt"}, dstRoot, "/up/evil.txt", Options{}))
		must(t, Copy(context.Background(), srcRoot, []string{"dir"}, dstRoot, "/up/up/evildir", Options{}))
		must(t, Copy(context.Background(), srcRoot, []string{"f.txt"}, dstRoot, "/../../lexical.txt", Options{}))
		check(t, base, nil, []string{"evil.txt", "a/evil.txt", "a/b/evil.txt", "evildir", "a/evildir", "lexical.txt", "a/lexical.txt"})
		check(t, dstRoot, tree{"evil.txt": "f", "evildir/g": "g", "lexical.txt": "f"}, nil)
	})

	t.Run("source ../outside is clamped to srcRoot", func(t *testing.T) {
		base := t.TempDir()
		srcRoot := filepath.Join(base, "ctx")
		dstRoot := filepath.Join(base, "dst")
		build(t, base, tree{"outside/secret": "s", "ctx/": "", "dst/": ""})
		_, err := Expand(srcRoot, []string{"../outside/secret"}, nil)
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Expand: %v, want not found", err)
		}
		if err := Copy(context.Background(), srcRoot, []string{"../outside/secret"}, dstRoot, "/x/", Options{}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Copy: %v, want not found", err)
		}
		m, err := Expand(srcRoot, []string{"../*/secret", "../../*"}, nil)
		if err != nil || len(m) != 0 {
			t.Fatalf("wildcard Expand: %q, %v", m, err)
		}
		assertEmpty(t, dstRoot)
	})

	t.Run("context symlinks pointing outside are resolved inside srcRoot", func(t *testing.T) {
		base := t.TempDir()
		srcRoot := filepath.Join(base, "ctx")
		dstRoot := filepath.Join(base, "dst")
		build(t, base, tree{"outside/secret": "s", "ctx/": "", "dst/": ""})
		must(t, os.Symlink(filepath.Join(base, "outside"), filepath.Join(srcRoot, "abs")))
		must(t, os.Symlink("../outside", filepath.Join(srcRoot, "rel")))
		must(t, os.Symlink("../outside/secret", filepath.Join(srcRoot, "file")))
		for _, p := range []string{"abs/secret", "rel/secret", "file", "rel"} {
			if _, err := Expand(srcRoot, []string{p}, nil); !errors.Is(err, ErrNotFound) {
				t.Errorf("Expand(%s): %v, want not found", p, err)
			}
			err := Copy(context.Background(), srcRoot, []string{p}, dstRoot, "/x/", Options{FollowSourceSymlink: true})
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("Copy(%s): %v, want not found", p, err)
			}
		}
		m, err := Expand(srcRoot, []string{"abs/*", "rel/*"}, nil)
		if err != nil || len(m) != 0 {
			t.Fatalf("wildcard Expand: %q, %v", m, err)
		}
		assertEmpty(t, dstRoot)
	})

	t.Run("archive entries cannot escape the destination", func(t *testing.T) {
		outside := t.TempDir()
		cases := []struct {
			name    string
			entries []tarEntry
			errPart string
		}{
			{"dotdot entry", []tarEntry{{name: "ok.txt", body: "ok"}, {name: "../evil", body: "evil"}}, `"../evil"`},
			{"nested dotdot entry", []tarEntry{{name: "a/../../../evil", body: "evil"}}, `"a/../../../evil"`},
			{"escaping relative symlink", []tarEntry{{name: "a/lnk", typ: tar.TypeSymlink, link: "../../.."}}, `"a/lnk"`},
			{"escaping hardlink", []tarEntry{{name: "hl", typ: tar.TypeLink, link: "../../etc/passwd"}}, `"hl"`},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				srcRoot, dstRoot := roots(t, nil, nil)
				must(t, os.WriteFile(filepath.Join(srcRoot, "bad.tar"), makeTar(t, tc.entries), 0o644))
				err := Copy(context.Background(), srcRoot, []string{"bad.tar"}, dstRoot, "/x/y", Options{ExtractArchives: true})
				if err == nil || !strings.Contains(err.Error(), tc.errPart) {
					t.Fatalf("error %v, want one naming %s", err, tc.errPart)
				}
				check(t, dstRoot, nil, []string{"evil", "x/evil"})
				check(t, filepath.Dir(dstRoot), nil, []string{"evil"})
				assertEmpty(t, outside)
			})
		}

		t.Run("symlink entries are resolved inside the destination", func(t *testing.T) {
			srcRoot, dstRoot := roots(t, nil, nil)
			must(t, os.WriteFile(filepath.Join(srcRoot, "lnk.tar"), makeTar(t, []tarEntry{
				{name: "lnk", typ: tar.TypeSymlink, link: outside},
				{name: "lnk/pwned", body: "p"},
				{name: "root", typ: tar.TypeSymlink, link: "/"},
				{name: "root/rooted", body: "r"},
			}), 0o644))
			must(t, Copy(context.Background(), srcRoot, []string{"lnk.tar"}, dstRoot, "/x", Options{ExtractArchives: true}))
			assertEmpty(t, outside)
			check(t, dstRoot, tree{filepath.Join("x", outside, "pwned"): "p", "x/rooted": "r"}, nil)
		})
	})
}

func assertEmpty(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Fatalf("%s should be empty, has %q", dir, names)
	}
}

type tarEntry struct {
	name string
	typ  byte
	body string
	link string
	mode int64
	uid  int
}

var tarTime = time.Date(2020, 5, 6, 7, 8, 9, 0, time.UTC)

func makeTar(t *testing.T, entries []tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
			if typ == tar.TypeDir {
				mode = 0o755
			}
		}
		hdr := &tar.Header{
			Typeflag: typ, Name: e.name, Linkname: e.link, Mode: mode,
			Uid: e.uid, Gid: e.uid, ModTime: tarTime, Format: tar.FormatPAX,
		}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(e.body))
		}
		must(t, tw.WriteHeader(hdr))
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	must(t, tw.Close())
	return buf.Bytes()
}

// bzip2Tar is a tar with pkg/ and pkg/data.txt ("bzip2 payload\n"),
// compressed with bzip2 (no bzip2 writer exists in Go's standard library).
const bzip2Tar = `QlpoOTFBWSZTWSK+NJUAAGpbkMqQQAH/hAQEdKzecAQACAggAJKGoTINGgZAANHlBKEap6mnpGnq
DNEHqANZa5tzn5C6QImD2NRCDBInRiQiKIZsUroOUURHJjAJlWJUUTFR9goxkRhjaJAiGE8wqRyX
rUxtIShGfSQ9xQ16BMBRjebWggajHxC5ZwA/i7kinChIEV8aSoA=`

func TestAddExtractsArchives(t *testing.T) {
	testenv.RequireRoot(t)
	plain := makeTar(t, []tarEntry{
		{name: "./", typ: tar.TypeDir},
		{name: "bin/", typ: tar.TypeDir, mode: 0o750, uid: 1000},
		{name: "bin/tool", body: "#!/bin/sh\n", mode: 0o4755, uid: 1000},
		{name: "bin/tool-link", typ: tar.TypeSymlink, link: "tool"},
		{name: "bin/tool-hard", typ: tar.TypeLink, link: "bin/tool"},
		{name: "implicit/parent/file.txt", body: "deep"},
	})
	var gz bytes.Buffer
	gw := gzip.NewWriter(&gz)
	_, err := gw.Write(plain)
	must(t, err)
	must(t, gw.Close())
	var zs bytes.Buffer
	zw, err := zstd.NewWriter(&zs)
	must(t, err)
	_, err = zw.Write(plain)
	must(t, err)
	must(t, zw.Close())
	bz, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(bzip2Tar, "\n", ""))
	must(t, err)

	for _, tc := range []struct {
		name string
		data []byte
	}{{"app.tar", plain}, {"app.tar.gz", gz.Bytes()}, {"app.tzst", zs.Bytes()}} {
		t.Run("extracts "+tc.name, func(t *testing.T) {
			srcRoot, dstRoot := roots(t, nil, tree{"opt/old": "old"})
			must(t, os.WriteFile(filepath.Join(srcRoot, tc.name), tc.data, 0o644))
			must(t, Copy(context.Background(), srcRoot, []string{tc.name}, dstRoot, "/opt", Options{ExtractArchives: true, ResetOwner: true}))
			check(t, dstRoot, tree{
				"opt/old":                      "old",
				"opt/bin/tool":                 "#!/bin/sh\n",
				"opt/bin/tool-hard":            "#!/bin/sh\n",
				"opt/implicit/parent/file.txt": "deep",
			}, []string{"opt/" + tc.name})
			wantOwnerMode(t, filepath.Join(dstRoot, "opt/bin"), 1000, 1000, 0o750)
			wantOwnerMode(t, filepath.Join(dstRoot, "opt/bin/tool"), 1000, 1000, 0o4755)
			wantOwnerMode(t, filepath.Join(dstRoot, "opt/implicit/parent"), 0, 0, 0o755)
			if got, err := os.Readlink(filepath.Join(dstRoot, "opt/bin/tool-link")); err != nil || got != "tool" {
				t.Errorf("symlink: %q, %v", got, err)
			}
			if stat(t, filepath.Join(dstRoot, "opt/bin/tool")).Ino != stat(t, filepath.Join(dstRoot, "opt/bin/tool-hard")).Ino {
				t.Error("hardlink entry not linked")
			}
			for _, p := range []string{"opt/bin", "opt/bin/tool"} {
				st := stat(t, filepath.Join(dstRoot, p))
				if got := time.Unix(st.Mtim.Sec, st.Mtim.Nsec); !got.Equal(tarTime) {
					t.Errorf("%s: mtime %v, want %v", p, got.UTC(), tarTime)
				}
			}
		})
	}

	t.Run("extracts app.tar.bz2", func(t *testing.T) {
		srcRoot, dstRoot := roots(t, nil, nil)
		must(t, os.WriteFile(filepath.Join(srcRoot, "app.tar.bz2"), bz, 0o644))
		must(t, Copy(context.Background(), srcRoot, []string{"app.tar.bz2"}, dstRoot, "/x/", Options{ExtractArchives: true}))
		check(t, dstRoot, tree{"x/pkg/data.txt": "bzip2 payload\n"}, nil)
	})

	t.Run("chown overrides archive owners", func(t *testing.T) {
		srcRoot, dstRoot := roots(t, nil, nil)
		must(t, os.WriteFile(filepath.Join(srcRoot, "a.tar"), plain, 0o644))
		must(t, Copy(context.Background(), srcRoot, []string{"a.tar"}, dstRoot, "/x", Options{ExtractArchives: true, Chown: &Owner{UID: 5, GID: 6}}))
		wantOwnerMode(t, filepath.Join(dstRoot, "x"), 5, 6, 0o755)
		wantOwnerMode(t, filepath.Join(dstRoot, "x/bin/tool"), 5, 6, 0o4755)
	})

	t.Run("plain file is copied, not extracted", func(t *testing.T) {
		srcRoot, dstRoot := roots(t, tree{"notes.txt": "just text, not a tar"}, nil)
		must(t, Copy(context.Background(), srcRoot, []string{"notes.txt"}, dstRoot, "/app/", Options{ExtractArchives: true}))
		check(t, dstRoot, tree{"app/notes.txt": "just text, not a tar"}, nil)
	})

	t.Run("compressed non-tar file is copied as is", func(t *testing.T) {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, err := w.Write([]byte(strings.Repeat("log line\n", 200)))
		must(t, err)
		must(t, w.Close())
		srcRoot, dstRoot := roots(t, tree{"log.gz": b.String()}, nil)
		must(t, Copy(context.Background(), srcRoot, []string{"log.gz"}, dstRoot, "/app/", Options{ExtractArchives: true}))
		check(t, dstRoot, tree{"app/log.gz": b.String()}, nil)
	})

	t.Run("archive is copied as a file without ExtractArchives", func(t *testing.T) {
		srcRoot, dstRoot := roots(t, nil, nil)
		must(t, os.WriteFile(filepath.Join(srcRoot, "a.tar"), plain, 0o644))
		must(t, Copy(context.Background(), srcRoot, []string{"a.tar"}, dstRoot, "/app/", Options{}))
		check(t, dstRoot, tree{"app/a.tar": string(plain)}, []string{"app/bin"})
	})

	t.Run("extracts app.tar.xz", func(t *testing.T) {
		var b bytes.Buffer
		w, err := xz.NewWriter(&b)
		must(t, err)
		_, err = w.Write(plain)
		must(t, err)
		must(t, w.Close())
		srcRoot, dstRoot := roots(t, tree{"a.tar.xz": b.String()}, nil)
		must(t, Copy(context.Background(), srcRoot, []string{"a.tar.xz"}, dstRoot, "/app/", Options{ExtractArchives: true}))
		wantOwnerMode(t, filepath.Join(dstRoot, "app/bin/tool"), 1000, 1000, 0o4755) // owners from the archive
	})
}

func TestCopyHonoursCancellation(t *testing.T) {
	testenv.RequireRoot(t)
	srcRoot, dstRoot := roots(t, tree{"dir/a": "a", "dir/b": "b"}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Copy(ctx, srcRoot, []string{"dir"}, dstRoot, "/out", Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
	check(t, dstRoot, nil, []string{"out/a", "out/b"})
}
