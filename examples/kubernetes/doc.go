// Package kubernetes holds the manifests that run Eagle on a Kubernetes
// cluster (apply them with "kubectl apply -k examples/kubernetes"): the
// tracker (Deployment and Service), the seeders (StatefulSet with a volume
// each, behind a headless Service), and an agent on every node (DaemonSet
// on the host network, whose init container writes containerd's hosts.toml
// files). Each component's configuration is a ConfigMap in the YAML format
// of the examples/eagle binary. The package's test parses the manifests,
// checks that their names, ports, volumes and addresses agree with each
// other, and loads the embedded configurations into Eagle's real config
// structs.
package kubernetes
