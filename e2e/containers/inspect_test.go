package containers

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/e2e/e2etest"
)

// inspectOne decodes the single object of an inspect's JSON array.
func inspectOne(t *testing.T, out string) map[string]any {
	t.Helper()
	var objs []map[string]any
	if err := json.Unmarshal([]byte(out), &objs); err != nil || len(objs) != 1 {
		t.Fatalf("inspect output (%v, want one object):\n%s", err, out)
	}
	return objs[0]
}

// keys lists the keys of the JSON object at path (e.g. "State") in the
// first object of an inspect array, in the order they were written.
func keys(t *testing.T, out string, path ...string) []string {
	t.Helper()
	var objs []json.RawMessage
	if err := json.Unmarshal([]byte(out), &objs); err != nil || len(objs) == 0 {
		t.Fatalf("inspect output (%v):\n%s", err, out)
	}
	raw := objs[0]
	for _, p := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", strings.Join(path, "."), err)
		}
		raw = m[p]
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("%s is not an object: %s", strings.Join(path, "."), raw)
	}
	var out2 []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out2 = append(out2, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out2
}

func get(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// kiln inspect finds a container by name, ID or prefix before an image,
// and tells what happened to it the way docker inspect does.
func TestInspectContainer(t *testing.T) {
	s := e2etest.NewStore(t)
	dir := t.TempDir()
	if _, _, err := s.Kiln("run", "--name", "insp", "-v", dir+":/data:ro", "busybox", "sh", "-c", "echo hi; echo hi > /f; exit 3"); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Fatalf("run: %v, want exit status 3", err)
	}
	imageID := strings.TrimSpace(s.MustKiln("inspect", "--format", "{{.Id}}", "busybox"))
	out := s.MustKiln("inspect", "insp")
	o := inspectOne(t, out)
	id, _ := o["Id"].(string)
	if len(id) != 64 {
		t.Fatalf("Id %q", id)
	}
	for path, want := range map[string]any{
		"Name": "/insp", "Path": "sh", "Image": imageID, "Driver": "overlay", "Platform": "linux", "RestartCount": 0.0,
		"State.Status": "exited", "State.Running": false, "State.ExitCode": 3.0, "State.Pid": 0.0, "State.Error": "", "State.Dead": false,
		"Config.Image": "busybox", "Config.Hostname": id[:12], "Config.Tty": false,
		"HostConfig.NetworkMode": "host", "HostConfig.AutoRemove": false,
		"GraphDriver.Name": "overlay", "GraphDriver.Data.UpperDir": filepath.Join(s.Root, "containers", id, "diff"),
	} {
		if got := get(o, strings.Split(path, ".")...); got != want {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
	if got := e2etest.ToStrings(o["Args"]); !slices.Equal(got, []string{"-c", "echo hi; echo hi > /f; exit 3"}) {
		t.Errorf("Args %q", got)
	}
	if got := e2etest.ToStrings(get(o, "Config", "Cmd")); !slices.Equal(got, []string{"sh", "-c", "echo hi; echo hi > /f; exit 3"}) {
		t.Errorf("Config.Cmd %q", got)
	}
	if got := e2etest.ToStrings(get(o, "HostConfig", "Binds")); !slices.Equal(got, []string{dir + ":/data:ro"}) {
		t.Errorf("HostConfig.Binds %q", got)
	}
	mounts, _ := o["Mounts"].([]any)
	want := map[string]any{"Type": "bind", "Source": dir, "Destination": "/data", "Mode": "ro", "RW": false, "Propagation": "rprivate"}
	if len(mounts) != 1 || !mapsEqual(mounts[0].(map[string]any), want) {
		t.Errorf("Mounts %v, want [%v]", mounts, want)
	}
	created, err1 := time.Parse(time.RFC3339Nano, o["Created"].(string))
	started, err2 := time.Parse(time.RFC3339Nano, get(o, "State", "StartedAt").(string))
	finished, err3 := time.Parse(time.RFC3339Nano, get(o, "State", "FinishedAt").(string))
	if err1 != nil || err2 != nil || err3 != nil || started.Before(created) || finished.Before(started) || time.Since(created) > time.Hour {
		t.Errorf("Created %v, StartedAt %v, FinishedAt %v (%v %v %v)", created, started, finished, err1, err2, err3)
	}
	if b, err := os.ReadFile(o["LogPath"].(string)); err != nil || string(b) != "hi\n" {
		t.Errorf("LogPath holds %q (%v)", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(get(o, "GraphDriver", "Data", "UpperDir").(string), "f")); err != nil || string(b) != "hi\n" {
		t.Errorf("UpperDir/f: %q %v", b, err)
	}
	if _, ok := o["SizeRw"]; ok {
		t.Errorf("SizeRw without -s")
	}

	// The same container by ID and ID prefix; -s adds the sizes.
	for _, ref := range []string{id, id[:7], "/insp"} {
		if got := strings.TrimSpace(s.MustKiln("inspect", "-f", "{{.Id}}", ref)); got != id {
			t.Errorf("inspect %s: %s, want %s", ref, got, id)
		}
	}
	imageSize := strings.TrimSpace(s.MustKiln("inspect", "-f", "{{.Size}}", "busybox"))
	sized := inspectOne(t, s.MustKiln("inspect", "-s", "insp"))
	if rw, root := sized["SizeRw"], sized["SizeRootFs"]; rw != 3.0 || root == nil || int64(root.(float64))-3 != atoi(t, imageSize) {
		t.Errorf("SizeRw %v, SizeRootFs %v (image %s): want 3 and the image's size plus 3", rw, root, imageSize)
	}

	// -f, --type, an image by name, a name that is nothing.
	if got := s.MustKiln("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.Name}}", "insp"); got != "exited 3 /insp\n" {
		t.Errorf("-f: %q", got)
	}
	img := inspectOne(t, s.MustKiln("inspect", "busybox"))
	if img["Id"] != imageID || img["RepoTags"] == nil {
		t.Errorf("inspect busybox is not the image: %v", img["Id"])
	}
	if got := s.MustKiln("inspect", "--type", "container", "-f", "{{.Name}}", "insp"); got != "/insp\n" {
		t.Errorf("--type container: %q", got)
	}
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"inspect", "insp", "nosuch"}, "Error: No such object: nosuch\n"},
		{[]string{"inspect", "--type", "image", "insp"}, "Error: No such image: insp\n"},
		{[]string{"inspect", "--type", "container", "busybox"}, "Error: No such container: busybox\n"},
		{[]string{"image", "inspect", "insp"}, "Error: No such image: insp\n"},
	} {
		stdout, stderr, err := s.Kiln(tc.args...)
		if err == nil || stderr != tc.err {
			t.Errorf("kiln %s: %v, stderr %q, want %q", strings.Join(tc.args, " "), err, stderr, tc.err)
		}
		if tc.args[1] == "insp" && inspectOne(t, stdout)["Id"] != id {
			t.Errorf("kiln %s: the container that exists is not printed:\n%s", strings.Join(tc.args, " "), stdout)
		}
	}
	if _, stderr, err := s.Kiln("inspect", "--type", "volume", "insp"); err == nil || !strings.Contains(stderr, `"volume" is not a valid value for --type`) {
		t.Errorf("--type volume: %v %s", err, stderr)
	}
}

