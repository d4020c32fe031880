package main

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/progress"
	"github.com/spf13/pflag"
	"golang.org/x/sys/cpu"
	"golang.org/x/sys/unix"
)

// buildFlags are kiln build's flags as given, before any is checked.
type buildFlags struct {
	tags, buildArgs, labels []string
	file, target, network   string
	progressMode, iidfile   string
	runtime                 string
	noCache, pullAlways     bool
	push                    bool
	outputs, secrets, ssh   []string
	buildContexts, allow    []string
	noCacheFilter           []string
	cacheFrom, cacheTo      []string
	platform, metadataFile  string
	cacheMax                string
	quiet                   bool
	explain, check          bool
	call                    string
}

// buildRequest is one kiln build, checked: the library's options as far
// as the flags decide them, and what the command does around the call.
type buildRequest struct {
	// opts.ContextDir "-" is a context tar (or a Dockerfile alone) on
	// stdin; the store, progress and callbacks are not set yet.
	opts builder.Options
	// dockerfileFromStdin is -f -: the Dockerfile is read from stdin
	// (opts.Dockerfile is then empty).
	dockerfileFromStdin bool
	// progressMode is --progress, Quiet with -q: no progress, the image
	// ID on stdout.
	progressMode progress.Mode
	iidfile      string
	// explain prints, for each step that ran, why it missed the cache.
	explain bool
	// call is what the build does: "build", or "check" (--check,
	// --call=check: lint the Dockerfile, build nothing).
	call string
	// callFormat is --call=check,format=json ("" for text);
	// callIgnoreStatus (ignorestatus=true) exits 0 despite warnings.
	callFormat       string
	callIgnoreStatus bool
}

func (f *buildFlags) register(fs *pflag.FlagSet) {
	fs.StringArrayVarP(&f.tags, "tag", "t", nil, "name and optionally a tag (name:tag); repeatable")
	fs.StringVarP(&f.file, "file", "f", "", "Dockerfile path (default CONTEXT/Dockerfile; - reads it from stdin)")
	fs.BoolVarP(&f.quiet, "quiet", "q", false, "print only the image ID (to stdout) when the build succeeds")
	fs.StringVar(&f.target, "target", "", "build this stage (and what it needs) only")
	fs.StringArrayVar(&f.buildArgs, "build-arg", nil, "build-time variable KEY=VALUE (KEY alone takes it from the environment)")
	fs.StringArrayVar(&f.labels, "label", nil, "set image label KEY=VALUE")
	fs.BoolVar(&f.noCache, "no-cache", false, "do not use the build cache")
	fs.BoolVar(&f.push, "push", false, "push the image to its registry under each -t name after the build (short for -o type=image,push=true)")
	fs.BoolVar(&f.pullAlways, "pull", false, "always look up FROM images in their registry (without it a stored image is used; missing ones are pulled)")
	fs.StringVar(&f.network, "network", "host", "network for RUN: host, none")
	fs.StringVar(&f.progressMode, "progress", "auto", "progress output: auto (tty on a terminal, else plain), plain, tty, json, quiet (only the image ID, on stdout)")
	fs.StringVar(&f.iidfile, "iidfile", "", "write the image ID to this file")
	fs.StringVar(&f.runtime, "runtime", "runc", "OCI runtime binary")
	fs.StringArrayVarP(&f.outputs, "output", "o", nil, "also export the result; repeatable: "+
		"type=local,dest=DIR (the final rootfs into DIR; \"-o DIR\" for short), "+
		"type=tar,dest=FILE (the final rootfs as one tar), "+
		"type=oci,dest=FILE[,compression=gzip|zstd|uncompressed][,compression-level=N] (OCI layout tar, layers compressed, gzip by default), "+
		"type=docker,dest=FILE (a docker save tar; it also holds an OCI layout, like kiln save, which docker load accepts), "+
		"type=registry[,name=REG/REPO:TAG][,compression=...] (push; names default to the -t names), type=image[,name=...][,push=true]; "+
		"dest=- writes a tar to stdout. The image is stored and tagged as well")
	fs.StringVar(&f.metadataFile, "metadata-file", "", "write the result's digests and names as JSON (buildx's keys) to this file")
	fs.StringVar(&f.platform, "platform", "", "target platform; kiln builds only for the host platform (linux/"+goruntime.GOARCH+", or \"local\")")
	fs.StringArrayVar(&f.secrets, "secret", nil, "secret for RUN --mount=type=secret: id=ID[,src=PATH|,env=VAR] (id=ID alone: env var ID if set, else file ID)")
	fs.StringArrayVar(&f.ssh, "ssh", nil, "ssh agent socket for RUN --mount=type=ssh: default|ID[=SOCKET] (default $SSH_AUTH_SOCK)")
	fs.StringArrayVar(&f.buildContexts, "build-context", nil, "named build context NAME=DIR|docker-image://REF|...; repeatable")
	fs.StringArrayVar(&f.noCacheFilter, "no-cache-filter", nil, "do not use the cache for these stages (repeatable or comma separated)")
	fs.StringArrayVar(&f.cacheFrom, "cache-from", nil, "import a build cache: type=local,src=DIR | type=registry,ref=REF (or just REF); repeatable")
	fs.StringArrayVar(&f.cacheTo, "cache-to", nil, "export the build cache: type=local,dest=DIR | type=registry,ref=REF, with mode=min (target stage) or mode=max (every stage)")
	fs.StringVar(&f.cacheMax, "cache-max", "", "build cache budget enforced when the build ends, least recently used first (e.g. 10GB, 2GiB, off; env KILN_CACHE_MAX; default 10% of the store's filesystem, at most 20GB)")
	fs.BoolVar(&f.explain, "explain", false, "say for each step that ran why it missed the cache (the build's journal always records it: kiln explain)")
	fs.BoolVar(&f.check, "check", false, "lint the Dockerfile and build nothing (short for --call=check)")
	fs.StringVar(&f.call, "call", "build", "what to do: build, check")
	fs.StringArrayVar(&f.allow, "allow", nil, "allow an entitlement: security.insecure (RUN --security=insecure), network.host")
}

