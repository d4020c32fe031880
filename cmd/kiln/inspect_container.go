package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/kiln-build/kiln/container"
	"github.com/kiln-build/kiln/store"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// containerInspect is docker's container inspect object (docker 20.10's
// types.ContainerJSON, moby's container.InspectResponse): its fields in
// its order, with what a daemonless store has. HostConfig and
// NetworkSettings carry the part of docker's that kiln's containers have
// an answer for.
type containerInspect struct {
	ID              string `json:"Id"`
	Created         string
	Path            string
	Args            []string
	State           containerInspectState
	Image           string
	ResolvConfPath  string
	HostnamePath    string
	HostsPath       string
	LogPath         string
	Name            string
	RestartCount    int
	Driver          string
	Platform        string
	MountLabel      string
	ProcessLabel    string
	AppArmorProfile string
	ExecIDs         []string
	HostConfig      containerHostConfig
	GraphDriver     containerGraphDriver
	SizeRw          *int64 `json:",omitempty"`
	SizeRootFs      *int64 `json:",omitempty"`
	Mounts          []containerMount
	Config          containerConfig
	NetworkSettings containerNetworkSettings
}

type containerInspectState struct {
	Status     string
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  string
	FinishedAt string
}

type containerRestartPolicy struct {
	Name              string
	MaximumRetryCount int
}

type containerHostConfig struct {
	Binds           []string
	ContainerIDFile string
	NetworkMode     string
	PortBindings    map[string]any
	RestartPolicy   containerRestartPolicy
	AutoRemove      bool
	VolumeDriver    string
	VolumesFrom     []string
	CapAdd          []string
	CapDrop         []string
	Dns             []string
	DnsOptions      []string
	DnsSearch       []string
	ExtraHosts      []string
	Privileged      bool
	PublishAllPorts bool
	ReadonlyRootfs  bool
	Runtime         string
}

type containerGraphDriver struct {
	Data map[string]string
	Name string
}

type containerMount struct {
	Type        string
	Source      string
	Destination string
	Mode        string
	RW          bool
	Propagation string
}

type containerConfig struct {
	Hostname     string
	Domainname   string
	User         string
	AttachStdin  bool
	AttachStdout bool
	AttachStderr bool
	Tty          bool
	OpenStdin    bool
	StdinOnce    bool
	Env          []string
	Cmd          []string
	Image        string
	Volumes      map[string]struct{}
	WorkingDir   string
	Entrypoint   []string
	OnBuild      []string
	Labels       map[string]string
	StopSignal   string `json:",omitempty"`
}

type containerNetworkSettings struct {
	Bridge                 string
	SandboxID              string
	HairpinMode            bool
	LinkLocalIPv6Address   string
	LinkLocalIPv6PrefixLen int
	Ports                  map[string]any
	SandboxKey             string
	SecondaryIPAddresses   []string
	SecondaryIPv6Addresses []string
	EndpointID             string
	Gateway                string
	GlobalIPv6Address      string
	GlobalIPv6PrefixLen    int
	IPAddress              string
	IPPrefixLen            int
	IPv6Gateway            string
	MacAddress             string
	Networks               map[string]containerEndpoint
}

type containerEndpoint struct {
	IPAMConfig          map[string]any
	Links               []string
	Aliases             []string
	NetworkID           string
	EndpointID          string
	Gateway             string
	IPAddress           string
	IPPrefixLen         int
	IPv6Gateway         string
	GlobalIPv6Address   string
	GlobalIPv6PrefixLen int
	MacAddress          string
	DriverOpts          map[string]string
}

// dockerTime is docker's rendering of a time in inspect: RFC 3339 with
// nanoseconds, in UTC, and "0001-01-01T00:00:00Z" for never.
func dockerTime(t time.Time) string {
	return t.UTC().Format(time.RFC3339Nano)
}

