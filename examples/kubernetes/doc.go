// Package kubernetes holds the manifests that run Eagle on a Kubernetes
// cluster (apply them with "kubectl apply -k examples/kubernetes"): the
// tracker (Deployment and Service), the seeders (StatefulSet with a volume
// each, behind a headless Service), and an agent on every node (DaemonSet
// on the host network, whose init container writes containerd's hosts.toml
// files). Each component's configuration is a ConfigMap in the YAML format
// of the examples/eagle binary.
//
// The components are members of one cluster CA: the seeders' gRPC, the
// peer wire and the tracker's announces run over mutual TLS. Each mounts
// its certificate, key and the CA from a Secret (eagle-tls-tracker,
// eagle-tls-seeder, eagle-tls-agent) that the operator creates from the
// files "eagle certs --names tracker,seeder,agent" writes; the manifests
// reference the Secrets and never define them, so no key is in the
// repository.
//
// The package's test parses the manifests, checks that their names, ports,
// volumes, probes and addresses agree with each other, loads the embedded
// configurations into Eagle's real config structs, and checks that every
// part runs with mutual TLS.
package kubernetes
