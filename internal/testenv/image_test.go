package testenv

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// member is one tar entry for the test archives.
type member struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	body     string
	link     string
}

func dirM(name string, mode int64) member { return member{name: name, typ: tar.TypeDir, mode: mode} }
func fileM(name string, mode int64, body string) member {
	return member{name: name, typ: tar.TypeReg, mode: mode, body: body}
}

func makeTar(t *testing.T, ms []member) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		typ := m.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		hdr := &tar.Header{
			Name: m.name, Typeflag: typ, Mode: m.mode, Uid: m.uid, Gid: m.gid,
			Linkname: m.link, Format: tar.FormatPAX,
		}
		if typ == tar.TypeReg {
			hdr.Size = int64(len(m.body))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(m.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeFile(t *testing.T, p string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Layer 1: a small tree. Layer 2: whiteouts (the opaque marker of opt/
// deliberately after opt/'s new entries), a dir replaced by a file, a file
// replaced by a dir, implicit parents, a hardlink to a lower file.
func testLayers(t *testing.T) (l1, l2 []byte) {
	l1 = makeTar(t, []member{
		dirM("./", 0o755),
		dirM("bin/", 0o755),
		fileM("bin/busybox", 0o755, "BUSYBOX"),
		{name: "bin/sh", typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
		dirM("etc/", 0o755),
		fileM("etc/passwd", 0o644, "root:x:0:0::/root:/bin/sh\n"),
		dirM("etc/conf.d/", 0o755),
		fileM("etc/conf.d/a.conf", 0o600, "a"),
		fileM("etc/motd", 0o644, "hello"),
		dirM("opt/", 0o755),
		fileM("opt/a", 0o644, "A"),
		dirM("opt/sub/", 0o700),
		fileM("opt/sub/b", 0o644, "B"),
		dirM("var/", 0o755),
		fileM("var/x", 0o644, "X"),
		dirM("var/keep/", 0o755),
		dirM("tmp/", 0o1777),
		dirM("usr/", 0o755),
		dirM("usr/bin/", 0o755),
		fileM("usr/bin/su", 0o4755, "SU"),
		dirM("data/", 0o755),
		fileM("data/file", 0o640, "shared content"),
		{name: "data/link", typ: tar.TypeLink, mode: 0o640, link: "data/file"},
		{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
		{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
	})
	l2 = makeTar(t, []member{
		dirM("opt/", 0o755),
		fileM("opt/c", 0o644, "C"),
		dirM("opt/new/", 0o755),
		fileM("opt/new/d", 0o644, "D"),
		fileM("opt/.wh..wh..opq", 0o644, ""),
		fileM("var/.wh.x", 0o644, ""),
		fileM("bin/.wh.sh", 0o644, ""),
		fileM("etc/conf.d", 0o644, "now a file"),
		dirM("etc/motd/", 0o755),
		fileM("etc/motd/inner", 0o644, "in"),
		{name: "home/app/f", mode: 0o600, uid: 1000, gid: 1000, body: "app", typ: tar.TypeReg},
		{name: "bin/bb2", typ: tar.TypeLink, mode: 0o644, link: "/bin/busybox"},
		fileM("etc/.wh..wh..plnk", 0o644, ""),
	})
	return l1, l2
}

const testConfigJSON = `{
  "architecture": "amd64", "os": "linux",
  "config": {
    "Env": ["PATH=/usr/bin:/bin", "A=1"],
    "Cmd": ["cat", "/hi"],
    "WorkingDir": "/opt",
    "User": "app",
    "ExposedPorts": {"8080/tcp": {}, "53/udp": {}},
    "Volumes": {"/data": {}},
    "Labels": {"b": "2", "a": "1"},
    "StopSignal": "SIGINT"
  },
  "rootfs": {"type": "layers", "diff_ids": []}
}`

// dockerSaveTar writes a docker-save style tarball: layer 1 plain, layer 2
// gzip, plus a second image to test ref selection.
func dockerSaveTar(t *testing.T, dir string) string {
	l1, l2 := testLayers(t)
	other := makeTar(t, []member{fileM("other", 0o644, "other")})
	cfg := []byte(testConfigJSON)
	cfgName := sha(cfg) + ".json"
	otherCfg := []byte(`{"config":{"Cmd":["other"]}}`)
	manifest, _ := json.Marshal([]map[string]any{
		{"Config": sha(otherCfg) + ".json", "RepoTags": []string{"other:1"}, "Layers": []string{"o/layer.tar"}},
		{"Config": cfgName, "RepoTags": []string{"test:latest"}, "Layers": []string{"l1/layer.tar", "l2/layer.tar"}},
	})
	outer := makeTar(t, []member{
		fileM("manifest.json", 0o644, string(manifest)),
		fileM(cfgName, 0o644, string(cfg)),
		fileM(sha(otherCfg)+".json", 0o644, string(otherCfg)),
		dirM("l1/", 0o755),
		fileM("l1/layer.tar", 0o644, string(l1)),
		dirM("l2/", 0o755),
		fileM("l2/layer.tar", 0o644, string(gzipBytes(t, l2))),
		dirM("o/", 0o755),
		// docker save links repeated layers; exercise that.
		fileM("o/real.tar", 0o644, string(other)),
		{name: "o/layer.tar", typ: tar.TypeSymlink, link: "real.tar"},
	})
	return writeFile(t, filepath.Join(dir, "docker-save.tar"), outer)
}

// ociTar writes an OCI layout tar of the same image: layer 1 gzip, layer 2
// zstd, the manifest behind a nested index.
func ociTar(t *testing.T, dir string) string {
	l1, l2 := testLayers(t)
	cfg := []byte(testConfigJSON)
	z1, z2 := gzipBytes(t, l1), zstdBytes(t, l2)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + sha(cfg), "size": len(cfg)},
		"layers": []map[string]any{
			{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": "sha256:" + sha(z1), "size": len(z1)},
			{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": "sha256:" + sha(z2), "size": len(z2)},
		},
	})
	nested, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{
			{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + sha(manifest), "size": len(manifest),
				"platform": map[string]string{"os": "linux", "architecture": "amd64"}},
		},
	})
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []map[string]any{
			{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + sha(nested), "size": len(nested),
				"annotations": map[string]string{"org.opencontainers.image.ref.name": "latest"}},
		},
	})
	ms := []member{
		fileM("oci-layout", 0o644, `{"imageLayoutVersion":"1.0.0"}`),
		fileM("index.json", 0o644, string(index)),
		dirM("blobs/", 0o755),
		dirM("blobs/sha256/", 0o755),
	}
	for _, b := range [][]byte{cfg, z1, z2, manifest, nested} {
		ms = append(ms, fileM("blobs/sha256/"+sha(b), 0o644, string(b)))
	}
	return writeFile(t, filepath.Join(dir, "oci.tar"), makeTar(t, ms))
}

func keys(m map[string]FileEntry) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func TestReadImageTarDockerSave(t *testing.T) {
	p := dockerSaveTar(t, t.TempDir())
	s, err := ReadImageTar(p, "test:latest")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bin", "bin/bb2", "bin/busybox",
		"data", "data/file", "data/link",
		"dev", "dev/null",
		"etc", "etc/conf.d", "etc/motd", "etc/motd/inner", "etc/passwd",
		"home", "home/app", "home/app/f",
		"opt", "opt/c", "opt/new", "opt/new/d",
		"run", "run/fifo",
		"tmp", "usr", "usr/bin", "usr/bin/su",
		"var", "var/keep",
	}
	if got := keys(s.Files); !reflect.DeepEqual(got, want) {
		t.Fatalf("paths:\n got %q\nwant %q", got, want)
	}
	check := func(p string, want FileEntry) {
		t.Helper()
		want.Path = p
		if got := s.Files[p]; got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", p, got, want)
		}
	}
	check("etc/passwd", FileEntry{Type: "file", Mode: 0o644, Size: 26, SHA256: sha([]byte("root:x:0:0::/root:/bin/sh\n"))})
	check("etc/conf.d", FileEntry{Type: "file", Mode: 0o644, Size: 10, SHA256: sha([]byte("now a file"))})
	check("etc/motd", FileEntry{Type: "dir", Mode: 0o755})
	check("tmp", FileEntry{Type: "dir", Mode: 0o777 | os.ModeSticky})
	check("usr/bin/su", FileEntry{Type: "file", Mode: 0o755 | os.ModeSetuid, Size: 2, SHA256: sha([]byte("SU"))})
	check("data/link", FileEntry{Type: "hardlink", Mode: 0o640, Size: 14, SHA256: sha([]byte("shared content")), Link: "data/file"})
	check("bin/bb2", FileEntry{Type: "hardlink", Mode: 0o755, Size: 7, SHA256: sha([]byte("BUSYBOX")), Link: "bin/busybox"})
	check("home", FileEntry{Type: "dir", Mode: 0o755})
	check("home/app/f", FileEntry{Type: "file", Mode: 0o600, UID: 1000, GID: 1000, Size: 3, SHA256: sha([]byte("app"))})
	check("dev/null", FileEntry{Type: "char", Mode: 0o666})
	check("run/fifo", FileEntry{Type: "fifo", Mode: 0o600})

	wantCfg := ImageConfig{
		Env:          []string{"PATH=/usr/bin:/bin", "A=1"},
		Cmd:          []string{"cat", "/hi"},
		WorkingDir:   "/opt",
		User:         "app",
		ExposedPorts: []string{"53/udp", "8080/tcp"},
		Volumes:      []string{"/data"},
		Labels:       map[string]string{"a": "1", "b": "2"},
		StopSignal:   "SIGINT",
	}
	if !reflect.DeepEqual(s.Config, wantCfg) {
		t.Errorf("config:\n got %+v\nwant %+v", s.Config, wantCfg)
	}

	// The first image without ref; the other image by any spelling.
	for _, ref := range []string{"", "other:1", "docker.io/library/other:1"} {
		o, err := ReadImageTar(p, ref)
		if err != nil {
			t.Fatalf("ref %q: %v", ref, err)
		}
		if got := keys(o.Files); !reflect.DeepEqual(got, []string{"other"}) || o.Config.Cmd[0] != "other" {
			t.Errorf("ref %q: got %v %+v", ref, got, o.Config)
		}
	}
	if _, err := ReadImageTar(p, "nosuch:tag"); err == nil {
		t.Error("unknown ref: no error")
	}
	// "test" means test:latest.
	if s2, err := ReadImageTar(p, "test"); err != nil || len(s2.Files) != len(s.Files) {
		t.Errorf("ref test: %v", err)
	}
}

