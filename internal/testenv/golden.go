package testenv

// Golden files: the recorded result of a reference (BuildKit) build, stored
// as the difference from the busybox base image so that a golden never
// embeds the busybox binary and stays small enough to review.
//
// The conformance suite (e2e/conformance/conformance_test.go) writes one per case
// with `make golden` and compares kiln's result against it on every
// `make test`, without running BuildKit:
//
//	base, _ := testenv.ReadRootfsTar(testenv.BusyboxTar(t))
//	g := testenv.MakeGolden(buildkitSummary, base)      // make golden
//	diffs := testenv.CompareGolden(kilnSummary, base, g) // make test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Golden is a reference build's image minus what it shares with the base
// image it was built on.
type Golden struct {
	// Comment is free text for readers of the file (how it was made).
	Comment string `json:"comment,omitempty"`
	// Oracle names the reference that built the image, e.g. "buildkit
	// v0.34.2 standalone" or "docker 20.10.24 buildkit".
	Oracle string `json:"oracle"`
	// BaseSHA256 is the hex sha256 of the busybox rootfs tar
	// (scripts/busybox-rootfs.sh) the base image was imported from. A golden
	// is only meaningful with the same base.
	BaseSHA256 string `json:"base_sha256"`
	// Config is the whole image config (not a difference).
	Config ImageConfig `json:"config"`
	// Files holds every entry of the result that the base lacks or has
	// differently (as Diff compares them), sorted by path.
	Files []GoldenFile `json:"files"`
	// Removed lists, sorted, the base image's paths absent from the result.
	Removed []string `json:"removed"`
}

