package runc_test

import (
	"reflect"
	"slices"
	"testing"

	"github.com/kiln-build/kiln/solver/runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var etcFiles = map[string]string{
	"/etc/hosts":       "/bundle/hosts",
	"/etc/resolv.conf": "/bundle/resolv.conf",
	"/etc/hostname":    "/bundle/hostname",
}

func hasNamespace(s *specs.Spec, typ specs.LinuxNamespaceType) bool {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == typ {
			return true
		}
	}
	return false
}

func TestSpecNetworkNamespace(t *testing.T) {
	cases := []struct {
		network string
		wantNS  bool
	}{
		{"host", false}, // shares the host's network
		{"", false},     // host is the default
		{"none", true},  // a fresh namespace with only loopback
	}
	for _, tc := range cases {
		t.Run("network="+tc.network, func(t *testing.T) {
			s := runc.Spec(runc.Process{Args: []string{"true"}, Network: tc.network}, "/rootfs", etcFiles)
			if got := hasNamespace(s, specs.NetworkNamespace); got != tc.wantNS {
				t.Errorf("network namespace = %v, want %v", got, tc.wantNS)
			}
			// the other namespaces are always private
			for _, typ := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.MountNamespace} {
				if !hasNamespace(s, typ) {
					t.Errorf("no %s namespace", typ)
				}
			}
			if hasNamespace(s, specs.UserNamespace) {
				t.Error("unexpected user namespace")
			}
		})
	}
}

func TestSpecHasDockersDefaultCapabilities(t *testing.T) {
	// docker's default set (moby oci/caps/defaults.go)
	want := []string{
		"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
		"CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
	}
	s := runc.Spec(runc.Process{Args: []string{"true"}}, "/rootfs", etcFiles)
	c := s.Process.Capabilities
	if c == nil {
		t.Fatal("no capabilities")
	}
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		got := slices.Sorted(slices.Values(set))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s capabilities %v, want %v", name, got, want)
		}
	}
	if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Errorf("inheritable %v and ambient %v should be empty", c.Inheritable, c.Ambient)
	}
	// a later Spec must not see changes made to an earlier one's slices
	c.Bounding[0] = "CAP_SYS_ADMIN"
	again := runc.Spec(runc.Process{Args: []string{"true"}}, "/rootfs", etcFiles)
	if slices.Contains(again.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") {
		t.Error("specs share their capability list")
	}
}

func TestSpecBindsEtcFilesReadOnly(t *testing.T) {
	cases := []struct {
		name string
		etc  map[string]string
	}{
		{"all three", etcFiles},
		{"only hosts", map[string]string{"/etc/hosts": "/b/hosts"}},
		{"none", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := runc.Spec(runc.Process{Args: []string{"true"}}, "/rootfs", tc.etc)
			got := map[string]specs.Mount{}
			for _, m := range s.Mounts {
				if m.Type == "bind" {
					got[m.Destination] = m
				}
			}
			if len(got) != len(tc.etc) {
				t.Errorf("%d bind mounts, want %d: %+v", len(got), len(tc.etc), got)
			}
			for dst, src := range tc.etc {
				m, ok := got[dst]
				if !ok {
					t.Errorf("%s not mounted", dst)
					continue
				}
				if m.Source != src {
					t.Errorf("%s: source %s, want %s", dst, m.Source, src)
				}
				if !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rbind") {
					t.Errorf("%s: options %v, want rbind and ro", dst, m.Options)
				}
			}
		})
	}
}

func TestSpecStandardMounts(t *testing.T) {
	s := runc.Spec(runc.Process{Args: []string{"true"}}, "/rootfs", nil)
	byDst := map[string]specs.Mount{}
	for _, m := range s.Mounts {
		byDst[m.Destination] = m
	}
	for dst, typ := range map[string]string{"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs", "/dev/mqueue": "mqueue", "/sys": "sysfs"} {
		if byDst[dst].Type != typ {
			t.Errorf("%s: type %q, want %q", dst, byDst[dst].Type, typ)
		}
	}
	if !slices.Contains(byDst["/sys"].Options, "ro") {
		t.Errorf("/sys is not read-only: %v", byDst["/sys"].Options)
	}
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/sys/firmware"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("%s not masked", p)
		}
	}
	if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Error("/proc/sys is not read-only")
	}
}

func TestSpecCarriesTheProcessThrough(t *testing.T) {
	p := runc.Process{
		Args:           []string{"/bin/sh", "-c", "make all"},
		Env:            []string{"PATH=/usr/bin:/bin", "FOO=bar baz"},
		Cwd:            "/src/app",
		UID:            1000,
		GID:            50,
		AdditionalGids: []uint32{10, 20},
		Network:        "none",
		Hostname:       "builder",
	}
	s := runc.Spec(p, "/var/lib/kiln/run/x/rootfs", etcFiles)
	if !reflect.DeepEqual(s.Process.Args, p.Args) {
		t.Errorf("args %q, want %q", s.Process.Args, p.Args)
	}
	if !reflect.DeepEqual(s.Process.Env, p.Env) {
		t.Errorf("env %q, want %q", s.Process.Env, p.Env)
	}
	if s.Process.Cwd != p.Cwd {
		t.Errorf("cwd %q, want %q", s.Process.Cwd, p.Cwd)
	}
	wantUser := specs.User{UID: 1000, GID: 50, AdditionalGids: []uint32{10, 20}}
	if !reflect.DeepEqual(s.Process.User, wantUser) {
		t.Errorf("user %+v, want %+v", s.Process.User, wantUser)
	}
	if s.Hostname != "builder" {
		t.Errorf("hostname %q", s.Hostname)
	}
	if s.Root == nil || s.Root.Path != "/var/lib/kiln/run/x/rootfs" || s.Root.Readonly {
		t.Errorf("root %+v, want the writable rootfs", s.Root)
	}
	if s.Process.Terminal {
		t.Error("build steps have no terminal")
	}
	if s.Version != specs.Version {
		t.Errorf("version %q", s.Version)
	}
}
