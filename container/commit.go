package container

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/exporter"
	"github.com/kiln-build/kiln/solver/runc"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/layer"
	"github.com/kiln-build/kiln/store/lock"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// emptyTar is the diffID of a layer with nothing in it (1024 zero bytes),
// which docker commit leaves out of the image.
const emptyTar = digest.Digest("sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef")

// CommitOptions are docker commit's.
type CommitOptions struct {
	// Name is the image's full tagged name (content.NormalizeTag); ""
	// makes an untagged image, <none>:<none> as docker shows it.
	Name string
	// Message and Author are -m and -a.
	Message, Author string
	// Edit, if set, applies the --change instructions to the config; an
	// error stops the commit with nothing stored.
	Edit func(*dockerspec.DockerOCIImage) error
	// Pause pauses a running container while its layer is written (-p).
	Pause bool
	// Created is the image's creation time; zero means now.
	Created time.Time
}

// Commit makes an image of c: its image's layers and config with c's
// writable layer as one more layer on top (written as a RUN step's is;
// the writable layer itself stays c's), c's config (env, user, workdir,
// entrypoint, command, labels) with o.Edit applied, and a history entry
// whose created_by is c's command as docker writes it. A writable layer
// with nothing in it adds no layer, only an empty_layer history entry, as
// docker does. A stopped c is locked meanwhile so that nothing starts it;
// a running one is paused if o.Pause (if pausing fails, the commit goes
// on: docker's commit does not need it either).
func (m *Manager) Commit(ctx context.Context, c *store.Container, o CommitOptions) (*content.StoredImage, error) {
	st := m.Store
	if err := m.ensureExists(c); err != nil {
		return nil, err
	}
	base, err := st.Content.ReadImage(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: c.Manifest})
	if err != nil {
		return nil, fmt.Errorf("commit %s: its image %s: %w", c.Name, c.Image, err)
	}
	img, err := commitConfig(base.Config, c, o)
	if err != nil {
		return nil, err
	}

	l, err := st.ContainerLock(c.ID)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	stopped, err := l.TryLock(lock.Exclusive)
	if err != nil {
		return nil, err
	}
	if !stopped && o.Pause {
		if m.runcRun("pause", c.ID) == nil {
			defer m.runcRun("resume", c.ID)
		}
	}
	newLayer, err := m.writeLayer(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.Name, err)
	}
	layers := slices.Clone(c.Layers)
	if newLayer.DiffID == emptyTar {
		img.History[len(img.History)-1].EmptyLayer = true
	} else {
		layers = append(layers, newLayer)
	}
	desc, err := exporter.Image(st.Content, img, layers, o.Created)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.Name, err)
	}
	return st.AddImage(desc, o.Name)
}

// runcRun runs a runc command on the containers' root.
func (m *Manager) runcRun(args ...string) error {
	cmd, err := m.runcCmd(args...)
	if err != nil {
		return err
	}
	return cmd.Run()
}

// writeLayer tars c's writable layer into the content store, without the
// stubs runc made and the directories made only for them.
func (m *Manager) writeLayer(ctx context.Context, c *store.Container) (record.Layer, error) {
	lowers, err := lowerDirs(ctx, m.Store, c)
	if err != nil {
		return record.Layer{}, err
	}
	d := newDiffer(ctx, m.Store.ContainerUpper(c.ID), lowers, c.Stubs)
	if err := d.run(); err != nil {
		return record.Layer{}, err
	}
	exclude := map[string]bool{}
	for p := range d.stubs {
		exclude[p] = true
	}
	for _, p := range d.skipped {
		exclude[p] = true
	}
	w, err := m.Store.Content.NewWriter()
	if err != nil {
		return record.Layer{}, err
	}
	defer w.Close()
	diffID, size, err := layer.WriteTar(ctx, m.Store.ContainerUpper(c.ID), w, layer.WriteOptions{
		Exclude: func(rel string) bool { return exclude[rel] },
	})
	if err != nil {
		return record.Layer{}, err
	}
	if _, err := w.Commit(diffID, size); err != nil {
		return record.Layer{}, err
	}
	return record.Layer{DiffID: diffID, Size: size}, nil
}

// commitConfig is the committed image's config, without its new layer:
// the image's, with what c ran with (docker commits the container's
// config, not the image's), o.Edit applied, and a history entry for the
// new layer. ONBUILD triggers are dropped, as docker drops them.
func commitConfig(base dockerspec.DockerOCIImage, c *store.Container, o CommitOptions) (dockerspec.DockerOCIImage, error) {
	img := base
	cfg := &img.Config
	cfg.Env = committedEnv(base.Config.Env, c.Env)
	cfg.User = c.User
	cfg.WorkingDir = c.WorkingDir
	cfg.Entrypoint = slices.Clone(c.Entrypoint)
	cfg.Cmd = slices.Clone(c.Cmd)
	cfg.StopSignal = c.StopSignal
	// the image's labels and the container's over them
	cfg.Labels = nil
	for _, m := range []map[string]string{base.Config.Labels, c.Labels} {
		for k, v := range m {
			if cfg.Labels == nil {
				cfg.Labels = map[string]string{}
			}
			cfg.Labels[k] = v
		}
	}
	cfg.ExposedPorts = cloneSet(base.Config.ExposedPorts)
	cfg.Volumes = cloneSet(base.Config.Volumes)
	cfg.OnBuild = nil
	if o.Edit != nil {
		if err := o.Edit(&img); err != nil {
			return img, err
		}
	}
	img.Author = o.Author
	img.History = append(slices.Clone(base.History), ocispec.History{
		CreatedBy: strings.Join(c.Cmd, " "),
		Comment:   o.Message,
		Author:    o.Author,
	})
	return img, nil
}

// committedEnv is the container's env without the PATH kiln run adds
// for an image that sets none: docker adds it to the process only, so
// its commit does not have it.
func committedEnv(image, ctr []string) []string {
	if slices.ContainsFunc(image, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		return slices.Clone(ctr)
	}
	var out []string
	for _, e := range ctr {
		if e != "PATH="+runc.DefaultPath {
			out = append(out, e)
		}
	}
	return out
}

func cloneSet(m map[string]struct{}) map[string]struct{} {
	if m == nil {
		return nil
	}
	out := make(map[string]struct{}, len(m))
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}

// stubRel is a stub's path relative to the root ("etc/hosts"), "" for
// the root itself.
func stubRel(s string) string { return strings.TrimPrefix(path.Clean("/"+s), "/") }
