package main

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// fakeAPIServer serves GET /api/v1/nodes/<name> for the nodes given, to
// the bearer token "s3cret" only, over TLS, and points the in-cluster
// environment (KUBERNETES_SERVICE_*, a service account directory) at
// itself. It returns that directory.
func fakeAPIServer(t *testing.T, nodes map[string]string) string {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"kind":"Status","message":"Unauthorized"}`))
			return
		}
		name, ok := strings.CutPrefix(r.URL.Path, "/api/v1/nodes/")
		body, found := nodes[name]
		if r.Method != http.MethodGet || !ok || !found {
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"kind":"Status","message":"nodes \"` + name + `\" not found"}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), ca, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host, port, err := net.SplitHostPort(strings.TrimPrefix(srv.URL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", host)
	t.Setenv("KUBERNETES_SERVICE_PORT", port)
	return dir
}

func TestNodeLocation(t *testing.T) {
	dir := fakeAPIServer(t, map[string]string{
		"node-a": `{"kind":"Node","metadata":{"name":"node-a","labels":{
			"topology.kubernetes.io/region":"eu-west-1","topology.kubernetes.io/zone":"eu-west-1a","rack":"r12"}}}`,
		"node-b": `{"kind":"Node","metadata":{"name":"node-b","labels":{"topology.kubernetes.io/zone":"z"}}}`,
	})
	api, err := inClusterAPI(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		node, labels, want string
		missing            []string
	}{
		{"node-a", defaultLocationLabels, "eu-west-1/eu-west-1a", nil},
		{"node-a", defaultLocationLabels + ",rack", "eu-west-1/eu-west-1a/r12", nil},
		// A location is a path from the widest label: a missing region
		// leaves none, not a zone that would look like a region.
		{"node-b", defaultLocationLabels, "", []string{"topology.kubernetes.io/region", "topology.kubernetes.io/zone"}},
	} {
		labels, err := api.nodeLabels(ctx, tc.node)
		if err != nil {
			t.Fatalf("%s: %v", tc.node, err)
		}
		got, missing := locationFromLabels(labels, tc.labels)
		if got != tc.want || strings.Join(missing, ",") != strings.Join(tc.missing, ",") {
			t.Errorf("%s with %s: location %q missing %v, want %q and %v", tc.node, tc.labels, got, missing, tc.want, tc.missing)
		}
	}
	if _, err := api.nodeLabels(ctx, "node-x"); err == nil || !strings.Contains(err.Error(), `"node-x" not found`) {
		t.Errorf("unknown node: %v, want the API server's not-found message", err)
	}
	api.token = "wrong"
	if _, err := api.nodeLabels(ctx, "node-a"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v, want 401", err)
	}
}

func TestNodeLocationOutsideAPod(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if _, err := inClusterAPI(t.TempDir()); err == nil || !strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Errorf("got %v, want an error naming KUBERNETES_SERVICE_HOST", err)
	}
	fakeAPIServer(t, nil)
	if _, err := inClusterAPI(t.TempDir()); err == nil || !strings.Contains(err.Error(), "automountServiceAccountToken") {
		t.Errorf("got %v, want an error saying the token is not mounted", err)
	}
}

// TestKubernetesAgentArgs runs the agent with the arguments and config of
// examples/kubernetes/agent.yaml, outside a pod: the flags parse, the
// config loads, and the agent stops at the node lookup, naming the flag.
func TestKubernetesAgentArgs(t *testing.T) {
	f, err := os.Open("../kubernetes/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var args []string
	var config string
	dec := yaml.NewDecoder(f)
	for {
		var doc struct {
			Kind string            `yaml:"kind"`
			Data map[string]string `yaml:"data"`
			Spec struct {
				Template struct {
					Spec struct {
						Containers []struct {
							Name string   `yaml:"name"`
							Args []string `yaml:"args"`
						} `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		switch doc.Kind {
		case "ConfigMap":
			config = doc.Data["agent.yaml"]
		case "DaemonSet":
			args = doc.Spec.Template.Spec.Containers[0].Args
		}
	}
	if len(args) == 0 || args[0] != "agent" || config == "" {
		t.Fatalf("agent.yaml: args %q, config %d bytes", args, len(config))
	}
	cfgPath := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	args = slices.Clone(args[1:])
	for i, a := range args {
		switch a {
		case "/etc/eagle/agent.yaml":
			args[i] = cfgPath
		case "$(NODE_NAME)":
			args[i] = "node-a"
		}
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	var stderr strings.Builder
	err = runAgent(t.Context(), args, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "-location-from-node node-a") || !strings.Contains(err.Error(), "KUBERNETES_SERVICE_HOST") {
		t.Fatalf("agent %q: %v (stderr %q); want it to stop at the node lookup", args, err, stderr.String())
	}
}
