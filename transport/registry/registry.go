// What every path shares: this file holds what every kiln command that talks to a registry
// shares: reference parsing with docker's rules, the plain-HTTP policy
// (only localhost, 127.0.0.1/::1 and hosts given with --insecure-registry),
// extra trusted CAs, authentication from the docker config
// (~/.docker/config.json or $DOCKER_CONFIG, credential helpers included)
// and readable errors.

package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Environment variables read by FromEnv.
const (
	// EnvInsecure lists hosts (host or host:port, comma separated) that may
	// be reached over plain HTTP, like --insecure-registry.
	EnvInsecure = "KILN_INSECURE_REGISTRIES"
	// EnvCA names a PEM file of CA certificates trusted for registries in
	// addition to the system's, like --registry-ca.
	EnvCA = "KILN_REGISTRY_CA"
)

// Config is how kiln reaches registries.
type Config struct {
	// Insecure hosts ("host" or "host:port") may be reached over plain
	// HTTP. Loopback hosts always may.
	Insecure []string
	// CAFiles are PEM files of CA certificates trusted in addition to the
	// system pool (which honours SSL_CERT_FILE / SSL_CERT_DIR).
	CAFiles []string
	// Keychain resolves credentials; nil means authn.DefaultKeychain.
	Keychain authn.Keychain
	// UserAgent, if set, is sent with every request.
	UserAgent string
}

// FromEnv is the Config given by KILN_INSECURE_REGISTRIES and
// KILN_REGISTRY_CA.
func FromEnv() Config {
	var c Config
	for _, h := range strings.Split(os.Getenv(EnvInsecure), ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.Insecure = append(c.Insecure, h)
		}
	}
	if f := os.Getenv(EnvCA); f != "" {
		c.CAFiles = append(c.CAFiles, f)
	}
	return c
}

// Merge returns c with o's hosts and CA files added.
func (c Config) Merge(o Config) Config {
	c.Insecure = append(append([]string(nil), c.Insecure...), o.Insecure...)
	c.CAFiles = append(append([]string(nil), c.CAFiles...), o.CAFiles...)
	if c.Keychain == nil {
		c.Keychain = o.Keychain
	}
	if c.UserAgent == "" {
		c.UserAgent = o.UserAgent
	}
	return c
}

// IsLoopback reports whether a registry host ("host[:port]") is this
// machine: localhost, 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	h := hostOnly(host)
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

// AllowsHTTP reports whether plain HTTP may be used for host.
func (c Config) AllowsHTTP(host string) bool {
	if IsLoopback(host) {
		return true
	}
	for _, h := range c.Insecure {
		h = strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(h, "http://"), "https://"), "/")
		if strings.EqualFold(h, host) || strings.EqualFold(h, hostOnly(host)) {
			return true
		}
	}
	return false
}

// Parse parses an image reference with docker's rules, as the network sees
// it ("busybox" → index.docker.io/library/busybox:latest). Hosts allowed
// plain HTTP are marked insecure, so that ggcr falls back to HTTP for them.
func (c Config) Parse(ref string) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid reference format %q: %w", ref, err)
	}
	if host := r.Context().RegistryStr(); c.AllowsHTTP(host) {
		if r, err = name.ParseReference(ref, name.Insecure); err != nil {
			return nil, fmt.Errorf("invalid reference format %q: %w", ref, err)
		}
	}
	return r, nil
}

// Transport is an HTTP transport trusting the system's CAs plus CAFiles,
// refusing plain HTTP to hosts not allowed it.
func (c Config) Transport() (http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 2 * time.Minute
	if len(c.CAFiles) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		for _, f := range c.CAFiles {
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("registry CA: %w", err)
			}
			if !pool.AppendCertsFromPEM(b) {
				return nil, fmt.Errorf("registry CA %s: no PEM certificates in it", f)
			}
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return httpPolicy{c: c, next: tr}, nil
}

// httpPolicy enforces that plain HTTP goes only to allowed hosts, whatever
// ggcr's own defaults (which include private address ranges).
type httpPolicy struct {
	c    Config
	next http.RoundTripper
}

func (p httpPolicy) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !p.c.AllowsHTTP(req.URL.Host) {
		return nil, fmt.Errorf("refusing plain HTTP to %s (only localhost, 127.0.0.1 and --insecure-registry hosts)", req.URL.Host)
	}
	return p.next.RoundTrip(req)
}

// RemoteOptions are the ggcr remote options for this config: transport,
// credentials, context.
func (c Config) RemoteOptions(ctx context.Context) ([]remote.Option, error) {
	tr, err := c.Transport()
	if err != nil {
		return nil, err
	}
	kc := c.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(tr),
		remote.WithAuthFromKeychain(kc),
	}
	if c.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(c.UserAgent))
	}
	return opts, nil
}

// Explain turns a registry error into the short form docker prints
// ("unauthorized: authentication required", "manifest unknown: ..."),
// with a hint for certificate problems. Other errors pass unchanged.
func Explain(err error) error {
	var done *explained
	if err == nil || errors.As(err, &done) {
		return err
	}
	// Certificate problems first: for a loopback registry ggcr also tries
	// plain HTTP, whose failure would hide the real cause.
	var cerr *tls.CertificateVerificationError
	var uerr x509.UnknownAuthorityError
	var herr x509.HostnameError
	var cause error
	switch {
	case errors.As(err, &cerr):
		cause = cerr
	case errors.As(err, &uerr):
		cause = uerr
	case errors.As(err, &herr):
		cause = herr
	}
	if cause != nil {
		return &explained{msg: fmt.Sprintf("%v (trust the registry's CA with --registry-ca FILE, %s or SSL_CERT_FILE)", cause, EnvCA), err: err}
	}
	var terr *transport.Error
	if errors.As(err, &terr) {
		var parts []string
		for _, d := range terr.Errors {
			code := strings.ToLower(strings.ReplaceAll(string(d.Code), "_", " "))
			if d.Message != "" && !strings.EqualFold(d.Message, code) {
				parts = append(parts, code+": "+d.Message)
			} else {
				parts = append(parts, code)
			}
		}
		if len(parts) == 0 {
			switch terr.StatusCode {
			case http.StatusUnauthorized:
				parts = append(parts, "unauthorized: authentication required")
			case http.StatusForbidden:
				parts = append(parts, "denied: requested access to the resource is denied")
			case http.StatusNotFound:
				parts = append(parts, "not found")
			default:
				parts = append(parts, fmt.Sprintf("unexpected status %d %s", terr.StatusCode, http.StatusText(terr.StatusCode)))
			}
		}
		return &explained{msg: strings.Join(parts, "; "), err: err}
	}
	return err
}

type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }
