package kubernetes

import (
	"cmp"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"gopkg.in/yaml.v3"

	"github.com/eagle-p2p/eagle"
	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/p2p"
	"github.com/eagle-p2p/eagle/proxy"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/storage"
	"github.com/eagle-p2p/eagle/tracker"
)

// The YAML files of the examples/eagle subcommands. Those structs live in
// package main and cannot be imported; these mirror their top-level keys
// and decode every section into the real config struct.
type trackerFile struct {
	Listen   string `yaml:"listen"`
	LogLevel string `yaml:"log_level"`
	// Tracker is the binary's tracker section: tracker.Config with the
	// handout policy by name.
	Tracker struct {
		tracker.Config `yaml:",inline"`
		Policy         string `yaml:"policy"`
	} `yaml:"tracker"`
	TLS mtls.Config `yaml:"tls"`
}

type seederFile struct {
	Listen        string        `yaml:"listen"`
	MetricsListen string        `yaml:"metrics_listen"`
	DataDir       string        `yaml:"data_dir"`
	LogLevel      string        `yaml:"log_level"`
	CacheSize     storage.Size  `yaml:"cache_size"`
	P2P           p2p.Config    `yaml:"p2p"`
	Seeder        seeder.Config `yaml:"seeder"`
	TLS           mtls.Config   `yaml:"tls"`
}

type agentFile struct {
	Listen   string       `yaml:"listen"`
	LogLevel string       `yaml:"log_level"`
	Node     eagle.Config `yaml:",inline"`
}

const ns = "eagle"

