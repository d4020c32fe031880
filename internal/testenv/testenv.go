// Package testenv holds helpers shared by kiln's tests: requirement checks
// (root, external commands), the deterministic busybox base image, a private
// dockerd per test process for comparison builds, and a reader that flattens
// a saved image (docker save or OCI layout tar) into a comparable summary.
//
// Requirement helpers skip the test when something is missing, except when
// the environment variable CI is "true": there a missing requirement is a
// failure, so CI cannot silently pass by skipping.
//
// A test binary that uses BusyboxTar or SharedDockerd should clean up in its
// TestMain:
//
//	func TestMain(m *testing.M) {
//		code := m.Run()
//		testenv.StopShared()
//		testenv.Cleanup()
//		os.Exit(code)
//	}
package testenv

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Debian installs dockerd in /usr/sbin; /usr/bin is accepted too. The docker
// client must be Debian's /usr/bin/docker (matching dockerd 20.10), never
// whatever "docker" comes first on PATH.
var (
	dockerdCandidates = []string{"/usr/sbin/dockerd", "/usr/bin/dockerd"}
	dockerClient      = "/usr/bin/docker"
)

// Missing reports an unmet requirement: fatal under CI=true, a skip otherwise.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("requirement not met (CI=true): "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// RequireRoot skips (or under CI=true fails) the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "test needs root (euid %d)", os.Geteuid())
	}
}

// RequireCommand returns the absolute path of command name, or skips (under
// CI=true fails) the test when it is not installed. Names are looked up on
// PATH and then in the sbin directories, which PATH often lacks. Two names
// are special: "docker" always means /usr/bin/docker and "dockerd" Debian's
// dockerd, because another, incompatible docker client may come first on
// PATH. A name containing a slash is checked as given.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := LookCommand(name)
	if err != nil {
		Missing(t, "%v (run scripts/install-deps.sh)", err)
	}
	return p
}

// LookCommand is RequireCommand without the testing.TB: it returns the path
// of name or an error.
func LookCommand(name string) (string, error) {
	switch name {
	case "docker":
		return checkExec(dockerClient)
	case "dockerd":
		for _, c := range dockerdCandidates {
			if p, err := checkExec(c); err == nil {
				return p, nil
			}
		}
		return "", fmt.Errorf("command dockerd not found (looked in %v)", dockerdCandidates)
	}
	if filepath.IsAbs(name) || filepath.Base(name) != name {
		return checkExec(name)
	}
	if p, err := exec.LookPath(name); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, nil
		}
		return p, nil
	}
	for _, dir := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if p, err := checkExec(filepath.Join(dir, name)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("command %s not found on PATH or in sbin", name)
}

func checkExec(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("command %s not found: %w", p, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("command %s is not executable", p)
	}
	return p, nil
}

// RepoRoot returns the repository root: the nearest directory at or above
// the working directory that contains go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil && !fi.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// Process-lifetime scratch directory, shared by BusyboxTar and friends.
var (
	scratchMu  sync.Mutex
	scratchDir string
)

// processTempDir returns a directory that lives until Cleanup is called.
func processTempDir() (string, error) {
	scratchMu.Lock()
	defer scratchMu.Unlock()
	if scratchDir == "" {
		d, err := os.MkdirTemp("", "kiln-testenv-")
		if err != nil {
			return "", err
		}
		scratchDir = d
	}
	return scratchDir, nil
}

// Cleanup removes the process-wide temporary directory (and so the busybox
// tar). Call it from TestMain after m.Run; later BusyboxTar calls in the same
// process would fail.
func Cleanup() {
	busyboxMu.Lock() // lock order: busyboxMu, then scratchMu
	defer busyboxMu.Unlock()
	busyboxDone = true
	busyboxPath = ""
	busyboxErr = errors.New("testenv: BusyboxTar called after Cleanup")
	scratchMu.Lock()
	defer scratchMu.Unlock()
	if scratchDir != "" {
		os.RemoveAll(scratchDir)
		scratchDir = ""
	}
}

var (
	busyboxMu   sync.Mutex
	busyboxDone bool
	busyboxPath string
	busyboxErr  error
)

// BusyboxTar returns the path of the busybox rootfs tar made by
// scripts/busybox-rootfs.sh. The script runs once per test process; the tar
// lives in a process-wide temporary directory removed by Cleanup. Needs
// /bin/busybox (busybox-static); skips (CI=true: fails) without it.
func BusyboxTar(t testing.TB) string {
	t.Helper()
	RequireCommand(t, "/bin/busybox")
	busyboxMu.Lock()
	defer busyboxMu.Unlock()
	if !busyboxDone {
		busyboxDone = true
		busyboxPath, busyboxErr = makeBusyboxTar()
	}
	if busyboxErr != nil {
		t.Fatalf("BusyboxTar: %v", busyboxErr)
	}
	return busyboxPath
}

func makeBusyboxTar() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir, err := processTempDir()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "busybox-rootfs.tar")
	cmd := exec.Command("/bin/sh", filepath.Join(root, "scripts", "busybox-rootfs.sh"), out)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("scripts/busybox-rootfs.sh: %v: %s", err, b)
	}
	return out, nil
}
