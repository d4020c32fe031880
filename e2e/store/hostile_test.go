package store

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/e2e/e2etest"
	"github.com/kiln-build/kiln/internal/testenv"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

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
	var entries []e2etest.TarEntry
	for _, n := range append(order, rest...) {
		if b, ok := files[n]; ok {
			entries = append(entries, e2etest.TarEntry{Hdr: tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))}, Body: b})
		}
	}
	return e2etest.TarOf(t, entries...)
}

// hostileEnv is a store plus a directory outside it that hostile input
// aims at; nothing may ever appear or change there.
type hostileEnv struct {
	s       *e2etest.Store
	outside string // holds secret, and x
	climb   string // enough "../" to reach / from anywhere in the test's dirs
	before  string
}

// beforeImage is built by newHostileEnv, before any hostile input: it
// and busybox must still run and save at the end ("nothing is lost").
const beforeImage = "hostile/before:1"

func newHostileEnv(t *testing.T) *hostileEnv {
	t.Helper()
	s := e2etest.NewStore(t)
	h := &hostileEnv{s: s, outside: t.TempDir(), climb: strings.Repeat("../", 30)}
	if err := os.WriteFile(filepath.Join(h.outside, "secret"), []byte("HOST SECRET\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.outside, "x"), []byte("HOST X\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h.before = h.outsideState(t)
	s.MustKiln("build", "-t", beforeImage, e2etest.ContextDir(t, "FROM busybox\nRUN echo before > /id\n", map[string][]byte{}))
	return h
}

// assertNothingLost runs busybox and the image tagged before the hostile
// input, saves both and checks the archive names them, and requires a
// consistent store.
func (h *hostileEnv) assertNothingLost(t *testing.T) {
	t.Helper()
	s := h.s
	s.T = t
	if o := s.MustKiln("run", "--rm", "busybox", "echo", "busybox ok"); o != "busybox ok\n" {
		t.Errorf("busybox printed %q", o)
	}
	if o := s.MustKiln("run", "--rm", beforeImage, "cat", "/id"); o != "before\n" {
		t.Errorf("%s printed %q", beforeImage, o)
	}
	p := filepath.Join(t.TempDir(), "before.tar")
	s.MustKiln("save", "-o", p, "busybox", beforeImage)
	var tags []string
	for _, m := range savedManifest(t, p) {
		tags = append(tags, m.RepoTags...)
	}
	sort.Strings(tags)
	if want := []string{"busybox:latest", beforeImage}; !slices.Equal(tags, want) {
		t.Errorf("kiln save of the images tagged before: RepoTags %q, want %q", tags, want)
	}
	h.assertOutsideUntouched(t)
	s.AssertClean()
	s.AssertDoctorClean()
}

// savedEntry is one image of a docker-save archive's manifest.json.
type savedEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func savedManifest(t *testing.T, p string) []savedEntry {
	t.Helper()
	var m []savedEntry
	if err := json.Unmarshal(e2etest.TarFiles(t, p)["manifest.json"], &m); err != nil || len(m) == 0 {
		t.Fatalf("%s: manifest.json: %v %q", p, err, m)
	}
	return m
}

// lastLayerNames lists the entry names of the top layer of the one image
// in a docker-save archive.
func lastLayerNames(t *testing.T, p string) []string {
	t.Helper()
	files := e2etest.TarFiles(t, p)
	var m []savedEntry
	if err := json.Unmarshal(files["manifest.json"], &m); err != nil || len(m) != 1 || len(m[0].Layers) == 0 {
		t.Fatalf("%s: manifest.json: %v %q", p, err, files["manifest.json"])
	}
	var r io.Reader = bytes.NewReader(files[m[0].Layers[len(m[0].Layers)-1]])
	if b := files[m[0].Layers[len(m[0].Layers)-1]]; len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b {
		zr, err := gzip.NewReader(r)
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	}
	var names []string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatalf("%s: top layer: %v", p, err)
		}
		names = append(names, hdr.Name)
	}
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
	before := storeFiles(t, h.s.Root)
	fn()
	if d := diffLists(before, storeFiles(t, h.s.Root)); len(d) > 0 {
		if len(d) > 40 {
			d = append(d[:40], "...")
		}
		t.Errorf("the store changed:\n%s", strings.Join(d, "\n"))
	}
}

