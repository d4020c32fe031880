package buildcache

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/cache/record"
	"github.com/kiln-build/kiln/exporter/compression"
	"github.com/kiln-build/kiln/internal/testenv"
	"github.com/kiln-build/kiln/store"
	"github.com/kiln-build/kiln/transport/registry"
	digest "github.com/opencontainers/go-digest"
)

// cacheStore is a store holding one layer and one record that uses it.
func cacheStore(t *testing.T) (*store.Store, *record.Record) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	body := strings.Repeat("cached layer\n", 100)
	tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(body)), ModTime: time.Unix(0, 0)})
	tw.Write([]byte(body))
	tw.Close()
	d, err := st.Content.Write(context.Background(), &b, "")
	if err != nil {
		t.Fatal(err)
	}
	r := &record.Record{Key: digest.FromString("step"), Layers: []record.Layer{{DiffID: d.Digest, Size: d.Size}}, Created: time.Unix(1, 0).UTC()}
	if err := st.Records.Put(r); err != nil {
		t.Fatal(err)
	}
	return st, r
}

// forward relays TCP connections from a new listener on addr (host:0) to
// the address to, so that one registry is reached under another host.
func forward(t *testing.T, addr, to string) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
	}
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close() // idle keep-alive connections too
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			track(c)
			track(u)
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// nonLoopbackIP is an address of this machine that is not loopback.
func nonLoopbackIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	t.Skip("no non-loopback IPv4 address")
	return ""
}

var gzipOpts = compression.Options{Algorithm: compression.Gzip, Level: compression.DefaultGzipLevel}

// exportImport sends st's record to ref and reads it back into a new
// store, fetching its layer.
func exportImport(t *testing.T, st *store.Store, r *record.Record, ref string, cfg registry.Config) {
	t.Helper()
	ctx := context.Background()
	if err := ExportRegistry(ctx, st, []*record.Record{r}, ref, gzipOpts, cfg); err != nil {
		t.Fatalf("export to %s: %v", ref, err)
	}
	other, _ := cacheStore(t)
	src, err := ImportRegistry(ctx, other, ref, cfg)
	if err != nil {
		t.Fatalf("import from %s: %v", ref, err)
	}
	if _, err := other.Records.Get(r.Key); err != nil {
		t.Errorf("record not imported: %v", err)
	}
	diffID := r.Layers[0].DiffID
	if !src.Has(diffID) {
		t.Fatalf("cache lacks layer %s", diffID)
	}
	if err := src.Fetch(ctx, other, diffID); err != nil {
		t.Fatal(err)
	}
	if _, ok := other.Content.Has(diffID); !ok {
		t.Errorf("layer not fetched")
	}
}

// The registry cache follows the policy pull and push follow: a private
// CA given in the config is trusted (and not without it), ::1 is
// loopback, and a host given as insecure is reached over plain HTTP while
// another is not.
func TestRegistryCacheUsesTheRegistryPolicy(t *testing.T) {
	ctx := context.Background()
	st, r := cacheStore(t)

	t.Run("private CA", func(t *testing.T) {
		reg := testenv.StartRegistry(t, testenv.RegistryOptions{TLS: true})
		ref := reg.Ref("team/app:buildcache")
		if err := ExportRegistry(ctx, st, []*record.Record{r}, ref, gzipOpts, registry.Config{}); err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("export without the CA: %v", err)
		}
		cfg := registry.Config{CAFiles: []string{reg.CACert}}
		exportImport(t, st, r, ref, cfg)

	})

	reg := testenv.StartRegistry(t, testenv.RegistryOptions{})
	t.Run("::1", func(t *testing.T) {
		addr := forward(t, "[::1]:0", reg.Addr)
		exportImport(t, st, r, addr+"/team/app:buildcache", registry.Config{})
	})
	t.Run("insecure host", func(t *testing.T) {
		addr := forward(t, nonLoopbackIP(t)+":0", reg.Addr)
		ref := addr + "/team/app:buildcache"
		if err := ExportRegistry(ctx, st, []*record.Record{r}, ref, gzipOpts, registry.Config{}); err == nil {
			t.Errorf("plain HTTP to %s without --insecure-registry worked", addr)
		}
		if _, err := ImportRegistry(ctx, st, ref, registry.Config{}); err == nil {
			t.Errorf("import over plain HTTP from %s without --insecure-registry worked", addr)
		}
		exportImport(t, st, r, ref, registry.Config{Insecure: []string{addr}})
	})
}