func load(t *testing.T) *manifests {
	t.Helper()
	m, err := loadManifests(".")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestObjects checks that the manifests hold exactly the expected objects,
// all in the eagle namespace, and that kustomization.yaml lists every file
// and names the image every container runs.
func TestObjects(t *testing.T) {
	m := load(t)
	got := map[string][]string{
		"Namespace":   slices.Sorted(maps.Keys(m.namespaces)),
		"ConfigMap":   slices.Sorted(maps.Keys(m.configMaps)),
		"Service":     slices.Sorted(maps.Keys(m.services)),
		"Deployment":  slices.Sorted(maps.Keys(m.deployments)),
		"StatefulSet": slices.Sorted(maps.Keys(m.statefulSets)),
		"DaemonSet":   slices.Sorted(maps.Keys(m.daemonSets)),

		"ServiceAccount":     slices.Sorted(maps.Keys(m.serviceAccounts)),
		"ClusterRole":        slices.Sorted(maps.Keys(m.clusterRoles)),
		"ClusterRoleBinding": slices.Sorted(maps.Keys(m.clusterRoleBindings)),
	}
	want := map[string][]string{
		"Namespace":   {"eagle"},
		"ConfigMap":   {"eagle-agent", "eagle-seeder", "eagle-tracker"},
		"Service":     {"eagle-redis", "eagle-seeder", "eagle-tracker"},
		"Deployment":  {"eagle-redis", "eagle-tracker"},
		"StatefulSet": {"eagle-seeder"},
		"DaemonSet":   {"eagle-agent"},

		"ServiceAccount":     {"eagle-agent"},
		"ClusterRole":        {"eagle-agent-node-reader"},
		"ClusterRoleBinding": {"eagle-agent-node-reader"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	for _, c := range m.configMaps {
		checkNamespace(t, "ConfigMap", c.header)
	}
	for _, s := range m.services {
		checkNamespace(t, "Service", s.header)
	}
	for _, a := range m.serviceAccounts {
		checkNamespace(t, "ServiceAccount", a.header)
	}
	for _, w := range m.workloads() {
		if w.meta.Namespace != ns {
			t.Errorf("%s %s: namespace %q, want %q", w.kind, w.name, w.meta.Namespace, ns)
		}
	}

	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var k kustomization
	if err := unmarshalStrict(b, &k); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("kustomization.yaml: %s %s", k.APIVersion, k.Kind)
	}
	if r := slices.Sorted(slices.Values(k.Resources)); !slices.Equal(r, m.files) {
		t.Errorf("kustomization resources %v, manifest files %v", r, m.files)
	}
	if len(k.Images) != 1 {
		t.Fatalf("kustomization images %+v, want one", k.Images)
	}
	for _, w := range m.workloads() {
		if w.kind == "Deployment" && w.name == redisDeployment {
			continue // Redis's own image; see TestRedis
		}
		for _, c := range slices.Concat(w.template.Spec.InitContainers, w.template.Spec.Containers) {
			name, _, _ := strings.Cut(c.Image, ":")
			if name != k.Images[0].Name {
				t.Errorf("%s %s: container %s runs %s, which the kustomization's image %s does not cover", w.kind, w.name, c.Name, c.Image, k.Images[0].Name)
			}
			if len(c.Args) == 0 || !slices.Contains([]string{"tracker", "seeder", "agent"}, c.Args[0]) || len(c.Command) != 0 {
				t.Errorf("%s %s: container %s: args %q; want an eagle subcommand (the image's entrypoint is eagle)", w.kind, w.name, c.Name, c.Args)
			}
		}
	}
}

func checkNamespace(t *testing.T, kind string, h header) {
	t.Helper()
	if h.Metadata.Namespace != ns {
		t.Errorf("%s %s: namespace %q, want %q", kind, h.Metadata.Name, h.Metadata.Namespace, ns)
	}
}

// TestWorkloads checks selectors, ports, probes, volumes and the security
// settings every pod shares.
func TestWorkloads(t *testing.T) {
	m := load(t)
	for _, w := range m.workloads() {
		what := w.kind + " " + w.name
		spec := w.template.Spec
		if len(w.selector.MatchLabels) == 0 || !subset(w.selector.MatchLabels, w.template.Metadata.Labels) {
			t.Errorf("%s: selector %v does not select its own template %v", what, w.selector.MatchLabels, w.template.Metadata.Labels)
		}
		volumes := map[string]bool{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = true
		}
		if w.kind == "StatefulSet" {
			for _, v := range m.statefulSets[w.name].Spec.VolumeClaimTemplates {
				volumes[v.Metadata.Name] = true
			}
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			cwhat := what + " container " + c.Name
			for _, vm := range c.VolumeMounts {
				if !volumes[vm.Name] {
					t.Errorf("%s mounts volume %q, which the pod does not have", cwhat, vm.Name)
				}
			}
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []string{"ALL"}) || len(sc.Capabilities.Add) != 0 {
				t.Errorf("%s: want allowPrivilegeEscalation false, readOnlyRootFilesystem true, all capabilities dropped", cwhat)
			}
			if c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
				t.Errorf("%s: want a memory request and limit", cwhat)
			}
		}
		for _, c := range spec.Containers {
			cwhat := what + " container " + c.Name
			for _, p := range []*probe{c.ReadinessProbe, c.LivenessProbe} {
				if p == nil {
					t.Errorf("%s: want a readiness and a liveness probe", cwhat)
					continue
				}
				if (p.TCPSocket != nil && p.TCPSocket.Host != "") || (p.HTTPGet != nil && p.HTTPGet.Host != "") {
					t.Errorf("%s: a probe sets host, which Pod Security baseline forbids (Kubernetes 1.34+)", cwhat)
				}
				switch {
				case p.TCPSocket != nil:
					if _, ok := containerPort(c, p.TCPSocket.Port); !ok {
						t.Errorf("%s: tcpSocket probe port %+v is not a container port", cwhat, p.TCPSocket.Port)
					}
				case p.GRPC != nil:
					if _, ok := containerPort(c, intOrString{Int: p.GRPC.Port}); !ok {
						t.Errorf("%s: grpc probe port %d is not a container port", cwhat, p.GRPC.Port)
					}
				case p.HTTPGet != nil:
					if _, ok := containerPort(c, p.HTTPGet.Port); !ok {
						t.Errorf("%s: httpGet probe port %+v is not a container port", cwhat, p.HTTPGet.Port)
					}
				default:
					t.Errorf("%s: probe without an action", cwhat)
				}
			}
		}
	}

	// Each Service selects exactly one workload, and each of its ports
	// lands on a port of that workload's container.
	for name, s := range m.services {
		var selected []workload
		for _, w := range m.workloads() {
			if len(s.Spec.Selector) > 0 && subset(s.Spec.Selector, w.template.Metadata.Labels) {
				selected = append(selected, w)
			}
		}
		if len(selected) != 1 {
			t.Errorf("Service %s selects %d workloads, want 1", name, len(selected))
			continue
		}
		c := selected[0].template.Spec.Containers[0]
		for _, p := range s.Spec.Ports {
			target := p.TargetPort
			if !target.IsStr && target.Int == 0 {
				target.Int = p.Port
			}
			n, ok := containerPort(c, target)
			if !ok {
				t.Errorf("Service %s port %s: target %+v is not a port of %s %s", name, p.Name, p.TargetPort, selected[0].kind, selected[0].name)
			}
			if p.Protocol != "TCP" {
				t.Errorf("Service %s port %s: protocol %q, want TCP", name, p.Name, p.Protocol)
			}
			if n != p.Port {
				t.Errorf("Service %s port %s: %d → container port %d; keep them equal, the configs use the Service port", name, p.Name, p.Port, n)
			}
		}
	}
}