func TestReadImageTarOCIMatchesDockerSave(t *testing.T) {
	dir := t.TempDir()
	d, err := ReadImageTar(dockerSaveTar(t, dir), "test:latest")
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range []string{"", "latest", "test:latest"} {
		o, err := ReadImageTar(ociTar(t, dir), ref)
		if err != nil {
			t.Fatalf("ref %q: %v", ref, err)
		}
		if diff := Diff(d, o); len(diff) != 0 {
			t.Errorf("ref %q: docker save vs OCI:\n%s", ref, strings.Join(diff, "\n"))
		}
		if !reflect.DeepEqual(d, o) {
			t.Errorf("ref %q: summaries not DeepEqual", ref)
		}
	}

	// The whole archive gzip-compressed reads the same.
	raw, _ := os.ReadFile(ociTar(t, dir))
	gz := writeFile(t, filepath.Join(dir, "oci.tar.gz"), gzipBytes(t, raw))
	o, err := ReadImageTar(gz, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, o) {
		t.Error("gzipped OCI archive differs")
	}
}

func TestReadImageTarPrefersManifestJSON(t *testing.T) {
	dir := t.TempDir()
	layer := makeTar(t, []member{fileM("from-docker", 0o644, "x")})
	cfg := []byte(`{"config":{}}`)
	manifest, _ := json.Marshal([]map[string]any{{"Config": "c.json", "Layers": []string{"l.tar"}}})
	p := writeFile(t, filepath.Join(dir, "both.tar"), makeTar(t, []member{
		fileM("oci-layout", 0o644, `{"imageLayoutVersion":"1.0.0"}`),
		fileM("index.json", 0o644, `{"schemaVersion":2,"manifests":[{"digest":"sha256:00"}]}`),
		fileM("manifest.json", 0o644, string(manifest)),
		fileM("c.json", 0o644, string(cfg)),
		fileM("l.tar", 0o644, string(layer)),
	}))
	s, err := ReadImageTar(p, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Files["from-docker"]; !ok {
		t.Errorf("manifest.json not used: %v", keys(s.Files))
	}
}

func TestDiff(t *testing.T) {
	s, err := ReadImageTar(dockerSaveTar(t, t.TempDir()), "test")
	if err != nil {
		t.Fatal(err)
	}
	clone := func() *ImageSummary {
		c := &ImageSummary{Files: map[string]FileEntry{}, Config: s.Config}
		for k, v := range s.Files {
			c.Files[k] = v
		}
		return c
	}
	if d := Diff(s, clone()); len(d) != 0 {
		t.Fatalf("identical: %q", d)
	}

	b := clone()
	e := b.Files["etc/passwd"]
	e.Mode = 0o600
	b.Files["etc/passwd"] = e
	delete(b.Files, "opt/c")
	b.Files["extra"] = FileEntry{Path: "extra", Type: "file"}
	e = b.Files["usr/bin/su"]
	e.Mode = 0o755
	e.UID = 5
	b.Files["usr/bin/su"] = e
	e = b.Files["etc/motd/inner"]
	e.SHA256 = sha([]byte("changed"))
	b.Files["etc/motd/inner"] = e
	b.Config.Cmd = []string{"sh"}
	b.Config.Labels = map[string]string{"a": "1"}
	got := Diff(s, b)
	want := []string{
		"/etc/motd/inner: sha256 " + sha([]byte("in"))[:12] + " != " + sha([]byte("changed"))[:12],
		"/etc/passwd: mode 0644 != 0600",
		"/extra: only in b (file)",
		"/opt/c: only in a (file)",
		"/usr/bin/su: mode 4755 != 0755",
		"/usr/bin/su: uid 0 != 5",
		`config.Cmd: ["cat","/hi"] != ["sh"]`,
		`config.Labels: {"a":"1","b":"2"} != {"a":"1"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff:\n got %q\nwant %q", got, want)
	}

	// Ignore patterns: globs (not crossing "/") and directory prefixes.
	got = Diff(s, b, "/etc/*", "usr/", "extra")
	want = []string{
		"/etc/motd/inner: sha256 " + sha([]byte("in"))[:12] + " != " + sha([]byte("changed"))[:12],
		"/opt/c: only in a (file)",
		`config.Cmd: ["cat","/hi"] != ["sh"]`,
		`config.Labels: {"a":"1","b":"2"} != {"a":"1"}`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Diff with ignores:\n got %q\nwant %q", got, want)
	}
}

func TestDiffHardlinkNormalization(t *testing.T) {
	content := sha([]byte("x"))
	a := &ImageSummary{Files: map[string]FileEntry{
		"f1": {Path: "f1", Type: "file", Mode: 0o644, Size: 1, SHA256: content},
		"f2": {Path: "f2", Type: "hardlink", Mode: 0o644, Size: 1, SHA256: content, Link: "f1"},
		"s":  {Path: "s", Type: "symlink", Mode: 0o777, Link: "f1"},
		"d":  {Path: "d", Type: "dir", Mode: 0o755, Size: 4096},
	}}
	b := &ImageSummary{Files: map[string]FileEntry{
		"f1": {Path: "f1", Type: "hardlink", Mode: 0o644, Size: 1, SHA256: content, Link: "f2"},
		"f2": {Path: "f2", Type: "file", Mode: 0o644, Size: 1, SHA256: content},
		"s":  {Path: "s", Type: "symlink", Mode: 0o755, Link: "f1"},
		"d":  {Path: "d", Type: "dir", Mode: 0o755},
	}}
	if d := Diff(a, b); len(d) != 0 {
		t.Errorf("want no differences, got %q", d)
	}
	b.Files["s"] = FileEntry{Path: "s", Type: "symlink", Link: "f2"}
	if d := Diff(a, b); !reflect.DeepEqual(d, []string{`/s: link "f1" != "f2"`}) {
		t.Errorf("symlink target change: %q", d)
	}
}

func TestBusyboxRootfsDeterministic(t *testing.T) {
	RequireCommand(t, "/bin/busybox")
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p1 := BusyboxTar(t)
	p2 := filepath.Join(t.TempDir(), "again.tar")
	if out, err := execOutput(filepath.Join(root, "scripts", "busybox-rootfs.sh"), p2); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	b1, _ := os.ReadFile(p1)
	b2, _ := os.ReadFile(p2)
	if sha(b1) != sha(b2) {
		t.Fatal("busybox-rootfs.sh output differs between runs")
	}
	// The tar is a one-layer image filesystem; check its shape.
	fs := &layerFS{files: map[string]*FileEntry{}}
	if err := fs.apply(bytes.NewReader(b1)); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]FileEntry{
		"bin/sh":   {Type: "symlink", Mode: 0o777, Link: "busybox"},
		"tmp":      {Type: "dir", Mode: 0o777 | os.ModeSticky},
		"root":     {Type: "dir", Mode: 0o700},
		"home/app": {Type: "dir", Mode: 0o755, UID: 1000, GID: 1000},
	} {
		want.Path = p
		if got := fs.files[p]; got == nil || *got != want {
			t.Errorf("%s: got %+v, want %+v", p, got, want)
		}
	}
	if e := fs.files["bin/busybox"]; e == nil || e.Type != "file" || e.Mode != 0o755 {
		t.Errorf("bin/busybox: %+v", e)
	}
	if e := fs.files["bin/ls"]; e == nil || e.Link != "busybox" {
		t.Errorf("bin/ls: %+v", e)
	}
	for _, p := range []string{"etc/passwd", "etc/group", "usr/bin", "var", "proc", "sys", "dev"} {
		if fs.files[p] == nil {
			t.Errorf("%s missing", p)
		}
	}
}
