package testenv

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func goldenTestBase() *ImageSummary {
	return &ImageSummary{Files: map[string]FileEntry{
		"bin":         {Path: "bin", Type: "dir", Mode: 0o755},
		"bin/busybox": {Path: "bin/busybox", Type: "file", Mode: 0o755, Size: 3, SHA256: "aaa"},
		"bin/sh":      {Path: "bin/sh", Type: "symlink", Mode: 0o777, Link: "busybox"},
		"bin/vi":      {Path: "bin/vi", Type: "symlink", Mode: 0o777, Link: "busybox"},
		"etc":         {Path: "etc", Type: "dir", Mode: 0o755},
		"etc/passwd":  {Path: "etc/passwd", Type: "file", Mode: 0o644, Size: 1, SHA256: "ppp"},
		"tmp":         {Path: "tmp", Type: "dir", Mode: 0o777 | os.ModeSticky},
	}}
}

func TestMakeGoldenRoundTrip(t *testing.T) {
	base := goldenTestBase()
	img := &ImageSummary{Files: map[string]FileEntry{}, Config: ImageConfig{Env: []string{"A=1"}, Cmd: []string{"sh"}}}
	for k, v := range base.Files {
		img.Files[k] = v
	}
	delete(img.Files, "bin/vi")
	img.Files["etc/passwd"] = FileEntry{Path: "etc/passwd", Type: "file", Mode: 0o600, Size: 1, SHA256: "ppp"}
	img.Files["usr/bin/tool"] = FileEntry{Path: "usr/bin/tool", Type: "file", Mode: 0o755 | os.ModeSetuid, UID: 1000, GID: 1000, Size: 2, SHA256: "ttt"}
	img.Files["usr/bin/hard"] = FileEntry{Path: "usr/bin/hard", Type: "hardlink", Link: "usr/bin/tool", Mode: 0o755 | os.ModeSetuid, UID: 1000, GID: 1000, Size: 2, SHA256: "ttt"}
	// A symlink whose mode differs only: the same as the base's for Diff.
	img.Files["bin/sh"] = FileEntry{Path: "bin/sh", Type: "symlink", Mode: 0o755, Link: "busybox"}

	g := MakeGolden(img, base)
	var paths []string
	for _, f := range g.Files {
		paths = append(paths, f.Path)
	}
	if want := []string{"etc/passwd", "usr/bin/hard", "usr/bin/tool"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("golden files %v, want %v", paths, want)
	}
	if want := []string{"bin/vi"}; !reflect.DeepEqual(g.Removed, want) {
		t.Errorf("removed %v, want %v", g.Removed, want)
	}
	if g.Files[2].Mode != "4755" {
		t.Errorf("setuid mode written as %q", g.Files[2].Mode)
	}

	// Through a file and back, the golden stands for the same image.
	p := filepath.Join(t.TempDir(), "g.json")
	g.Oracle, g.BaseSHA256 = "test", "abc"
	if err := WriteGolden(p, g); err != nil {
		t.Fatal(err)
	}
	g2, err := ReadGolden(p)
	if err != nil {
		t.Fatal(err)
	}
	if !SameGolden(g, g2) || g2.Oracle != "test" {
		t.Errorf("golden changed through a file:\n%+v\n%+v", g, g2)
	}
	if d := CompareGolden(img, base, g2); len(d) > 0 {
		t.Errorf("image differs from its own golden:\n%s", strings.Join(d, "\n"))
	}

	// Differences are reported as kiln (a) vs golden (b).
	other := &ImageSummary{Files: map[string]FileEntry{}, Config: img.Config}
	for k, v := range img.Files {
		other.Files[k] = v
	}
	other.Files["bin/vi"] = base.Files["bin/vi"]
	other.Files["usr/bin/tool"] = FileEntry{Path: "usr/bin/tool", Type: "file", Mode: 0o755, UID: 1000, GID: 1000, Size: 2, SHA256: "ttt"}
	delete(other.Files, "usr/bin/hard")
	other.Config.Cmd = nil
	want := []string{
		"/bin/vi: only in a (symlink)",
		"/usr/bin/hard: only in b (hardlink)",
		"/usr/bin/tool: mode 0755 != 4755",
		`config.Cmd: null != ["sh"]`,
	}
	if d := CompareGolden(other, base, g2); !reflect.DeepEqual(d, want) {
		t.Errorf("CompareGolden:\n%s\nwant:\n%s", strings.Join(d, "\n"), strings.Join(want, "\n"))
	}
}

func TestCheckGoldenBase(t *testing.T) {
	g := Golden{BaseSHA256: "0123456789abcdef"}
	if err := CheckGoldenBase(g, "0123456789abcdef"); err != nil {
		t.Errorf("same base: %v", err)
	}
	err := CheckGoldenBase(g, "fedcba9876543210")
	if err == nil || !strings.Contains(err.Error(), "golden made from another busybox; run make golden") {
		t.Errorf("other base: %v", err)
	}
}

func TestSplitFlag(t *testing.T) {
	for in, want := range map[string][2]string{
		"--build-arg X=1":     {"--build-arg", "X=1"},
		"--build-arg=X=1":     {"--build-arg", "X=1"},
		"--target  t":         {"--target", "t"},
		"--no-cache":          {"--no-cache", ""},
		"-f build/Dockerfile": {"-f", "build/Dockerfile"},
		"--label k=a b":       {"--label", "k=a b"},
	} {
		n, v := SplitFlag(in)
		if n != want[0] || v != want[1] {
			t.Errorf("SplitFlag(%q) = %q, %q; want %q, %q", in, n, v, want[0], want[1])
		}
	}
}