// mustFail runs kiln and requires exit 1 with every want in stderr.
func (h *hostileEnv) mustFail(t *testing.T, want []string, args ...string) string {
	t.Helper()
	out, errOut, err := h.s.Kiln(args...)
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
	diskMajor, diskMinor := devOf(s.Root + "/..")

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
				return imageArchive(t, n, nil, e2etest.TarOf(t, e2etest.RegEntry(h.climb+out[1:]+"/dotdot-evil", "x")))
			},
			// like docker load, refused on arrival, not on first use
			loadErr: []string{"layer1/layer.tar", "path escapes the layer root"},
		},
		{
			name: "absolute names",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, e2etest.TarOf(t, e2etest.RegEntry(out+"/abs-evil", "inside\n")))
			},
			run: []string{"cat", out + "/abs-evil"}, want: "inside\n",
		},
		{
			name: "a symlink out, then a file through it",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, e2etest.TarOf(t,
					e2etest.SymlinkEntry("link", out), e2etest.RegEntry("link/through-evil", "one\n"),
					e2etest.SymlinkEntry("rlink", h.climb+out[1:]), e2etest.RegEntry("rlink/through-evil2", "two\n")))
			},
			run: []string{"cat", "/link/through-evil", "/rlink/through-evil2"}, want: "one\ntwo\n",
		},
		{
			name: "a hardlink climbing out",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, e2etest.TarOf(t, e2etest.HardlinkEntry("hl", h.climb+out[1:]+"/secret")))
			},
			loadErr: []string{"hardlink target", "path escapes the layer root"},
		},
		{
			name: "a hardlink to an absolute host path",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, e2etest.TarOf(t, e2etest.HardlinkEntry("hl", out+"/secret")))
			},
			loadErr: []string{"hardlink target", "is not an earlier file of this layer"},
		},
		{
			name: "device nodes",
			archive: func(n string) []byte {
				return imageArchive(t, n, nil, e2etest.TarOf(t,
					e2etest.DeviceEntry("evil-disk", tar.TypeBlock, diskMajor, diskMinor),
					e2etest.DeviceEntry("evil-mem", tar.TypeChar, 1, 1)))
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
				gz := gzipped(t, e2etest.TarOf(t, e2etest.RegEntry("f", strings.Repeat("data", 20000))))
				return imageArchive(t, n, func(files map[string][]byte) { files["layer1/layer.tar"] = gz[:len(gz)/2] }, e2etest.TarOf(t, e2etest.RegEntry("f", strings.Repeat("data", 20000))))
			},
			loadErr: []string{"truncated", "layer1/layer.tar", "unexpected EOF"},
		},
		{
			name: "a corrupted gzip layer",
			archive: func(n string) []byte {
				layer := e2etest.TarOf(t, e2etest.RegEntry("f", string(randomData(7, 64<<10))))
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
					files["layer1/layer.tar"] = e2etest.TarOf(t, e2etest.RegEntry("f", "not what the config says"))
				}, e2etest.TarOf(t, e2etest.RegEntry("f", "the layer")))
			},
			loadErr: []string{"digest mismatch"},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.T = t
			name := fmt.Sprintf("hostile/load%d:1", i)
			p := filepath.Join(t.TempDir(), "archive.tar")
			if err := os.WriteFile(p, tc.archive(name), 0o644); err != nil {
				t.Fatal(err)
			}
			if tc.loadErr != nil {
				h.assertUnchangedBy(t, func() { h.mustFail(t, tc.loadErr, "load", "-i", p) })
			} else {
				if o := s.MustKiln("load", "-i", p); !strings.Contains(o, "Loaded image: "+name) {
					t.Errorf("load: %s", o)
				}
				// kiln unpacks a layer when it is first used: run it.
				before := storeFiles(t, s.Root)
				if o := s.MustKiln(append([]string{"run", "--rm", name}, tc.run...)...); o != tc.want {
					t.Errorf("run printed %q, want %q", o, tc.want)
				}
				// Only the layer's new snapshot may have appeared.
				for _, d := range diffLists(before, storeFiles(t, s.Root)) {
					if !newSnapshotPath.MatchString(d) {
						t.Errorf("unpacking the layer changed the store: %s", d)
					}
				}
			}
			h.assertOutsideUntouched(t)
			s.AssertClean()
		})
	}
	s.T = t
	s.AssertDoctorClean()
	// A saved archive whose layer blob was altered (its name no longer
	// matches): the blob names are checked too.
	saved := filepath.Join(t.TempDir(), "saved.tar")
	s.MustKiln("save", "-o", saved, "hostile/load1:1")
	altered := alterLastLayerBlob(t, saved)
	h.assertUnchangedBy(t, func() { h.mustFail(t, []string{"digest mismatch"}, "load", "-i", altered) })
	h.assertNothingLost(t)
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
	var entries []e2etest.TarEntry
	for _, h := range headers {
		entries = append(entries, e2etest.TarEntry{Hdr: h, Body: files[h.Name]})
	}
	p := filepath.Join(t.TempDir(), "altered.tar")
	if err := os.WriteFile(p, e2etest.TarOf(t, entries...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHostileArchivesViaADD(t *testing.T) {
	h := newHostileEnv(t)
	s := h.s
	out := h.outside

	// ADD URL: served on 127.0.0.1; BuildKit never extracts a download.
	served := e2etest.TarOf(t, e2etest.RegEntry(h.climb+out[1:]+"/url-evil", "x"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/evil.tar" {
			http.NotFound(w, r)
			return
		}
		w.Write(served)
	}))
	defer srv.Close()
	wrong := digest.FromString("not what the server sends")

	corrupted := func() []byte {
		// The first entry's header is intact (so it is an archive); the
		// deflate stream is damaged in the middle of the second entry.
		gz := gzipped(t, e2etest.TarOf(t, e2etest.RegEntry("a", "a"), e2etest.RegEntry("f", string(randomData(5, 256<<10)))))
		for i := len(gz) / 2; i < len(gz)/2+64; i++ {
			gz[i] ^= 0x55
		}
		return gz
	}()
	if zr, err := gzip.NewReader(bytes.NewReader(corrupted)); err != nil {
		t.Fatal(err)
	} else if _, err := io.Copy(io.Discard, zr); err == nil {
		t.Fatal("the corrupted gzip archive reads back whole")
	}

	cases := []struct {
		name    string
		archive []byte // evil.tar in the context
		add     string // the ADD line; default ADD evil.tar /dst/
		fail    []string
		check   string // else this shell command in the image must print want
		want    string
	}{
		{name: "../ names", archive: e2etest.TarOf(t, e2etest.RegEntry(h.climb+out[1:]+"/add-evil", "x")),
			fail: []string{"Dockerfile:2:", "ADD", "outside of the destination"}},
		{name: "absolute names", archive: e2etest.TarOf(t, e2etest.RegEntry(out+"/abs", "inside\n")),
			check: "cat /dst" + out + "/abs", want: "inside\n"},
		{name: "an absolute symlink, then a file through it", archive: e2etest.TarOf(t, e2etest.SymlinkEntry("link", out), e2etest.RegEntry("link/evil", "inside\n")),
			check: "cat /dst" + out + "/evil; readlink /dst/link", want: "inside\n" + out + "\n"},
		{name: "a relative symlink climbing out", archive: e2etest.TarOf(t, e2etest.SymlinkEntry("rlink", h.climb+out[1:]), e2etest.RegEntry("rlink/evil", "x")),
			fail: []string{"Dockerfile:2:", "outside of the destination"}},
		{name: "a hardlink climbing out", archive: e2etest.TarOf(t, e2etest.HardlinkEntry("hl", h.climb+out[1:]+"/secret")),
			fail: []string{"Dockerfile:2:", "outside of the destination"}},
		{name: "a hardlink to an absolute host path", archive: e2etest.TarOf(t, e2etest.HardlinkEntry("hl", out+"/secret")),
			fail: []string{"Dockerfile:2:", "no such file or directory"}},
		{name: "device nodes", archive: e2etest.TarOf(t, e2etest.DeviceEntry("mem", tar.TypeChar, 1, 1)),
			check: "head -c 1 /dst/mem >/dev/null 2>&1 && echo READ || echo denied", want: "denied\n"},
		{name: "an absurd size", archive: absurdSizeTar(t, "huge"),
			fail: []string{"Dockerfile:2:", "unexpected EOF"}},
		{name: "a truncated gzip archive", archive: func() []byte {
			gz := gzipped(t, e2etest.TarOf(t, e2etest.RegEntry("a", "a"), e2etest.RegEntry("f", string(randomData(3, 256<<10)))))
			return gz[:len(gz)/2]
		}(), fail: []string{"Dockerfile:2:", "unexpected EOF"}},
		{name: "a corrupted gzip archive", archive: corrupted,
			fail: []string{"Dockerfile:2: ADD evil.tar /dst/", `"evil.tar"`, "corrupt input"}},
		{name: "a URL whose digest does not match", archive: served,
			add:  fmt.Sprintf("ADD --checksum=%s %s/evil.tar /dst/", wrong, srv.URL),
			fail: []string{"Dockerfile:2: ADD --checksum=" + wrong.String() + " " + srv.URL + "/evil.tar /dst/", "checksum mismatch", "expected " + wrong.String(), "got " + digest.FromBytes(served).String()}},
		{name: "a URL with the right digest is not extracted", archive: served,
			add:   fmt.Sprintf("ADD --checksum=%s %s/evil.tar /dst/", digest.FromBytes(served), srv.URL),
			check: "stat -c '%F %s' /dst/evil.tar", want: fmt.Sprintf("regular file %d\n", len(served))},
	}

	// What a plain busybox holds (one filesystem; the container's own
	// mounts are the same in every run).
	const list = "find / -xdev | sort"
	base := strings.Split(s.MustKiln("run", "--rm", "busybox", "sh", "-c", list), "\n")
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.T = t
			add := tc.add
			if add == "" {
				add = "ADD evil.tar /dst/"
			}
			dir := e2etest.ContextDir(t, "FROM busybox\n"+add+"\n", map[string][]byte{"evil.tar": tc.archive})
			name := fmt.Sprintf("hostile/add%d:1", i)
			if tc.fail != nil {
				h.assertUnchangedBy(t, func() { h.mustFail(t, tc.fail, "build", "-t", name, dir) })
				if o, _, err := s.Kiln("images", "-q", name); err != nil || o != "" {
					t.Errorf("a failed build tagged %s: %v %q", name, err, o)
				}
			} else {
				s.MustKiln("build", "-t", name, dir)
				if o := s.MustKiln("run", "--rm", name, "sh", "-c", tc.check); o != tc.want {
					t.Errorf("%s printed %q, want %q", tc.check, o, tc.want)
				}
				// Everything the ADD wrote is in /dst, as the image shows it
				// and as its layer records it; nothing else changed.
				got := strings.Split(s.MustKiln("run", "--rm", name, "sh", "-c", list), "\n")
				added := diffLists(base, got)
				if !contains(added, "+/dst") {
					t.Errorf("find / shows no /dst: %q", added)
				}
				for _, d := range added {
					if !strings.HasPrefix(d, "+/dst/") && d != "+/dst" {
						t.Errorf("outside the ADD destination: %s", d)
					}
				}
				saved := filepath.Join(t.TempDir(), "image.tar")
				s.MustKiln("save", "-o", saved, name)
				names := lastLayerNames(t, saved)
				if len(names) < 2 {
					t.Errorf("the ADD layer holds %q: the archive's files are missing", names)
				}
				for _, n := range names {
					if n != "dst/" && !strings.HasPrefix(n, "dst/") {
						t.Errorf("the ADD layer has %q, outside dst/", n)
					}
				}
			}
			h.assertOutsideUntouched(t)
			s.AssertClean()
		})
	}
	h.assertNothingLost(t)
}