// request checks every flag and turns them into a buildRequest for the
// context argument contextArg, before the store is opened, so that a bad
// flag fails before anything runs. stdoutTerminal tells whether stdout is
// a terminal (no tar is written to one). Secrets, SSH sockets and build
// contexts must exist; build args, secrets, SSH_AUTH_SOCK,
// SOURCE_DATE_EPOCH and KILN_CACHE_MAX are read from the environment.
func (f *buildFlags) request(contextArg string, stdoutTerminal bool) (*buildRequest, error) {
	bargs, err := keyValues(f.buildArgs, "--build-arg", true)
	if err != nil {
		return nil, err
	}
	lbls, err := keyValues(f.labels, "--label", false)
	if err != nil {
		return nil, err
	}
	epoch, err := sourceDateEpoch(bargs)
	if err != nil {
		return nil, err
	}
	plat, err := parsePlatform(f.platform, goruntime.GOARCH, hostVariants())
	if err != nil {
		return nil, err
	}
	outs, err := parseOutputs(f.outputs)
	if err != nil {
		return nil, err
	}
	if f.push {
		// docker build --push: the image under its -t names, pushed.
		if len(f.tags) == 0 {
			return nil, fmt.Errorf("--push needs a name to push to: -t REGISTRY/REPO:TAG")
		}
		outs = append(outs, builder.Output{Type: "image", Attrs: map[string]string{"push": "true"}})
	}
	for _, o := range outs {
		if (o.Type == "registry" || o.Type == "image") && o.Attrs["name"] == "" && len(f.tags) == 0 {
			return nil, fmt.Errorf("-o type=%s: name=REGISTRY/REPO:TAG (or -t) is required", o.Type)
		}
	}
	cacheFrom, err := parseCacheSpecs("--cache-from", f.cacheFrom)
	if err != nil {
		return nil, err
	}
	cacheTo, err := parseCacheSpecs("--cache-to", f.cacheTo)
	if err != nil {
		return nil, err
	}
	if err := checkStdoutOutputs(outs, stdoutTerminal); err != nil {
		return nil, err
	}
	if err := builder.CheckOutputs(outs); err != nil {
		return nil, err
	}
	secrets, err := parseSecrets(f.secrets, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	ssh, err := parseSSH(f.ssh, os.Getenv("SSH_AUTH_SOCK"))
	if err != nil {
		return nil, err
	}
	contexts, err := parseBuildContexts(f.buildContexts)
	if err != nil {
		return nil, err
	}
	insecure, err := parseAllow(f.allow)
	if err != nil {
		return nil, err
	}
	budget, err := cacheMax(f.cacheMax)
	if err != nil {
		return nil, err
	}
	mode := progress.Auto
	if f.progressMode != "" {
		if mode, err = progress.ParseMode(f.progressMode); err != nil {
			return nil, err
		}
	}
	if f.quiet {
		mode = progress.Quiet
	}
	call := f.call
	if call == "" {
		call = "build" // the flag's default, for buildFlags made without cobra
	}
	if f.check {
		call = "check"
	}
	cf, err := parseCall(call)
	if err != nil {
		return nil, err
	}
	file := f.file
	if file == "-" {
		if contextArg == "-" {
			return nil, errors.New("cannot read both the Dockerfile (-f -) and the context (-) from stdin")
		}
		file = ""
	}
	return &buildRequest{
		opts: builder.Options{
			ContextDir:    contextArg,
			Dockerfile:    file,
			Tags:          f.tags,
			Target:        f.target,
			BuildArgs:     bargs,
			Labels:        lbls,
			NoCache:       f.noCache,
			Network:       f.network,
			Runtime:       f.runtime,
			Epoch:         epoch,
			Platform:      plat,
			Outputs:       outs,
			MetadataFile:  f.metadataFile,
			CacheFrom:     cacheFrom,
			CacheTo:       cacheTo,
			Secrets:       secrets,
			SSH:           ssh,
			BuildContexts: contexts,
			NoCacheFilter: splitList(f.noCacheFilter),
			AllowInsecure: insecure,
			Pull:          f.pullAlways,
			CacheMax:      budget,
		},
		dockerfileFromStdin: f.file == "-",
		progressMode:        mode,
		iidfile:             f.iidfile,
		explain:             f.explain,
		call:                cf.name,
		callFormat:          cf.format,
		callIgnoreStatus:    cf.ignoreStatus,
	}, nil
}

// keyValues parses KEY=VALUE flags; with fromEnv, a bare KEY takes its
// value from the environment like docker's --build-arg.
func keyValues(in []string, flag string, fromEnv bool) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("%s %q: expected KEY=VALUE", flag, kv)
		}
		if !ok {
			if !fromEnv {
				return nil, fmt.Errorf("%s %q: expected KEY=VALUE", flag, kv)
			}
			var set bool
			if v, set = os.LookupEnv(k); !set {
				continue
			}
		}
		out[k] = v
	}
	return out, nil
}

