package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const (
	registryReadyTimeout = 30 * time.Second
	registryStopTimeout  = 10 * time.Second
)

// RegistryOptions configures StartRegistry.
type RegistryOptions struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 and localhost,
	// signed by a CA the helper generates (Registry.CACert).
	TLS bool
	// Users enables htpasswd basic auth with these user → password pairs.
	Users map[string]string
}

// Registry is a private Debian docker-registry (the reference distribution
// server, 2.8) serving on 127.0.0.1, started by StartRegistry.
type Registry struct {
	Addr    string // "127.0.0.1:PORT"
	CACert  string // path of the CA certificate (PEM) when TLS, else ""
	Dir     string // the registry's directory: config, storage, log
	Config  string // Dir/config.yml
	LogPath string // Dir/registry.log

	tls bool
	bin string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// URL is the registry's base URL: "http://ADDR" or "https://ADDR".
func (r *Registry) URL() string {
	if r.tls {
		return "https://" + r.Addr
	}
	return "http://" + r.Addr
}

// StartRegistry runs `docker-registry serve CONFIG` on a free 127.0.0.1 port
// with filesystem storage in a t.TempDir() (deletes enabled), optionally
// with TLS and htpasswd auth, and waits until /v2/ answers (200 or 401).
// The process is stopped (SIGTERM, SIGKILL after 10 s) by t.Cleanup. Skips
// (CI=true: fails) when docker-registry is not installed.
func StartRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	RequireCommand(t, "docker-registry")
	r, err := NewRegistry(t.TempDir(), opts)
	if r != nil {
		t.Cleanup(func() { r.Stop() })
	}
	if err != nil {
		t.Fatalf("StartRegistry: %v", err)
	}
	return r
}

// NewRegistry is StartRegistry without a testing.TB: the registry's config,
// storage and log live in dir (created if needed), and the caller must call
// Stop. On error the returned Registry (if not nil) has been stopped.
func NewRegistry(dir string, opts RegistryOptions) (*Registry, error) {
	bin, err := LookCommand("docker-registry")
	if err != nil {
		return nil, err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o755); err != nil {
		return nil, err
	}
	r := &Registry{
		Dir:     dir,
		Config:  filepath.Join(dir, "config.yml"),
		LogPath: filepath.Join(dir, "registry.log"),
		tls:     opts.TLS,
		bin:     bin,
	}
	var certPath, keyPath, htpasswd string
	if opts.TLS {
		if r.CACert, certPath, keyPath, err = writeTestCerts(dir); err != nil {
			return nil, fmt.Errorf("certificates: %w", err)
		}
	}
	if len(opts.Users) > 0 {
		htpasswd = filepath.Join(dir, "htpasswd")
		if err := writeHtpasswd(htpasswd, opts.Users); err != nil {
			return nil, fmt.Errorf("htpasswd: %w", err)
		}
	}
	// The free port is found by binding :0 and closing it again; another
	// process may grab it in between, so a failed start is retried on a
	// new port.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		r.Addr = fmt.Sprintf("127.0.0.1:%d", port)
		if err := os.WriteFile(r.Config, []byte(registryConfig(r.Addr, filepath.Join(dir, "storage"), certPath, keyPath, htpasswd)), 0o644); err != nil {
			return nil, err
		}
		if lastErr = r.start(); lastErr == nil {
			return r, nil
		}
	}
	return r, lastErr
}

// Stop stops the registry (SIGTERM, SIGKILL after 10 s). Idempotent.
func (r *Registry) Stop() error {
	if r != nil {
		r.stop()
	}
	return nil
}