// TestHostileContexts pins BuildKit's behaviour (v0.34.2: contenthash and
// fsutil resolve every COPY source, symlinks included, inside the context
// root; a Dockerfile COPY follows a symlink it names; see also
// testdata/conformance/err-copy-outside-context, copy-symlink-source and
// copy-symlinks-context): ../ and absolute sources are clamped to the
// context, a symlink to outside resolves to a path inside the context that
// does not exist, so naming it, or a path through it, fails as not found;
// copying the directory holding it copies the symlink itself.
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
	// In the context, as COPY ../inside finds it.
	if err := os.WriteFile(filepath.Join(dir, "inside"), []byte("CTX INSIDE\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{"link": h.outside, "rlink": h.climb + h.outside[1:], "flink": h.outside + "/secret"}
	for link, target := range links {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, copy string
		notFound   string // the build fails: Dockerfile:2: COPY..., "notFound": not found
		check      string // else this shell command in the image prints want
		want       string
	}{
		{name: "a directory symlink to outside", copy: "COPY link/ /x/", notFound: "link"},
		{name: "a directory symlink to outside, no slash", copy: "COPY link /x/", notFound: "link"},
		{name: "a relative directory symlink climbing out", copy: "COPY rlink/ /x/", notFound: "rlink"},
		{name: "a file through a symlink to outside", copy: "COPY link/secret /x/", notFound: "link/secret"},
		{name: "a file through a relative symlink climbing out", copy: "COPY rlink/secret /x/", notFound: "rlink/secret"},
		{name: "a symlink to a file outside", copy: "COPY flink /x/flink", notFound: "flink"},
		{name: "../x", copy: "COPY ../x /x/", notFound: "x"},
		{name: "an absolute path", copy: "COPY " + h.outside + "/secret /x/", notFound: h.outside[1:] + "/secret"},
		{name: "../ clamped to the context", copy: "COPY ../inside /x/",
			check: "cat /x/inside", want: "CTX INSIDE\n"},
		{name: "a climbing path clamped to the context", copy: "COPY " + h.climb + "inside /x/",
			check: "cat /x/inside", want: "CTX INSIDE\n"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.T = t
			os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\n"+tc.copy+"\n"), 0o644)
			name := fmt.Sprintf("hostile/ctx%d:1", i)
			if tc.notFound != "" {
				h.assertUnchangedBy(t, func() {
					msg := h.mustFail(t, []string{"Dockerfile:2: " + tc.copy, fmt.Sprintf("%q: not found", tc.notFound)}, "build", "-t", name, dir)
					if strings.Contains(msg, "HOST") {
						t.Errorf("the error shows host data:\n%s", msg)
					}
				})
			} else {
				s.MustKiln("build", "-t", name, dir)
				if o := s.MustKiln("run", "--rm", name, "sh", "-c", tc.check); o != tc.want {
					t.Errorf("%s printed %q, want %q", tc.check, o, tc.want)
				}
			}
			h.assertOutsideUntouched(t)
			s.AssertClean()
		})
	}

	// Copying the directory copies the symlinks themselves, as BuildKit
	// does: the links point where they did, and there is nothing of the
	// host's behind them in the image.
	s.T = t
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM busybox\nCOPY . /ctx/\n"), 0o644)
	s.MustKiln("build", "-t", "hostile/ctxall:1", dir)
	check := "for l in link rlink flink; do printf '%s ' $l; if test -L /ctx/$l; then readlink /ctx/$l; else echo not a symlink; fi; done;" +
		" cat /ctx/flink /ctx/link/secret /ctx/rlink/secret 2>/dev/null; find / -xdev -type f -exec grep -l 'HOST SECRET' {} + 2>/dev/null; true"
	want := fmt.Sprintf("link %s\nrlink %s\nflink %s\n", links["link"], links["rlink"], links["flink"])
	if o := s.MustKiln("run", "--rm", "hostile/ctxall:1", "sh", "-c", check); o != want {
		t.Errorf("COPY . of symlinks to outside printed:\n%s\nwant:\n%s", o, want)
	}
	h.assertOutsideUntouched(t)
	h.assertNothingLost(t)
}

