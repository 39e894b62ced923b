package kubernetes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"gopkg.in/yaml.v3"
)

// The part of the Kubernetes API the manifests use. Every object is decoded
// with unknown fields refused, so a misspelt or misplaced field (hostNetwrok,
// a probe port under the wrong key) fails the test instead of being ignored
// by a lenient parser and then by the API server's defaulting.

type objectMeta struct {
	Name        string            `yaml:"name"`
	Namespace   string            `yaml:"namespace"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// intOrString is Kubernetes' IntOrString: a port number or a port name, a
// count or a percentage.
type intOrString struct {
	Int   int
	Str   string
	IsStr bool
}

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want an integer or a string", n.Line)
	}
	switch n.Tag {
	case "!!int":
		i, err := strconv.Atoi(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		v.Int = i
	case "!!str":
		v.Str, v.IsStr = n.Value, true
	default:
		return fmt.Errorf("line %d: want an integer or a string, got %s", n.Line, n.Tag)
	}
	return nil
}

type header struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type namespace struct {
	header `yaml:",inline"`
}

type configMap struct {
	header `yaml:",inline"`
	Data   map[string]string `yaml:"data"`
}

type service struct {
	header `yaml:",inline"`
	Spec   struct {
		Type                     string            `yaml:"type"`
		ClusterIP                string            `yaml:"clusterIP"`
		Selector                 map[string]string `yaml:"selector"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Ports                    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
			Protocol   string      `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type labelSelector struct {
	MatchLabels map[string]string `yaml:"matchLabels"`
}

type rollingUpdate struct {
	MaxSurge       *intOrString `yaml:"maxSurge"`
	MaxUnavailable *intOrString `yaml:"maxUnavailable"`
}

type updateStrategy struct {
	Type          string         `yaml:"type"`
	RollingUpdate *rollingUpdate `yaml:"rollingUpdate"`
}

type deployment struct {
	header `yaml:",inline"`
	Spec   struct {
		Replicas *int            `yaml:"replicas"`
		Selector labelSelector   `yaml:"selector"`
		Strategy *updateStrategy `yaml:"strategy"`
		Template podTemplate     `yaml:"template"`
	} `yaml:"spec"`
}

type statefulSet struct {
	header `yaml:",inline"`
	Spec   struct {
		ServiceName          string        `yaml:"serviceName"`
		Replicas             *int          `yaml:"replicas"`
		PodManagementPolicy  string        `yaml:"podManagementPolicy"`
		Selector             labelSelector `yaml:"selector"`
		Template             podTemplate   `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     struct {
				AccessModes      []string  `yaml:"accessModes"`
				StorageClassName *string   `yaml:"storageClassName"`
				Resources        resources `yaml:"resources"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type daemonSet struct {
	header `yaml:",inline"`
	Spec   struct {
		Selector       labelSelector   `yaml:"selector"`
		UpdateStrategy *updateStrategy `yaml:"updateStrategy"`
		Template       podTemplate     `yaml:"template"`
	} `yaml:"spec"`
}

type serviceAccount struct {
	header                       `yaml:",inline"`
	AutomountServiceAccountToken *bool `yaml:"automountServiceAccountToken"`
}

// policyRule is one rule of a ClusterRole.
type policyRule struct {
	APIGroups     []string `yaml:"apiGroups"`
	Resources     []string `yaml:"resources"`
	ResourceNames []string `yaml:"resourceNames"`
	Verbs         []string `yaml:"verbs"`
}

type clusterRole struct {
	header `yaml:",inline"`
	Rules  []policyRule `yaml:"rules"`
}

type clusterRoleBinding struct {
	header  `yaml:",inline"`
	RoleRef struct {
		APIGroup string `yaml:"apiGroup"`
		Kind     string `yaml:"kind"`
		Name     string `yaml:"name"`
	} `yaml:"roleRef"`
	Subjects []struct {
		Kind      string `yaml:"kind"`
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"subjects"`
}

type podTemplate struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     podSpec    `yaml:"spec"`
}

