package runc_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/solver/runc"
)

const testPasswd = `root:x:0:0:root:/root:/bin/sh
# a comment

daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:app:/home/app:/bin/sh
other:x:1001:1001::/home/other:/bin/sh
broken:x:abc:1::/:/bin/sh
`

const testGroup = `root:x:0:
wheel:x:10:app,other
staff:x:50:app
app:x:1000:app
other:x:1001:
audio:x:29:other
`

// writeFile creates rootfs/name with data, making parent dirs.
func writeFile(t *testing.T, root, name, data string) {
	t.Helper()
	p := filepath.Join(root, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeRootfs is a rootfs with the test passwd and group files.
func fakeRootfs(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, root, "etc/passwd", testPasswd)
	writeFile(t, root, "etc/group", testGroup)
	return root
}

func TestResolveUser(t *testing.T) {
	cases := []struct {
		user      string
		uid, gid  uint32
		extra     []uint32
		errSubstr string
	}{
		{user: "", uid: 0, gid: 0},
		// the primary group is always a supplementary group too, like BuildKit
		{user: "root", uid: 0, gid: 0, extra: []uint32{0}},
		// a name: its uid, primary gid, then the groups listing it
		{user: "app", uid: 1000, gid: 1000, extra: []uint32{1000, 10, 50}},
		// a known uid resolves like its name
		{user: "1000", uid: 1000, gid: 1000, extra: []uint32{1000, 10, 50}},
		{user: "other", uid: 1001, gid: 1001, extra: []uint32{1001, 10, 29}},
		// an explicit group replaces the primary one; no other groups
		{user: "app:staff", uid: 1000, gid: 50, extra: []uint32{50}},
		{user: "app:0", uid: 1000, gid: 0, extra: []uint32{0}},
		{user: "1000:50", uid: 1000, gid: 50, extra: []uint32{50}},
		// a numeric uid need not exist: gid 0, like docker
		{user: "4242", uid: 4242, gid: 0, extra: []uint32{0}},
		{user: "4242:7", uid: 4242, gid: 7, extra: []uint32{7}},
		{user: "4242:audio", uid: 4242, gid: 29, extra: []uint32{29}},
		{user: "nobody", errSubstr: "unable to find user nobody: no matching entries in passwd file"},
		{user: "app:nogroup", errSubstr: "unable to find group nogroup: no matching entries in group file"},
		{user: "broken", errSubstr: `user "broken": malformed /etc/passwd entry`},
	}
	root := fakeRootfs(t)
	for _, tc := range cases {
		t.Run("user="+tc.user, func(t *testing.T) {
			uid, gid, extra, err := runc.ResolveUser(root, tc.user)
			if tc.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("error %v, want one containing %q", err, tc.errSubstr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if uid != tc.uid || gid != tc.gid || !reflect.DeepEqual(extra, tc.extra) {
				t.Errorf("got %d:%d %v, want %d:%d %v", uid, gid, extra, tc.uid, tc.gid, tc.extra)
			}
		})
	}
}

func TestResolveUserWithoutEtcFiles(t *testing.T) {
	cases := []struct {
		user      string
		uid, gid  uint32
		errSubstr string
	}{
		{user: "", uid: 0, gid: 0},
		{user: "0", uid: 0, gid: 0},
		{user: "123:456", uid: 123, gid: 456},
		{user: "root", errSubstr: "unable to find user root"},
		{user: "1:wheel", errSubstr: "unable to find group wheel"},
	}
	root := t.TempDir() // e.g. FROM scratch
	for _, tc := range cases {
		t.Run("user="+tc.user, func(t *testing.T) {
			uid, gid, _, err := runc.ResolveUser(root, tc.user)
			if tc.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("error %v, want one containing %q", err, tc.errSubstr)
				}
				return
			}
			if err != nil || uid != tc.uid || gid != tc.gid {
				t.Errorf("got %d:%d %v, want %d:%d", uid, gid, err, tc.uid, tc.gid)
			}
		})
	}
}

// A symlinked /etc/passwd or /etc/group is resolved inside the rootfs, the
// way it would be inside the container: never a host file.
func TestResolveUserFollowsSymlinksInsideTheRootfs(t *testing.T) {
	hostDir := t.TempDir()
	writeFile(t, hostDir, "passwd", "evil:x:6666:6666::/:/bin/sh\n")
	writeFile(t, hostDir, "group", "evilgroup:x:6667:\n")

	cases := []struct {
		name   string
		target func(root string) string // symlink target for /etc/passwd and /etc/group
		// files to create inside the rootfs
		inside    map[string]string
		user      string
		uid, gid  uint32
		errSubstr string
		// the case only proves something if the host's file has the user
		needHostRoot bool
	}{
		{
			name:      "absolute link to a host file that does not exist in the rootfs",
			target:    func(string) string { return hostDir + "/passwd" },
			user:      "evil",
			errSubstr: "unable to find user evil",
		},
		{
			name:   "absolute link to a path that exists in both: the rootfs copy wins",
			target: func(string) string { return hostDir + "/passwd" },
			inside: map[string]string{strings.TrimPrefix(hostDir, "/") + "/passwd": "evil:x:1234:1234::/:/bin/sh\n"},
			user:   "evil",
			uid:    1234, gid: 1234,
		},
		{
			name: "relative link climbing out of the rootfs",
			target: func(root string) string {
				return strings.Repeat("../", strings.Count(root, "/")+2) + strings.TrimPrefix(hostDir, "/") + "/passwd"
			},
			user:      "evil",
			errSubstr: "unable to find user evil",
		},
		{
			// the host's own /etc/passwd has root; in the rootfs the link
			// points at itself, so no passwd file exists at all
			name:         "link to the host's /etc/passwd",
			target:       func(string) string { return "/etc/passwd" },
			user:         "root",
			errSubstr:    "unable to find user root",
			needHostRoot: true,
		},
		{
			name:   "absolute link to a file elsewhere in the rootfs",
			target: func(string) string { return "/usr/share/base-passwd/passwd" },
			inside: map[string]string{"usr/share/base-passwd/passwd": "app:x:77:88::/:/bin/sh\n"},
			user:   "app",
			uid:    77, gid: 88,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needHostRoot {
				if b, err := os.ReadFile("/etc/passwd"); err != nil || !strings.HasPrefix(string(b), "root:") && !strings.Contains(string(b), "\nroot:") {
					t.Skip("the host's /etc/passwd has no root entry")
				}
			}
			root := t.TempDir()
			if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.target(root), filepath.Join(root, "etc/passwd")); err != nil {
				t.Fatal(err)
			}
			for name, data := range tc.inside {
				writeFile(t, root, name, data)
			}
			uid, gid, _, err := runc.ResolveUser(root, tc.user)
			if tc.errSubstr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errSubstr) {
					t.Fatalf("got %d:%d, error %v; want an error containing %q", uid, gid, err, tc.errSubstr)
				}
				return
			}
			if err != nil || uid != tc.uid || gid != tc.gid {
				t.Errorf("got %d:%d %v, want %d:%d", uid, gid, err, tc.uid, tc.gid)
			}
		})
	}

	t.Run("group file linked to the host", func(t *testing.T) {
		root := fakeRootfs(t)
		if err := os.Remove(filepath.Join(root, "etc/group")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(hostDir+"/group", filepath.Join(root, "etc/group")); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := runc.ResolveUser(root, "app:evilgroup"); err == nil || !strings.Contains(err.Error(), "unable to find group evilgroup") {
			t.Errorf("error %v, want the host's group to be invisible", err)
		}
	})
}