// subset reports whether every label of sel is in labels.
func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// containerPort resolves a port number or name against c's ports.
func containerPort(c container, p intOrString) (int, bool) {
	for _, cp := range c.Ports {
		if (p.IsStr && cp.Name == p.Str) || (!p.IsStr && cp.ContainerPort == p.Int) {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// namedPort returns the number of c's port called name.
func namedPort(t *testing.T, c container, name string) int {
	t.Helper()
	n, ok := containerPort(c, intOrString{Str: name, IsStr: true})
	if !ok {
		t.Fatalf("container %s has no port named %q", c.Name, name)
	}
	return n
}

// addrPort returns the port of a listen address.
func addrPort(t *testing.T, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	return n
}

// configOf finds the file that c's "--config <path>" names: a key of the
// ConfigMap mounted at the path's directory. It decodes the file into v
// with unknown keys refused, as the binary does.
func configOf(t *testing.T, m *manifests, pod podSpec, c container, v any) {
	t.Helper()
	i := slices.Index(c.Args, "--config")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("container %s: no --config in %q", c.Name, c.Args)
	}
	file := c.Args[i+1]
	dir, key := path.Split(file)
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) != path.Clean(dir) {
			continue
		}
		for _, vol := range pod.Volumes {
			if vol.Name != vm.Name || vol.ConfigMap == nil {
				continue
			}
			cm, ok := m.configMaps[vol.ConfigMap.Name]
			if !ok {
				t.Fatalf("container %s: volume %s: no ConfigMap %s", c.Name, vol.Name, vol.ConfigMap.Name)
			}
			data, ok := cm.Data[key]
			if !ok {
				t.Fatalf("container %s: ConfigMap %s has no key %s (for --config %s)", c.Name, cm.Metadata.Name, key, file)
			}
			if err := unmarshalStrict([]byte(data), v); err != nil {
				t.Fatalf("ConfigMap %s key %s: %v", cm.Metadata.Name, key, err)
			}
			return
		}
	}
	t.Fatalf("container %s: --config %s is not in a mounted ConfigMap", c.Name, file)
}

// checkMounted fails unless dir is a writable volume mount of c (the root
// filesystem is read-only).
func checkMounted(t *testing.T, c container, what, dir string) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		if path.Clean(vm.MountPath) == path.Clean(dir) && !vm.ReadOnly {
			return
		}
	}
	t.Errorf("container %s: %s %s is not a writable volume mount", c.Name, what, dir)
}

// trackerAnnounceURL is the announce URL of the tracker Service: https,
// since the tracker serves cluster members over TLS.
func trackerAnnounceURL(t *testing.T, m *manifests) string {
	t.Helper()
	s, ok := m.services["eagle-tracker"]
	if !ok || len(s.Spec.Ports) != 1 {
		t.Fatal("want a Service eagle-tracker with one port")
	}
	return fmt.Sprintf("https://%s.%s.svc:%d/announce", s.Metadata.Name, s.Metadata.Namespace, s.Spec.Ports[0].Port)
}

// Secret names and member names of the parts' cluster credentials: the
// Secret eagle-tls-<member> holds the files "eagle certs --names
// tracker,seeder,agent" writes for that member, under the same names, so
// that "kubectl create secret generic --from-file" needs no renaming.
var tlsSecrets = map[string]string{"tracker": "eagle-tls-tracker", "seeder": "eagle-tls-seeder", "agent": "eagle-tls-agent"}

// checkTLS checks that cfg (the tls: section of the config container c
// runs) makes the part a cluster member: the three files, not insecure,
// each a key of the part's Secret mounted read-only in c, readable by the
// container's user and no one else.
func checkTLS(t *testing.T, pod podSpec, c container, cfg mtls.Config, member string) {
	t.Helper()
	what := "container " + c.Name
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: tls: %v", what, err)
	}
	if cfg.Insecure {
		t.Errorf("%s: tls.insecure is set: the cluster's planes would be open to anyone who reaches them", what)
		return
	}
	secretName := tlsSecrets[member]
	runsAsRoot := c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil && *c.SecurityContext.RunAsUser == 0
	for _, f := range []struct{ key, file, want string }{
		{"tls.ca", cfg.CA, mtls.CAFileName},
		{"tls.cert", cfg.Cert, member + ".pem"},
		{"tls.key", cfg.Key, member + "-key.pem"},
	} {
		dir, name := path.Split(f.file)
		found := false
		for _, vm := range c.VolumeMounts {
			if path.Clean(vm.MountPath) != path.Clean(dir) {
				continue
			}
			for _, vol := range pod.Volumes {
				if vol.Name != vm.Name {
					continue
				}
				sv := vol.Secret
				if sv == nil || sv.SecretName != secretName {
					t.Errorf("%s: %s %s: volume %s is not the Secret %s", what, f.key, f.file, vol.Name, secretName)
					continue
				}
				found = true
				if !vm.ReadOnly {
					t.Errorf("%s: the Secret %s is mounted writable", what, secretName)
				}
				if sv.Optional != nil && *sv.Optional {
					t.Errorf("%s: the Secret %s is optional: without it the part would not start anyway", what, secretName)
				}
				key, mode := name, sv.DefaultMode
				if len(sv.Items) > 0 {
					key = ""
					for _, it := range sv.Items {
						if it.Path == name {
							key = it.Key
							if it.Mode != nil {
								mode = it.Mode
							}
						}
					}
				}
				if key == "" {
					t.Errorf("%s: %s %s is no item of the Secret %s's volume", what, f.key, f.file, secretName)
				} else if key != f.want {
					t.Errorf("%s: %s %s is the Secret %s's key %q, want %q (the name eagle certs gives it)", what, f.key, f.file, secretName, key, f.want)
				}
				switch {
				case mode == nil:
					t.Errorf("%s: the Secret %s has no defaultMode: its files would be world-readable (0644)", what, secretName)
				case *mode&0o007 != 0:
					t.Errorf("%s: the Secret %s's files have mode %#o: readable by others", what, secretName, *mode)
				case !runsAsRoot && (pod.SecurityContext == nil || pod.SecurityContext.FSGroup == nil || *mode&0o040 == 0):
					t.Errorf("%s runs as a non-root user: the Secret %s's files (mode %#o) need the pod's fsGroup and group read", what, secretName, *mode)
				}
			}
		}
		if !found {
			t.Errorf("%s: %s %s is not in a mount of the Secret %s", what, f.key, f.file, secretName)
		}
	}
}