// sourceDateEpoch reads SOURCE_DATE_EPOCH from --build-arg or the
// environment.
func sourceDateEpoch(args map[string]string) (*time.Time, error) {
	v, ok := args["SOURCE_DATE_EPOCH"]
	if !ok {
		v, ok = os.LookupEnv("SOURCE_DATE_EPOCH")
	}
	if !ok || v == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q: not a number of seconds", v)
	}
	t := time.Unix(n, 0).UTC()
	return &t, nil
}

// parseOutputs parses -o values as buildx does: CSV fields KEY=VALUE with
// type= and dest=; a value that is one plain field is a directory for
// type=local, and "-" alone is a tar on stdout.
func parseOutputs(in []string) ([]builder.Output, error) {
	var outs []builder.Output
	for _, v := range in {
		fields, err := csv.NewReader(strings.NewReader(v)).Read()
		if err != nil {
			return nil, fmt.Errorf("-o %q: %w", v, err)
		}
		if len(fields) == 1 && fields[0] == v && !strings.HasPrefix(v, "type=") {
			if v == "-" {
				outs = append(outs, builder.Output{Type: "tar", Dest: "-"})
			} else {
				outs = append(outs, builder.Output{Type: "local", Dest: v})
			}
			continue
		}
		o := builder.Output{Attrs: map[string]string{}}
		for _, f := range fields {
			k, val, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("-o %q: invalid value %q (expected KEY=VALUE)", v, f)
			}
			switch k = strings.TrimSpace(strings.ToLower(k)); k {
			case "type":
				o.Type = val
			case "dest":
				o.Dest = val
			default:
				o.Attrs[k] = val
			}
		}
		if o.Type == "" {
			return nil, fmt.Errorf("-o %q: type is required for output", v)
		}
		if len(o.Attrs) == 0 {
			o.Attrs = nil
		}
		outs = append(outs, o)
	}
	return outs, nil
}

// writesStdout tells whether an output writes its tar to stdout.
func writesStdout(outs []builder.Output) bool {
	for _, o := range outs {
		switch o.Type {
		case "tar", "oci", "docker":
			if o.Dest == "" || o.Dest == "-" {
				return true
			}
		}
	}
	return false
}

// checkStdoutOutputs refuses to write a tar to a terminal.
func checkStdoutOutputs(outs []builder.Output, terminal bool) error {
	for _, o := range outs {
		if terminal && writesStdout([]builder.Output{o}) {
			return fmt.Errorf("-o type=%s: output file is required (dest=FILE); refusing to write a tar to a terminal", o.Type)
		}
	}
	return nil
}

// stdoutIsTerminal is isatty(1): /dev/null is a character device too, and
// `kiln save IMAGE > /dev/null` must work as docker's does.
func stdoutIsTerminal() bool {
	_, err := unix.IoctlGetTermios(int(os.Stdout.Fd()), unix.TCGETS)
	return err == nil
}

// parsePlatform checks --platform against the host: kiln runs every RUN
// on the host, so it builds for linux/<host arch> only. It accepts a
// comma-separated list naming that one platform, "local", an arch alone,
// the usual aliases (x86_64, aarch64) and a variant the host can run
// (variants: those of the host CPU). It returns "linux/ARCH[/VARIANT]", or
// "" for no --platform.
func parsePlatform(value, goarch string, variants []string) (string, error) {
	if strings.TrimSpace(value) == "" {
		return "", nil
	}
	host := "linux/" + goarch
	result := ""
	for _, p := range strings.Split(value, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		norm, ok := normalizePlatform(p, goarch)
		if !ok {
			return "", fmt.Errorf("--platform %s: kiln builds only for the host platform %s", p, host)
		}
		if v, isVariant := strings.CutPrefix(norm, host+"/"); isVariant && !contains(variants, v) {
			msg := fmt.Sprintf("--platform %s: kiln builds only for the host platform %s", p, host)
			if len(variants) > 0 {
				msg += " (variants this host runs: " + strings.Join(variants, ", ") + ")"
			}
			return "", errors.New(msg)
		}
		if result != "" && result != norm {
			return "", fmt.Errorf("--platform %s: kiln builds for one platform at a time", value)
		}
		result = norm
	}
	return result, nil
}

// normalizePlatform turns p into "linux/ARCH[/VARIANT]" the way
// containerd's platforms.Normalize does, and reports whether it is a
// platform of the host's OS and architecture.
func normalizePlatform(p, goarch string) (string, bool) {
	p = strings.ToLower(p)
	if p == "local" {
		return "linux/" + goarch, true
	}
	parts := strings.Split(p, "/")
	var osName, arch, variant string
	switch len(parts) {
	case 1:
		if parts[0] == "linux" {
			osName, arch = "linux", goarch
		} else {
			osName, arch = "linux", parts[0]
		}
	case 2:
		osName, arch = parts[0], parts[1]
	case 3:
		osName, arch, variant = parts[0], parts[1], parts[2]
	default:
		return "", false
	}
	switch arch {
	case "x86_64", "x86-64", "amd64":
		arch = "amd64"
		if variant == "v1" {
			variant = ""
		}
	case "aarch64", "arm64":
		arch = "arm64"
		if variant == "8" || variant == "v8" || variant == "v8.0" {
			variant = ""
		}
	case "armhf":
		arch, variant = "arm", "v7"
	case "armel":
		arch, variant = "arm", "v6"
	case "i386":
		arch = "386"
	}
	if osName != "linux" || arch != goarch {
		return "", false
	}
	if variant != "" {
		return "linux/" + arch + "/" + variant, true
	}
	return "linux/" + arch, true
}

// maxSecretSize is BuildKit's limit for a secret file.
const maxSecretSize = 500 * 1024

