package archive

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/kiln-build/kiln/internal/readers"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/v1image"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// SaveImage is one image to save, under zero or more full names.
type SaveImage struct {
	Names    []string
	Manifest ocispec.Descriptor
}

// dockerManifestEntry is one image of a docker-save manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// epoch is the mtime of every entry Save writes, so that the same images
// always give the same bytes.
var epoch = time.Unix(0, 0)

// blobPath is where an OCI layout keeps the blob d.
func blobPath(d digest.Digest) string {
	return path.Join(ocispec.ImageBlobsDir, d.Algorithm().String(), d.Encoded())
}

// savedImage is an image read from the store, ready to be written out:
// its bytes through go-containerregistry's v1.Image (store/v1image), its
// platform from the stored config.
type savedImage struct {
	im       *content.StoredImage
	img      v1.Image
	manifest []byte
	digest   digest.Digest
	layers   []ocispec.Descriptor // as the written manifest names them
	names    []reference.NamedTagged
}

// Save writes one tar to w that is at once an OCI image layout (oci-layout,
// index.json, blobs/sha256/...) and a docker-save archive (manifest.json and
// a legacy repositories file), so that docker load, kiln load, skopeo
// (oci-archive:) and umoci can all read it.
//
// index.json has one entry per name, annotated with the full name
// (io.containerd.image.name) and its tag (org.opencontainers.image.ref.name),
// or one entry without annotations for an image without a name. Every blob is
// written once; layers are streamed uncompressed from the store, as stored.
// The output is deterministic: entries in a fixed order, mtime 0, owner 0:0,
// mode 0444 for files and 0755 for directories.
func Save(ctx context.Context, w io.Writer, store *content.Store, images []SaveImage) error {
	return SaveWith(ctx, w, store, images, SaveOptions{})
}

// SaveOptions changes what SaveWith writes.
type SaveOptions struct {
	// Layer, if set, maps each layer as stored (uncompressed, digest =
	// diffID) to the blob written in its place: a compressed copy that is
	// in the same store. Each manifest is then rewritten to name the new
	// layer blobs (its digest changes); the config, and with it the
	// diff_ids and the image ID, stay as they are.
	Layer func(ctx context.Context, layer ocispec.Descriptor) (ocispec.Descriptor, error)
}