// A running container shows its process; a created one docker's zero
// times.
func TestInspectRunningAndCreated(t *testing.T) {
	s := e2etest.NewStore(t)
	s.MustKiln("run", "-d", "--name", "up", "busybox", "sleep", "300")
	t.Cleanup(func() { s.Kiln("kill", "up") })
	o := inspectOne(t, s.MustKiln("inspect", "up"))
	pid, _ := get(o, "State", "Pid").(float64)
	if get(o, "State", "Status") != "running" || get(o, "State", "Running") != true || pid <= 0 || get(o, "State", "FinishedAt") != "0001-01-01T00:00:00Z" {
		t.Errorf("running container's State: %v", o["State"])
	}
	if b, err := os.ReadFile(filepath.Join("/proc", strings.TrimSuffix(strings.TrimSpace(s.MustKiln("inspect", "-f", "{{.State.Pid}}", "up")), "\n"), "cmdline")); err != nil || !strings.HasPrefix(string(b), "sleep\x00300") {
		t.Errorf("State.Pid's cmdline %q (%v)", b, err)
	}
	s.MustKiln("kill", "up")
	s.MustKiln("wait", "up")
	if got := s.MustKiln("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}} {{.State.Pid}}", "up"); got != "exited 137 0\n" {
		t.Errorf("after kill: %q", got)
	}

	s.MustKiln("create", "--name", "new", "busybox", "true")
	o = inspectOne(t, s.MustKiln("inspect", "new"))
	if get(o, "State", "Status") != "created" || get(o, "State", "StartedAt") != "0001-01-01T00:00:00Z" || get(o, "State", "FinishedAt") != "0001-01-01T00:00:00Z" {
		t.Errorf("created container's State: %v", o["State"])
	}
	s.AssertDoctorClean()
}