// checkHTTPProbes checks that c's readiness and liveness probes GET /readyz
// and /healthz with scheme on port.
func checkHTTPProbes(t *testing.T, c container, scheme string, port int) {
	t.Helper()
	for _, p := range []struct {
		name, path string
		probe      *probe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("container %s: want an httpGet %s probe", c.Name, p.name)
			continue
		}
		g := p.probe.HTTPGet
		n, _ := containerPort(c, g.Port)
		if g.Path != p.path || cmp.Or(g.Scheme, "HTTP") != scheme || n != port {
			t.Errorf("container %s: %s probe GETs %s://:%d%s, want %s://:%d%s", c.Name, p.name, cmp.Or(g.Scheme, "HTTP"), n, g.Path, scheme, port, p.path)
		}
	}
}

func TestTracker(t *testing.T) {
	m := load(t)
	d := m.deployments["eagle-tracker"]
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	var cfg trackerFile
	configOf(t, m, pod, c, &cfg)
	if p := cfg.Tracker.Policy; p != "topology" {
		t.Errorf("tracker policy %q, want topology: the agents announce their nodes' locations (see TestAgentLocation)", p)
	}
	if err := cfg.Tracker.Validate(); err != nil {
		t.Errorf("tracker config: %v", err)
	}
	port := namedPort(t, c, "https")
	if got := addrPort(t, "listen", cfg.Listen); got != port {
		t.Errorf("tracker listens on %d, its container port is %d", got, port)
	}
	// No single point of failure: replicas that share their peers in
	// Redis, so that any of them answers for the cluster.
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Error("run at least two tracker replicas: one is a single point of failure")
	}
	if cfg.Tracker.Store != tracker.StoreRedis {
		t.Errorf("tracker.store %q: replicas must share their peers, want %q", cfg.Tracker.Store, tracker.StoreRedis)
	}
	checkRedisAddr(t, m, cfg.Tracker.Redis.Addr)
	checkTLS(t, pod, c, cfg.TLS, "tracker")
	// With TLS on the tracker serves HTTPS only; its probes, with no
	// client certificate, are admitted.
	checkHTTPProbes(t, c, "HTTPS", port)
}

// redisDeployment is the Redis the tracker replicas share.
const redisDeployment = "eagle-redis"

// checkRedisAddr checks that addr, the trackers' tracker.redis.addr, names
// a Service of the manifests by its DNS name in the eagle namespace, on a
// port of that Service, and that the Service leads to the Redis
// Deployment's port 6379.
func checkRedisAddr(t *testing.T, m *manifests, addr string) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("tracker.redis.addr %q: %v", addr, err)
	}
	name, rest, _ := strings.Cut(host, ".")
	if rest != ns+".svc" && rest != ns+".svc.cluster.local" {
		t.Errorf("tracker.redis.addr %q: want <service>.%s.svc", addr, ns)
	}
	svc, ok := m.services[name]
	if !ok {
		t.Fatalf("tracker.redis.addr %q: no Service %q", addr, name)
	}
	port, _ := strconv.Atoi(p)
	i := -1
	for j, sp := range svc.Spec.Ports {
		if sp.Port == port {
			i = j
		}
	}
	if i < 0 {
		t.Fatalf("tracker.redis.addr %q: Service %s has no port %d", addr, name, port)
	}
	d, ok := m.deployments[redisDeployment]
	if !ok {
		t.Fatalf("no Deployment %s", redisDeployment)
	}
	if len(svc.Spec.Selector) == 0 || !subset(svc.Spec.Selector, d.Spec.Template.Metadata.Labels) {
		t.Errorf("tracker.redis.addr %q: Service %s does not select the Deployment %s", addr, name, redisDeployment)
	}
	target := svc.Spec.Ports[i].TargetPort
	if !target.IsStr && target.Int == 0 {
		target.Int = port
	}
	if n, ok := containerPort(d.Spec.Template.Spec.Containers[0], target); !ok || n != 6379 {
		t.Errorf("tracker.redis.addr %q: Service %s port %d leads to container port %d, want Redis's 6379", addr, name, port, n)
	}
}

