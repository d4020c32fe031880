package archive

import (
	"archive/tar"
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/kiln-build/kiln/internal/readers"
	"github.com/kiln-build/kiln/store/content"
	"github.com/kiln-build/kiln/store/layer"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportOptions say how Import makes the image's config.
type ImportOptions struct {
	Created time.Time // the image's creation time; zero means now
	Message string    // the history entry's comment (import -m)
	// Edit, if set, changes the config (import --change) before the layer
	// is read; an error stops the import with nothing stored.
	Edit func(*dockerspec.DockerOCIImage) error
}

// Import makes a one-layer image from a root filesystem tar (plain, gzip or
// zstd), like `docker import`. The layer is stored uncompressed, byte for
// byte as the (decompressed) input; the config says linux/GOARCH, has the
// layer as its only diff_id and one history entry "kiln import". It
// returns the manifest descriptor; the caller tags it.
func Import(ctx context.Context, r io.Reader, store *content.Store, opts ImportOptions) (ocispec.Descriptor, error) {
	created := opts.Created
	if created.IsZero() {
		created = time.Now()
	}
	created = created.UTC()
	// the config edits are checked before anything is stored
	var cfg dockerspec.DockerOCIImage
	cfg.Created = &created
	if opts.Edit != nil {
		if err := opts.Edit(&cfg); err != nil {
			return ocispec.Descriptor{}, err
		}
	}

	br := bufio.NewReaderSize(readers.WithContext(ctx, r), 1<<20)
	if _, err := br.Peek(1); err == io.EOF {
		return ocispec.Descriptor{}, errors.New("import: empty input")
	}
	c := layer.DetectCompression(br)
	dr, err := layer.Decompress(c, br)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: %w", err)
	}
	defer dr.Close()

	w, err := store.NewWriter()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: %w", err)
	}
	defer w.Close()
	// Everything read goes to the store as is; walking the tar on the way
	// checks that the input is one.
	tee := io.TeeReader(dr, w)
	tr := tar.NewReader(tee)
	for {
		_, err := tr.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return ocispec.Descriptor{}, fmt.Errorf("import: truncated input: %w", err)
		}
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("import: not a tar archive: %w", err)
		}
	}
	// The end-of-archive blocks and any padding after them are part of the
	// layer too.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: %w", err)
	}
	layer, err := w.Commit("", content.UnknownSize)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: %w", err)
	}
	layer.MediaType = ocispec.MediaTypeImageLayer

	cfg.OS = "linux"
	cfg.Architecture = runtime.GOARCH
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}}
	cfg.History = []ocispec.History{{Created: &created, CreatedBy: "kiln import", Comment: opts.Message}}
	desc, err := store.WriteImage(cfg, []ocispec.Descriptor{layer})
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import: %w", err)
	}
	return desc, nil
}
