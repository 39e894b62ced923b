package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// defaultLocationLabels are the node labels a location is made of, widest
// first: Kubernetes' well-known topology labels.
const defaultLocationLabels = "topology.kubernetes.io/region,topology.kubernetes.io/zone"

// serviceAccountDir is where Kubernetes mounts a pod's service account
// token and the cluster's CA.
const serviceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// kubeAPI reads objects from the Kubernetes API server with the pod's
// service account.
type kubeAPI struct {
	base   string // https://host:port
	token  string
	client *http.Client
}

// inClusterAPI returns the API server of the cluster the pod runs in, as
// every in-cluster client finds it: KUBERNETES_SERVICE_HOST and _PORT, and
// the service account's token and CA under dir.
func inClusterAPI(dir string) (*kubeAPI, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set: not running in a pod")
	}
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		return nil, fmt.Errorf("service account token (automountServiceAccountToken must be true): %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("service account CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("service account CA %s: no PEM certificate", filepath.Join(dir, "ca.crt"))
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &kubeAPI{
		base:   "https://" + net.JoinHostPort(host, port),
		token:  strings.TrimSpace(string(token)),
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second},
	}, nil
}

// nodeLabels returns the labels of the node named name.
func (k *kubeAPI) nodeLabels(ctx context.Context, name string) (map[string]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.base+"/api/v1/nodes/"+url.PathEscape(name), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+k.token)
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var st struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(body, &st)
		return nil, fmt.Errorf("get node %q: %s: %s", name, resp.Status, st.Message)
	}
	var node struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(body, &node); err != nil {
		return nil, fmt.Errorf("get node %q: %w", name, err)
	}
	return node.Metadata.Labels, nil
}

// locationFromLabels joins the values of labels (comma-separated, widest
// first) into a location such as "eu-west-1/eu-west-1a". It stops at the
// first label the node lacks, and reports the missing labels; an empty
// location means the node has none of them.
func locationFromLabels(nodeLabels map[string]string, labels string) (location string, missing []string) {
	var segs []string
	for _, l := range strings.Split(labels, ",") {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		v := nodeLabels[l]
		if v == "" || len(missing) > 0 {
			missing = append(missing, l)
			continue
		}
		segs = append(segs, v)
	}
	return strings.Join(segs, "/"), missing
}

// nodeLocation is the location of the Kubernetes node named node, from
// its labels (see locationFromLabels), read with the pod's service
// account. A node that lacks the labels gets no location, with a warning:
// the node still pulls, only without topology-aware peers. An API server
// that cannot be asked is an error: the operator asked for the lookup.
func nodeLocation(ctx context.Context, node, labels string, warn func(msg string, args ...any)) (string, error) {
	api, err := inClusterAPI(serviceAccountDir)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nl, err := api.nodeLabels(ctx, node)
	if err != nil {
		return "", err
	}
	loc, missing := locationFromLabels(nl, labels)
	if len(missing) > 0 {
		warn("the node lacks location labels; its location stops before them", "node", node, "missing", strings.Join(missing, ","), "location", loc)
	}
	return loc, nil
}