// SaveWith is Save with options.
func SaveWith(ctx context.Context, w io.Writer, store *content.Store, images []SaveImage, opts SaveOptions) error {
	imgs := make([]savedImage, 0, len(images))
	for _, si := range images {
		im, err := store.ReadImage(si.Manifest)
		if err != nil {
			return fmt.Errorf("save: %w", err)
		}
		var vopts v1image.Options
		if opts.Layer != nil {
			vopts.Layers = map[digest.Digest]ocispec.Descriptor{}
			for i, l := range im.Manifest.Layers {
				nl, err := opts.Layer(ctx, l)
				if err != nil {
					return fmt.Errorf("save: layer %s: %w", l.Digest, err)
				}
				vopts.Layers[im.Config.RootFS.DiffIDs[i]] = nl
			}
		}
		vi, err := v1image.Open(store, si.Manifest, vopts)
		if err != nil {
			return fmt.Errorf("save: %w", err)
		}
		s, err := newSavedImage(im, vi.V1())
		if err != nil {
			return fmt.Errorf("save: %w", err)
		}
		seen := map[string]bool{}
		for _, n := range si.Names {
			t, err := tagged(n)
			if err != nil {
				return fmt.Errorf("save: %w", err)
			}
			if !seen[t.String()] {
				seen[t.String()] = true
				s.names = append(s.names, t)
			}
		}
		imgs = append(imgs, s)
	}

	index, dockerManifest, repositories, err := saveMetadata(imgs)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}

	tw := tar.NewWriter(w)
	writeFile := func(name string, b []byte) error {
		if err := tw.WriteHeader(fileHeader(name, int64(len(b)))); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	layout, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	if err := writeFile(ociLayoutFile, layout); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	for _, dir := range []string{ocispec.ImageBlobsDir + "/", ocispec.ImageBlobsDir + "/" + digest.SHA256.String() + "/"} {
		if err := tw.WriteHeader(dirHeader(dir)); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}

	// Blobs, each once, image by image: layers bottom first, then the
	// config, then the manifest.
	written := map[digest.Digest]bool{}
	for _, s := range imgs {
		for _, l := range s.layers {
			if written[l.Digest] {
				continue
			}
			written[l.Digest] = true
			if err := copyLayer(ctx, tw, s.img, l); err != nil {
				return fmt.Errorf("save: layer %s: %w", l.Digest, err)
			}
		}
		if !written[s.im.ConfigDesc.Digest] {
			written[s.im.ConfigDesc.Digest] = true
			config, err := s.img.RawConfigFile()
			if err != nil {
				return fmt.Errorf("save: config: %w", err)
			}
			if err := writeFile(blobPath(s.im.ConfigDesc.Digest), config); err != nil {
				return fmt.Errorf("save: %w", err)
			}
		}
		if !written[s.digest] {
			written[s.digest] = true
			if err := writeFile(blobPath(s.digest), s.manifest); err != nil {
				return fmt.Errorf("save: %w", err)
			}
		}
	}

	for _, f := range []struct {
		name string
		data []byte
	}{{indexFile, index}, {dockerManifestFile, dockerManifest}, {repositoriesFile, repositories}} {
		if err := writeFile(f.name, f.data); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

// saveMetadata renders index.json, manifest.json and repositories.
func saveMetadata(imgs []savedImage) (index, manifest, repositories []byte, err error) {
	idx := ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{},
	}
	dm := []dockerManifestEntry{}
	dmAt := map[digest.Digest]int{} // manifest digest → its manifest.json entry
	repos := map[string]map[string]string{}
	for _, s := range imgs {
		mt := s.im.Manifest.MediaType
		if mt == "" {
			mt = ocispec.MediaTypeImageManifest
		}
		cfg := s.im.Config
		desc := ocispec.Descriptor{
			MediaType: mt,
			Digest:    s.digest,
			Size:      int64(len(s.manifest)),
		}
		if cfg.OS != "" && cfg.Architecture != "" {
			desc.Platform = &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion}
		}
		if len(s.names) == 0 {
			idx.Manifests = append(idx.Manifests, desc)
		}
		for _, n := range s.names {
			d := desc
			d.Annotations = map[string]string{
				content.AnnotationImageName: n.String(),
				content.AnnotationRefName:   n.Tag(),
			}
			idx.Manifests = append(idx.Manifests, d)
		}

		i, ok := dmAt[desc.Digest]
		if !ok {
			e := dockerManifestEntry{
				Config:   blobPath(s.im.ConfigDesc.Digest),
				RepoTags: []string{},
				Layers:   make([]string, len(s.layers)),
			}
			for j, l := range s.layers {
				e.Layers[j] = blobPath(l.Digest)
			}
			i = len(dm)
			dmAt[desc.Digest] = i
			dm = append(dm, e)
		}
		for _, n := range s.names {
			fam := reference.FamiliarString(n)
			if !contains(dm[i].RepoTags, fam) {
				dm[i].RepoTags = append(dm[i].RepoTags, fam)
			}
			if ls := s.layers; len(ls) > 0 {
				repo := reference.FamiliarName(n)
				if repos[repo] == nil {
					repos[repo] = map[string]string{}
				}
				repos[repo][n.Tag()] = ls[len(ls)-1].Digest.Encoded()
			}
		}
	}
	if index, err = json.Marshal(idx); err != nil {
		return nil, nil, nil, err
	}
	if manifest, err = json.Marshal(dm); err != nil {
		return nil, nil, nil, err
	}
	if repositories, err = json.Marshal(repos); err != nil {
		return nil, nil, nil, err
	}
	return index, manifest, repositories, nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func fileHeader(name string, size int64) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     name,
		Size:     size,
		Mode:     0o444,
		ModTime:  epoch,
	}
}

func dirHeader(name string) *tar.Header {
	return &tar.Header{
		Typeflag: tar.TypeDir,
		Name:     name,
		Mode:     0o755,
		ModTime:  epoch,
	}
}

// newSavedImage is img ready to be written, im its stored form.
func newSavedImage(im *content.StoredImage, img v1.Image) (savedImage, error) {
	raw, err := img.RawManifest()
	if err != nil {
		return savedImage{}, fmt.Errorf("manifest: %w", err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return savedImage{}, fmt.Errorf("manifest: %w", err)
	}
	return savedImage{im: im, img: img, manifest: raw, digest: digest.FromBytes(raw), layers: m.Layers}, nil
}

// copyLayer streams a layer blob from the store into the tar, checking on
// the way that it still matches its digest and size.
func copyLayer(ctx context.Context, tw *tar.Writer, img v1.Image, d ocispec.Descriptor) error {
	h, err := v1.NewHash(string(d.Digest))
	if err != nil {
		return err
	}
	l, err := img.LayerByDigest(h)
	if err != nil {
		return err
	}
	rc, err := l.Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := tw.WriteHeader(fileHeader(blobPath(d.Digest), d.Size)); err != nil {
		return err
	}
	v := d.Digest.Verifier()
	n, err := io.Copy(io.MultiWriter(tw, v), readers.WithContext(ctx, rc))
	if err != nil {
		return err
	}
	if n != d.Size {
		return fmt.Errorf("blob changed size while being saved")
	}
	if !v.Verified() {
		return fmt.Errorf("blob content does not match its digest")
	}
	return nil
}