func TestHostileDockerfilesFailFastAndClearly(t *testing.T) {
	h := newHostileEnv(t)
	s := h.s
	nestedJSON := strings.Repeat("[", 30000) + strings.Repeat("]", 30000)
	cases := []struct {
		name, dockerfile string
		// A valid Dockerfile after all: it must build (quickly), and the
		// image must pass check.
		check func(t *testing.T, image string)
		want  []string // else the error must say these
	}{
		{name: "deeply nested variables",
			dockerfile: "FROM busybox\nENV A=" + strings.Repeat("${A:-", 10000) + "x" + strings.Repeat("}", 10000) + "\nRUN test \"$A\" = x\n",
			check: func(t *testing.T, image string) {
				if o := s.MustKiln("run", "--rm", image, "sh", "-c", `echo "$A"`); o != "x\n" {
					t.Errorf("A is %q, want x", o)
				}
			}},
		{name: "deeply nested JSON",
			// Not a JSON array of strings (and deeper than a JSON parser
			// goes): the shell form, as BuildKit makes it.
			dockerfile: "FROM busybox\nCMD " + nestedJSON + "\n",
			check: func(t *testing.T, image string) {
				cfg, _ := s.Inspect(image)["Config"].(map[string]any)
				cmd, _ := cfg["Cmd"].([]any)
				if len(cmd) != 3 || cmd[0] != "/bin/sh" || cmd[1] != "-c" || cmd[2] != nestedJSON {
					t.Errorf("Cmd is %.200q", cmd)
				}
			}},
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
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s.T = t
			dir := e2etest.ContextDir(t, tc.dockerfile, map[string][]byte{})
			name := fmt.Sprintf("hostile/df%d:1", i)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			before := storeFiles(t, s.Root)
			start := time.Now()
			cmd := exec.CommandContext(ctx, e2etest.Bin(), "--root", s.Root, "build", "-t", name, dir)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			took := time.Since(start)
			if took > 10*time.Second {
				t.Errorf("took %v", took)
			}
			if tc.check != nil {
				if err != nil {
					t.Fatalf("a valid Dockerfile did not build: %v after %v\n%.2000s", err, took, stderr.String())
				}
				t.Logf("built in %v", took)
				tc.check(t, name)
				s.AssertClean()
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
			if d := diffLists(before, storeFiles(t, s.Root)); len(d) > 0 {
				t.Errorf("the store changed:\n%s", strings.Join(d, "\n"))
			}
			if o, _, err := s.Kiln("images", "-q", name); err != nil || o != "" {
				t.Errorf("a failed build tagged %s: %v %q", name, err, o)
			}
			s.AssertClean()
		})
	}
	h.assertNothingLost(t)
}