// inspectContainer builds c's inspect object; size adds SizeRw and
// SizeRootFs (-s). The state is the real one: a container whose monitor
// died is recorded as exited first (container.Manager.State).
func inspectContainer(st *store.Store, sizes *store.LayerSizes, c *store.Container, size bool) (*containerInspect, error) {
	m := container.New(st)
	s, err := m.State(c)
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", c.Name, err)
	}
	bundle := st.ContainerBundle(c.ID)
	o := &containerInspect{
		ID:      c.ID,
		Created: dockerTime(c.Created),
		Path:    c.Path,
		Args:    c.Args,
		State: containerInspectState{
			Status:     s.Status,
			Running:    s.Status == store.StatusRunning,
			Pid:        s.Pid,
			ExitCode:   s.ExitCode,
			Error:      s.Error,
			StartedAt:  dockerTime(s.StartedAt),
			FinishedAt: dockerTime(s.FinishedAt),
		},
		Image:          string(c.ImageID),
		ResolvConfPath: bundle + "/resolv.conf",
		HostnamePath:   bundle + "/hostname",
		HostsPath:      bundle + "/hosts",
		LogPath:        st.ContainerLog(c.ID),
		Name:           "/" + c.Name,
		Driver:         "overlay",
		Platform:       "linux",
		HostConfig: containerHostConfig{
			Binds:         c.Binds,
			NetworkMode:   c.Network,
			PortBindings:  map[string]any{},
			RestartPolicy: containerRestartPolicy{Name: "no"},
			AutoRemove:    c.AutoRemove,
			Dns:           []string{},
			DnsOptions:    []string{},
			DnsSearch:     []string{},
			Runtime:       "runc",
		},
		GraphDriver: containerGraphDriver{Name: "overlay", Data: map[string]string{
			"LowerDir":  lowerDirs(st, c),
			"MergedDir": st.ContainerRootfs(c.ID),
			"UpperDir":  st.ContainerUpper(c.ID),
			"WorkDir":   st.ContainerWork(c.ID),
		}},
		Mounts: bindMounts(c.Binds),
		Config: containerConfig{
			Hostname: c.ShortID(),
			User:     c.User,
			// kiln's record does not say whether the run was detached:
			// what docker shows for a foreground run and for create.
			AttachStdin:  c.OpenStdin,
			AttachStdout: true,
			AttachStderr: true,
			Tty:          c.Tty,
			OpenStdin:    c.OpenStdin,
			StdinOnce:    c.OpenStdin,
			Env:          c.Env,
			Cmd:          c.Cmd,
			Image:        c.Image,
			WorkingDir:   c.WorkingDir,
			Entrypoint:   c.Entrypoint,
			Labels:       c.Labels,
			StopSignal:   c.StopSignal,
		},
		NetworkSettings: containerNetworkSettings{
			Ports:    map[string]any{},
			Networks: map[string]containerEndpoint{c.Network: {}},
		},
	}
	if o.Config.Labels == nil {
		o.Config.Labels = map[string]string{}
	}
	if size {
		rw, err := m.SizeRw(c)
		if err != nil {
			return nil, fmt.Errorf("container %s: size: %w", c.Name, err)
		}
		rootfs := rw
		for _, l := range c.Layers {
			rootfs += sizes.Of(ocispec.Descriptor{Digest: l.DiffID, Size: l.Size})
		}
		o.SizeRw, o.SizeRootFs = &rw, &rootfs
	}
	return o, nil
}

// lowerDirs is the overlay lowerdir of c's rootfs, top layer first, as
// far as its layers are unpacked.
func lowerDirs(st *store.Store, c *store.Container) string {
	var dirs []string
	seen := map[string]bool{}
	for i := len(c.Layers) - 1; i >= 0; i-- {
		id, err := st.Snapshots.Lookup(c.Layers[i].DiffID)
		if err != nil || id == "" || seen[id] {
			continue
		}
		seen[id] = true
		dirs = append(dirs, st.Snapshots.FS(id))
	}
	return strings.Join(dirs, ":")
}

// bindMounts are docker's Mounts for -v HOST:CTR[:MODE] binds.
func bindMounts(binds []string) []containerMount {
	out := []containerMount{}
	for _, b := range binds {
		parts := strings.Split(b, ":")
		if len(parts) < 2 {
			continue
		}
		m := containerMount{Type: "bind", Source: parts[0], Destination: parts[1], RW: true, Propagation: "rprivate"}
		if len(parts) > 2 {
			m.Mode = parts[2]
			m.RW = parts[2] != "ro"
		}
		out = append(out, m)
	}
	return out
}

// containerInspectCmd is `kiln container inspect`: containers only.
func containerInspectCmd() *cobra.Command {
	var format string
	var size bool
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] CONTAINER [CONTAINER...]",
		Short: "Show container details as JSON",
		Long: `Show container details like docker container inspect: a JSON array
with one object per container (by name, ID or unambiguous ID prefix), or
with -f/--format a Go template executed per container. -s adds the sizes:
SizeRw (the container's writable layer) and SizeRootFs (with its image's
layers). A container that does not exist is reported after the others
("Error: No such container: NAME") and the exit status is 1.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return inspectMain(format, "container", size, args)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", `format output using a custom template: "json" or a Go TEMPLATE`)
	cmd.Flags().BoolVarP(&size, "size", "s", false, "display total file sizes")
	return cmd
}

// inspectMain runs an inspect and reports the references it could not
// find as docker does: "Error: ..." lines after the output, exit 1.
func inspectMain(format, kind string, size bool, args []string) error {
	failed, err := runInspect(os.Stdout, format, kind, size, args)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		// docker's message, not main's "ERROR:" line
		for _, f := range failed {
			fmt.Fprintln(os.Stderr, "Error:", f)
		}
		return exitStatus(1)
	}
	return nil
}
