package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/internal/atomicfile"
	"github.com/kiln-build/kiln/store/lock"
	"github.com/kiln-build/kiln/store/snapshot"
	digest "github.com/opencontainers/go-digest"
)

// Containers, as docker has them: an image plus a thin writable layer. The
// store keeps their records; package container runs them. Each lives in
//
//	containers/<id>/config.json  the Container record, written once
//	containers/<id>/state.json   its ContainerState, rewritten atomically
//	containers/<id>/lock         held exclusively while its process runs
//	containers/<id>/diff/        the writable layer (an overlay upper dir)
//	containers/<id>/work/        overlay's work dir
//	containers/<id>/merged/      the rootfs mount, while it runs
//	containers/<id>/bundle/      runc's config.json and /etc files
//	containers/<id>/container.log its output, stdout and stderr as written
//	containers/names/<name>      a symlink to the id: names are unique
//	containers/runc/             runc's --root for containers
//
// A container is made in containers/.tmp-<id> and renamed into place, and
// removed by renaming it to .removing-<id> first, so a crash never leaves a
// half-made or half-removed container visible; repair (under the store's
// exclusive lock) removes both kinds of leftover. A container's record
// names the image's layers, which the GC keeps as long as the container
// exists, whatever happens to the image's tags.

// Container is a container's record.
type Container struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	// Image is the image as the user named it; ImageID its config digest
	// (docker's image ID) and Manifest its manifest.
	Image    string         `json:"image"`
	ImageID  digest.Digest  `json:"image_id"`
	Manifest digest.Digest  `json:"manifest"`
	Layers   []record.Layer `json:"layers"`
	// Path and Args are the process, as docker's inspect splits it.
	Path string   `json:"path"`
	Args []string `json:"args,omitempty"`
	// Env, User, WorkingDir: the image's with the run flags applied.
	Env        []string `json:"env,omitempty"`
	User       string   `json:"user,omitempty"`
	WorkingDir string   `json:"working_dir,omitempty"`
	// Entrypoint and Cmd as the container got them (inspect's Config).
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// Network is "host" or "none".
	Network string `json:"network"`
	// Binds are -v HOST:CTR[:ro] as given.
	Binds []string `json:"binds,omitempty"`
	// Tty (-t) and OpenStdin (-i).
	Tty       bool `json:"tty,omitempty"`
	OpenStdin bool `json:"open_stdin,omitempty"`
	// AutoRemove is --rm: the container goes when its process exits.
	AutoRemove bool `json:"auto_remove,omitempty"`
	// StopSignal is the image's STOPSIGNAL ("" = SIGTERM).
	StopSignal string `json:"stop_signal,omitempty"`
	// Labels are the image's.
	Labels map[string]string `json:"labels,omitempty"`
	// Stubs are mount points runc had to create in the writable layer
	// (/proc, /etc/hosts, ... when the image lacks them): they are not
	// the container's changes, so diff and commit leave them out.
	Stubs []string `json:"stubs,omitempty"`
}

// ShortID is the 12-character ID docker shows.
func (c *Container) ShortID() string { return c.ID[:12] }

