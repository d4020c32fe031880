package registry

import (
	"fmt"
	"io"
	"sync"

	digest "github.com/opencontainers/go-digest"
)

// Progress serializes the per-layer lines of concurrent pulls and pushes,
// like docker's; a nil writer discards them.
type Progress struct {
	mu sync.Mutex
	W  io.Writer
}

// Printf writes one line.
func (p *Progress) Printf(format string, args ...any) {
	if p.W == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.W, format, args...)
}

// HumanSize formats bytes the way docker's pull and push progress do.
func HumanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	f, suffix := float64(n), "kB"
	for _, s := range []string{"kB", "MB", "GB", "TB"} {
		f /= unit
		suffix = s
		if f < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f%s", f, suffix)
}

// short is the first 12 hex digits of a digest, as docker pull and push
// name a layer in their progress lines (pull by its blob digest, push by
// its diffID).
func short(d digest.Digest) string {
	s := d.Encoded()
	if len(s) > 12 {
		s = s[:12]
	}
	return s
}
