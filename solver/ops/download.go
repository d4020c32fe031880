package ops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/filecopy"
	digest "github.com/opencontainers/go-digest"
)

// Download is ADD of an http(s) URL. The file is fetched when the cache
// key is computed — the key is its content digest, so a changed remote file
// re-runs the step and an unchanged one stays cached — and written with
// mode 0600 (like BuildKit) unless --chmod says otherwise.
type Download struct {
	URL      string
	Checksum string // --checksum=sha256:...
	Dest     string
	Chown    string
	Chmod    string
}

// download is a Download bound to a worker: it fetches once, into the
// worker's run/ directory, for the key and then the run.
type download struct {
	*Download
	w *Worker

	once     sync.Once
	file     string // downloaded content, under run/
	sum      digest.Digest
	modified time.Time
	err      error
}

func (d *download) fetch(ctx context.Context) error {
	d.once.Do(func() { d.err = d.download(ctx) })
	return d.err
}

func (d *download) download(ctx context.Context) error {
	if d.Checksum != "" {
		if _, err := digest.Parse(d.Checksum); err != nil {
			return fmt.Errorf("--checksum=%s: %w", d.Checksum, err)
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.URL, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w", d.URL, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("download %s: %s", d.URL, resp.Status)
	}
	dir, err := d.w.scratchDir()
	if err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "download"))
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), resp.Body); err != nil {
		return fmt.Errorf("download %s: %w", d.URL, err)
	}
	d.file = f.Name()
	d.sum = digest.NewDigestFromEncoded(digest.SHA256, hex.EncodeToString(h.Sum(nil)))
	if d.Checksum != "" && digest.Digest(d.Checksum) != d.sum {
		return fmt.Errorf("download %s: checksum mismatch: expected %s, got %s", d.URL, d.Checksum, d.sum)
	}
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		d.modified = lm
	}
	return nil
}

func (d *download) CacheKey(ctx context.Context) ([]record.Component, error) {
	if err := d.fetch(ctx); err != nil {
		return nil, err
	}
	return []record.Component{
		component("op", "download"), component("url", d.URL), component("content", string(d.sum)),
		component("dest", d.Dest), component("chown", d.Chown), component("chmod", d.Chmod),
	}, nil
}

func (d *download) Run(ctx context.Context, inputs []solver.Result, _ solver.Logger) (solver.Result, error) {
	if err := d.fetch(ctx); err != nil {
		return solver.Result{}, err
	}
	defer os.RemoveAll(filepath.Dir(d.file))
	name := d.fileName()
	stage := filepath.Join(filepath.Dir(d.file), "src")
	if err := os.Mkdir(stage, 0o700); err != nil {
		return solver.Result{}, err
	}
	if err := os.Rename(d.file, filepath.Join(stage, name)); err != nil {
		return solver.Result{}, err
	}
	d.file = filepath.Join(stage, name)
	perm := os.FileMode(0o600)
	if m, err := parseChmod(d.Chmod); err != nil {
		return solver.Result{}, err
	} else if m != nil {
		perm = *m
	}
	os.Chmod(d.file, perm)
	if !d.modified.IsZero() {
		os.Chtimes(d.file, d.modified, d.modified)
	}
	return d.w.mutate(ctx, inputs[0], func(rootfs, _ string) error {
		opts := filecopy.Options{ResetOwner: true}
		if d.Chown != "" {
			o, err := resolveChown(rootfs, d.Chown)
			if err != nil {
				return err
			}
			opts.Chown = o
		}
		return filecopy.Copy(ctx, stage, []string{name}, rootfs, d.Dest, opts)
	}, nil)
}

// fileName is the last path element of the URL, as docker names it.
func (d *Download) fileName() string {
	if u, err := url.Parse(d.URL); err == nil {
		if b := path.Base(u.Path); b != "/" && b != "." && b != "" {
			return b
		}
	}
	return strings.ReplaceAll(d.URL, "/", "_")
}
