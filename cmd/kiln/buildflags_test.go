package main

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/progress"
)

func TestParseOutputs(t *testing.T) {
	cases := []struct {
		in   []string
		want []builder.Output
		err  string
	}{
		{in: []string{"type=local,dest=out"}, want: []builder.Output{{Type: "local", Dest: "out"}}},
		{in: []string{"out/dir"}, want: []builder.Output{{Type: "local", Dest: "out/dir"}}},
		// As buildx: one plain field is a directory, even with a "=".
		{in: []string{"a=b"}, want: []builder.Output{{Type: "local", Dest: "a=b"}}},
		{in: []string{"-"}, want: []builder.Output{{Type: "tar", Dest: "-"}}},
		{in: []string{"type=tar,dest=-"}, want: []builder.Output{{Type: "tar", Dest: "-"}}},
		{in: []string{"type=tar"}, want: []builder.Output{{Type: "tar"}}},
		{in: []string{"type=oci,dest=x.tar,compression=zstd,compression-level=3"},
			want: []builder.Output{{Type: "oci", Dest: "x.tar", Attrs: map[string]string{"compression": "zstd", "compression-level": "3"}}}},
		{in: []string{"Type=docker, Dest=d.tar,name=a:1"}, want: []builder.Output{{Type: "docker", Dest: "d.tar", Attrs: map[string]string{"name": "a:1"}}}},
		{in: []string{`type=docker,"name=a:1,b:2",dest=d.tar`}, want: []builder.Output{{Type: "docker", Dest: "d.tar", Attrs: map[string]string{"name": "a:1,b:2"}}}},
		{in: []string{"type=local,dest=a", "type=tar,dest=b"}, want: []builder.Output{{Type: "local", Dest: "a"}, {Type: "tar", Dest: "b"}}},
		{in: []string{"dest=x,compression=gzip"}, err: "type is required"},
		{in: []string{"type=oci,dest"}, err: `invalid value "dest"`},
		{in: []string{`type=oci,"dest`}, err: "-o"},
	}
	for _, c := range cases {
		got, err := parseOutputs(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseOutputs(%q) = %v, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseOutputs(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestCheckStdoutOutputs(t *testing.T) {
	cases := []struct {
		outs     []builder.Output
		terminal bool
		err      bool
	}{
		{[]builder.Output{{Type: "tar", Dest: "-"}}, false, false},
		{[]builder.Output{{Type: "tar", Dest: "-"}}, true, true},
		{[]builder.Output{{Type: "oci"}}, true, true},
		{[]builder.Output{{Type: "docker", Dest: "x.tar"}}, true, false},
		{[]builder.Output{{Type: "local", Dest: "dir"}}, true, false},
	}
	for _, c := range cases {
		err := checkStdoutOutputs(c.outs, c.terminal)
		if (err != nil) != c.err {
			t.Errorf("checkStdoutOutputs(%+v, terminal=%v) = %v", c.outs, c.terminal, err)
		}
		if err != nil && !strings.Contains(err.Error(), "refusing to write a tar to a terminal") {
			t.Errorf("message: %v", err)
		}
	}
}

func TestParsePlatform(t *testing.T) {
	cases := []struct {
		in, goarch string
		variants   []string
		want, err  string
	}{
		{"", "amd64", nil, "", ""},
		{"linux/amd64", "amd64", nil, "linux/amd64", ""},
		{"local", "amd64", nil, "linux/amd64", ""},
		{"amd64", "amd64", nil, "linux/amd64", ""},
		{"linux", "amd64", nil, "linux/amd64", ""},
		{"Linux/X86_64", "amd64", nil, "linux/amd64", ""},
		{"linux/amd64/v1", "amd64", nil, "linux/amd64", ""},
		{"linux/amd64/v2", "amd64", []string{"v2", "v3"}, "linux/amd64/v2", ""},
		{"linux/amd64,linux/amd64", "amd64", nil, "linux/amd64", ""},
		{"linux/amd64,local", "amd64", nil, "linux/amd64", ""},
		{"linux/arm64", "amd64", nil, "", "--platform linux/arm64: kiln builds only for the host platform linux/amd64"},
		{"linux/amd64,linux/arm64", "amd64", nil, "", "--platform linux/arm64: kiln builds only for the host platform linux/amd64"},
		{"windows/amd64", "amd64", nil, "", "--platform windows/amd64: kiln builds only for the host platform linux/amd64"},
		{"linux/amd64/v4", "amd64", []string{"v2", "v3"}, "", "--platform linux/amd64/v4: kiln builds only for the host platform linux/amd64 (variants this host runs: v2, v3)"},
		{"linux/amd64,linux/amd64/v2", "amd64", []string{"v2"}, "", "one platform at a time"},
		{"linux/arm64/v8", "arm64", nil, "linux/arm64", ""},
		{"linux/aarch64", "arm64", nil, "linux/arm64", ""},
		{"linux/amd64", "arm64", nil, "", "--platform linux/amd64: kiln builds only for the host platform linux/arm64"},
		{"linux/a/b/c", "amd64", nil, "", "kiln builds only for the host platform"},
	}
	for _, c := range cases {
		got, err := parsePlatform(c.in, c.goarch, c.variants)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parsePlatform(%q, %s) = %q, %v; want error %q", c.in, c.goarch, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("parsePlatform(%q, %s) = %q, %v; want %q", c.in, c.goarch, got, err, c.want)
		}
	}
	// The exact message of the issue.
	if _, err := parsePlatform("linux/arm64", "amd64", nil); err == nil || err.Error() != "--platform linux/arm64: kiln builds only for the host platform linux/amd64" {
		t.Errorf("message: %v", err)
	}
}

func TestParseSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	os.WriteFile(file, []byte("s3cret"), 0o600)
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 500*1024+1), 0o600)
	// "mysecret" as a file in the working directory, for id=mysecret.
	t.Chdir(dir)
	os.WriteFile("mysecret", []byte("x"), 0o600)
	env := map[string]string{"GH_TOKEN": "t", "FROMENV": "v"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	cases := []struct {
		in   []string
		want map[string]builder.Secret
		err  string
	}{
		{in: []string{"id=tok,src=" + file}, want: map[string]builder.Secret{"tok": {File: file}}},
		{in: []string{"id=tok,source=" + file}, want: map[string]builder.Secret{"tok": {File: file}}},
		{in: []string{"id=tok,type=file,src=" + file}, want: map[string]builder.Secret{"tok": {File: file}}},
		{in: []string{"id=gh,env=GH_TOKEN"}, want: map[string]builder.Secret{"gh": {Env: "GH_TOKEN"}}},
		// type=env takes src as the variable's name, as buildx does.
		{in: []string{"id=gh,type=env,src=GH_TOKEN"}, want: map[string]builder.Secret{"gh": {Env: "GH_TOKEN"}}},
		// id alone: the variable of that name if set...
		{in: []string{"id=FROMENV"}, want: map[string]builder.Secret{"FROMENV": {Env: "FROMENV"}}},
		// ...else the file of that name.
		{in: []string{"id=mysecret"}, want: map[string]builder.Secret{"mysecret": {File: filepath.Join(dir, "mysecret")}}},
		// An env secret is read when used; an unset variable is no error yet.
		{in: []string{"id=x,env=UNSET_VAR"}, want: map[string]builder.Secret{"x": {Env: "UNSET_VAR"}}},
		{in: []string{"id=a,src=" + file, "id=b,env=GH_TOKEN"}, want: map[string]builder.Secret{"a": {File: file}, "b": {Env: "GH_TOKEN"}}},
		{in: []string{"id=tok,src=" + filepath.Join(dir, "missing")}, err: "no such file or directory"},
		{in: []string{"id=nosuch"}, err: "no such file or directory"},
		{in: []string{"src=" + file}, err: "id= is required"},
		{in: []string{"id=tok,type=ssh"}, err: `unsupported secret type "ssh"`},
		{in: []string{"id=tok,foo=bar"}, err: `unexpected key "foo"`},
		{in: []string{"id=tok,src"}, err: "must be a key=value pair"},
		{in: []string{"id=tok,src=" + dir}, err: "is a directory"},
		{in: []string{"id=tok,src=" + big}, err: "too big"},
	}
	for _, c := range cases {
		got, err := parseSecrets(c.in, lookup)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseSecrets(%q) = %v, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseSecrets(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestParseSSH(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	other := filepath.Join(dir, "other.sock")
	l2, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	notSock := filepath.Join(dir, "id_ed25519")
	os.WriteFile(notSock, []byte("key"), 0o600)

	cases := []struct {
		in    []string
		agent string
		want  map[string]string
		err   string
	}{
		{in: []string{"default"}, agent: sock, want: map[string]string{"default": sock}},
		{in: []string{"default=" + other}, agent: sock, want: map[string]string{"default": other}},
		{in: []string{"default", "work=" + other}, agent: sock, want: map[string]string{"default": sock, "work": other}},
		{in: []string{"default"}, agent: "", err: "invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set"},
		{in: []string{"default=" + filepath.Join(dir, "gone")}, agent: sock, err: "no such file or directory"},
		{in: []string{"default=" + notSock}, agent: sock, err: "is not a socket"},
		{in: []string{"default=" + sock + "," + other}, agent: sock, err: "only one agent socket"},
		{in: []string{"=" + sock}, agent: sock, err: "expected ID[=SOCKET]"},
	}
	for _, c := range cases {
		got, err := parseSSH(c.in, c.agent)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseSSH(%q) = %v, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseSSH(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParseBuildContexts(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	os.Mkdir("src", 0o755)
	os.WriteFile("file", nil, 0o644)
	cases := []struct {
		in   []string
		want map[string]string
		err  string
	}{
		{in: []string{"src=./src"}, want: map[string]string{"src": filepath.Join(dir, "src")}},
		{in: []string{"abs=" + dir}, want: map[string]string{"abs": dir}},
		{in: []string{"alpine=docker-image://alpine:3.20"}, want: map[string]string{"alpine": "docker-image://alpine:3.20"}},
		// Names are normalized like image names, as buildx does.
		{in: []string{"docker.io/library/alpine:latest=docker-image://busybox"}, want: map[string]string{"alpine": "docker-image://busybox"}},
		{in: []string{"alpine:3.20=oci-layout:///tmp/layout"}, want: map[string]string{"alpine:3.20": "oci-layout:///tmp/layout"}},
		{in: []string{"base=target:build"}, want: map[string]string{"base": "target:build"}},
		{in: []string{"repo=https://github.com/a/b.git"}, want: map[string]string{"repo": "https://github.com/a/b.git"}},
		{in: []string{"a=./src", "b=docker-image://x"}, want: map[string]string{"a": filepath.Join(dir, "src"), "b": "docker-image://x"}},
		{in: []string{"src"}, err: "expected NAME=VALUE"},
		{in: []string{"=./src"}, err: "expected NAME=VALUE"},
		{in: []string{"src="}, err: "expected NAME=VALUE"},
		{in: []string{"Bad Name=./src"}, err: "invalid context name"},
		{in: []string{"x=./missing"}, err: "no such file or directory"},
		{in: []string{"x=./file"}, err: "not a directory"},
	}
	for _, c := range cases {
		got, err := parseBuildContexts(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseBuildContexts(%q) = %v, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("parseBuildContexts(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParseAllowAndLists(t *testing.T) {
	cases := []struct {
		in       []string
		insecure bool
		err      string
	}{
		{nil, false, ""},
		{[]string{"security.insecure"}, true, ""},
		{[]string{"network.host"}, false, ""},
		{[]string{"network.host,security.insecure"}, true, ""},
		{[]string{"network.host", "security.insecure"}, true, ""},
		{[]string{"device"}, false, "invalid entitlement"},
	}
	for _, c := range cases {
		got, err := parseAllow(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseAllow(%q) = %v, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.insecure {
			t.Errorf("parseAllow(%q) = %v, %v; want %v", c.in, got, err, c.insecure)
		}
	}

	// --no-cache-filter: repeatable and comma separated.
	for _, c := range []struct {
		in   []string
		want []string
	}{
		{nil, nil},
		{[]string{"build"}, []string{"build"}},
		{[]string{"build,test", "release"}, []string{"build", "test", "release"}},
		{[]string{" a , ,b "}, []string{"a", "b"}},
	} {
		if got := splitList(c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitList(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParseCacheSpecs(t *testing.T) {
	ok := []struct {
		flag, in string
		want     builder.CacheSpec
	}{
		{"--cache-from", "reg.example:5000/team/app:cache", builder.CacheSpec{Type: "registry", Attrs: map[string]string{"ref": "reg.example:5000/team/app:cache"}}},
		{"--cache-to", "type=registry,ref=team/app:cache,mode=max", builder.CacheSpec{Type: "registry", Attrs: map[string]string{"ref": "team/app:cache", "mode": "max"}}},
		{"--cache-to", "type=local,dest=/tmp/c", builder.CacheSpec{Type: "local", Attrs: map[string]string{"dest": "/tmp/c"}}},
		{"--cache-from", "type=local,src=/tmp/c", builder.CacheSpec{Type: "local", Attrs: map[string]string{"src": "/tmp/c"}}},
	}
	for _, c := range ok {
		got, err := parseCacheSpecs(c.flag, []string{c.in})
		if err != nil || len(got) != 1 || !reflect.DeepEqual(got[0], c.want) {
			t.Errorf("parseCacheSpecs(%s %q) = %+v, %v; want %+v", c.flag, c.in, got, err, c.want)
		}
	}
	// every mistake is caught before a build starts, not after it
	bad := []struct{ flag, in, err string }{
		{"--cache-to", "/tmp/cache", "for a directory use type=local,dest=DIR"},
		{"--cache-from", "./cache", "for a directory use type=local,src=DIR"},
		{"--cache-to", "a:b:c", "not an image reference"},
		{"--cache-to", "type=registry,ref=Upper/Case", "is not an image reference"},
		{"--cache-to", "type=registry,mode=max", "needs ref="},
		{"--cache-to", "type=local,src=/tmp/c", "needs dest=DIR"},
		{"--cache-from", "type=local,dest=/tmp/c", "needs src=DIR"},
		{"--cache-to", "type=gha", "not supported"},
		{"--cache-to", "type=local,dest=/x,mode=all", "mode must be min or max"},
	}
	for _, c := range bad {
		if _, err := parseCacheSpecs(c.flag, []string{c.in}); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("parseCacheSpecs(%s %q): error %v, want one containing %q", c.flag, c.in, err, c.err)
		}
	}
}

// kiln build's flags become one checked request without cobra: every flag
// lands in the library's options, -f - and --push are resolved, and a bad
// combination fails before the store is opened.
func TestBuildRequestFromFlags(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	t.Setenv("KILN_CACHE_MAX", "")
	t.Setenv("FROM_ENV", "env-value")
	ctx := t.TempDir()
	f := buildFlags{
		tags: []string{"app:1", "app:latest"}, buildArgs: []string{"A=1", "FROM_ENV", "UNSET_BUILD_ARG"}, labels: []string{"team=build"},
		file: "-", target: "final", network: "none", progressMode: "plain", iidfile: "iid", runtime: "crun",
		noCache: true, pullAlways: true, push: true, outputs: []string{"type=local,dest=out"},
		buildContexts: []string{"base=" + ctx}, allow: []string{"security.insecure"}, noCacheFilter: []string{"a,b", "c"},
		cacheFrom: []string{"reg.example/app:cache"}, cacheTo: []string{"type=local,dest=cachedir,mode=max"},
		platform: "local", metadataFile: "md.json", cacheMax: "1GB", quiet: true,
	}
	req, err := f.request("ctxdir", false)
	if err != nil {
		t.Fatal(err)
	}
	want := builder.Options{
		ContextDir: "ctxdir", Tags: []string{"app:1", "app:latest"}, Target: "final",
		BuildArgs: map[string]string{"A": "1", "FROM_ENV": "env-value"}, Labels: map[string]string{"team": "build"},
		NoCache: true, Network: "none", Runtime: "crun", Platform: "linux/" + runtime.GOARCH,
		Outputs:      []builder.Output{{Type: "local", Dest: "out"}, {Type: "image", Attrs: map[string]string{"push": "true"}}},
		MetadataFile: "md.json",
		CacheFrom:    []builder.CacheSpec{{Type: "registry", Attrs: map[string]string{"ref": "reg.example/app:cache"}}},
		CacheTo:      []builder.CacheSpec{{Type: "local", Attrs: map[string]string{"dest": "cachedir", "mode": "max"}}},
		Secrets:      map[string]builder.Secret{}, SSH: map[string]string{}, BuildContexts: map[string]string{"base": ctx},
		NoCacheFilter: []string{"a", "b", "c"}, AllowInsecure: true, Pull: true, CacheMax: 1_000_000_000,
	}
	if !reflect.DeepEqual(req.opts, want) {
		t.Errorf("options:\n%+v\nwant:\n%+v", req.opts, want)
	}
	if !req.dockerfileFromStdin || req.progressMode != progress.Quiet || req.iidfile != "iid" {
		t.Errorf("request: %+v", req)
	}

	// SOURCE_DATE_EPOCH from a build arg sets the epoch.
	if req, err := (&buildFlags{buildArgs: []string{"SOURCE_DATE_EPOCH=1700000000"}}).request(".", false); err != nil || req.opts.Epoch == nil || req.opts.Epoch.Unix() != 1700000000 {
		t.Errorf("SOURCE_DATE_EPOCH build arg: %+v, %v", req, err)
	}

	for _, c := range []struct {
		name     string
		flags    buildFlags
		context  string
		terminal bool
		err      string
	}{
		{"a label without a value", buildFlags{labels: []string{"team"}}, ".", false, `--label "team": expected KEY=VALUE`},
		{"a bad SOURCE_DATE_EPOCH", buildFlags{buildArgs: []string{"SOURCE_DATE_EPOCH=soon"}}, ".", false, `SOURCE_DATE_EPOCH="soon": not a number of seconds`},
		{"--push without -t", buildFlags{push: true}, ".", false, "--push needs a name to push to: -t REGISTRY/REPO:TAG"},
		{"a registry output without a name", buildFlags{outputs: []string{"type=registry"}}, ".", false, "-o type=registry: name=REGISTRY/REPO:TAG (or -t) is required"},
		{"a tar to a terminal", buildFlags{outputs: []string{"-"}}, ".", true, "refusing to write a tar to a terminal"},
		{"a bad cache spec", buildFlags{cacheTo: []string{"type=s3"}}, ".", false, `--cache-to "type=s3": cache type "s3" is not supported`},
		{"an unknown entitlement", buildFlags{allow: []string{"everything"}}, ".", false, "--allow everything: invalid entitlement"},
		{"an unknown --progress", buildFlags{progressMode: "fancy"}, ".", false, `--progress "fancy": unknown progress mode (valid: auto, plain, tty, json, quiet)`},
		{"a bad --cache-max", buildFlags{cacheMax: "lots"}, ".", false, "--cache-max lots"},
		{"Dockerfile and context both from stdin", buildFlags{file: "-"}, "-", false, "cannot read both the Dockerfile (-f -) and the context (-) from stdin"},
	} {
		if _, err := c.flags.request(c.context, c.terminal); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.err)
		}
	}
}
