package dockerfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

type fuzzResolver struct{}

func (fuzzResolver) ResolveImage(_ context.Context, ref string) (ocispec.Descriptor, *dockerspec.DockerOCIImage, error) {
	if strings.HasPrefix(ref, "busybox") {
		img := &dockerspec.DockerOCIImage{}
		img.Config.Env = []string{"PATH=/bin"}
		return ocispec.Descriptor{Digest: digest.FromString(ref)}, img, nil
	}
	return ocispec.Descriptor{}, nil, errors.New("not found")
}

// FuzzCompile: any input either compiles or fails with a located *Error;
// it never panics or hangs. Seeds: every Dockerfile in testdata.
func FuzzCompile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/Dockerfile")
	more, _ := filepath.Glob("../../testdata/conformance/*/Dockerfile")
	for _, p := range append(seeds, more...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("FROM busybox\nRUN <<EOF\necho\nEOF\n"))
	f.Add([]byte("\x00\xff\xfeFROM"))
	f.Fuzz(func(t *testing.T, src []byte) {
		if len(src) > 1<<16 {
			return
		}
		_, err := Compile(context.Background(), Options{Source: src, Images: fuzzResolver{}, OS: "linux", Arch: "amd64"})
		if err == nil {
			return
		}
		var fe *Error
		if !errors.As(err, &fe) && !strings.Contains(err.Error(), "Dockerfile") {
			t.Fatalf("error without location: %v", err)
		}
	})
}
