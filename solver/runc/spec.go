// Package runc runs build steps in ephemeral runc containers. Everything a
// container gets — namespaces, mounts, capabilities, user — is spelled out
// in one specs.Spec built by Spec, which a test can print and compare.
package runc

import (
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Process is what to run.
type Process struct {
	Args []string
	Env  []string
	Cwd  string
	// User is already resolved against the image's /etc/passwd and /etc/group.
	UID, GID       uint32
	AdditionalGids []uint32
	// Network is "host" (share the host's network namespace, the default
	// like `docker build --network host`) or "none" (a fresh, empty one).
	Network  string
	Hostname string
	// Mounts are extra mounts (RUN --mount), applied after the standard ones.
	Mounts []specs.Mount
	// Insecure (RUN --security=insecure) gives every capability and no
	// masked or read-only /proc paths, like docker's --privileged.
	Insecure bool
	// Terminal gives the process a pseudo-terminal (runc's console; a
	// container's -t in the foreground).
	Terminal bool
}

// dockerCaps are the capabilities docker gives a container by default.
var dockerCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// Spec builds the runtime spec for p with rootfs at rootfs. etcFiles maps
// /etc/hosts, /etc/resolv.conf and /etc/hostname to host files bound
// read-only over them.
func Spec(p Process, rootfs string, etcFiles map[string]string) *specs.Spec {
	caps := append([]string(nil), dockerCaps...)
	ns := []specs.LinuxNamespace{
		{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace},
		{Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
	}
	if p.Network == "none" {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	mounts := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	for _, dst := range []string{"/etc/resolv.conf", "/etc/hosts", "/etc/hostname"} {
		if src, ok := etcFiles[dst]; ok {
			mounts = append(mounts, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: []string{"rbind", "ro"}})
		}
	}
	mounts = append(mounts, p.Mounts...)
	masked := []string{
		"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	readonly := []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
	if p.Insecure {
		caps = allCaps()
		masked, readonly = nil, nil
	}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: p.Args,
			Env:  p.Env,
			Cwd:  p.Cwd,
			User: specs.User{UID: p.UID, GID: p.GID, AdditionalGids: p.AdditionalGids},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: false,
			Terminal:        p.Terminal,
		},
		Root:     &specs.Root{Path: rootfs},
		Hostname: p.Hostname,
		Mounts:   mounts,
		Linux: &specs.Linux{
			Namespaces:    ns,
			MaskedPaths:   masked,
			ReadonlyPaths: readonly,
		},
	}
}

// allCaps lists every capability this process may hand on (its bounding
// set), in the kernel's numbering order.
func allCaps() []string {
	names := []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
		"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
		"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
		"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
		"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
		"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
		"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
		"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
	}
	bnd := boundingSet()
	var out []string
	for i, n := range names {
		if bnd&(1<<uint(i)) != 0 {
			out = append(out, n)
		}
	}
	return out
}

func boundingSet() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			n, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n
		}
	}
	return 0
}

// DefaultPath is the PATH a container gets when its image sets none, the
// same as docker's and BuildKit's.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// WithDefaultPath returns env with PATH=DefaultPath added when env has no
// PATH, as docker run does for an image without one.
func WithDefaultPath(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return env
		}
	}
	return append(env[:len(env):len(env)], "PATH="+DefaultPath)
}