// GoldenFile is a FileEntry in a reviewable form: the mode as octal text
// ("0644", "04755", with "1" "2" "4" in front for sticky, setgid, setuid).
type GoldenFile struct {
	Path   string `json:"path"`
	Type   string `json:"type"`
	Mode   string `json:"mode"`
	UID    int    `json:"uid"`
	GID    int    `json:"gid"`
	Size   int64  `json:"size,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	Link   string `json:"link,omitempty"`
}

// ErrGoldenBase is returned by CheckGoldenBase when the golden was made from
// another busybox rootfs than the one the test uses.
var ErrGoldenBase = errors.New("golden made from another busybox; run make golden")

func goldenFile(e FileEntry) GoldenFile {
	return GoldenFile{
		Path: e.Path, Type: e.Type, Mode: fmt.Sprintf("%04o", unixMode(e.Mode)),
		UID: e.UID, GID: e.GID, Size: e.Size, SHA256: e.SHA256, Link: e.Link,
	}
}

func (g GoldenFile) entry() (FileEntry, error) {
	u, err := strconv.ParseUint(g.Mode, 8, 32)
	if err != nil {
		return FileEntry{}, fmt.Errorf("%s: mode %q: %w", g.Path, g.Mode, err)
	}
	return FileEntry{
		Path: g.Path, Type: g.Type, Mode: tarMode(int64(u)),
		UID: g.UID, GID: g.GID, Size: g.Size, SHA256: g.SHA256, Link: g.Link,
	}, nil
}

// MakeGolden records summary as a difference from base: the config, every
// entry that base lacks or that differs from base's entry (compared as Diff
// does: hardlinks as files, symlink modes ignored), and the base paths that
// summary lacks. Oracle, BaseSHA256 and Comment are left for the caller.
func MakeGolden(summary, base *ImageSummary) Golden {
	g := Golden{Config: summary.Config, Files: []GoldenFile{}, Removed: []string{}}
	for p, e := range summary.Files {
		if b, ok := base.Files[p]; ok && comparable(b) == comparable(e) {
			continue
		}
		g.Files = append(g.Files, goldenFile(e))
	}
	sort.Slice(g.Files, func(i, j int) bool { return g.Files[i].Path < g.Files[j].Path })
	for p := range base.Files {
		if _, ok := summary.Files[p]; !ok {
			g.Removed = append(g.Removed, p)
		}
	}
	sort.Strings(g.Removed)
	return g
}

// Summary rebuilds the full image summary the golden stands for: base
// without Removed, with Files laid over it, and Config.
func (g Golden) Summary(base *ImageSummary) (*ImageSummary, error) {
	s := &ImageSummary{Files: make(map[string]FileEntry, len(base.Files)+len(g.Files)), Config: g.Config}
	for p, e := range base.Files {
		s.Files[p] = e
	}
	for _, p := range g.Removed {
		delete(s.Files, p)
	}
	for _, f := range g.Files {
		e, err := f.entry()
		if err != nil {
			return nil, err
		}
		s.Files[e.Path] = e
	}
	return s, nil
}

// CompareGolden compares kiln's image with the golden's: Diff(kiln,
// golden.Summary(base)), so "only in a" means only in kiln's image and "a
// != b" reads "kiln != reference". It does not check BaseSHA256 (see
// CheckGoldenBase). An unreadable golden yields one line saying so.
func CompareGolden(kiln, base *ImageSummary, golden Golden) []string {
	ref, err := golden.Summary(base)
	if err != nil {
		return []string{"golden: " + err.Error()}
	}
	return Diff(kiln, ref)
}

// CheckGoldenBase returns ErrGoldenBase (wrapped with both digests) unless
// the golden was made from the base tar whose sha256 is baseSHA256.
func CheckGoldenBase(g Golden, baseSHA256 string) error {
	if g.BaseSHA256 != baseSHA256 {
		return fmt.Errorf("%w (golden base sha256 %s, this machine's %s)", ErrGoldenBase, shortHash(g.BaseSHA256), shortHash(baseSHA256))
	}
	return nil
}

// ReadGolden reads a golden JSON file.
func ReadGolden(p string) (Golden, error) {
	var g Golden
	b, err := os.ReadFile(p)
	if err != nil {
		return g, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&g); err != nil {
		return g, fmt.Errorf("%s: %w", p, err)
	}
	return g, nil
}

// WriteGolden writes g as indented JSON (stable: sorted files, sorted map
// keys) ending in a newline. The file is replaced atomically.
func WriteGolden(p string, g Golden) error {
	if g.Files == nil {
		g.Files = []GoldenFile{}
	}
	if g.Removed == nil {
		g.Removed = []string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(g); err != nil {
		return err
	}
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// SameGolden reports whether two goldens describe the same image (ignoring
// Comment and Oracle), as Diff would see it.
func SameGolden(a, b Golden) bool {
	a.Comment, b.Comment, a.Oracle, b.Oracle = "", "", "", ""
	return reflect.DeepEqual(a, b)
}

// FileSHA256 returns the hex sha256 of a file's content.
func FileSHA256(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ReadRootfsTar flattens a plain root filesystem tar (one layer, like the
// busybox rootfs tar that `docker import` and `kiln import` take) into a
// summary with an empty config: the base image as ReadImageTar would see it.
func ReadRootfsTar(p string) (*ImageSummary, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fs := &layerFS{files: map[string]*FileEntry{}}
	if err := fs.applyCompressed(f); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	s := &ImageSummary{Files: make(map[string]FileEntry, len(fs.files))}
	for k, e := range fs.files {
		s.Files[k] = *e
	}
	return s, nil
}

// FormatDiff indents diff lines for a test message.
func FormatDiff(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return "\t" + strings.Join(lines, "\n\t")
}

// ---------------------------------------------------------------------------
// Oracles: the reference builders that make golden files.

// Oracle builds a Dockerfile the reference way and saves the image.
type Oracle interface {
	// Name says which BuildKit this is, e.g. "buildkit v0.34.2 standalone"
	// or "docker 20.10.24+dfsg1 buildkit"; goldens record it.
	Name() string
	// Build builds contextDir (its Dockerfile, or the one a -f flag names
	// relative to contextDir) with flags in `docker build` spelling, one
	// flag and its value per element ("--build-arg X=1", "--target t"),
	// and writes the image to outTar as a docker-save or OCI tar. On
	// failure the error holds the build's output.
	Build(contextDir string, flags []string, outTar string) error
	// Close stops whatever the oracle started.
	Close() error
}

// SplitFlag splits "--build-arg X=1" (or "--build-arg=X=1") into the flag
// name and its value; a flag without value gets "".
func SplitFlag(f string) (name, value string) {
	f = strings.TrimSpace(f)
	if i := strings.IndexAny(f, " \t"); i >= 0 {
		return f[:i], strings.TrimSpace(f[i+1:])
	}
	if strings.HasPrefix(f, "--") {
		if n, v, ok := strings.Cut(f, "="); ok {
			return n, v
		}
	}
	return f, ""
}

// DockerOracle builds with a dockerd's built-in BuildKit
// (`docker build --network host`), busybox:latest imported from the busybox
// rootfs tar.
type DockerOracle struct {
	D    *Dockerd
	name string
	n    int
}

// NewDockerOracle imports busyboxTar as busybox:latest into d.
func NewDockerOracle(d *Dockerd, busyboxTar string) (*DockerOracle, error) {
	if err := d.Import(busyboxTar, "busybox:latest"); err != nil {
		return nil, err
	}
	v, err := d.Docker("version", "--format", "{{.Server.Version}}")
	if err != nil {
		return nil, err
	}
	return &DockerOracle{D: d, name: "docker " + strings.TrimSpace(v) + " buildkit"}, nil
}

func (o *DockerOracle) Name() string { return o.name }

func (o *DockerOracle) Build(contextDir string, flags []string, outTar string) error {
	o.n++
	tag := fmt.Sprintf("kiln-conformance-oracle:%d", o.n)
	args := []string{"build", "--network", "host", "--progress", "plain", "-t", tag}
	file := "Dockerfile"
	for _, f := range flags {
		n, v := SplitFlag(f)
		switch n {
		case "-f", "--file":
			file = v
		case "":
		default:
			args = append(args, n)
			if v != "" {
				args = append(args, v)
			}
		}
	}
	args = append(args, "-f", path.Join(contextDir, file), contextDir)
	if _, err := o.D.Docker(args...); err != nil {
		return err
	}
	defer o.D.Docker("rmi", tag)
	return o.D.Save(tag, outTar)
}

// Close does nothing: the daemon belongs to the caller.
func (o *DockerOracle) Close() error { return nil }

// Buildkitd is a standalone BuildKit daemon (OCI worker, runc, as root) with
// its own root and socket, whose docker.io mirror is a private registry on
// 127.0.0.1 holding library/busybox:latest. Start it with StartBuildkitd.
type Buildkitd struct {
	BinDir   string // holds buildkitd and buildctl
	Dir      string // state: Dir/root, logs, config
	Root     string
	Socket   string // in a short /tmp/kb-NNN directory
	Version  string // e.g. "v0.34.2"
	Registry *Registry

	sockDir string
	cmd     *exec.Cmd
	done    chan struct{}
	n       int
	stopped bool
}

// StartBuildkitd starts a registry holding busyboxImageTar (an OCI image
// tar whose index names "latest", as `kiln save` writes) as
// library/busybox:latest, and a buildkitd using it as docker.io's mirror.
// State lives in dir. Needs root, runc, docker-registry and skopeo.
func StartBuildkitd(binDir, dir, busyboxImageTar string) (b *Buildkitd, err error) {
	for _, c := range []string{"buildkitd", "buildctl"} {
		if _, err := checkExec(filepath.Join(binDir, c)); err != nil {
			return nil, err
		}
	}
	skopeo, err := LookCommand("skopeo")
	if err != nil {
		return nil, err
	}
	if _, err := LookCommand("runc"); err != nil {
		return nil, err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	b = &Buildkitd{BinDir: binDir, Dir: dir, Root: filepath.Join(dir, "root")}
	defer func() {
		if err != nil {
			b.Stop()
		}
	}()
	out, err := exec.Command(filepath.Join(binDir, "buildctl"), "--version").Output()
	if err != nil {
		return b, fmt.Errorf("buildctl --version: %v", err)
	}
	// "buildctl github.com/moby/buildkit v0.34.2 REVISION"
	if f := strings.Fields(string(out)); len(f) >= 3 {
		b.Version = f[2]
	}
	if b.Registry, err = NewRegistry(filepath.Join(dir, "registry"), RegistryOptions{}); err != nil {
		return b, err
	}
	if out, err := exec.Command(skopeo, "copy", "--quiet", "--dest-tls-verify=false",
		"oci-archive:"+busyboxImageTar+":latest",
		"docker://"+b.Registry.Addr+"/library/busybox:latest").CombinedOutput(); err != nil {
		return b, fmt.Errorf("skopeo copy busybox to %s: %v\n%s", b.Registry.Addr, err, out)
	}
	cfg := fmt.Sprintf(`[registry."docker.io"]
  mirrors = [%q]
[registry.%q]
  http = true
`, b.Registry.Addr, b.Registry.Addr)
	cfgPath := filepath.Join(dir, "buildkitd.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return b, err
	}
	if b.sockDir, err = os.MkdirTemp("/tmp", "kb-"); err != nil {
		return b, err
	}
	b.Socket = filepath.Join(b.sockDir, "buildkitd.sock")
	logPath := filepath.Join(dir, "buildkitd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return b, err
	}
	defer logf.Close()
	b.cmd = exec.Command(filepath.Join(binDir, "buildkitd"),
		"--config", cfgPath,
		"--root", b.Root,
		"--addr", "unix://"+b.Socket,
		"--oci-worker=true", "--containerd-worker=false",
		"--oci-worker-net=host",
	)
	b.cmd.Stdout, b.cmd.Stderr = logf, logf
	b.cmd.Env = daemonEnv()
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := startPinned(b.cmd); err != nil {
		b.cmd = nil
		return b, fmt.Errorf("starting buildkitd: %w", err)
	}
	b.done = make(chan struct{})
	go func() { _ = b.cmd.Wait(); close(b.done) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-b.done:
			return b, fmt.Errorf("buildkitd exited during startup; log %s:\n%s", logPath, tailFile(logPath, 30))
		default:
		}
		if _, err := os.Stat(b.Socket); err == nil {
			if err := exec.Command(filepath.Join(binDir, "buildctl"), "--addr", "unix://"+b.Socket, "debug", "workers").Run(); err == nil {
				return b, nil
			}
		}
		if time.Now().After(deadline) {
			return b, fmt.Errorf("buildkitd not ready after 60s; log %s:\n%s", logPath, tailFile(logPath, 30))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func tailFile(p string, n int) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (b *Buildkitd) Name() string { return "buildkit " + b.Version + " standalone" }

// Build runs `buildctl build --frontend dockerfile.v0` on contextDir,
// translating docker build flags (--build-arg, --target, -f/--file,
// --label, --no-cache) to buildctl's, and writes an OCI tar.
func (b *Buildkitd) Build(contextDir string, flags []string, outTar string) error {
	b.n++
	args := []string{"--addr", "unix://" + b.Socket, "build", "--progress", "plain",
		"--frontend", "dockerfile.v0", "--local", "context=" + contextDir}
	dfDir, dfName := contextDir, "Dockerfile"
	for _, f := range flags {
		n, v := SplitFlag(f)
		switch n {
		case "--build-arg":
			args = append(args, "--opt", "build-arg:"+v)
		case "--label":
			args = append(args, "--opt", "label:"+v)
		case "--target":
			args = append(args, "--opt", "target="+v)
		case "-f", "--file":
			p := path.Join(contextDir, v)
			dfDir, dfName = path.Dir(p), path.Base(p)
		case "--no-cache":
			args = append(args, "--no-cache")
		case "":
		default:
			return fmt.Errorf("buildctl: flag %q not translated", n)
		}
	}
	args = append(args, "--local", "dockerfile="+dfDir, "--opt", "filename="+dfName,
		"--output", "type=oci,dest="+outTar+",name=docker.io/library/kiln-conformance-oracle:"+strconv.Itoa(b.n))
	cmd := exec.Command(filepath.Join(b.BinDir, "buildctl"), args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("buildctl %s: %v\noutput:\n%s", strings.Join(args, " "), err, out.String())
	}
	return nil
}

// Close is Stop.
func (b *Buildkitd) Close() error { return b.Stop() }

// Stop stops exactly what StartBuildkitd started: buildkitd (SIGTERM, then
// SIGKILL after 20 s), any process left naming its root or socket (runc
// containers), mounts below its root, then the registry; and removes the
// state directories. Idempotent.
func (b *Buildkitd) Stop() error {
	if b == nil || b.stopped {
		return nil
	}
	b.stopped = true
	var errs []error
	roots := []string{b.Root}
	if b.sockDir != "" {
		roots = append(roots, b.sockDir)
	}
	var seeds []int
	if b.cmd != nil && b.cmd.Process != nil {
		seeds = append(seeds, b.cmd.Process.Pid)
	}
	before := relatedProcs(seeds, roots)
	if b.cmd != nil && b.cmd.Process != nil {
		_ = b.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-b.done:
		case <-time.After(20 * time.Second):
			errs = append(errs, fmt.Errorf("buildkitd (pid %d) ignored SIGTERM for 20s; killed", b.cmd.Process.Pid))
			_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
			<-b.done
		}
	}
	errs = append(errs, removeRoots(before, roots))
	if err := b.Registry.Stop(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
