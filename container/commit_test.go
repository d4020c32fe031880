package container

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/solver/runc"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/layer"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCommitConfigIsTheContainersWithChangesAndAHistoryEntry(t *testing.T) {
	created := time.Unix(1e9, 0).UTC()
	var base dockerspec.DockerOCIImage
	base.OS, base.Architecture = "linux", "amd64"
	base.Config.Cmd = []string{"sh"}
	base.Config.Env = []string{"PATH=/bin"}
	base.Config.ExposedPorts = map[string]struct{}{"80/tcp": {}}
	base.Config.OnBuild = []string{"RUN echo child"}
	base.Config.Labels = map[string]string{"a": "1"}
	base.History = []ocispec.History{{Created: &created, CreatedBy: "kiln import"}}
	c := &store.Container{
		Cmd: []string{"sh", "-c", "echo hello > /greeting"}, Env: []string{"PATH=/bin", "X=1"},
		User: "1000", WorkingDir: "/tmp", Labels: map[string]string{"a": "1"},
	}
	img, err := commitConfig(base, c, CommitOptions{Message: "msg", Author: "me", Edit: func(img *dockerspec.DockerOCIImage) error {
		img.Config.Cmd = []string{"cat", "/greeting"}
		img.Config.Labels["b"] = "2"
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.Config.Cmd, []string{"cat", "/greeting"}) || !slices.Equal(img.Config.Env, c.Env) ||
		img.Config.User != "1000" || img.Config.WorkingDir != "/tmp" || img.Author != "me" {
		t.Errorf("config %+v, author %q: want the container's with the change", img.Config, img.Author)
	}
	if img.Config.OnBuild != nil {
		t.Errorf("OnBuild %q: docker commit drops the triggers", img.Config.OnBuild)
	}
	if _, ok := img.Config.ExposedPorts["80/tcp"]; !ok {
		t.Errorf("ExposedPorts %v: the image's are kept", img.Config.ExposedPorts)
	}
	noPath := base
	noPath.Config.Env = nil
	c2 := *c
	c2.Env = []string{"PATH=" + runc.DefaultPath, "X=1"}
	if img, _ := commitConfig(noPath, &c2, CommitOptions{}); !slices.Equal(img.Config.Env, []string{"X=1"}) {
		t.Errorf("Env %q of an image without PATH: want the default PATH left out, as docker does", img.Config.Env)
	}
	if len(base.Config.Labels) != 1 || len(c.Labels) != 1 {
		t.Errorf("the change edited the base's or the container's labels: %v, %v", base.Config.Labels, c.Labels)
	}
	want := ocispec.History{CreatedBy: "sh -c echo hello > /greeting", Comment: "msg", Author: "me"}
	if len(img.History) != 2 || img.History[1] != want || len(base.History) != 1 {
		t.Errorf("history %+v, want the image's and %+v", img.History, want)
	}

	bad := errors.New(`--change "FOO x": FOO is not a valid change command`)
	if _, err := commitConfig(base, c, CommitOptions{Edit: func(*dockerspec.DockerOCIImage) error { return bad }}); err != bad {
		t.Errorf("a bad change: %v, want %v", err, bad)
	}
}

// storeWithContainer is a store with a one-layer image and a stopped
// container of it whose writable layer holds upper.
func storeWithContainer(t *testing.T, upper ...string) (*store.Store, *store.Container) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "root"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w, err := st.Content.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	diffID, size, err := layer.WriteTar(context.Background(), tree(t, "bin/", "bin/sh=sh", "etc/", "etc/passwd=root"), w, layer.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Commit(diffID, size); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var cfg dockerspec.DockerOCIImage
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Config.Cmd = []string{"sh"}
	cfg.History = []ocispec.History{{CreatedBy: "kiln import"}}
	layers := []record.Layer{{DiffID: diffID, Size: size}}
	desc, err := exporter.Image(st.Content, cfg, layers, time.Unix(1e9, 0))
	if err != nil {
		t.Fatal(err)
	}
	si, err := st.AddImage(desc, "docker.io/library/base:latest")
	if err != nil {
		t.Fatal(err)
	}
	c := &store.Container{Image: "base", ImageID: si.ID(), Manifest: si.ManifestDesc.Digest, Layers: layers,
		Path: "sh", Args: []string{"-c", "echo hello > /greeting"}, Cmd: []string{"sh", "-c", "echo hello > /greeting"},
		Stubs: []string{"/proc", "/etc/hosts", "/dev"}}
	if err := st.CreateContainer(c); err != nil {
		t.Fatal(err)
	}
	if len(upper) > 0 {
		src := tree(t, upper...)
		must(t, os.RemoveAll(st.ContainerUpper(c.ID)))
		must(t, os.Rename(src, st.ContainerUpper(c.ID)))
	}
	return st, c
}

func layerNames(t *testing.T, st *store.Store, l ocispec.Descriptor) []string {
	t.Helper()
	f, err := st.Content.Open(l.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var names []string
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestCommitAddsTheWritableLayerWithoutStubs(t *testing.T) {
	testenv.RequireRoot(t)
	st, c := storeWithContainer(t, "greeting=hello", "proc/", "dev/", "etc/", "etc/hosts=")
	si, err := New(st).Commit(context.Background(), c, CommitOptions{Name: "docker.io/library/story:v1", Message: "msg"})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := st.LookupImage("story:v1"); err != nil || got.ID() != si.ID() {
		t.Fatalf("story:v1: %v, %v; want the committed image", got, err)
	}
	ls := si.Manifest.Layers
	if len(ls) != 2 || ls[0].Digest != c.Layers[0].DiffID || si.Config.RootFS.DiffIDs[1] != ls[1].Digest {
		t.Fatalf("layers %v, diff_ids %v: want the image's and one more", ls, si.Config.RootFS.DiffIDs)
	}
	// etc/ is the image's directory, copied up; proc/, dev/ and
	// etc/hosts are runc's
	if got, want := layerNames(t, st, ls[1]), []string{"etc/", "greeting"}; !slices.Equal(got, want) {
		t.Errorf("new layer holds %q, want %q", got, want)
	}
	h := si.Config.History
	if len(h) != 2 || h[1].CreatedBy != "sh -c echo hello > /greeting" || h[1].Comment != "msg" || h[1].EmptyLayer || h[1].Created == nil {
		t.Errorf("history %+v", h)
	}
	// the container keeps its writable layer
	if _, err := os.Stat(filepath.Join(st.ContainerUpper(c.ID), "greeting")); err != nil {
		t.Errorf("writable layer after commit: %v", err)
	}
}

func TestCommitOfAnUnchangedContainerIsUntaggedWithAnEmptyLayerEntry(t *testing.T) {
	testenv.RequireRoot(t)
	st, c := storeWithContainer(t, "proc/")
	si, err := New(st).Commit(context.Background(), c, CommitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(si.Manifest.Layers) != 1 || len(si.Config.History) != 2 || !si.Config.History[1].EmptyLayer {
		t.Errorf("layers %v, history %+v: want the image's layer only and an empty_layer entry", si.Manifest.Layers, si.Config.History)
	}
	imgs, err := st.Images(nil)
	if err != nil {
		t.Fatal(err)
	}
	var dangling int
	for _, im := range imgs {
		if im.ID == si.ID() && len(im.Tags()) == 0 {
			dangling++
		}
	}
	if dangling != 1 {
		t.Errorf("images %+v: want the commit as one untagged image", imgs)
	}
}
