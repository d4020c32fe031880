package registry

import (
	"fmt"
	"io"
	"sync"
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
