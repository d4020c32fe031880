package main_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testenv"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// tarEntry is one entry of a tar made by tarOf.
type tarEntry struct {
	hdr  tar.Header
	body []byte
}

func regEntry(name, body string) tarEntry {
	return tarEntry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))}, []byte(body)}
}

func symlinkEntry(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}}
}

func hardlinkEntry(name, target string) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target, Mode: 0o644}}
}

func deviceEntry(name string, typ byte, major, minor uint32) tarEntry {
	return tarEntry{hdr: tar.Header{Name: name, Typeflag: typ, Devmajor: int64(major), Devminor: int64(minor), Mode: 0o666}}
}

func tarOf(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.ModTime = time.Unix(0, 0)
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// absurdSizeTar is a tar whose only header claims a 1 TB file, with no
// content after it.
func absurdSizeTar(t *testing.T, name string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	tw.Flush() // the header is out; the content never comes
	return buf.Bytes()
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// imageArchive is a docker-save tar of an image called name whose layers
// are busybox's rootfs and then layers. mutate, if set, may change the
// archive's files (name → content) before they are written; their order
// is config, layers, manifest.json, then any other name in sorted order.
func imageArchive(t *testing.T, name string, mutate func(files map[string][]byte), layers ...[]byte) []byte {
	t.Helper()
	bb, err := os.ReadFile(testenv.BusyboxTar(t))
	if err != nil {
		t.Fatal(err)
	}
	layers = append([][]byte{bb}, layers...)
	files := map[string][]byte{}
	var diffIDs []string
	var layerNames []string
	for i, l := range layers {
		n := fmt.Sprintf("layer%d/layer.tar", i)
		files[n] = l
		layerNames = append(layerNames, n)
		diffIDs = append(diffIDs, digest.FromBytes(l).String())
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Env": []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	files["config.json"] = cfg
	mf, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{name}, "Layers": layerNames}})
	files["manifest.json"] = mf
	if mutate != nil {
		mutate(files)
	}
	order := append(append([]string{"config.json"}, layerNames...), "manifest.json")
	var rest []string
	for n := range files {
		if !contains(order, n) {
			rest = append(rest, n)
		}
	}
	var entries []tarEntry
	for _, n := range append(order, rest...) {
		if b, ok := files[n]; ok {
			entries = append(entries, tarEntry{tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}, b})
		}
	}
	return tarOf(t, entries...)
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// hostileEnv is a store plus a directory outside it that hostile input
// aims at; nothing may ever appear or change there.
type hostileEnv struct {
	s       *store
	outside string // holds secret, and x
	climb   string // enough "../" to reach / from anywhere in the test's dirs
	before  string
}

func newHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	s := newStore(t)
	h := &hostileEnv{s: s, outside: t.TempDir(), climb: strings.Repeat("../", 30)}
	if err := os.WriteFile(filepath.Join(h.outside, "secret"), []byte("HOST SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.outside, "x"), []byte("HOST X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.before = h.outsideState(t)
	s.mustKiln("run", "--rm", "busybox", "/bin/true") // unpack the base once
	return h
}

// outsideState describes the outside directory: names, contents, link
// counts (a hardlink made to secret would raise its count).
func (h *hostileEnv) outsideState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(h.outside, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		unix.Lstat(p, &st)
		fmt.Fprintf(&b, "%s %o nlink=%d", p, st.Mode, st.Nlink)
		if d.Type().IsRegular() {
			c, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", c)
		}
		b.WriteString("\n")
		return nil
	})
	return b.String()
}

func (h *hostileEnv) assertOutsideUntouched(t *testing.T) {
	t.Helper()
	if now := h.outsideState(t); now != h.before {
		t.Errorf("the directory outside changed:\nbefore:\n%safter:\n%s", h.before, now)
	}
}

// assertUnchangedBy runs fn and checks the store's files are the same
// afterwards.
func (h *hostileEnv) assertUnchangedBy(t *testing.T, fn func()) {
	t.Helper()
	before := storeFiles(t, h.s.root)
	fn()
	if d := diffLists(before, storeFiles(t, h.s.root)); len(d) > 0 {
		if len(d) > 40 {
			d = append(d[:40], "...")
		}
		t.Errorf("the store changed:\n%s", strings.Join(d, "\n"))
	}
}