// The object has docker's keys in docker's order, and the same values for
// what both know, for the same run.
func TestInspectMatchesDocker(t *testing.T) {
	p := newPair(t, "kilninsp")
	c := p.name("i1")
	dir := t.TempDir()
	// both gives docker --network none (it has no bridge) and docker
	// refuses it twice: kiln gets it here.
	run := []string{"--name", c, "-v", dir + ":/data:ro", p.image("busybox"), "sh", "-c", "echo hi > /f"}
	p.kiln.MustKiln(append([]string{"run", "--network", "none"}, run...)...)
	if out, err := p.d.Docker(append([]string{"run", "--label", p.prefix, "--network", "none"}, run...)...); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	k, d := p.both("inspect", c)
	for _, path := range [][]string{nil, {"State"}, {"Config"}, {"NetworkSettings"}, {"NetworkSettings", "Networks", "none"}} {
		if kk, dk := keys(t, k, path...), keys(t, d, path...); !slices.Equal(kk, dk) {
			t.Errorf("%s keys:\n%q\ndocker's:\n%q", strings.Join(append([]string{"."}, path...), "."), kk, dk)
		}
	}
	// HostConfig: docker's has many more (resources, cgroups): kiln's in
	// the same order.
	kh, dh := keys(t, k, "HostConfig"), keys(t, d, "HostConfig")
	var common []string
	for _, x := range dh {
		if slices.Contains(kh, x) {
			common = append(common, x)
		}
	}
	if !slices.Equal(common, kh) {
		t.Errorf("HostConfig keys %q are not docker's %q or not in its order", kh, dh)
	}
	ko, do := inspectOne(t, k), inspectOne(t, d)
	for _, path := range []string{"Name", "Path", "Args", "State.Status", "State.ExitCode", "State.Running", "State.Pid", "State.Error",
		"RestartCount", "Platform", "ExecIDs", "Mounts", "HostConfig.Binds", "HostConfig.NetworkMode", "HostConfig.AutoRemove", "HostConfig.RestartPolicy",
		"Config.Cmd", "Config.Image", "Config.Entrypoint", "Config.WorkingDir", "Config.User", "Config.Tty", "Config.AttachStdout", "Config.Volumes"} {
		kv, dv := get(ko, strings.Split(path, ".")...), get(do, strings.Split(path, ".")...)
		if kb, db := mustJSON(t, kv), mustJSON(t, dv); kb != db {
			t.Errorf("%s = %s, docker's %s", path, kb, db)
		}
	}
	// The same image under both (docker load keeps kiln's config).
	if ko["Image"] != do["Image"] {
		t.Errorf("Image %v, docker's %v", ko["Image"], do["Image"])
	}
	k, d = p.both("inspect", "-s", "-f", "{{.SizeRw}} {{.SizeRootFs}}", c)
	if k != d {
		t.Errorf("sizes %q, docker's %q", k, d)
	}
	k, d = p.both("inspect", "-f", "{{.State.Status}} {{.Name}} {{json .Config.Cmd}}", c)
	if k != d {
		t.Errorf("-f: %q, docker's %q", k, d)
	}
	// A missing name: the same message.
	_, kerr, _ := p.kiln.Kiln("inspect", c, "kilninsp-nosuch")
	_, derr := p.d.Docker("inspect", c, "kilninsp-nosuch")
	if derr == nil || !strings.HasSuffix(strings.TrimSpace(derr.Error()), strings.TrimSpace(kerr)) || kerr == "" {
		t.Errorf("missing name: kiln %q, docker %v", kerr, derr)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func mapsEqual(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	var n int64
	if err := json.Unmarshal([]byte(s), &n); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return n
}