// Kill sends SIGKILL to the registry now and waits until it is gone (for
// interruption tests). Restart brings it back.
func (r *Registry) Kill() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// Restart stops the registry if it runs and starts it again on the same
// address with the same storage, config and certificates.
func (r *Registry) Restart(t testing.TB) {
	t.Helper()
	r.stop()
	var err error
	for i := 0; i < 10; i++ { // the old socket may linger for a moment
		if err = r.start(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("Registry.Restart: %v", err)
}

// Ref is ADDR/REPO:TAG for a repository path such as "team/app:1".
func (r *Registry) Ref(repoTag string) string { return r.Addr + "/" + repoTag }

func (r *Registry) start() error {
	logf, err := os.OpenFile(r.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.bin, "serve", r.Config)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.Dir = r.Dir
	// Own process group, and die with the test process if it is killed
	// (forked from the pinned thread: see startPinned).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := startPinned(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("start docker-registry: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	r.mu.Lock()
	r.cmd, r.exited = cmd, exited
	r.mu.Unlock()

	client := r.httpClient()
	deadline := time.Now().Add(registryReadyTimeout)
	for {
		select {
		case <-exited:
			r.mu.Lock()
			r.cmd = nil
			r.mu.Unlock()
			return fmt.Errorf("docker-registry exited during start: %s", r.logTail())
		default:
		}
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		if time.Now().After(deadline) {
			r.stop()
			return fmt.Errorf("docker-registry on %s not ready after %v (last: %v): %s", r.Addr, registryReadyTimeout, err, r.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends exactly the process this Registry started: SIGTERM, then
// SIGKILL after a timeout.
func (r *Registry) stop() {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-exited:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(registryStopTimeout):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}
}

// httpClient trusts the registry's CA (when TLS).
func (r *Registry) httpClient() *http.Client {
	tr := &http.Transport{DisableKeepAlives: true}
	if r.tls {
		pool := x509.NewCertPool()
		if b, err := os.ReadFile(r.CACert); err == nil {
			pool.AppendCertsFromPEM(b)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr, Timeout: 2 * time.Second}
}

func (r *Registry) logTail() string {
	b, _ := os.ReadFile(r.LogPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func registryConfig(addr, storage, cert, key, htpasswd string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %q
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %q
  secret: kiln-test-secret
  headers:
    X-Content-Type-Options: [nosniff]
`, storage, addr)
	if cert != "" {
		fmt.Fprintf(&b, "  tls:\n    certificate: %q\n    key: %q\n", cert, key)
	}
	if htpasswd != "" {
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: kiln-test\n    path: %q\n", htpasswd)
	}
	return b.String()
}

func writeHtpasswd(path string, users map[string]string) error {
	names := make([]string, 0, len(users))
	for u := range users {
		names = append(names, u)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, u := range names {
		h, err := bcrypt.GenerateFromPassword([]byte(users[u]), bcrypt.MinCost)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// writeTestCerts makes a self-signed CA and a server certificate for
// 127.0.0.1, ::1 and localhost signed by it, in dir.
func writeTestCerts(dir string) (caPath, certPath, keyPath string, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kiln test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return "", "", "", err
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", "", err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		DNSNames:     []string{"localhost"},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return "", "", "", err
	}
	srvKeyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		return "", "", "", err
	}
	caPath = filepath.Join(dir, "ca.pem")
	certPath = filepath.Join(dir, "server.pem")
	keyPath = filepath.Join(dir, "server-key.pem")
	for _, f := range []struct {
		path, typ string
		der       []byte
		mode      os.FileMode
	}{
		{caPath, "CERTIFICATE", caDER, 0o644},
		{certPath, "CERTIFICATE", srvDER, 0o644},
		{keyPath, "EC PRIVATE KEY", srvKeyDER, 0o600},
	} {
		if err := os.WriteFile(f.path, pem.EncodeToMemory(&pem.Block{Type: f.typ, Bytes: f.der}), f.mode); err != nil {
			return "", "", "", err
		}
	}
	return caPath, certPath, keyPath, nil
}

// DockerConfig writes a docker CLI config directory (use it as
// DOCKER_CONFIG) whose config.json holds basic-auth credentials for
// registryAddr in "auths", and returns the directory.
func DockerConfig(t testing.TB, registryAddr, user, pass string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := map[string]any{
		"auths": map[string]any{
			registryAddr: map[string]string{
				"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass)),
			},
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}