// The Redis the trackers share: the redis image, one replica replaced
// with Recreate (two at once would split the peers between them), no
// persistence (peers re-announce within an interval), and a memory bound
// that refuses writes rather than evicting entries.
func TestRedis(t *testing.T) {
	m := load(t)
	d := m.deployments[redisDeployment]
	if d == nil {
		t.Fatalf("no Deployment %s", redisDeployment)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy == nil || d.Spec.Strategy.Type != "Recreate" {
		t.Error("want one Redis replica, replaced with strategy Recreate")
	}
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 || len(pod.InitContainers) != 0 {
		t.Fatalf("want one Redis container, have %d (and %d init)", len(pod.Containers), len(pod.InitContainers))
	}
	c := pod.Containers[0]
	if name, tag, _ := strings.Cut(c.Image, ":"); name != "redis" || !strings.HasPrefix(tag, "7") {
		t.Errorf("Redis runs %q, want redis:7-alpine", c.Image)
	}
	args := map[string]string{}
	if len(c.Args) == 0 || c.Args[0] != "redis-server" || len(c.Args)%2 != 1 || len(c.Command) != 0 {
		t.Fatalf("Redis args %q: want redis-server --option value ...", c.Args)
	}
	for i := 1; i+1 < len(c.Args); i += 2 {
		args[c.Args[i]] = c.Args[i+1]
	}
	for opt, want := range map[string]string{"--save": "", "--appendonly": "no", "--maxmemory-policy": "noeviction"} {
		if got, ok := args[opt]; !ok || got != want {
			t.Errorf("Redis %s %q, want %q", opt, got, want)
		}
	}
	if args["--maxmemory"] == "" {
		t.Error("Redis has no --maxmemory: it would grow until the container's limit kills it")
	}
	if sc := pod.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Error("Redis must run as a non-root user (the image's redis user, 999)")
	}
	if namedPort(t, c, "redis") != 6379 {
		t.Error("Redis's port named redis is not 6379")
	}
}

func TestSeeder(t *testing.T) {
	m := load(t)
	s := m.statefulSets["eagle-seeder"]
	pod := s.Spec.Template.Spec
	c := pod.Containers[0]
	var cfg seederFile
	configOf(t, m, pod, c, &cfg)
	if err := cfg.Seeder.Validate(); err != nil {
		t.Errorf("seeder config: %v", err)
	}
	if cfg.P2P.DataDir == "" {
		cfg.P2P.DataDir = path.Join(cfg.DataDir, "p2p") // the binary's default
	}
	cfg.P2P.TLS = cfg.TLS // as the binary does: the peer is a member with the seeder's files
	if err := cfg.P2P.Validate(); err != nil {
		t.Errorf("seeder p2p config: %v", err)
	}
	checkTLS(t, pod, c, cfg.TLS, "seeder")
	// The gRPC port admits members only: the kubelet's plaintext gRPC
	// probe would fail. The probes use the metrics listener.
	metrics := namedPort(t, c, "metrics")
	if cfg.MetricsListen == "" || addrPort(t, "metrics_listen", cfg.MetricsListen) != metrics {
		t.Errorf("seeder metrics_listen %q, want the container port metrics (%d)", cfg.MetricsListen, metrics)
	}
	checkHTTPProbes(t, c, "HTTP", metrics)
	if got, want := addrPort(t, "listen", cfg.Listen), namedPort(t, c, "grpc"); got != want {
		t.Errorf("seeder listens on %d, its container port is %d", got, want)
	}
	if got, want := addrPort(t, "p2p.listen_addr", cfg.P2P.ListenAddr), namedPort(t, c, "peer"); got != want {
		t.Errorf("seeder peer port %d, its container port is %d", got, want)
	}
	if !slices.Equal(cfg.P2P.Trackers, []string{trackerAnnounceURL(t, m)}) {
		t.Errorf("seeder trackers %v, want [%s]", cfg.P2P.Trackers, trackerAnnounceURL(t, m))
	}
	checkMounted(t, c, "data_dir", cfg.DataDir)
	if len(s.Spec.VolumeClaimTemplates) != 1 || s.Spec.VolumeClaimTemplates[0].Spec.Resources.Requests["storage"] == "" {
		t.Error("want one volumeClaimTemplate with a storage request")
	}
	svc, ok := m.services[s.Spec.ServiceName]
	if !ok || svc.Spec.ClusterIP != "None" {
		t.Errorf("StatefulSet serviceName %q: want a headless Service of that name", s.Spec.ServiceName)
	}
	if len(cfg.Seeder.AllowedUpstreams) == 0 {
		t.Error("seeder.allowed_upstreams is empty: anyone reaching the gRPC port could make the seeders fetch from anywhere")
	}
}

