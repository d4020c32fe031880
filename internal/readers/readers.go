// Package readers has the small io.Reader wrappers kiln's long copies
// share: one that stops when a context ends and one that counts bytes.
package readers

import (
	"context"
	"io"
)

// WithContext returns a reader whose reads fail with ctx's error once ctx
// is done, so that copying a large stream (a layer, a blob, an archive)
// stops promptly on Ctrl-C.
func WithContext(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// Counting counts the bytes read through it in N.
type Counting struct {
	R io.Reader
	N int64
}

func (c *Counting) Read(p []byte) (int, error) {
	n, err := c.R.Read(p)
	c.N += int64(n)
	return n, err
}