// parseSecrets parses --secret values as buildx and BuildKit's secret
// store do: CSV fields id=, src= (or source=), env=, type=file|env. With
// neither src nor env, the environment variable named like the id is used
// if set, else the file named like it. A file must exist (and be at most
// 500 KiB) now; an environment variable is read when a step uses it.
func parseSecrets(in []string, lookupEnv func(string) (string, bool)) (map[string]builder.Secret, error) {
	out := map[string]builder.Secret{}
	for _, v := range in {
		fields, err := csv.NewReader(strings.NewReader(v)).Read()
		if err != nil {
			return nil, fmt.Errorf("--secret %q: %w", v, err)
		}
		var id, typ, src, env string
		for _, f := range fields {
			k, val, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("--secret %s: invalid field %q, must be a key=value pair", v, f)
			}
			switch strings.ToLower(strings.TrimSpace(k)) {
			case "type":
				if val != "file" && val != "env" {
					return nil, fmt.Errorf("--secret %s: unsupported secret type %q (file or env)", v, val)
				}
				typ = val
			case "id":
				id = val
			case "src", "source":
				src = val
			case "env":
				env = val
			default:
				return nil, fmt.Errorf("--secret %s: unexpected key %q", v, k)
			}
		}
		if typ == "env" && env == "" {
			env, src = src, ""
		}
		if id == "" {
			return nil, fmt.Errorf("--secret %s: id= is required", v)
		}
		if src == "" && env == "" {
			if _, ok := lookupEnv(id); ok {
				env = id
			} else {
				src = id
			}
		}
		s := builder.Secret{Env: env}
		if src != "" {
			fi, err := os.Stat(src)
			if err != nil {
				return nil, fmt.Errorf("--secret %s: %w", v, err)
			}
			if fi.IsDir() {
				return nil, fmt.Errorf("--secret %s: %s is a directory", v, src)
			}
			if fi.Size() > maxSecretSize {
				return nil, fmt.Errorf("--secret %s: %s is too big (max 500 KiB)", v, src)
			}
			if s.File, err = filepath.Abs(src); err != nil {
				return nil, err
			}
		}
		out[id] = s
	}
	return out, nil
}

// parseSSH parses --ssh ID[=SOCKET] as buildx does; without a socket path
// (`--ssh default`) the agent in $SSH_AUTH_SOCK (agentSock) is used. The
// socket must exist. Key files (buildx also takes those) are not
// supported: kiln forwards an agent.
func parseSSH(in []string, agentSock string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range in {
		id, path, _ := strings.Cut(v, "=")
		if id == "" {
			return nil, fmt.Errorf("--ssh %q: expected ID[=SOCKET], e.g. default", v)
		}
		if strings.Contains(path, ",") {
			return nil, fmt.Errorf("--ssh %s: only one agent socket per id is supported", v)
		}
		if path == "" {
			if agentSock == "" {
				return nil, fmt.Errorf("--ssh %s: invalid empty ssh agent socket: make sure SSH_AUTH_SOCK is set", v)
			}
			path = agentSock
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("--ssh %s: %w", v, err)
		}
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("--ssh %s: %s is not a socket (an ssh agent socket is needed; key files are not supported)", v, path)
		}
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		out[id] = abs
	}
	return out, nil
}

// parseBuildContexts parses --build-context NAME=VALUE as buildx does:
// NAME is normalized like an image name (":latest" dropped), VALUE is kept
// as given except that a local directory becomes an absolute path and
// must exist.
func parseBuildContexts(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, v := range in {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" || val == "" {
			return nil, fmt.Errorf("--build-context %q: invalid context value, expected NAME=VALUE", v)
		}
		named, err := reference.ParseNormalizedNamed(k)
		if err != nil {
			return nil, fmt.Errorf("--build-context %s: invalid context name %q: %w", v, k, err)
		}
		name := strings.TrimSuffix(reference.FamiliarString(named), ":latest")
		if isLocalContext(val) {
			fi, err := os.Stat(val)
			if err != nil {
				return nil, fmt.Errorf("--build-context %s: %w", v, err)
			}
			if !fi.IsDir() {
				return nil, fmt.Errorf("--build-context %s: %s is not a directory", v, val)
			}
			if val, err = filepath.Abs(val); err != nil {
				return nil, err
			}
		}
		out[name] = val
	}
	return out, nil
}

// isLocalContext tells a local directory from the other kinds of build
// context value (docker-image://, oci-layout://, target:, URLs, git).
func isLocalContext(v string) bool {
	if strings.Contains(v, "://") || strings.HasPrefix(v, "target:") || strings.HasPrefix(v, "git@") {
		return false
	}
	return true
}

