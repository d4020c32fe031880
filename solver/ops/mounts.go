package ops

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/kiln-build/kiln/cache/contenthash"
	"github.com/kiln-build/kiln/solver"
	"github.com/kiln-build/kiln/solver/filecopy"
	"github.com/kiln-build/kiln/store/lock"
	"github.com/kiln-build/kiln/store/snapshot"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Mount is one RUN --mount. What it mounts is never part of the layer.
type Mount struct {
	Type   string `json:"type"` // bind, cache, tmpfs, secret, ssh
	Target string `json:"target"`
	// ReadOnly for bind (default) and cache mounts.
	ReadOnly bool `json:"readonly,omitempty"`
	// Input is the index of the Exec input the mount reads from (bind, and
	// cache with from=), 0 when it reads the build context (Context set) or
	// nothing.
	Input   int                 `json:"input,omitempty"`
	Context *contenthash.Hasher `json:"-"`
	Source  string              `json:"source,omitempty"`
	// cache
	CacheID string `json:"id,omitempty"`
	Sharing string `json:"sharing,omitempty"` // shared, private, locked
	// cache, secret, ssh: ownership and mode of what is mounted
	Mode uint32 `json:"mode,omitempty"`
	UID  int    `json:"uid,omitempty"`
	GID  int    `json:"gid,omitempty"`
	// tmpfs
	SizeLimit int64 `json:"size,omitempty"`
	// secret / ssh
	SecretID string `json:"secret,omitempty"`
	Required bool   `json:"required,omitempty"`
	// EnvName exposes a secret as an environment variable instead of (or as
	// well as, when Target is set) a file.
	EnvName string `json:"env,omitempty"`
	// Data is the content of an "inline" mount: a RUN heredoc script
	// with its own #! interpreter, mounted read-only at Target.
	Data string `json:"data,omitempty"`
}

// Secrets gives build secrets and ssh agent sockets to steps that mount them.
type Secrets interface {
	// Secret returns the value of secret id; ok is false if it was not given.
	Secret(id string) (value []byte, ok bool, err error)
	// SSHSocket returns the agent socket path for ssh id.
	SSHSocket(id string) (path string, ok bool)
}

