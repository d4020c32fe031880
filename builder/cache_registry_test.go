package builder_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/builder"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/transport/registry"
)

// The same two-machine story through a real registry (Debian's
// docker-registry on 127.0.0.1).
func TestRegistryCacheExportedByOneStoreIsHitByAnother(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	epoch := time.Unix(1700000000, 0).UTC()
	ref := reg.Ref("team/app-cache:main")

	a := newStore(t)
	ctx := writeContext(t, map[string]string{"Dockerfile": twoMachineDockerfile, "deps.txt": "b\na\n", "src/one.txt": "1\n"})
	to := []builder.CacheSpec{{Type: "registry", Attrs: map[string]string{"ref": ref, "mode": "max"}}}
	resA, _ := runBuild(t, a, ctx, builder.Options{Epoch: &epoch, CacheTo: to})
	// exporting again uploads nothing new and still works
	runBuild(t, a, ctx, builder.Options{Epoch: &epoch, CacheTo: to})

	b := newStore(t)
	from := []builder.CacheSpec{{Type: "registry", Attrs: map[string]string{"ref": ref}}}
	resB, rec := runBuild(t, b, ctx, builder.Options{Epoch: &epoch, CacheFrom: from})
	if got := rec.started(); len(got) != 0 {
		t.Fatalf("store B ran %v; want every step from the registry cache", got)
	}
	if resA.Manifest.Digest != resB.Manifest.Digest {
		t.Errorf("image digests differ: %s vs %s", resA.Manifest.Digest, resB.Manifest.Digest)
	}
	if got := runIn(t, b, resB, "cat", "/deps.sorted"); got != "a\nb\n" {
		t.Errorf("image from the registry cache: %q", got)
	}

	// a cache that cannot be read is a warning, and the build still works
	var warnings []string
	c := newStore(t)
	_, err := builder.Run(t.Context(), c, builder.Options{ContextDir: ctx, Warn: func(s string) { warnings = append(warnings, s) },
		CacheFrom: []builder.CacheSpec{{Type: "registry", Attrs: map[string]string{"ref": reg.Ref("no/such:cache")}}}})
	if err != nil || len(warnings) == 0 {
		t.Errorf("missing cache: err %v, warnings %v", err, warnings)
	}
}

// --cache-to and --cache-from reach a registry as pulls and pushes do,
// with the build's registry config: here a registry whose certificate a
// private CA signed, trusted only through that config.
func TestRegistryCacheUsesTheBuildsRegistryConfig(t *testing.T) {
	reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true})
	epoch := time.Unix(1700000000, 0).UTC()
	ref := reg.Ref("team/app-cache:tls")
	trusted := registry.PullOptions{Registry: registry.Config{CAFiles: []string{reg.CACert}}}
	ctx := writeContext(t, map[string]string{"Dockerfile": twoMachineDockerfile, "deps.txt": "b\na\n", "src/one.txt": "1\n"})
	to := []builder.CacheSpec{{Type: "registry", Attrs: map[string]string{"ref": ref, "mode": "max"}}}

	a := newStore(t)
	_, err := builder.Run(t.Context(), a, builder.Options{ContextDir: ctx, Epoch: &epoch, CacheTo: to})
	if err == nil || !strings.Contains(err.Error(), "--cache-to") || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("export without the CA: %v", err)
	}
	resA, _ := runBuild(t, a, ctx, builder.Options{Epoch: &epoch, CacheTo: to, PullOptions: trusted})

	b := newStore(t)
	from := []builder.CacheSpec{{Type: "registry", Attrs: map[string]string{"ref": ref}}}
	resB, rec := runBuild(t, b, ctx, builder.Options{Epoch: &epoch, CacheFrom: from, PullOptions: trusted})
	if got := rec.started(); len(got) != 0 {
		t.Fatalf("store B ran %v; want every step from the registry cache", got)
	}
	if resA.Manifest.Digest != resB.Manifest.Digest {
		t.Errorf("image digests differ: %s vs %s", resA.Manifest.Digest, resB.Manifest.Digest)
	}
}