// parseAllow parses --allow entitlements: security.insecure permits RUN
// --security=insecure; network.host is accepted (kiln's RUN uses the host
// network already).
func parseAllow(in []string) (insecure bool, err error) {
	for _, e := range splitList(in) {
		switch e {
		case "security.insecure":
			insecure = true
		case "network.host":
		default:
			return false, fmt.Errorf("--allow %s: invalid entitlement (security.insecure or network.host)", e)
		}
	}
	return insecure, nil
}

// splitList flattens repeatable, comma-separated flag values.
func splitList(in []string) []string {
	var out []string
	for _, v := range in {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// hostVariants lists the platform variants this machine runs: the x86-64
// micro-architecture levels its CPU has (v2, v3, v4), nothing elsewhere.
func hostVariants() []string {
	if goruntime.GOARCH != "amd64" {
		return nil
	}
	x := cpu.X86
	var out []string
	if !(x.HasSSE3 && x.HasSSSE3 && x.HasSSE41 && x.HasSSE42 && x.HasPOPCNT && x.HasCX16) {
		return out
	}
	out = append(out, "v2")
	if !(x.HasAVX && x.HasAVX2 && x.HasBMI1 && x.HasBMI2 && x.HasFMA && x.HasOSXSAVE) {
		return out
	}
	out = append(out, "v3")
	if x.HasAVX512F && x.HasAVX512BW && x.HasAVX512CD && x.HasAVX512DQ && x.HasAVX512VL {
		out = append(out, "v4")
	}
	return out
}

// parseCacheSpecs reads --cache-from/--cache-to values like buildx:
// "type=local,src=DIR", "type=local,dest=DIR,mode=max",
// "type=registry,ref=REF"; a bare value is a registry ref.
func parseCacheSpecs(flag string, in []string) ([]builder.CacheSpec, error) {
	var out []builder.CacheSpec
	for _, v := range in {
		if !strings.Contains(v, "=") {
			// like buildx, a bare value is a registry reference
			if _, err := reference.ParseNormalizedNamed(v); err != nil {
				return nil, fmt.Errorf("%s %q: not an image reference (for a directory use type=local,%s=DIR)", flag, v, localAttr(flag))
			}
			out = append(out, builder.CacheSpec{Type: "registry", Attrs: map[string]string{"ref": v}})
			continue
		}
		fields, err := csv.NewReader(strings.NewReader(v)).Read()
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", flag, v, err)
		}
		spec := builder.CacheSpec{Attrs: map[string]string{}}
		for _, f := range fields {
			k, val, ok := strings.Cut(f, "=")
			if !ok {
				return nil, fmt.Errorf("%s %q: invalid value %q (expected KEY=VALUE)", flag, v, f)
			}
			if k = strings.ToLower(strings.TrimSpace(k)); k == "type" {
				spec.Type = val
			} else {
				spec.Attrs[k] = val
			}
		}
		switch spec.Type {
		case "local":
			if spec.Attrs[localAttr(flag)] == "" {
				return nil, fmt.Errorf("%s %q: type=local needs %s=DIR", flag, v, localAttr(flag))
			}
		case "registry":
			ref := spec.Attrs["ref"]
			if ref == "" {
				return nil, fmt.Errorf("%s %q: type=registry needs ref=REGISTRY/REPO:TAG", flag, v)
			}
			if _, err := reference.ParseNormalizedNamed(ref); err != nil {
				return nil, fmt.Errorf("%s %q: ref %q is not an image reference", flag, v, ref)
			}
		case "":
			return nil, fmt.Errorf("%s %q: type is required (local or registry)", flag, v)
		default:
			return nil, fmt.Errorf("%s %q: cache type %q is not supported (local, registry)", flag, v, spec.Type)
		}
		if m := spec.Attrs["mode"]; m != "" && m != "min" && m != "max" {
			return nil, fmt.Errorf("%s %q: mode must be min or max", flag, v)
		}
		out = append(out, spec)
	}
	return out, nil
}

// localAttr is the attribute naming a type=local cache directory: dest
// for --cache-to, src for --cache-from.
func localAttr(flag string) string {
	if flag == "--cache-to" {
		return "dest"
	}
	return "src"
}