// mustFail runs kiln and requires exit 1 with every want in stderr.
func (h *hostileEnv) mustFail(t *testing.T, want []string, args ...string) string {
	t.Helper()
	out, errOut, err := h.s.kiln(args...)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("kiln %s: want exit 1, got %v\n%s%s", strings.Join(args, " "), err, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(errOut, w) {
			t.Errorf("kiln %s: stderr lacks %q:\n%s", strings.Join(args, " "), w, errOut)
		}
	}
	return errOut
}

func TestHostileLayersViaLoad(t *testing.T) {
	h := newHostileEnv(t)
	s := h.s
	out := h.outside
	devOf := func(p string) (uint32, uint32) {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return unix.Major(st.Dev), unix.Minor(st.Dev)
	}
	diskMajor, diskMinor := devOf(s.root + "/..")

	cases := []struct {
		name    string
		archive func(name string) []byte
		loadErr []string // the load must fail with these
		run     []string // else the loaded image must run this and print want
		want    string
	}{
		{
			name: "../ names",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, tarOf(t, regEntry(h.climb+out[1:]+"/dotdot-evil", "x")))
			},
			// like docker load, refused on arrival, not on first use
			loadErr: []string{"layer1/layer.tar", "path escapes the layer root"},
		},
		{
			name: "absolute names",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, tarOf(t, regEntry(out+"/abs-evil", "inside\n")))
			},
			run: []string{"cat", out + "/abs-evil"}, want: "inside\n",
		},
		{
			name: "a symlink out, then a file through it",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, tarOf(t,
					symlinkEntry("link", out), regEntry("link/through-evil", "one\n"),
					symlinkEntry("rlink", h.climb+out[1:]), regEntry("rlink/through-evil2", "two\n")))
			},
			run: []string{"cat", "/link/through-evil", "/rlink/through-evil2"}, want: "one\ntwo\n",
		},
		{
			name: "a hardlink climbing out",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, tarOf(t, hardlinkEntry("hl", h.climb+out[1:]+"/secret")))
			},
			loadErr: []string{"hardlink target", "path escapes the layer root"},
		},
		{
			name: "a hardlink to an absolute host path",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, tarOf(t, hardlinkEntry("hl", out+"/secret")))
			},
			loadErr: []string{"hardlink target", "is not an earlier file of this layer"},
		},
		{
			name: "device nodes",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, tarOf(t,
					deviceEntry("evil-disk", tar.TypeBlock, diskMajor, diskMinor),
					deviceEntry("evil-mem", tar.TypeChar, 1, 1)))
			},
			// Like docker: the nodes exist, the container may not open them.
			run:  []string{"sh", "-c", "for d in /evil-disk /evil-mem; do head -c 1 $d >/dev/null 2>&1 && echo $d READ || echo $d denied; done"},
			want: "/evil-disk denied\n/evil-mem denied\n",
		},
		{
			name: "an absurd size in a layer header",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, absurdSizeTar(t, "huge"))
			},
			loadErr: []string{"layer1/layer.tar", "cut short"},
		},
		{
			name: "an absurd size in the archive's own header",
			archive: func(n string) []byte {
				a := imageArchive(t, n, nil)
				return append(a[:len(a)-1024:len(a)-1024], absurdSizeTar(t, "zz-huge")...)
			},
			loadErr: []string{"truncated archive"},
		},
		{
			name: "entries outside the archive",
			archive: func(n string) []byte {
				return imageArchive(t, n, func(files map[string][]byte) {
					files[h.climb+out[1:]+"/outer-evil"] = []byte("x")
					files["/"+out[1:]+"/outer-abs-evil"] = []byte("x")
				})
			},
			run: []string{"true"},
		},
		{
			name: "a truncated gzip layer",
			archive: func(n string) []byte {
				gz := gzipped(t, tarOf(t, regEntry("f", strings.Repeat("data", 20000))))
				return imageArchive(t, n, func(files map[string][]byte) { files["layer1/layer.tar"] = gz[:len(gz)/2] }, tarOf(t, regEntry("f", strings.Repeat("data", 20000))))
			},
			loadErr: []string{"truncated", "layer1/layer.tar", "unexpected EOF"},
		},
		{
			name: "a corrupted gzip layer",
			archive: func(n string) []byte {
				layer := tarOf(t, regEntry("f", string(randomData(7, 64<<10))))
				gz := gzipped(t, layer)
				for i := len(gz) / 2; i < len(gz)/2+64; i++ {
					gz[i] ^= 0x55
				}
				return imageArchive(t, n, func(files map[string][]byte) { files["layer1/layer.tar"] = gz }, layer)
			},
			loadErr: []string{"gzip"},
		},
		{
			name: "a layer that does not match its diff_id",
			archive: func(n string) []byte {
				return imageArchive(t, n, func(files map[string][]byte) {
					files["layer1/layer.tar"] = tarOf(t, regEntry("f", "not what the config says"))
				}, tarOf(t, regEntry("f", "the layer")))
			},
			loadErr: []string{"digest mismatch"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			name := fmt.Sprintf("hostile/load%d:1", i)
			p := filepath.Join(t.TempDir(), "archive.tar")
			if err := os.WriteFile(p, tc.archive(name), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.loadErr != nil {
				h.assertUnchangedBy(t, func() { h.mustFail(t, tc.loadErr, "load", "-i", p) })
			} else {
				if o := s.mustKiln("load", "-i", p); !strings.Contains(o, "Loaded image: "+name) {
					t.Errorf("load: %s", o)
				}
				// kiln unpacks a layer when it is first used: run it.
				before := storeFiles(t, s.root)
				if o := s.mustKiln(append([]string{"run", "--rm", name}, tc.run...)...); o != tc.want {
					t.Errorf("run printed %q, want %q", o, tc.want)
				}
				// Only the layer's new snapshot may have appeared.
				for _, d := range diffLists(before, storeFiles(t, s.root)) {
					if !newSnapshotPath.MatchString(d) {
						t.Errorf("unpacking the layer changed the store: %s", d)
					}
				}
			}
			h.assertOutsideUntouched(t)
			s.assertClean()
		})
	}
	s.t = t
	s.assertDoctorClean()
	// A saved archive whose layer blob was altered (its name no longer
	// matches): the blob names are checked too.
	saved := filepath.Join(t.TempDir(), "saved.tar")
	s.mustKiln("save", "-o", saved, "hostile/load1:1")
	altered := alterLastLayerBlob(t, saved)
	h.assertUnchangedBy(t, func() { h.mustFail(t, []string{"digest mismatch"}, "load", "-i", altered) })
	s.assertDoctorClean()
}