// Container statuses, docker's words.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// ContainerState is what happened to a container's process. Only the
// process that holds the container's lock (its monitor) writes it.
type ContainerState struct {
	Status     string    `json:"status"`
	Pid        int       `json:"pid,omitempty"`
	ExitCode   int       `json:"exit_code"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Error says why the process could not start or was lost (e.g. its
	// monitor died with the machine).
	Error string `json:"error,omitempty"`
}

// ErrNoSuchContainer is a name or ID that matches no container.
var ErrNoSuchContainer = errors.New("no such container")

// NoSuchContainerError is docker's "No such container: X".
type NoSuchContainerError struct{ Ref string }

func (e *NoSuchContainerError) Error() string { return "No such container: " + e.Ref }
func (e *NoSuchContainerError) Is(t error) bool {
	return t == ErrNoSuchContainer
}

// ContainersDir holds the containers.
func (s *Store) ContainersDir() string { return filepath.Join(s.Root, "containers") }

// ContainerDir is container id's directory.
func (s *Store) ContainerDir(id string) string { return filepath.Join(s.ContainersDir(), id) }

// ContainerRuncRoot is runc's --root for containers (not run/runc: that is
// a build's, and cleanup empties it).
func (s *Store) ContainerRuncRoot() string { return filepath.Join(s.ContainersDir(), "runc") }

// Paths inside a container's directory.
func (s *Store) ContainerUpper(id string) string  { return filepath.Join(s.ContainerDir(id), "diff") }
func (s *Store) ContainerWork(id string) string   { return filepath.Join(s.ContainerDir(id), "work") }
func (s *Store) ContainerRootfs(id string) string { return filepath.Join(s.ContainerDir(id), "merged") }
func (s *Store) ContainerBundle(id string) string { return filepath.Join(s.ContainerDir(id), "bundle") }
func (s *Store) ContainerLog(id string) string {
	return filepath.Join(s.ContainerDir(id), "container.log")
}

func (s *Store) namesDir() string { return filepath.Join(s.ContainersDir(), "names") }

// isContainerID reports whether name is a container directory's name (64
// lowercase hex), not names/, runc/ or a leftover.
func isContainerID(name string) bool {
	if len(name) != 64 {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil && strings.ToLower(name) == name
}

// ValidContainerName is docker's rule for --name.
func ValidContainerName(n string) bool {
	if n == "" || len(n) > 255 {
		return false
	}
	for i, r := range n {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || i > 0 && (r == '_' || r == '.' || r == '-')
		if !ok {
			return false
		}
	}
	return true
}

// NameInUseError is docker's refusal of a taken --name.
type NameInUseError struct{ Name, ID string }

func (e *NameInUseError) Error() string {
	return fmt.Sprintf("Conflict. The container name %q is already in use by container %q. You have to remove (or rename) that container to be able to reuse that name.", "/"+e.Name, e.ID)
}

// CreateContainer gives c an ID (and, if it has none, a generated name),
// makes its directory with an empty writable layer and writes its record
// and a "created" state. It is all or nothing.
func (s *Store) CreateContainer(c *Container) error {
	if c.Name != "" && !ValidContainerName(c.Name) {
		return fmt.Errorf("Invalid container name (%s), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", c.Name)
	}
	if err := os.MkdirAll(s.namesDir(), 0o700); err != nil {
		return err
	}
	b := make([]byte, 32)
	rand.Read(b)
	c.ID = hex.EncodeToString(b)
	if c.Created.IsZero() {
		c.Created = time.Now().UTC()
	}
	tmp := filepath.Join(s.ContainersDir(), ".tmp-"+c.ID)
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	for _, d := range []string{"diff", "work", "merged", "bundle"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return err
		}
	}
	if err := s.claimName(c); err != nil {
		return err
	}
	defer func() {
		if !ok {
			os.Remove(filepath.Join(s.namesDir(), c.Name))
		}
	}()
	cfg, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	st, _ := json.Marshal(ContainerState{Status: StatusCreated})
	if err := atomicfile.WriteFile(filepath.Join(tmp, "config.json"), cfg, 0o600); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(tmp, "state.json"), st, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, s.ContainerDir(c.ID)); err != nil {
		return err
	}
	ok = true
	return nil
}

// claimName takes c.Name (or a generated one) in names/: a symlink, made
// atomically, so two containers never get one name.
func (s *Store) claimName(c *Container) error {
	given := c.Name != ""
	for i := 0; ; i++ {
		if !given {
			c.Name = GenerateName(i)
		}
		link := filepath.Join(s.namesDir(), c.Name)
		err := os.Symlink(c.ID, link)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrExist) {
			return err
		}
		// A name whose container is gone (a crash between the two
		// renames of a removal) is free again.
		if old, rerr := os.Readlink(link); rerr == nil && s.staleName(old) {
			if os.Remove(link) == nil {
				i--
				continue
			}
		}
		if given {
			old, _ := os.Readlink(link)
			return &NameInUseError{Name: c.Name, ID: old}
		}
		if i > 1000 {
			return errors.New("no free container name")
		}
	}
}

// staleName reports whether a names/ link's container exists neither as a
// container nor as one being made.
func (s *Store) staleName(id string) bool {
	for _, p := range []string{s.ContainerDir(id), filepath.Join(s.ContainersDir(), ".tmp-"+id)} {
		if _, err := os.Lstat(p); err == nil || !errors.Is(err, os.ErrNotExist) {
			return false
		}
	}
	return true
}

// Containers lists every container, newest first (docker ps's order).
func (s *Store) Containers() ([]*Container, error) {
	ents, err := os.ReadDir(s.ContainersDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Container
	for _, e := range ents {
		if !isContainerID(e.Name()) {
			continue
		}
		c, err := s.ReadContainer(e.Name())
		if errors.Is(err, os.ErrNotExist) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

// ReadContainer reads container id's record.
func (s *Store) ReadContainer(id string) (*Container, error) {
	b, err := os.ReadFile(filepath.Join(s.ContainerDir(id), "config.json"))
	if err != nil {
		return nil, err
	}
	var c Container
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("container %s: config.json: %w", id, err)
	}
	if c.ID != id {
		return nil, fmt.Errorf("container %s: config.json names container %q", id, c.ID)
	}
	return &c, nil
}

// LookupContainer finds a container by full ID, name ("/name" too, as
// docker prints them) or unambiguous ID prefix, in docker's order.
func (s *Store) LookupContainer(ref string) (*Container, error) {
	if ref == "" {
		return nil, &NoSuchContainerError{Ref: ref}
	}
	if isContainerID(ref) {
		if c, err := s.ReadContainer(ref); err == nil {
			return c, nil
		}
	}
	if name := strings.TrimPrefix(ref, "/"); ValidContainerName(name) {
		if id, err := os.Readlink(filepath.Join(s.namesDir(), name)); err == nil {
			if c, err := s.ReadContainer(id); err == nil {
				return c, nil
			}
		}
	}
	cs, err := s.Containers()
	if err != nil {
		return nil, err
	}
	var found *Container
	for _, c := range cs {
		if strings.HasPrefix(c.ID, ref) {
			if found != nil {
				return nil, fmt.Errorf("multiple containers found with provided prefix: %s", ref)
			}
			found = c
		}
	}
	if found == nil {
		return nil, &NoSuchContainerError{Ref: ref}
	}
	return found, nil
}

// ReadContainerState reads container id's state as last written. Whether
// a "running" container still runs is for package container to say (its
// lock tells).
func (s *Store) ReadContainerState(id string) (ContainerState, error) {
	var st ContainerState
	b, err := os.ReadFile(filepath.Join(s.ContainerDir(id), "state.json"))
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("container %s: state.json: %w", id, err)
	}
	return st, nil
}

// WriteContainerState replaces container id's state.
func (s *Store) WriteContainerState(id string, st ContainerState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.ContainerDir(id), "state.json"), b, 0o600)
}

// ContainerLock opens container id's lock file: its monitor holds it
// exclusively while the process runs; whoever needs it not running (rm,
// start, commit of a stopped one) takes it too.
func (s *Store) ContainerLock(id string) (*lock.File, error) {
	return lock.Open(filepath.Join(s.ContainerDir(id), "lock"), 0o600)
}

// ContainerRunning reports whether container id's process runs: whether
// its monitor holds its lock.
func (s *Store) ContainerRunning(id string) bool {
	l, err := lock.OpenExisting(filepath.Join(s.ContainerDir(id), "lock"))
	if err != nil {
		return false
	}
	defer l.Close()
	ok, err := l.TryLock(lock.Shared)
	return err == nil && !ok
}

// RemoveContainerFiles removes container id's directory and name. The
// caller has made sure nothing runs in it and nothing is mounted.
func (s *Store) RemoveContainerFiles(c *Container) error {
	gone := filepath.Join(s.ContainersDir(), ".removing-"+c.ID)
	if err := os.Rename(s.ContainerDir(c.ID), gone); err != nil {
		return err
	}
	link := filepath.Join(s.namesDir(), c.Name)
	if id, err := os.Readlink(link); err == nil && id == c.ID {
		os.Remove(link)
	}
	return removeTree(gone)
}

// containerLeftovers lists what crashed creations and removals left in
// containers/ (repair removes them under the exclusive lock).
func (s *Store) containerLeftovers() []string {
	ents, _ := os.ReadDir(s.ContainersDir())
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".tmp-") || strings.HasPrefix(e.Name(), ".removing-") {
			out = append(out, filepath.Join(s.ContainersDir(), e.Name()))
		}
	}
	return out
}

// LostExitCode is the exit code recorded for a container whose monitor
// died before its process did: docker's for a container that died with
// its daemon.
const LostExitCode = 255

// ReapContainer tidies container id if nothing runs it: it removes what a
// run left (the runc container, and any process still in it; the rootfs
// mount) and records a "running" state whose monitor is gone as exited
// (LostExitCode). It reports whether it held the container's lock to do
// so (false: its monitor, or a start, holds it and the container is
// theirs).
func (s *Store) ReapContainer(id string) (bool, error) {
	l, err := s.ContainerLock(id)
	if err != nil {
		return false, err
	}
	defer l.Close()
	if ok, err := l.TryLock(lock.Exclusive); err != nil || !ok {
		return false, err
	}
	if runc, err := exec.LookPath("runc"); err == nil {
		if _, err := os.Stat(filepath.Join(s.ContainerRuncRoot(), id)); err == nil {
			exec.Command(runc, "--root", s.ContainerRuncRoot(), "delete", "--force", id).Run()
		}
	}
	if err := snapshot.UnmountUnder(s.ContainerRootfs(id)); err != nil {
		return true, err
	}
	st, err := s.ReadContainerState(id)
	if err != nil || st.Status != StatusRunning {
		return true, err
	}
	st.Status = StatusExited
	st.ExitCode = LostExitCode
	st.Pid = 0
	st.FinishedAt = time.Now().UTC()
	st.Error = "container's monitor exited before its process (killed, or the machine restarted)"
	return true, s.WriteContainerState(id, st)
}

// reapContainers is ReapContainer for every container (repair).
func (s *Store) reapContainers() []string {
	cs, _ := s.Containers()
	var done []string
	for _, c := range cs {
		if st, err := s.ReadContainerState(c.ID); err == nil && st.Status == StatusRunning && !s.ContainerRunning(c.ID) {
			if ok, _ := s.ReapContainer(c.ID); ok {
				done = append(done, "container "+c.ShortID()+" lost its monitor: recorded as exited")
			}
		} else if mounts, _ := snapshot.MountsUnder(s.ContainerRootfs(c.ID)); len(mounts) > 0 && !s.ContainerRunning(c.ID) {
			if ok, _ := s.ReapContainer(c.ID); ok {
				done = append(done, "unmounted the rootfs of stopped container "+c.ShortID())
			}
		}
	}
	return done
}

// scanContainers makes every container a holder of its image's layers
// (blob and snapshot), manifest and config: the GC never removes them while the container
// exists, even after its image lost its tags.
func (s *Store) scanContainers(g *graph) error {
	cs, err := s.Containers()
	if err != nil {
		return err
	}
	for _, c := range cs {
		h := &holder{kind: holdContainer, lastUsed: c.Created, id: c.ImageID}
		for _, l := range c.Layers {
			g.layer(h, l.DiffID)
		}
		// and its manifest and config: ps, inspect and commit still
		// read them once the image itself is gone.
		for _, d := range []digest.Digest{c.Manifest, c.ImageID} {
			if d.Validate() == nil {
				h.hold(g.blobs[d.Encoded()])
			}
		}
		g.holders = append(g.holders, h)
	}
	return nil
}