func TestAgent(t *testing.T) {
	m := load(t)
	ds := m.daemonSets["eagle-agent"]
	pod := ds.Spec.Template.Spec
	if !pod.HostNetwork {
		t.Error("the agent must run on the host network: containerd on the host reaches it at 127.0.0.1")
	}
	if pod.DNSPolicy != "ClusterFirstWithHostNet" {
		t.Errorf("dnsPolicy %q: a host-network pod needs ClusterFirstWithHostNet to resolve the tracker and seeders", pod.DNSPolicy)
	}
	if len(pod.Tolerations) == 0 {
		t.Error("want tolerations so that every node, tainted or not, gets an agent")
	}
	c := pod.Containers[0]
	var cfg agentFile
	configOf(t, m, pod, c, &cfg)
	node := cfg.Node
	if err := node.Validate(); err != nil {
		t.Fatalf("agent config: %v", err)
	}
	checkTLS(t, pod, c, node.TLS, "agent")
	host, _, _ := net.SplitHostPort(cfg.Listen)
	if host != "127.0.0.1" {
		t.Errorf("agent listens on %q: on the host network it must listen on the loopback only", cfg.Listen)
	}
	if got, want := addrPort(t, "listen", cfg.Listen), namedPort(t, c, "registry"); got != want {
		t.Errorf("agent listens on %d, its container port is %d", got, want)
	}
	if got, want := addrPort(t, "p2p.listen_addr", node.P2P.ListenAddr), namedPort(t, c, "peer"); got != want {
		t.Errorf("agent peer port %d, its container port is %d", got, want)
	}
	if !slices.Equal(node.P2P.Trackers, []string{trackerAnnounceURL(t, m)}) {
		t.Errorf("agent trackers %v, want [%s]", node.P2P.Trackers, trackerAnnounceURL(t, m))
	}
	checkMounted(t, c, "data_dir", node.DataDir)
	// The kubelet probes the node's address: a probe of the loopback-only
	// registry port would always fail.
	for _, p := range []*probe{c.ReadinessProbe, c.LivenessProbe} {
		if p != nil && p.TCPSocket != nil {
			if n, _ := containerPort(c, p.TCPSocket.Port); n == namedPort(t, c, "registry") {
				t.Error("an agent probe targets the registry port, which listens on 127.0.0.1 only")
			}
		}
	}

	// The seeders are the StatefulSet's headless Service, whose name
	// resolves to every ready seeder pod: scaling needs no agent restart.
	s := m.statefulSets["eagle-seeder"]
	svc := m.services[s.Spec.ServiceName]
	if svc.Spec.ClusterIP != "None" {
		t.Errorf("the seeders' Service %s is not headless (clusterIP %q): its name would resolve to one virtual IP, not to every seeder", svc.Metadata.Name, svc.Spec.ClusterIP)
	}
	var grpcPort int
	for _, p := range svc.Spec.Ports {
		if p.Name == "grpc" {
			grpcPort = p.Port
		}
	}
	want := []string{fmt.Sprintf("%s.%s.svc:%d", svc.Metadata.Name, svc.Metadata.Namespace, grpcPort)}
	if !slices.Equal(node.Seeders, want) {
		t.Errorf("agent seeders %v, want the seeders' headless Service %v", node.Seeders, want)
	}

	// Every registry the agent mirrors is one the seeders may fetch from.
	var seederCfg seederFile
	configOf(t, m, s.Spec.Template.Spec, s.Spec.Template.Spec.Containers[0], &seederCfg)
	for _, up := range agentRegistries(node.Proxy) {
		u := upstreamURL(t, up)
		if !slices.Contains(seederCfg.Seeder.AllowedUpstreams, u.Host) {
			t.Errorf("the agent mirrors %s (%s), which seeder.allowed_upstreams %v leaves out", up, u.Host, seederCfg.Seeder.AllowedUpstreams)
		}
	}
}

