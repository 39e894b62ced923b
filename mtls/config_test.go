package mtls

import (
	"bytes"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // in the error; nil: valid
	}{
		{"zero", Config{}, []string{"tls.ca, tls.cert and tls.key are required (or set tls.insecure: true)"}},
		{"cert missing", Config{CA: "ca.pem", Key: "k.pem"}, []string{"tls.cert is required (or set tls.insecure: true)"}},
		{"key and ca missing", Config{Cert: "c.pem"}, []string{"tls.ca and tls.key are required"}},
		{"insecure and files", Config{Insecure: true, Cert: "c.pem", Key: "k.pem"}, []string{"tls.insecure", "tls.cert, tls.key"}},
		{"insecure and one file", Config{Insecure: true, CA: "ca.pem"}, []string{"tls.insecure", "tls.ca"}},
		{"insecure", Config{Insecure: true}, nil},
		{"files", Config{CA: "ca.pem", Cert: "c.pem", Key: "k.pem"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, err := Load(tc.cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Load: %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestConfigYAML(t *testing.T) {
	var v struct {
		TLS Config `yaml:"tls"`
	}
	dec := yaml.NewDecoder(strings.NewReader("tls: {ca: /etc/eagle/ca.pem, cert: /etc/eagle/a.pem, key: /etc/eagle/a-key.pem}\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	if v.TLS.CA != "/etc/eagle/ca.pem" || v.TLS.Cert != "/etc/eagle/a.pem" || v.TLS.Key != "/etc/eagle/a-key.pem" || v.TLS.Insecure {
		t.Errorf("decoded %+v", v.TLS)
	}
	if err := yaml.Unmarshal([]byte("tls: {insecure: true}\n"), &v); err != nil || !v.TLS.Insecure {
		t.Errorf("insecure: %v %+v", err, v.TLS)
	}
}

func TestInsecureIsLogged(t *testing.T) {
	var buf bytes.Buffer
	c, err := Load(Config{Insecure: true, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if c != nil || err != nil {
		t.Fatalf("Load = %v, %v", c, err)
	}
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "insecure") {
		t.Errorf("no warning logged: %q", buf.String())
	}
}

func TestLoadErrors(t *testing.T) {
	ca := newTestCA(t, "cluster")
	foreign := newTestCA(t, "other cluster")
	dir := t.TempDir()
	good, err := ca.WriteMember(dir, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := ca.WriteMember(dir, "agent-2")
	if err != nil {
		t.Fatal(err)
	}
	outsider, err := foreign.WriteMember(t.TempDir(), "agent-3")
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	with := func(f func(*Config)) Config { c := good; f(&c); return c }
	tests := []struct {
		name string
		cfg  Config
		want []string
		is   error
	}{
		{"missing ca", with(func(c *Config) { c.CA = missing }), []string{"tls.ca", missing}, fs.ErrNotExist},
		{"missing cert", with(func(c *Config) { c.Cert = missing }), []string{"tls.cert", missing}, fs.ErrNotExist},
		{"missing key", with(func(c *Config) { c.Key = missing }), []string{"tls.key", missing}, fs.ErrNotExist},
		{"garbage ca", with(func(c *Config) { c.CA = garbage }), []string{"tls.ca", garbage, "no PEM CERTIFICATE"}, nil},
		{"member cert as ca", with(func(c *Config) { c.CA = other.Cert }), []string{"tls.ca", other.Cert, "not a CA"}, nil},
		{"garbage cert", with(func(c *Config) { c.Cert = garbage }), []string{"tls.cert", garbage}, nil},
		{"key of another member", with(func(c *Config) { c.Key = other.Key }), []string{"tls.cert", good.Cert, other.Key, "does not match"}, nil},
		{"cert from another CA", with(func(c *Config) { c.Cert, c.Key = outsider.Cert, outsider.Key }), []string{"tls.cert", outsider.Cert, good.CA, "unknown authority"}, ErrNotMember},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.cfg)
			if err == nil {
				t.Fatalf("Load succeeded: %v", c)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not wrap %v", err, tc.is)
			}
		})
	}
	if _, err := Load(good); err != nil {
		t.Errorf("good config: %v", err)
	}
}