// setupMounts prepares every mount of e for a container whose rootfs is at
// rootfs, returning the runtime mounts, extra env and a cleanup that undoes
// the host-side mounts.
func (e *Exec) setupMounts(ctx context.Context, w *Worker, inputs []solver.Result, rootfs, scratch string) ([]specs.Mount, []string, func(), error) {
	var (
		out      []specs.Mount
		env      []string
		cleanups []func()
	)
	cleanup := func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}
	fail := func(err error) ([]specs.Mount, []string, func(), error) {
		cleanup()
		return nil, nil, func() {}, err
	}
	// secrets live on a private tmpfs, never on disk
	var secretDir string
	for i, m := range e.Mounts {
		switch m.Type {
		case "bind":
			src, done, err := e.bindSource(ctx, w, m, inputs, scratch, i)
			if err != nil {
				return fail(err)
			}
			cleanups = append(cleanups, done)
			opts := []string{"rbind", "ro"}
			if !m.ReadOnly {
				opts[1] = "rw"
			}
			out = append(out, specs.Mount{Destination: m.Target, Type: "bind", Source: src, Options: opts})
		case "cache":
			dir, done, err := w.cacheMount(ctx, m, inputs)
			if err != nil {
				return fail(err)
			}
			cleanups = append(cleanups, done)
			opts := []string{"rbind", "rw"}
			if m.ReadOnly {
				opts[1] = "ro"
			}
			out = append(out, specs.Mount{Destination: m.Target, Type: "bind", Source: dir, Options: opts})
		case "inline":
			f := filepath.Join(scratch, "inline"+strconv.Itoa(i))
			if err := os.WriteFile(f, []byte(m.Data), 0o700); err != nil {
				return fail(err)
			}
			os.Chmod(f, os.FileMode(m.Mode))
			out = append(out, specs.Mount{Destination: m.Target, Type: "bind", Source: f, Options: []string{"rbind", "ro"}})
		case "tmpfs":
			opts := []string{"nosuid", "nodev"}
			if m.SizeLimit > 0 {
				opts = append(opts, "size="+strconv.FormatInt(m.SizeLimit, 10))
			}
			out = append(out, specs.Mount{Destination: m.Target, Type: "tmpfs", Source: "tmpfs", Options: opts})
		case "secret":
			val, ok, err := w.secret(m.SecretID)
			if err != nil {
				return fail(err)
			}
			if !ok {
				if m.Required {
					return fail(fmt.Errorf("secret %s: not provided (use --secret id=%s,src=FILE)", m.SecretID, m.SecretID))
				}
				continue
			}
			if m.EnvName != "" {
				env = append(env, m.EnvName+"="+string(val))
			}
			if m.Target == "" {
				continue
			}
			if secretDir == "" {
				secretDir = filepath.Join(scratch, "secrets")
				if err := os.Mkdir(secretDir, 0o700); err != nil {
					return fail(err)
				}
				if err := unix.Mount("tmpfs", secretDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=1m"); err != nil {
					return fail(fmt.Errorf("secret tmpfs: %w", err))
				}
				dir := secretDir
				cleanups = append(cleanups, func() { snapshot.Unmount(dir) })
			}
			f := filepath.Join(secretDir, strconv.Itoa(i))
			if err := os.WriteFile(f, val, 0o600); err != nil {
				return fail(err)
			}
			os.Chown(f, m.UID, m.GID)
			os.Chmod(f, os.FileMode(m.Mode))
			out = append(out, specs.Mount{Destination: m.Target, Type: "bind", Source: f, Options: []string{"rbind", "ro"}})
		case "ssh":
			sock, ok := w.sshSocket(m.SecretID)
			if !ok {
				if m.Required {
					return fail(fmt.Errorf("ssh %s: no agent socket given (use --ssh %s)", m.SecretID, m.SecretID))
				}
				continue
			}
			out = append(out, specs.Mount{Destination: m.Target, Type: "bind", Source: sock, Options: []string{"rbind", "rw"}})
			env = append(env, "SSH_AUTH_SOCK="+m.Target)
		default:
			return fail(fmt.Errorf("mount type %q is not supported", m.Type))
		}
	}
	return out, env, cleanup, nil
}

// bindSource returns the host path a bind mount exposes.
func (e *Exec) bindSource(ctx context.Context, w *Worker, m Mount, inputs []solver.Result, scratch string, i int) (string, func(), error) {
	if m.Input == 0 {
		root := contextRoot(m.Context)
		p, err := securejoin.SecureJoin(root, m.Source)
		if err != nil {
			return "", nil, err
		}
		fi, err := os.Stat(p)
		if err != nil {
			return "", nil, fmt.Errorf("--mount=type=bind,source=%s: not found in build context", m.Source)
		}
		if m.ReadOnly || !fi.IsDir() {
			return p, func() {}, nil
		}
		// rw: writes go to a throwaway upper dir, never to the context
		dir := filepath.Join(scratch, "mnt"+strconv.Itoa(i))
		for _, d := range []string{dir, dir + "-upper", dir + "-work"} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return "", nil, err
			}
		}
		if err := snapshot.MountDir(dir, p, dir+"-upper", dir+"-work"); err != nil {
			return "", nil, err
		}
		return dir, func() { snapshot.Unmount(dir) }, nil
	}
	dir := filepath.Join(scratch, "mnt"+strconv.Itoa(i))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", nil, err
	}
	lowers, err := w.Store.SnapshotStack(ctx, inputs[m.Input].Layers)
	if err != nil {
		return "", nil, err
	}
	upper := ""
	var removeUpper func()
	if !m.ReadOnly {
		// writes to an rw bind mount are thrown away with this upper dir
		if upper, err = w.Store.Snapshots.New(); err != nil {
			return "", nil, err
		}
		id := upper
		removeUpper = func() { w.Store.Snapshots.Remove(id) }
	}
	if err := w.Store.Snapshots.Mount(dir, lowers, upper); err != nil {
		if removeUpper != nil {
			removeUpper()
		}
		return "", nil, err
	}
	done := func() {
		snapshot.Unmount(dir)
		if removeUpper != nil {
			removeUpper()
		}
	}
	p, err := securejoin.SecureJoin(dir, m.Source)
	if err == nil {
		_, err = os.Stat(p)
	}
	if err != nil {
		done()
		return "", nil, fmt.Errorf("--mount=type=bind,source=%s: %w", m.Source, err)
	}
	return p, done, nil
}