type podSpec struct {
	HostNetwork                   bool   `yaml:"hostNetwork"`
	DNSPolicy                     string `yaml:"dnsPolicy"`
	PriorityClassName             string `yaml:"priorityClassName"`
	ServiceAccountName            string `yaml:"serviceAccountName"`
	AutomountServiceAccountToken  *bool  `yaml:"automountServiceAccountToken"`
	TerminationGracePeriodSeconds *int   `yaml:"terminationGracePeriodSeconds"`
	Tolerations                   []struct {
		Key      string `yaml:"key"`
		Operator string `yaml:"operator"`
		Value    string `yaml:"value"`
		Effect   string `yaml:"effect"`
	} `yaml:"tolerations"`
	SecurityContext *struct {
		RunAsNonRoot   *bool  `yaml:"runAsNonRoot"`
		RunAsUser      *int64 `yaml:"runAsUser"`
		RunAsGroup     *int64 `yaml:"runAsGroup"`
		FSGroup        *int64 `yaml:"fsGroup"`
		SeccompProfile *struct {
			Type string `yaml:"type"`
		} `yaml:"seccompProfile"`
	} `yaml:"securityContext"`
	InitContainers []container `yaml:"initContainers"`
	Containers     []container `yaml:"containers"`
	Volumes        []struct {
		Name      string `yaml:"name"`
		ConfigMap *struct {
			Name string `yaml:"name"`
		} `yaml:"configMap"`
		HostPath *struct {
			Path string `yaml:"path"`
			Type string `yaml:"type"`
		} `yaml:"hostPath"`
		Secret *secretVolume `yaml:"secret"`
	} `yaml:"volumes"`
}

// secretVolume is a volume of a Secret's keys as files.
type secretVolume struct {
	SecretName  string `yaml:"secretName"`
	DefaultMode *int   `yaml:"defaultMode"`
	Optional    *bool  `yaml:"optional"`
	Items       []struct {
		Key  string `yaml:"key"`
		Path string `yaml:"path"`
		Mode *int   `yaml:"mode"`
	} `yaml:"items"`
}

type container struct {
	Name            string   `yaml:"name"`
	Image           string   `yaml:"image"`
	ImagePullPolicy string   `yaml:"imagePullPolicy"`
	Command         []string `yaml:"command"`
	Args            []string `yaml:"args"`
	Env             []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			FieldRef *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
		Protocol      string `yaml:"protocol"`
	} `yaml:"ports"`
	ReadinessProbe  *probe    `yaml:"readinessProbe"`
	LivenessProbe   *probe    `yaml:"livenessProbe"`
	Resources       resources `yaml:"resources"`
	SecurityContext *struct {
		RunAsUser                *int64 `yaml:"runAsUser"`
		RunAsNonRoot             *bool  `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool  `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   *bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             *struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type probe struct {
	TCPSocket *struct {
		Host string      `yaml:"host"`
		Port intOrString `yaml:"port"`
	} `yaml:"tcpSocket"`
	GRPC *struct {
		Port    int     `yaml:"port"`
		Service *string `yaml:"service"`
	} `yaml:"grpc"`
	HTTPGet *struct {
		Host   string      `yaml:"host"`
		Path   string      `yaml:"path"`
		Port   intOrString `yaml:"port"`
		Scheme string      `yaml:"scheme"`
	} `yaml:"httpGet"`
	InitialDelaySeconds int `yaml:"initialDelaySeconds"`
	PeriodSeconds       int `yaml:"periodSeconds"`
	TimeoutSeconds      int `yaml:"timeoutSeconds"`
	FailureThreshold    int `yaml:"failureThreshold"`
}

type resources struct {
	Requests map[string]string `yaml:"requests"`
	Limits   map[string]string `yaml:"limits"`
}

type kustomization struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Resources  []string `yaml:"resources"`
	Images     []struct {
		Name    string `yaml:"name"`
		NewName string `yaml:"newName"`
		NewTag  string `yaml:"newTag"`
	} `yaml:"images"`
}

// manifests are the objects of every manifest file, by kind and name.
type manifests struct {
	files               []string
	namespaces          map[string]*namespace
	configMaps          map[string]*configMap
	services            map[string]*service
	deployments         map[string]*deployment
	statefulSets        map[string]*statefulSet
	daemonSets          map[string]*daemonSet
	serviceAccounts     map[string]*serviceAccount
	clusterRoles        map[string]*clusterRole
	clusterRoleBindings map[string]*clusterRoleBinding
}

// apiVersions are the API versions of the kinds the manifests may use.
var apiVersions = map[string]string{
	"Namespace":   "v1",
	"ConfigMap":   "v1",
	"Service":     "v1",
	"Deployment":  "apps/v1",
	"StatefulSet": "apps/v1",
	"DaemonSet":   "apps/v1",

	"ServiceAccount":     "v1",
	"ClusterRole":        "rbac.authorization.k8s.io/v1",
	"ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
}

// decodeStrict decodes a YAML node into v, refusing unknown fields.
func decodeStrict(n *yaml.Node, v any) error {
	b, err := yaml.Marshal(n)
	if err != nil {
		return err
	}
	return unmarshalStrict(b, v)
}

// unmarshalStrict decodes one YAML document into v, refusing unknown fields.
func unmarshalStrict(b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document")
	}
	return nil
}

