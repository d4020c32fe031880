package analyze

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// ent is one entry of a synthetic layer tar.
type ent struct {
	name string
	typ  byte
	body string // a regular file's content
	size int64  // a regular file of this many zero bytes, when body is ""
	link string
	mode int64
	uid  int
}

func reg(name, body string) ent        { return ent{name: name, typ: tar.TypeReg, body: body} }
func zeros(name string, n int64) ent   { return ent{name: name, typ: tar.TypeReg, size: n} }
func dir(name string) ent              { return ent{name: name, typ: tar.TypeDir} }
func symlink(name, target string) ent  { return ent{name: name, typ: tar.TypeSymlink, link: target} }
func hardlink(name, target string) ent { return ent{name: name, typ: tar.TypeLink, link: target} }
func wh(name string) ent               { return ent{name: name, typ: tar.TypeReg} } // a whiteout is any entry named .wh.*

// seekable is a tar in memory, opened as a file would be.
type seekable struct{ *bytes.Reader }

func (seekable) Close() error { return nil }

// layer makes a Layer of entries; opens counts how often it is opened.
func layer(t *testing.T, createdBy string, opens *int, entries ...ent) Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.name, Typeflag: e.typ, Linkname: e.link, Mode: e.mode, Uid: e.uid, ModTime: time.Unix(0, 0)}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if e.typ == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		content := e.body
		if e.typ == tar.TypeReg && e.body == "" && e.size > 0 {
			content = strings.Repeat("\x00", int(e.size))
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(content))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, content); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	return Layer{DiffID: digest.FromBytes(data), CreatedBy: createdBy, Open: func() (io.ReadSeekCloser, error) {
		if opens != nil {
			*opens++
		}
		return seekable{bytes.NewReader(data)}, nil
	}}
}

