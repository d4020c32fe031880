package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/kiln-build/kiln/store/layer"
)

// maxStdinDockerfile bounds a Dockerfile read from stdin.
const maxStdinDockerfile = 16 << 20

// stdinContext reads `kiln build -` input like docker does: a tar archive
// (plain, gzip or zstd) is the build context, unpacked into a new
// directory below scratch; anything else is a Dockerfile, built with an
// empty context. It returns the context directory (the caller removes it,
// also on error) and, for a Dockerfile, its text.
func stdinContext(ctx context.Context, r io.Reader, scratch string) (dir string, dockerfile []byte, err error) {
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return "", nil, err
	}
	if dir, err = os.MkdirTemp(scratch, "stdin-context-"); err != nil {
		return "", nil, err
	}
	br := bufio.NewReaderSize(r, 1<<20)
	comp := layer.DetectCompression(br)
	dr, err := layer.Decompress(comp, br)
	if err != nil {
		return dir, nil, fmt.Errorf("build context from stdin: %w", err)
	}
	defer dr.Close()
	dbr := bufio.NewReaderSize(dr, 1<<16)
	if isTar(dbr) {
		if err := layer.Extract(ctx, dbr, dir); err != nil {
			return dir, nil, fmt.Errorf("build context from stdin: %w", err)
		}
		return dir, nil, nil
	}
	if comp != layer.Uncompressed {
		return dir, nil, fmt.Errorf("build context from stdin: %s data that is not a tar archive", comp)
	}
	src, err := io.ReadAll(io.LimitReader(dbr, maxStdinDockerfile+1))
	if err != nil {
		return dir, nil, fmt.Errorf("read the Dockerfile from stdin: %w", err)
	}
	if len(src) > maxStdinDockerfile {
		return dir, nil, fmt.Errorf("the Dockerfile on stdin is larger than %d MB", maxStdinDockerfile>>20)
	}
	return dir, src, nil
}

// isTar tells a tar stream by the ustar magic of its first header.
func isTar(br *bufio.Reader) bool {
	b, err := br.Peek(512)
	if err != nil {
		return false
	}
	magic := string(b[257:262])
	return magic == "ustar"
}
