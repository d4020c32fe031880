package testenv

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"testing"
)

func TestRegistryTLSAuth(t *testing.T) {
	r := StartRegistry(t, RegistryOptions{TLS: true, Users: map[string]string{"alice": "s3cret"}})
	pool := x509.NewCertPool()
	b, err := os.ReadFile(r.CACert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(b)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	get := func(user, pass string) int {
		req, _ := http.NewRequest("GET", r.URL()+"/v2/", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("", ""); code != 401 {
		t.Errorf("anonymous: %d, want 401", code)
	}
	if code := get("alice", "wrong"); code != 401 {
		t.Errorf("wrong password: %d, want 401", code)
	}
	if code := get("alice", "s3cret"); code != 200 {
		t.Errorf("right password: %d, want 200", code)
	}
	r.Kill()
	if _, err := c.Get(r.URL() + "/v2/"); err == nil {
		t.Errorf("registry still answers after Kill")
	}
	r.Restart(t)
	if code := get("alice", "s3cret"); code != 200 {
		t.Errorf("after Restart: %d, want 200", code)
	}
}

func TestRegistryPlain(t *testing.T) {
	r := StartRegistry(t, RegistryOptions{})
	resp, err := http.Get(r.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /v2/: %d", resp.StatusCode)
	}
	if d := DockerConfig(t, r.Addr, "u", "p"); d == "" {
		t.Error("no docker config dir")
	}
}