// Every part runs with mutual TLS: its config names certificates from
// the part's Secret (none insecure), every tracker URL is https, no probe
// speaks plaintext gRPC to a port that admits members only, and the
// Secrets are only referenced, never defined, here: their keys are the
// operator's to create.
func TestTLS(t *testing.T) {
	m := load(t)
	secrets := map[string]bool{}
	for _, w := range m.workloads() {
		for _, v := range w.template.Spec.Volumes {
			if v.Secret != nil {
				secrets[v.Secret.SecretName] = true
			}
		}
		for _, c := range w.template.Spec.Containers {
			for _, p := range []*probe{c.ReadinessProbe, c.LivenessProbe} {
				if p != nil && p.GRPC != nil {
					t.Errorf("%s %s container %s: a gRPC probe cannot pass the seeders' mutual TLS", w.kind, w.name, c.Name)
				}
			}
		}
	}
	if got, want := slices.Sorted(maps.Keys(secrets)), slices.Sorted(maps.Values(tlsSecrets)); !slices.Equal(got, want) {
		t.Errorf("the workloads mount the Secrets %v, want %v", got, want)
	}

	var trackers []string
	for name, cm := range m.configMaps {
		for key, data := range cm.Data {
			var doc struct {
				TLS *mtls.Config `yaml:"tls"`
				P2P struct {
					Trackers []string `yaml:"trackers"`
				} `yaml:"p2p"`
			}
			if err := yaml.Unmarshal([]byte(data), &doc); err != nil {
				t.Fatalf("ConfigMap %s key %s: %v", name, key, err)
			}
			if doc.TLS == nil || doc.TLS.Insecure {
				t.Errorf("ConfigMap %s key %s: tls %+v, want the cluster certificates", name, key, doc.TLS)
			}
			trackers = append(trackers, doc.P2P.Trackers...)
		}
	}
	if len(trackers) == 0 {
		t.Error("no config names a tracker")
	}
	for _, u := range trackers {
		if !strings.HasPrefix(u, "https://") {
			t.Errorf("tracker URL %q: want https (the tracker admits members over TLS)", u)
		}
	}
}

// agentRegistries are the registries "eagle agent --write-hosts-toml"
// writes hosts.toml files for.
func agentRegistries(p proxy.Config) []string {
	var regs []string
	if p.DefaultUpstream != "" {
		regs = append(regs, p.DefaultUpstream)
	}
	return append(regs, p.Upstreams...)
}