// putObject stores obj under name in m, refusing duplicates.
func putObject[T any](m map[string]*T, kind, name string, obj *T) error {
	if _, dup := m[name]; dup {
		return fmt.Errorf("two %s objects named %q", kind, name)
	}
	m[name] = obj
	return nil
}

// loadManifests parses every YAML file in dir but the kustomization.
func loadManifests(dir string) (*manifests, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	m := &manifests{
		namespaces:   map[string]*namespace{},
		configMaps:   map[string]*configMap{},
		services:     map[string]*service{},
		deployments:  map[string]*deployment{},
		statefulSets: map[string]*statefulSet{},
		daemonSets:   map[string]*daemonSet{},

		serviceAccounts:     map[string]*serviceAccount{},
		clusterRoles:        map[string]*clusterRole{},
		clusterRoleBindings: map[string]*clusterRoleBinding{},
	}
	for _, p := range paths {
		if filepath.Base(p) == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, filepath.Base(p))
		if err := m.loadFile(p); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(p), err)
		}
	}
	return m, nil
}

func (m *manifests) loadFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	for i := 0; ; i++ {
		var doc yaml.Node
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			if i == 0 {
				return errors.New("no YAML document")
			}
			return nil
		} else if err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		var h header
		if err := doc.Decode(&h); err != nil {
			return fmt.Errorf("document %d: %w", i, err)
		}
		if want, ok := apiVersions[h.Kind]; !ok {
			return fmt.Errorf("document %d: unexpected kind %q", i, h.Kind)
		} else if h.APIVersion != want {
			return fmt.Errorf("%s %s: apiVersion %q, want %q", h.Kind, h.Metadata.Name, h.APIVersion, want)
		}
		if h.Metadata.Name == "" {
			return fmt.Errorf("document %d: %s without a name", i, h.Kind)
		}
		if err := m.add(h, &doc); err != nil {
			return fmt.Errorf("%s %s: %w", h.Kind, h.Metadata.Name, err)
		}
	}
}

func (m *manifests) add(h header, doc *yaml.Node) error {
	name := h.Metadata.Name
	switch h.Kind {
	case "Namespace":
		var o namespace
		if err := decodeStrict(doc, &o); err != nil {
			return err
		}
		return putObject(m.namespaces, h.Kind, name, &o)
	case "ConfigMap":
		var o configMap
		if err := decodeStrict(doc, &o); err != nil {
			return err
		}
		return putObject(m.configMaps, h.Kind, name, &o)
	case "Service":
		var o service
		if err := decodeStrict(doc, &o); err != nil {
			return err
		}
		return putObject(m.services, h.Kind, name, &o)
	case "Deployment":
		var o deployment
		if err := decodeStrict(doc, &o); err != nil {
			return err
		}
		return putObject(m.deployments, h.Kind, name, &o)
	case "StatefulSet":
		var o statefulSet
		if err := decodeStrict(doc, &o); err != nil {
			return err
		}
		return putObject(m.statefulSets, h.Kind, name, &o)
	case "DaemonSet":
		var o daemonSet
		if err := decodeStrict(doc, &o); err != nil {
			return err
		}
		return putObject(m.daemonSets, h.Kind, name, &o)
	case "ServiceAccount":
		var o serviceAccount
		if err := decodeStrict(doc, &o); err != nil {
			return err
		}
		return putObject(m.serviceAccounts, h.Kind, name, &o)
	case "ClusterRole":
		var o clusterRole
		if err := decodeStrict(doc, &o); err != nil {
			return err
		}
		return putObject(m.clusterRoles, h.Kind, name, &o)
	case "ClusterRoleBinding":
		var o clusterRoleBinding
		if err := decodeStrict(doc, &o); err != nil {
			return err
		}
		return putObject(m.clusterRoleBindings, h.Kind, name, &o)
	}
	return fmt.Errorf("unexpected kind %q", h.Kind)
}

// workload is a Deployment, StatefulSet or DaemonSet, for the checks they
// share.
type workload struct {
	kind, name string
	meta       objectMeta
	selector   labelSelector
	template   podTemplate
}

func (m *manifests) workloads() []workload {
	var ws []workload
	for n, d := range m.deployments {
		ws = append(ws, workload{"Deployment", n, d.Metadata, d.Spec.Selector, d.Spec.Template})
	}
	for n, s := range m.statefulSets {
		ws = append(ws, workload{"StatefulSet", n, s.Metadata, s.Spec.Selector, s.Spec.Template})
	}
	for n, d := range m.daemonSets {
		ws = append(ws, workload{"DaemonSet", n, d.Metadata, d.Spec.Selector, d.Spec.Template})
	}
	return ws
}