// newSnapshotPath is what unpacking a layer adds to the store.
var newSnapshotPath = regexp.MustCompile(`^\+snapshots/([0-9]+( d.*|/diffid .*|/fs/|/work/)|diffids/[0-9a-f]{64} .*)$`)

// alterLastLayerBlob rewrites a saved tar with one byte changed in its
// last layer blob (by manifest.json), keeping every name.
func alterLastLayerBlob(t *testing.T, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	var headers []tar.Header
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		var buf bytes.Buffer
		buf.ReadFrom(tr)
		files[hdr.Name] = buf.Bytes()
		headers = append(headers, *hdr)
	}
	var m []struct{ Layers []string }
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) == 0 {
		t.Fatalf("manifest.json: %v", err)
	}
	last := m[0].Layers[len(m[0].Layers)-1]
	l := append([]byte(nil), files[last]...)
	l[600] ^= 1 // inside the first entry's content
	files[last] = l
	var entries []tarEntry
	for _, h := range headers {
		entries = append(entries, tarEntry{h, files[h.Name]})
	}
	p := filepath.Join(t.TempDir(), "altered.tar")
	if err := os.WriteFile(p, tarOf(t, entries...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHostileArchivesViaADD(t *testing.T) {
	h := newHostileEnv(t)
	s := h.s
	out := h.outside
	cases := []struct {
		name    string
		archive []byte
		fail    []string // the build must fail with these
		check   string   // else this shell command in the image must print want
		want    string
	}{
		{name: "../ names", archive: tarOf(t, regEntry(h.climb+out[1:]+"/add-evil", "x")),
			fail: []string{"Dockerfile:2:", "ADD", "outside of the destination"}},
		{name: "absolute names", archive: tarOf(t, regEntry(out+"/abs", "inside\n")),
			check: "cat /dst" + out + "/abs", want: "inside\n"},
		{name: "an absolute symlink, then a file through it", archive: tarOf(t, symlinkEntry("link", out), regEntry("link/evil", "inside\n")),
			check: "cat /dst" + out + "/evil", want: "inside\n"},
		{name: "a relative symlink climbing out", archive: tarOf(t, symlinkEntry("rlink", h.climb+out[1:]), regEntry("rlink/evil", "x")),
			fail: []string{"Dockerfile:2:", "outside of the destination"}},
		{name: "a hardlink climbing out", archive: tarOf(t, hardlinkEntry("hl", h.climb+out[1:]+"/secret")),
			fail: []string{"Dockerfile:2:", "outside of the destination"}},
		{name: "a hardlink to an absolute host path", archive: tarOf(t, hardlinkEntry("hl", out+"/secret")),
			fail: []string{"Dockerfile:2:", "no such file or directory"}},
		{name: "device nodes", archive: tarOf(t, deviceEntry("mem", tar.TypeChar, 1, 1)),
			check: "head -c 1 /dst/mem >/dev/null 2>&1 && echo READ || echo denied", want: "denied\n"},
		{name: "an absurd size", archive: absurdSizeTar(t, "huge"),
			fail: []string{"Dockerfile:2:", "unexpected EOF"}},
		{name: "a truncated gzip archive", archive: func() []byte {
			gz := gzipped(t, tarOf(t, regEntry("a", "a"), regEntry("f", string(randomData(3, 256<<10)))))
			return gz[:len(gz)/2]
		}(), fail: []string{"Dockerfile:2:", "unexpected EOF"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			dir := contextDir(t, "FROM busybox\nADD evil.tar /dst/\n", map[string][]byte{"evil.tar": tc.archive})
			name := fmt.Sprintf("hostile/add%d:1", i)
			if tc.fail != nil {
				h.assertUnchangedBy(t, func() { h.mustFail(t, tc.fail, "build", "-t", name, dir) })
			} else {
				s.mustKiln("build", "-t", name, dir)
				if o := s.mustKiln("run", "--rm", name, "sh", "-c", tc.check); o != tc.want {
					t.Errorf("%s printed %q, want %q", tc.check, o, tc.want)
				}
			}
			h.assertOutsideUntouched(t)
			s.assertClean()
		})
	}
	s.t = t
	s.assertDoctorClean()
}

func TestHostileContexts(t *testing.T) {
	h := newHostileEnv(t)
	s := h.s
	dir := filepath.Join(t.TempDir(), "ctx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Beside the context, as COPY ../x would find it.
	if err := os.WriteFile(filepath.Join(filepath.Dir(dir), "x"), []byte("HOST X\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{"link": h.outside, "rlink": h.climb + h.outside[1:], "flink": h.outside + "/secret"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct{ name, copy string }{
		{"a directory symlink to outside", "COPY link/ /x/"},
		{"a relative directory symlink climbing out", "COPY rlink/ /x/"},
		{"a file through a symlink to outside", "COPY link/secret /x/"},
		{"a symlink to a file outside", "COPY flink /x/flink"},
		{"../x", "COPY ../x /x/"},
		{"an absolute path", "COPY " + h.outside + "/secret /x/"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\n"+tc.copy+"\n"), 0o644)
			name := fmt.Sprintf("hostile/ctx%d:1", i)
			// BuildKit resolves every source inside the context: either the
			// source is not found there, or what is copied comes from the
			// context. Never the host's files.
			_, errOut, err := s.kiln("build", "-t", name, dir)
			if err != nil {
				if !strings.Contains(errOut, "Dockerfile:2:") || !strings.Contains(errOut, "not found") {
					t.Errorf("build failed without a clear error: %v\n%s", err, errOut)
				}
			} else {
				o := s.mustKiln("run", "--rm", name, "sh", "-c", "find /x -type f -exec cat {} + 2>/dev/null; true")
				if strings.Contains(o, "HOST") {
					t.Errorf("%s copied a host file into the image:\n%s", tc.copy, o)
				}
			}
			h.assertOutsideUntouched(t)
			s.assertClean()
		})
	}
	// Symlinks in the context are copied as symlinks, as docker does.
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nCOPY . /ctx/\n"), 0o644)
	s.t = t
	s.mustKiln("build", "-t", "hostile/ctxall:1", dir)
	if o := s.mustKiln("run", "--rm", "hostile/ctxall:1", "readlink", "/ctx/link"); o != h.outside+"\n" {
		t.Errorf("COPY . of a symlink: readlink printed %q", o)
	}
	s.assertDoctorClean()
}

func TestHostileDockerfilesFailFastAndClearly(t *testing.T) {
	h := newHostileEnv(t)
	s := h.s
	cases := []struct {
		name, dockerfile string
		mayBuild         bool     // a valid Dockerfile after all: building it is fine, if quick
		want             []string // else the error must say these
	}{
		{name: "deeply nested variables", mayBuild: true,
			dockerfile: "FROM busybox\nENV A=" + strings.Repeat("${A:-", 10000) + "x" + strings.Repeat("}", 10000) + "\nRUN test \"$A\" = x\n"},
		{name: "deeply nested JSON", mayBuild: true,
			dockerfile: "FROM busybox\nCMD " + strings.Repeat("[", 30000) + strings.Repeat("]", 30000) + "\n"},
		{name: "deeply nested JSON beyond the line limit",
			dockerfile: "FROM busybox\nCMD " + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + "\n",
			want:       []string{"Dockerfile", "max allowed size"}},
		{name: "a 10 MB line",
			dockerfile: "FROM busybox\nRUN echo " + strings.Repeat("a", 10<<20) + "\n",
			want:       []string{"Dockerfile", "max allowed size"}},
		{name: "a 400 kB instruction in 100000 continuation lines",
			dockerfile: "FROM busybox\nRUN echo \\\n" + strings.Repeat(" a \\\n", 100000) + " b\n",
			want:       []string{"Dockerfile:2: RUN echo", "argument list too long"}},
		{name: "binary garbage", dockerfile: string(randomData(9, 1<<20)),
			want: []string{"Dockerfile:1:", "unknown instruction"}},
		{name: "NUL bytes", dockerfile: "FROM busybox\nRUN\x00 true\x00\nFR\x00OM\n",
			want: []string{"Dockerfile:2:", "unknown instruction"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.t = t
			dir := contextDir(t, tc.dockerfile, map[string][]byte{})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			before := storeFiles(t, s.root)
			start := time.Now()
			cmd := exec.CommandContext(ctx, kilnBin, "--root", s.root, "build", dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			took := time.Since(start)
			if took > 10*time.Second {
				t.Errorf("took %v", took)
			}
			if err == nil && tc.mayBuild {
				t.Logf("built in %v", took)
				s.assertClean()
				return
			}
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("want exit 1, got %v after %v\n%.2000s", err, took, stderr.String())
			}
			msg := stderr.String()
			if i := strings.LastIndex(msg, "ERROR:"); i >= 0 {
				msg = msg[i:]
			} else {
				t.Fatalf("no ERROR line:\n%.2000s", msg)
			}
			if len(msg) > 4<<10 {
				t.Errorf("error message of %d bytes:\n%.2000s", len(msg), msg)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%.2000s", w, msg)
				}
			}
			t.Logf("failed in %v: %.300s", took, msg)
			if d := diffLists(before, storeFiles(t, s.root)); len(d) > 0 {
				t.Errorf("the store changed:\n%s", strings.Join(d, "\n"))
			}
			s.assertClean()
		})
	}
}