// upstreamURL resolves an upstream as the proxy does: Docker Hub's names
// mean registry-1.docker.io, no scheme means https.
func upstreamURL(t *testing.T, up string) *url.URL {
	t.Helper()
	switch strings.ToLower(up) {
	case "docker.io", "index.docker.io":
		up = "registry-1.docker.io"
	}
	if !strings.Contains(up, "://") {
		up = "https://" + up
	}
	u, err := url.Parse(up)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// The init container runs the agent's own config with --write-hosts-toml
// into the host's /etc/containerd/certs.d. The files it writes for that
// config, read back with containerd's own hosts.toml code, make the agent
// on 127.0.0.1 the first host for each registry and the registry itself
// the fallback.
func TestAgentInitWritesHostsTOML(t *testing.T) {
	m := load(t)
	ds := m.daemonSets["eagle-agent"]
	pod := ds.Spec.Template.Spec
	if len(pod.InitContainers) != 1 {
		t.Fatalf("want one init container, have %d", len(pod.InitContainers))
	}
	ic, c := pod.InitContainers[0], pod.Containers[0]
	i := slices.Index(ic.Args, "--write-hosts-toml")
	if ic.Args[0] != "agent" || i < 0 || i+1 >= len(ic.Args) {
		t.Fatalf("init container args %q: want agent ... --write-hosts-toml <dir>", ic.Args)
	}
	dir := ic.Args[i+1]
	var hostPath string
	for _, vm := range ic.VolumeMounts {
		if path.Clean(vm.MountPath) != path.Clean(dir) || vm.ReadOnly {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == vm.Name && v.HostPath != nil {
				hostPath = v.HostPath.Path
			}
		}
	}
	if hostPath != "/etc/containerd/certs.d" {
		t.Fatalf("--write-hosts-toml %s: want a writable mount of the host's /etc/containerd/certs.d, got %q", dir, hostPath)
	}
	var initCfg, cfg agentFile
	configOf(t, m, pod, ic, &initCfg)
	configOf(t, m, pod, c, &cfg)
	if initCfg.Listen != cfg.Listen || !slices.Equal(agentRegistries(initCfg.Node.Proxy), agentRegistries(cfg.Node.Proxy)) {
		t.Fatal("the init container and the agent must read the same config")
	}
	if slices.Contains(ic.Args, "--mirror") || slices.Contains(ic.Args, "--upstream") || slices.Contains(ic.Args, "--listen") {
		t.Errorf("init container args %q override the agent's config: the files would not match the agent", ic.Args)
	}

	// What "eagle agent --write-hosts-toml" writes for this config.
	certs := t.TempDir()
	agentURL := "http://" + cfg.Listen
	regs := agentRegistries(cfg.Node.Proxy)
	if len(regs) == 0 {
		t.Fatal("the agent mirrors no registry")
	}
	if err := proxy.WriteHostsTOML(certs, agentURL, regs); err != nil {
		t.Fatal(err)
	}
	hosts := config.ConfigureHosts(t.Context(), config.HostOptions{HostDir: config.HostDirFromRoot(certs)})
	for _, reg := range regs {
		u := upstreamURL(t, reg)
		ref := u.Host
		if ref == "registry-1.docker.io" {
			ref = "docker.io" // containerd's name for Docker Hub
		}
		list, err := hosts(ref)
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		if len(list) != 2 {
			t.Fatalf("%s: %d hosts, want the agent and the registry", ref, len(list))
		}
		mirror, server := list[0], list[1]
		if mirror.Scheme+"://"+mirror.Host != agentURL || mirror.Capabilities != docker.HostCapabilityPull|docker.HostCapabilityResolve {
			t.Errorf("%s: first host %s://%s (capabilities %b), want the agent %s for pull and resolve", ref, mirror.Scheme, mirror.Host, mirror.Capabilities, agentURL)
		}
		if server.Scheme != u.Scheme || server.Host != u.Host {
			t.Errorf("%s: fallback host %s://%s, want %s", ref, server.Scheme, server.Host, u)
		}
	}
}

// The manifests' YAML is refused when a field is misspelt: the strict
// decoding the other tests rely on really is strict.
func TestSchemaIsStrict(t *testing.T) {
	var doc yaml.Node
	src := "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      hostNetwrok: true\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	var ds daemonSet
	if err := decodeStrict(&doc, &ds); err == nil || !strings.Contains(err.Error(), "hostNetwrok") {
		t.Errorf("a misspelt field: %v, want an error naming it", err)
	}
	var a agentFile
	if err := unmarshalStrict([]byte("listen: :5000\nproxy:\n  upstream: [docker.io]\n"), &a); err == nil || !strings.Contains(err.Error(), "upstream") {
		t.Errorf("a misspelt agent key: %v, want an error naming it", err)
	}
}

// TestAgentLocation checks that each agent takes its location from its
// node's labels (--location-from-node with the node's name from the
// downward API), that its service account may get Node objects and
// nothing more, and that no other pod mounts a token.
func TestAgentLocation(t *testing.T) {
	m := load(t)
	pod := m.daemonSets["eagle-agent"].Spec.Template.Spec
	c := pod.Containers[0]
	i := slices.Index(c.Args, "--location-from-node")
	if i < 0 || i+1 >= len(c.Args) {
		t.Fatalf("agent args %q: want --location-from-node $(NODE_NAME)", c.Args)
	}
	ref, ok := strings.CutPrefix(c.Args[i+1], "$(")
	ref, ok2 := strings.CutSuffix(ref, ")")
	if !ok || !ok2 {
		t.Fatalf("--location-from-node %q: want $(VAR) naming an env var with the node's name", c.Args[i+1])
	}
	var fromNode bool
	for _, e := range c.Env {
		if e.Name == ref {
			fromNode = e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "spec.nodeName"
		}
	}
	if !fromNode {
		t.Errorf("env %s: want valueFrom.fieldRef.fieldPath spec.nodeName", ref)
	}

	// The token is mounted for the agent only.
	if pod.AutomountServiceAccountToken == nil || !*pod.AutomountServiceAccountToken {
		t.Error("the agent pod must mount its service account token (automountServiceAccountToken: true) to read its node")
	}
	sa, ok := m.serviceAccounts[pod.ServiceAccountName]
	if !ok {
		t.Fatalf("agent serviceAccountName %q: no such ServiceAccount in the manifests", pod.ServiceAccountName)
	}
	if sa.AutomountServiceAccountToken != nil && !*sa.AutomountServiceAccountToken {
		t.Errorf("ServiceAccount %s turns token mounting off", sa.Metadata.Name)
	}
	for _, w := range m.workloads() {
		if w.kind == "DaemonSet" && w.name == "eagle-agent" {
			continue
		}
		if a := w.template.Spec.AutomountServiceAccountToken; a == nil || *a {
			t.Errorf("%s %s: want automountServiceAccountToken: false (it calls no API)", w.kind, w.name)
		}
	}

	// What the agent's account may do: get nodes, nothing else.
	var rules []policyRule
	for _, b := range m.clusterRoleBindings {
		bound := slices.ContainsFunc(b.Subjects, func(s struct {
			Kind      string `yaml:"kind"`
			Name      string `yaml:"name"`
			Namespace string `yaml:"namespace"`
		}) bool {
			return s.Kind == "ServiceAccount" && s.Name == sa.Metadata.Name && s.Namespace == sa.Metadata.Namespace
		})
		if !bound {
			continue
		}
		if b.RoleRef.Kind != "ClusterRole" || b.RoleRef.APIGroup != "rbac.authorization.k8s.io" {
			t.Errorf("ClusterRoleBinding %s: roleRef %+v, want a ClusterRole", b.Metadata.Name, b.RoleRef)
			continue
		}
		r, ok := m.clusterRoles[b.RoleRef.Name]
		if !ok {
			t.Errorf("ClusterRoleBinding %s: no ClusterRole %s", b.Metadata.Name, b.RoleRef.Name)
			continue
		}
		rules = append(rules, r.Rules...)
	}
	want := []policyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}}
	if fmt.Sprint(rules) != fmt.Sprint(want) {
		t.Errorf("the agent's service account may %+v, want exactly %+v", rules, want)
	}
}
