package container

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	"golang.org/x/sys/unix"
)

// fixed is every fixture file's mtime: a file copied up unchanged keeps
// its lower's.
var fixed = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

// tree makes an overlay-style directory from specs:
//
//	"etc/"        a directory (0755)
//	"tmp/ 1777"   a directory with that mode
//	"etc/passwd=root:x"  a file with that content
//	"-bin/ls"     a whiteout
//	"+home/"      an opaque directory
//	"lnk>x"       a symlink to x
func tree(t *testing.T, specs ...string) string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for _, s := range specs {
		mode := uint32(0o755)
		if name, m, ok := strings.Cut(s, " "); ok {
			mode = 0
			for _, c := range m {
				mode = mode*8 + uint32(c-'0')
			}
			s = name
		}
		opaque := strings.HasPrefix(s, "+")
		s = strings.TrimPrefix(s, "+")
		var p string
		switch {
		case strings.HasPrefix(s, "-"):
			p = filepath.Join(dir, s[1:])
			must(t, unix.Mknod(p, unix.S_IFCHR, 0))
		case strings.HasSuffix(s, "/"):
			p = filepath.Join(dir, s)
			must(t, os.Mkdir(p, 0o755))
			must(t, unix.Chmod(p, mode)) // the bits as chmod(2) takes them: 01777 is sticky
			if opaque {
				must(t, unix.Lsetxattr(p, "trusted.overlay.opaque", []byte("y"), 0))
			}
		case strings.Contains(s, ">"):
			name, target, _ := strings.Cut(s, ">")
			p = filepath.Join(dir, name)
			must(t, os.Symlink(target, p))
		default:
			name, data, _ := strings.Cut(s, "=")
			p = filepath.Join(dir, name)
			must(t, os.WriteFile(p, []byte(data), 0o644))
		}
		paths = append(paths, p)
	}
	for _, p := range paths {
		ts := []unix.Timespec{unix.NsecToTimespec(fixed.UnixNano()), unix.NsecToTimespec(fixed.UnixNano())}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// diffLines runs the differ over upper and lowers (top first).
func diffLines(t *testing.T, upper string, lowers []string, stubs ...string) ([]string, *differ) {
	t.Helper()
	d := newDiffer(context.Background(), upper, lowers, stubs)
	if err := d.run(); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range d.changes {
		out = append(out, c.String())
	}
	return out, d
}

func TestChanges(t *testing.T) {
	testenv.RequireRoot(t) // mknod, trusted xattrs
	base := []string{"bin/", "bin/ls=ls", "bin/sh=sh", "etc/", "etc/passwd=root", "home/", "home/app/", "home/app/f=f",
		"root/ 0700", "tmp/ 1777", "usr/", "usr/bin/", "usr/bin/env=env", "var/", "a/", "a/b=b", "a-b=x"}
	tests := []struct {
		name  string
		upper []string
		stubs []string
		want  []string
	}{
		{
			name:  "docker's example: a file added, one deleted, a directory made",
			upper: []string{"etc/", "etc/x=hi", "bin/", "-bin/ls", "d/", "d/f="},
			want:  []string{"C /bin", "D /bin/ls", "A /d", "A /d/f", "C /etc", "A /etc/x"},
		},
		{
			name:  "a changed file's directory is C, a deleted directory one D",
			upper: []string{"etc/", "etc/passwd=root:x", "-usr"},
			want:  []string{"C /etc", "C /etc/passwd", "D /usr"},
		},
		{
			name:  "an opaque directory: what it held is deleted, what it holds new is added",
			upper: []string{"+home/", "home/new=", "+var/"},
			want:  []string{"C /home", "D /home/app", "A /home/new"},
		},
		{
			name:  "an opaque directory holding a name again compares it with the image's",
			upper: []string{"+home/", "home/app/", "home/app/g="},
			want:  []string{"C /home", "C /home/app", "D /home/app/f", "A /home/app/g"},
		},
		{
			name:  "copied up unchanged is no change; mode and owner are",
			upper: []string{"root/ 0700", "tmp/ 0700", "bin/", "bin/sh=sh"},
			want:  []string{"C /tmp"},
		},
		{
			name:  "a file turned into a directory",
			upper: []string{"a-b/", "a-b/c="},
			want:  []string{"C /a-b", "A /a-b/c"},
		},
		{
			name:  "paths in component order",
			upper: []string{"a/", "a/b=bb", "a-b=yy", "a0="},
			want:  []string{"C /a", "C /a/b", "C /a-b", "A /a0"},
		},
		{
			name:  "stubs and the directories made only for them are left out",
			upper: []string{"proc/", "etc/", "etc/hosts=", "new/", "new/x/", "new/x/y=", "new/real=r", "run/", "run/s/"},
			stubs: []string{"/proc", "/etc/hosts", "/new/x/y", "/run/s"},
			want:  []string{"A /new", "A /new/real"},
		},
		{
			name:  "a symlink added",
			upper: []string{"lnk>x"},
			want:  []string{"A /lnk"},
		},
	}
	lower := tree(t, base...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := diffLines(t, tree(t, tt.upper...), []string{lower}, tt.stubs...)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestChangesSkipsStubParents(t *testing.T) {
	testenv.RequireRoot(t)
	lower := tree(t, "etc/", "etc/passwd=root")
	upper := tree(t, "proc/", "etc/", "etc/hosts=", "x/", "x/y/", "x/y/z=")
	got, d := diffLines(t, upper, []string{lower}, "proc", "/etc/hosts", "/x/y/z")
	if len(got) != 0 {
		t.Errorf("changes %q, want none", got)
	}
	slices.Sort(d.skipped)
	if want := []string{"x", "x/y"}; !slices.Equal(d.skipped, want) {
		t.Errorf("skipped %q, want %q (etc is the image's)", d.skipped, want)
	}
}

// The image's own whiteouts and opaque directories decide what exists
// below the writable layer.
func TestChangesSeesImageLayersAsOverlayDoes(t *testing.T) {
	testenv.RequireRoot(t)
	bottom := tree(t, "lib/", "lib/a=a", "lib/b=b", "opt/", "opt/old=o", "srv/", "srv/s=s")
	top := tree(t, "lib/", "-lib/a", "+opt/", "opt/keep=k", "-srv")
	lowers := []string{top, bottom}
	tests := []struct {
		name  string
		upper []string
		want  []string
	}{
		{"a path the image deleted is new again", []string{"lib/", "lib/a=again"}, []string{"C /lib", "A /lib/a"}},
		{"an opaque directory of the image hides what was below it",
			[]string{"+opt/"}, []string{"C /opt", "D /opt/keep"}},
		{"a directory the image deleted is made again", []string{"srv/", "srv/s=s"}, []string{"A /srv", "A /srv/s"}},
		{"a whiteout of what the image has", []string{"lib/", "-lib/b"}, []string{"C /lib", "D /lib/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := diffLines(t, tree(t, tt.upper...), lowers)
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