func contextRoot(h *contenthash.Hasher) string {
	if h == nil {
		return "/nonexistent"
	}
	return h.Root()
}

// cacheMount returns the persistent directory of a cache mount, creating
// (and, with from=, seeding) it the first time. sharing=locked holds an
// exclusive flock until done; shared and private share the directory.
func (w *Worker) cacheMount(ctx context.Context, m Mount, inputs []solver.Result) (string, func(), error) {
	cm := w.Store.CacheMount(m.CacheID)
	base := cm.Dir
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", nil, err
	}
	lf, err := lock.Open(cm.LockPath(), 0o600)
	if err != nil {
		return "", nil, err
	}
	switch m.Sharing {
	case "locked":
		err = lf.Wait(ctx, lock.Exclusive, 0, nil)
	case "private":
		// private: the shared dir if nobody else has it, else a fresh
		// throwaway one, like BuildKit
		var ok bool
		if ok, err = lf.TryLock(lock.Exclusive); err == nil && !ok {
			lf.Close()
			return w.privateCacheDir(m)
		}
	default:
		err = lf.Wait(ctx, lock.Shared, 0, nil)
	}
	if err != nil {
		lf.Close()
		return "", nil, err
	}
	done := func() { lf.Close() }
	dir := cm.DataDir()
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		tmp := filepath.Join(base, ".tmp-data")
		os.RemoveAll(tmp)
		if err := os.Mkdir(tmp, os.FileMode(m.Mode)); err != nil {
			done()
			return "", nil, err
		}
		os.Chmod(tmp, os.FileMode(m.Mode))
		os.Chown(tmp, m.UID, m.GID)
		if m.Input > 0 {
			err := w.withReadOnly(ctx, inputs[m.Input].Layers, func(root string) error {
				src := strings.TrimPrefix(path.Clean("/"+m.Source), "/")
				if src == "" {
					src = "."
				}
				return filecopy.Copy(ctx, root, []string{src}, tmp, "/", filecopy.Options{})
			})
			if err != nil {
				done()
				return "", nil, fmt.Errorf("seed cache mount %s: %w", m.CacheID, err)
			}
		}
		if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
			done()
			return "", nil, err
		}
	}
	return dir, done, nil
}

// privateCacheDir is an empty cache dir for one step, removed afterwards.
func (w *Worker) privateCacheDir(m Mount) (string, func(), error) {
	dir, err := w.scratchDir()
	if err != nil {
		return "", nil, err
	}
	os.Chmod(dir, os.FileMode(m.Mode))
	os.Chown(dir, m.UID, m.GID)
	return dir, func() { os.RemoveAll(dir) }, nil
}

func (w *Worker) secret(id string) ([]byte, bool, error) {
	if w.Secrets == nil {
		return nil, false, nil
	}
	return w.Secrets.Secret(id)
}

func (w *Worker) sshSocket(id string) (string, bool) {
	if w.Secrets == nil {
		return "", false
	}
	return w.Secrets.SSHSocket(id)
}
