package dockerfile_test

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/frontend/dockerfile"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/*/expected.txt from the current output")

const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// fakeImage is a linux/amd64 image with cfg, one layer and history.
func fakeImage(name string, cfg ocispec.ImageConfig, history ...string) dockerspec.DockerOCIImage {
	img := dockerspec.DockerOCIImage{Image: ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString(name + " layer")}},
	}}
	img.Config.ImageConfig = cfg
	for i, h := range history {
		img.History = append(img.History, ocispec.History{CreatedBy: h, EmptyLayer: i > 0})
	}
	return img
}

// fakeImages is what the fake resolver knows, by short name.
var fakeImages = map[string]dockerspec.DockerOCIImage{
	// like busybox:latest
	"busybox": fakeImage("busybox", ocispec.ImageConfig{Env: []string{defaultPath}, Cmd: []string{"sh"}},
		"BusyBox 1.36.1 (glibc), Debian 12", `CMD ["sh"]`),
	"alpine": fakeImage("alpine", ocispec.ImageConfig{Env: []string{defaultPath}, Cmd: []string{"/bin/sh"}},
		"ADD alpine-minirootfs.tar.gz /", `CMD ["/bin/sh"]`),
	// an application base image that sets everything a child inherits
	"appbase": fakeImage("appbase", ocispec.ImageConfig{
		Env:          []string{defaultPath, "APP_HOME=/srv/app"},
		Entrypoint:   []string{"/docker-entrypoint.sh"},
		Cmd:          []string{"serve", "--port=80"},
		WorkingDir:   "/srv/app",
		User:         "app",
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
		Volumes:      map[string]struct{}{"/srv/data": {}},
		Labels:       map[string]string{"org.example.base": "appbase"},
		StopSignal:   "SIGQUIT",
	}, "appbase"),
	// an image whose env lacks PATH
	"nopath": fakeImage("nopath", ocispec.ImageConfig{Env: []string{"LANG=C.UTF-8"}}, "nopath"),
}

// fakeResolver resolves fakeImages by short name, with or without
// docker.io/library/ and :latest.
type fakeResolver struct{}

func (fakeResolver) ResolveImage(_ context.Context, ref string) (ocispec.Descriptor, *dockerspec.DockerOCIImage, error) {
	name := strings.TrimPrefix(ref, "docker.io/")
	name = strings.TrimPrefix(name, "library/")
	name = strings.TrimSuffix(name, ":latest")
	img, ok := fakeImages[name]
	if !ok {
		return ocispec.Descriptor{}, nil, errors.New("image \"" + ref + "\" not found in the local store")
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("manifest of " + name), Size: 123}
	return desc, &img, nil
}

// contextHasher returns a hasher on an empty build context; compiling never
// hashes anything.
func contextHasher(t *testing.T) *contenthash.Hasher {
	t.Helper()
	h, err := contenthash.NewHasher(t.TempDir(), t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// baseOptions are the options every compile in these tests starts from.
func baseOptions(t *testing.T, src string) dockerfile.Options {
	t.Helper()
	return dockerfile.Options{
		Source:  []byte(src),
		Context: contextHasher(t),
		Images:  fakeResolver{},
		OS:      "linux",
		Arch:    "amd64",
	}
}

// readFlags applies testdata/<case>/flags: one kiln build flag per line
// (--target=, --build-arg=K=V, --label=K=V, --network=, --no-cache).
func readFlags(t *testing.T, path string, opts *dockerfile.Options) {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, _ := strings.Cut(line, "=")
		switch name {
		case "--target":
			opts.Target = value
		case "--build-arg":
			k, v, _ := strings.Cut(value, "=")
			if opts.BuildArgs == nil {
				opts.BuildArgs = map[string]string{}
			}
			opts.BuildArgs[k] = v
		case "--label":
			k, v, _ := strings.Cut(value, "=")
			if opts.Labels == nil {
				opts.Labels = map[string]string{}
			}
			opts.Labels[k] = v
		case "--network":
			opts.Network = value
		case "--no-cache":
			opts.NoCache = true
		default:
			t.Fatalf("%s: unknown flag %q", path, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestGolden compiles testdata/<case>/Dockerfile (with the flags in
// testdata/<case>/flags, if any) and compares Dump's output with
// testdata/<case>/expected.txt. `go test ./frontend/dockerfile -update`
// rewrites the expected files; review the diff before committing it.
func TestGolden(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "*", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 15 {
		t.Fatalf("only %d golden cases found", len(dirs))
	}
	for _, df := range dirs {
		dir := filepath.Dir(df)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			src, err := os.ReadFile(df)
			if err != nil {
				t.Fatal(err)
			}
			opts := baseOptions(t, string(src))
			readFlags(t, filepath.Join(dir, "flags"), &opts)
			var warnings []string
			opts.Warn = func(msg string) { warnings = append(warnings, msg) }
			b, err := dockerfile.Compile(context.Background(), opts)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got := dockerfile.Dump(b)
			if len(warnings) > 0 {
				got += "warnings:\n  " + strings.Join(warnings, "\n  ") + "\n"
			}
			if dockerfile.Dump(b) != dockerfile.Dump(b) {
				t.Fatal("Dump is not stable")
			}
			expected := filepath.Join(dir, "expected.txt")
			if *update {
				if err := os.WriteFile(expected, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(expected)
			if err != nil {
				t.Fatalf("%v (run go test ./frontend/dockerfile -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Dump differs from %s (run with -update to rewrite it after checking):\n%s", expected, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff is a minimal line diff of want and got: "-" lines only in
// want, "+" lines only in got, with their line numbers.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	// lcs[i][j] is the longest common subsequence of w[i:] and g[j:]
	lcs := make([][]int, len(w)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(g)+1)
	}
	for i := len(w) - 1; i >= 0; i-- {
		for j := len(g) - 1; j >= 0; j-- {
			if w[i] == g[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var sb strings.Builder
	i, j := 0, 0
	for i < len(w) || j < len(g) {
		switch {
		case i < len(w) && j < len(g) && w[i] == g[j]:
			i, j = i+1, j+1
		case i < len(w) && (j == len(g) || lcs[i+1][j] >= lcs[i][j+1]):
			fmt.Fprintf(&sb, "-%4d %s\n", i+1, w[i])
			i++
		default:
			fmt.Fprintf(&sb, "+%4d %s\n", j+1, g[j])
			j++
		}
	}
	return sb.String()
}

// Two compiles of the same Dockerfile must dump alike (no map order, no
// pointers, no times leak into the dump).
func TestDumpIsDeterministic(t *testing.T) {
	src := "FROM busybox AS a\nLABEL z=1 a=2 m=3\nEXPOSE 9 8 7\nVOLUME /c /b /a\nRUN true\nFROM a\nCOPY --from=a / /\n"
	var first string
	for i := range 5 {
		b, err := dockerfile.Compile(context.Background(), baseOptions(t, src))
		if err != nil {
			t.Fatal(err)
		}
		d := dockerfile.Dump(b)
		if i == 0 {
			first = d
		} else if d != first {
			t.Fatalf("dump %d differs:\n%s", i, lineDiff(first, d))
		}
	}
	if strings.Contains(first, `"created"`) {
		t.Errorf("dump contains created times:\n%s", first)
	}
}
