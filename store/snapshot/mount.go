package snapshot

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount mounts the layers lowers (bottom first) at target as one overlay.
// With upper set, writes go to snapshot upper, whose fs becomes the new
// layer's diff; without it the mount is read-only.
//
// Lower dirs are given relative to the snapshots directory: the mount is
// made from a thread whose working directory is that directory, which keeps
// the options of a 120-layer image within the kernel's one-page limit.
func (s *Store) Mount(target string, lowers []string, upper string) error {
	if upper == "" {
		return s.MountWithUpper(target, lowers, "", "")
	}
	return s.MountWithUpper(target, lowers, upper+"/fs", upper+"/work")
}

// MountWithUpper is Mount with writes going to the directories upperDir
// and workDir (absolute, or relative to the snapshots directory; on the
// store's filesystem): a container's writable layer lives with the
// container, not among the snapshots. With upperDir "" it is read-only.
func (s *Store) MountWithUpper(target string, lowers []string, upperDir, workDir string) error {
	for _, d := range []string{"empty", "empty2"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			return err
		}
	}
	// overlay needs two lowers when there is no upper, and one otherwise:
	// the empty dir at the bottom satisfies both and changes nothing.
	//
	// A layer can be in the stack twice (two RUNs that changed nothing
	// have the same empty diff, so the same snapshot); overlay refuses a
	// lower dir given twice (ELOOP). Only its topmost place counts: it
	// decides every path the layer names, so the lower one adds nothing.
	parts := []string{}
	seen := map[string]bool{}
	for i := len(lowers) - 1; i >= 0; i-- {
		if !seen[lowers[i]] {
			seen[lowers[i]] = true
			parts = append(parts, lowers[i]+"/fs")
		}
	}
	parts = append(parts, "empty")
	if upperDir == "" && len(parts) < 2 {
		parts = append(parts, "empty2")
	}
	opts := "lowerdir=" + strings.Join(parts, ":")
	if upperDir != "" {
		opts += ",upperdir=" + upperDir + ",workdir=" + workDir
	}
	opts += ",index=off,redirect_dir=off,metacopy=off"
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("overlay mount of %d layers: options too long (%d bytes)", len(lowers), len(opts))
	}
	return mountIn(s.dir, target, opts)
}

// MountDir mounts a writable overlay of the plain directory lower at
// target, with writes going to upperDir/workDir (same filesystem). It is
// for directories outside the store, such as a build context mounted
// read-write into a step: the context itself is never written.
func MountDir(target, lower, upperDir, workDir string) error {
	opts := "lowerdir=" + lower + ",upperdir=" + upperDir + ",workdir=" + workDir + ",index=off,redirect_dir=off,metacopy=off"
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", target, err)
	}
	return nil
}

func mountIn(dir, target, opts string) error {
	abs, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		// This thread gets its own cwd and is never handed back to the Go
		// scheduler (no UnlockOSThread), so the chdir affects nobody else.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		if err := unix.Chdir(dir); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount("overlay", abs, "overlay", 0, opts); err != nil {
			errc <- fmt.Errorf("mount overlay at %s (%s): %w", abs, opts, err)
			return
		}
		errc <- nil
	}()
	return <-errc
}

// Unmount detaches target. A target that is not mounted is not an error,
// so cleanup can call it unconditionally.
func Unmount(target string) error {
	for i := 0; i < 50; i++ {
		err := unix.Unmount(target, 0)
		switch err {
		case nil:
			continue // stacked mounts: keep going until EINVAL
		case unix.EINVAL, unix.ENOENT:
			return nil
		case unix.EBUSY:
			unix.Unmount(target, unix.MNT_DETACH)
			return nil
		default:
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return nil
}

// MountsUnder lists mount points at or below dir, deepest first, from
// /proc/self/mountinfo; cleanup uses it to find what a dead process left.
func MountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	// mountinfo shows resolved paths: a store reached through a symlink
	// would otherwise seem to have no mounts.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UnmountUnder unmounts everything mounted at or below dir, deepest first.
func UnmountUnder(dir string) error {
	mounts, err := MountsUnder(dir)
	if err != nil {
		return err
	}
	for _, m := range mounts {
		if err := Unmount(m); err != nil {
			return err
		}
	}
	return nil
}