func mustLayers(t *testing.T, layers ...Layer) *Report {
	t.Helper()
	rep, err := Layers(context.Background(), layers, LayersOptions{Top: 3})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func wasteRows(rep *Report) string {
	var rows []string
	for _, w := range rep.Wasted {
		rows = append(rows, fmt.Sprintf("%s %d %d files %s by %d (added by %d)", w.Path, w.Size, w.Files, w.How, w.RemovedBy, w.AddedBy))
	}
	return strings.Join(rows, "\n")
}

func TestLayersReportsAFileDeletedLaterAsWastedWithBothLines(t *testing.T) {
	rep := mustLayers(t,
		layer(t, "kiln import", nil, dir("etc/"), reg("etc/passwd", "root:x:0:0")),
		layer(t, "RUN dd of=/big", nil, zeros("big", 50000)),
		layer(t, "RUN rm /big", nil, wh(".wh.big")),
	)
	if len(rep.Wasted) != 1 {
		t.Fatalf("wasted rows:\n%s", wasteRows(rep))
	}
	w := rep.Wasted[0]
	if w.Path != "/big" || w.Size != 50000 || w.How != "deleted" || w.AddedByLine != "RUN dd of=/big" || w.RemovedByLine != "RUN rm /big" {
		t.Errorf("waste %+v", w)
	}
	if rep.Size != 50010 || rep.WastedBytes != 50000 || rep.Layers[1].Wasted != 50000 || rep.Layers[0].Wasted != 0 {
		t.Errorf("size %d wasted %d, per layer %d %d", rep.Size, rep.WastedBytes, rep.Layers[0].Wasted, rep.Layers[1].Wasted)
	}
	if want := 100 * (1 - 50000.0/50010); math.Abs(rep.Efficiency-want) > 1e-9 {
		t.Errorf("efficiency %v, want %v", rep.Efficiency, want)
	}
}

func TestLayersCountsAnOverwrittenFileButNotAMergedDirectory(t *testing.T) {
	rep := mustLayers(t,
		layer(t, "base", nil, dir("etc/"), reg("etc/conf", strings.Repeat("a", 100))),
		layer(t, "COPY conf /etc/conf", nil, dir("etc/"), reg("etc/conf", "short")),
	)
	if got, want := wasteRows(rep), "/etc/conf 100 1 files overwritten by 2 (added by 1)"; got != want {
		t.Errorf("wasted:\n%s\nwant\n%s", got, want)
	}
}

func TestLayersOpaqueDirectoryWastesOnlyLowerContents(t *testing.T) {
	for _, order := range []string{"marker first", "marker last"} {
		t.Run(order, func(t *testing.T) {
			upper := []ent{dir("d/"), wh("d/.wh..wh..opq"), reg("d/c", "12345")}
			if order == "marker last" {
				upper = []ent{dir("d/"), reg("d/c", "12345"), wh("d/.wh..wh..opq")}
			}
			rep := mustLayers(t,
				layer(t, "one", nil, dir("d/"), zeros("d/a", 10), dir("d/sub/"), zeros("d/sub/b", 20)),
				layer(t, "two", nil, upper...),
			)
			if got, want := wasteRows(rep), "/d 30 2 files deleted by 2 (added by 1)"; got != want {
				t.Errorf("wasted:\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestLayersWhiteoutOfADirectoryWastesWhatEveryLowerLayerPutThere(t *testing.T) {
	rep := mustLayers(t,
		layer(t, "one", nil, dir("d/"), zeros("d/a", 10)),
		layer(t, "two", nil, dir("d/"), zeros("d/b", 20), zeros("keep", 7)),
		layer(t, "three", nil, wh(".wh.d")),
	)
	want := "/d 20 1 files deleted by 3 (added by 2)\n/d 10 1 files deleted by 3 (added by 1)"
	if got := wasteRows(rep); got != want {
		t.Errorf("wasted:\n%s\nwant\n%s", got, want)
	}
}

func TestLayersKeepsTheBytesOfADeletedFileThatAHardLinkStillHolds(t *testing.T) {
	rep := mustLayers(t,
		layer(t, "one", nil, zeros("a", 100), hardlink("b", "a")),
		layer(t, "rm a", nil, wh(".wh.a")),
	)
	if len(rep.Wasted) != 0 || rep.Size != 100 {
		t.Errorf("size %d, wasted:\n%s", rep.Size, wasteRows(rep))
	}
	rep = mustLayers(t,
		layer(t, "one", nil, zeros("a", 100), hardlink("b", "a"), hardlink("c", "b")),
		layer(t, "rm a", nil, wh(".wh.a")),
		layer(t, "rm b", nil, wh(".wh.b")),
		layer(t, "rm c", nil, wh(".wh.c")),
	)
	if got, want := wasteRows(rep), "/c 100 1 files deleted by 4 (added by 1)"; got != want {
		t.Errorf("wasted:\n%s\nwant\n%s", got, want)
	}
}

func TestLayersDeletingASymlinkLeavesItsTarget(t *testing.T) {
	rep := mustLayers(t,
		layer(t, "one", nil, dir("dir/"), zeros("dir/f", 10), symlink("ln", "dir")),
		layer(t, "rm ln", nil, wh(".wh.ln")),
	)
	if got, want := wasteRows(rep), "/ln 3 1 files deleted by 2 (added by 1)"; got != want {
		t.Errorf("wasted:\n%s\nwant\n%s", got, want)
	}
	if rep.Size != 13 {
		t.Errorf("size %d, want 13 (file and symlink target)", rep.Size)
	}
}

func TestLayersAFileReplacingADirectoryOverwritesItsContents(t *testing.T) {
	rep := mustLayers(t,
		layer(t, "one", nil, dir("x/"), zeros("x/f", 10), zeros("x/g", 5)),
		layer(t, "two", nil, reg("x", "1")),
	)
	if got, want := wasteRows(rep), "/x 15 2 files overwritten by 2 (added by 1)"; got != want {
		t.Errorf("wasted:\n%s\nwant\n%s", got, want)
	}
}

func TestLayersListsTheLargestFilesAndDirectories(t *testing.T) {
	rep := mustLayers(t, layer(t, "one", nil,
		dir("usr/"), dir("usr/lib/"), zeros("usr/lib/big", 300), zeros("usr/lib/small", 10), zeros("usr/mid", 100), zeros("tiny", 1)))
	var got []string
	for _, p := range rep.Layers[0].Largest {
		got = append(got, fmt.Sprintf("%s %d %v", p.Path, p.Size, p.Dir))
	}
	want := "/usr 410 true|/usr/lib 310 true|/usr/lib/big 300 false"
	if strings.Join(got, "|") != want {
		t.Errorf("largest %q, want %q", strings.Join(got, "|"), want)
	}
	if l := rep.Layers[0]; l.Files != 6 || l.Size != 411 || l.Index != 1 || l.CreatedBy != "one" {
		t.Errorf("layer %+v", l)
	}
}

func TestLayersRefusesBrokenLayers(t *testing.T) {
	good := layer(t, "one", nil, zeros("a", 2000))
	cut := Layer{DiffID: "sha256:cut", Open: func() (io.ReadSeekCloser, error) {
		f, _ := good.Open()
		b, _ := io.ReadAll(f)
		return seekable{bytes.NewReader(b[:1000])}, nil
	}}
	if _, err := Layers(context.Background(), []Layer{good, cut}, LayersOptions{}); err == nil || !strings.Contains(err.Error(), "layer 2 (sha256:cut)") {
		t.Errorf("truncated layer: %v", err)
	}
	climb := layer(t, "evil", nil, reg("../../etc/passwd", "x"))
	if _, err := Layers(context.Background(), []Layer{climb}, LayersOptions{}); err == nil || !strings.Contains(err.Error(), "climbs out of the root") {
		t.Errorf("climbing entry: %v", err)
	}
}

func sha(s string) digest.Digest {
	return digest.Digest(fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(s))))
}

func changeLines(cs []Change) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Kind+" "+c.Path+" "+strings.Join(c.What, ","))
	}
	return strings.Join(out, "\n")
}

func mustDiff(t *testing.T, a, b []Layer) []Change {
	t.Helper()
	cs, err := Diff(context.Background(), a, b)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestDiffNamesAddedChangedAndDeletedPaths(t *testing.T) {
	base := layer(t, "base", nil, dir("etc/"), reg("etc/passwd", "root"), symlink("bin/sh", "busybox"), reg("old", "o"), dir("var/"), reg("var/f", "f"))
	top := layer(t, "top", nil, dir("etc/"), reg("etc/passwd", "root\nme"), wh(".wh.old"), reg("new", "n"), wh("var/.wh..wh..opq"), reg("var/g", "g"))
	cs := mustDiff(t, []Layer{base}, []Layer{base, top})
	want := "C /etc/passwd size,content\nA /new \nD /old \nD /var/f \nA /var/g "
	if got := changeLines(cs); got != want {
		t.Fatalf("changes:\n%s\nwant\n%s", got, want)
	}
	c := cs[0]
	if c.Before.Digest != sha("root") || c.After.Digest != sha("root\nme") || c.Before.Size != 4 || c.After.Size != 7 {
		t.Errorf("passwd change %+v → %+v", c.Before, c.After)
	}
	if back := changeLines(mustDiff(t, []Layer{base, top}, []Layer{base})); back != "C /etc/passwd size,content\nD /new \nA /old \nA /var/f \nD /var/g " {
		t.Errorf("reverse diff:\n%s", back)
	}
}

func TestDiffOfSharedLayersReadsEachOnceAndHashesNothing(t *testing.T) {
	var opens int
	l1 := layer(t, "one", &opens, reg("a", "1"), reg("b", "2"))
	l2 := layer(t, "two", &opens, reg("a", "3"))
	if cs := mustDiff(t, []Layer{l1, l2}, []Layer{l1, l2}); len(cs) != 0 {
		t.Errorf("same image differs:\n%s", changeLines(cs))
	}
	if opens != 2 {
		t.Errorf("layers opened %d times, want 2 (one header pass each, no hashing)", opens)
	}
}

func TestDiffComparesContentsOfFilesFromDifferentLayers(t *testing.T) {
	a := layer(t, "a", nil, reg("same", "content"), reg("edited", "abc"), reg("chmod", "x"), ent{name: "chown", typ: tar.TypeReg, body: "y"})
	b := layer(t, "b", nil, reg("same", "content"), reg("edited", "abd"), ent{name: "chmod", typ: tar.TypeReg, body: "x", mode: 0o755},
		ent{name: "chown", typ: tar.TypeReg, body: "y", uid: 1000}, reg("extra", ""))
	cs := mustDiff(t, []Layer{a}, []Layer{b})
	want := "C /chmod mode\nC /chown owner\nC /edited content\nA /extra "
	if got := changeLines(cs); got != want {
		t.Errorf("changes:\n%s\nwant\n%s", got, want)
	}
	if cs[0].Before.Mode != "-rw-r--r--" || cs[0].After.Mode != "-rwxr-xr-x" {
		t.Errorf("mode %s → %s", cs[0].Before.Mode, cs[0].After.Mode)
	}
}

func TestDiffNamesTypeAndLinkChangesAndFollowsHardLinks(t *testing.T) {
	a := layer(t, "a", nil, reg("f", "data"), hardlink("h", "f"), symlink("s", "one"), reg("t", "file"))
	b := layer(t, "b", nil, reg("f", "data"), reg("h", "data"), symlink("s", "two"), symlink("t", "file"))
	want := "C /s link\nC /t type"
	if got := changeLines(mustDiff(t, []Layer{a}, []Layer{b})); got != want {
		t.Errorf("changes:\n%s\nwant\n%s", got, want)
	}
	c := layer(t, "c", nil, reg("f", "data"), reg("h", "other"), symlink("s", "one"), reg("t", "file"))
	cs := mustDiff(t, []Layer{a}, []Layer{c})
	if got := changeLines(cs); got != "C /h size,content" || cs[0].Before.Digest != sha("data") {
		t.Errorf("hard link's content is its target's:\n%s %+v", got, cs[0].Before)
	}
}

func TestDiffTakesAnUnlistedParentForAnyDirectory(t *testing.T) {
	a := layer(t, "a", nil, reg("usr/bin/x", "x"))
	b := layer(t, "b", nil, dir("usr/"), dir("usr/bin/"), reg("usr/bin/x", "x"))
	if cs := mustDiff(t, []Layer{a}, []Layer{b}); len(cs) != 0 {
		t.Errorf("changes:\n%s", changeLines(cs))
	}
}

// countingReader counts the bytes read from a layer (seeks are free).
type countingReader struct {
	seekable
	n *int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.seekable.Read(p)
	*c.n += int64(n)
	return n, err
}

func TestLayersReadsHeadersAndSeeksOverContents(t *testing.T) {
	big := layer(t, "one", nil, zeros("a", 4<<20), zeros("b", 4<<20))
	var read int64
	counted := Layer{DiffID: big.DiffID, Open: func() (io.ReadSeekCloser, error) {
		f, err := big.Open()
		return countingReader{f.(seekable), &read}, err
	}}
	rep := mustLayers(t, counted)
	if rep.Size != 8<<20 {
		t.Fatalf("size %d", rep.Size)
	}
	if read > 16<<10 {
		t.Errorf("read %d bytes of an 8 MiB layer: contents were not skipped", read)
	}
}

func TestDiffHashesOnlyTheLayersThatHoldDifferingFiles(t *testing.T) {
	var base, topA, topB int
	l1 := layer(t, "base", &base, reg("etc/passwd", "root"), zeros("bin/busybox", 1000))
	a := layer(t, "a", &topA, reg("app", "one"), reg("same", "s"))
	b := layer(t, "b", &topB, reg("app", "two"), reg("same", "s"))
	cs := mustDiff(t, []Layer{l1, a}, []Layer{l1, b})
	if got := changeLines(cs); got != "C /app content" {
		t.Errorf("changes:\n%s", got)
	}
	if base != 1 || topA != 2 || topB != 2 {
		t.Errorf("opened base %d, a %d, b %d times; want 1 (headers), 2 and 2 (headers, then the hashed files)", base, topA, topB)
	}
}
