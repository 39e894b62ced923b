// Package mtls closes Eagle's internal planes (the seeders' gRPC, the peer
// wire between nodes, the tracker's announces) to everyone but cluster
// members, by mutual TLS with certificates issued by one cluster CA.
//
// Addresses in a cluster are dynamic (pods come and go, DaemonSets run on the
// host network), so host names are not checked. Membership is: a
// certificate that chains to the cluster CA bundle, is valid now, and allows
// both the server-auth and the client-auth extended key usage (it lists both,
// or lists no extended key usage at all). Both are required on every member,
// on both ends of a connection, because the peer wire is symmetric: every
// node dials and accepts, and a certificate that worked in one direction only
// would fail half of its connections depending on who dialled first. The CA
// should be dedicated to the cluster: anyone holding a certificate from it is
// a member.
//
// A binary loads a Config from YAML (keys tls.ca, tls.cert, tls.key,
// tls.insecure), calls Load, and hands the resulting Credentials' tls.Config
// values to its listeners and dialers:
//
//   - ServerConfig for planes that admit members only (gRPC, peer wire);
//   - ServerConfigOptionalClient for HTTP listeners that also serve probes
//     and metrics, with RequireMember around the member-only routes;
//   - ClientConfig for every dialer.
//
// Every configuration requires TLS 1.3. Verification is done by this package
// in tls.Config.VerifyConnection (the client skips Go's host-name check), so
// the configurations can be cloned and extended (gRPC and net/http add their
// ALPN protocols to a clone) and a resumed session is checked against the
// current CA bundle like a full handshake.
//
// Rotation: the CA bundle, the certificate chain and the key are re-read when
// any of the three files changes (a new modification time, size or inode,
// which covers the symbolic-link swap Kubernetes uses for mounted Secrets).
// The files are looked at on a handshake, at most once per second, by the
// goroutine doing the handshake; there is no background goroutine and
// nothing to close. A set of files that does not load (a half-written file,
// a key that does not match the certificate, a certificate that does not
// chain to the new bundle) is logged and ignored, the previous credentials
// stay in use, and the files are tried again a second later. Connections that
// are already established are not re-checked by the TLS layer;
// Credentials.IsMember checks the caller against the current bundle on every
// request.
//
// Mutual TLS is turned off only by an explicit tls.insecure: true, for which
// Load returns a nil *Credentials (and logs a warning). The methods of a nil
// *Credentials describe that open plane: ServerConfig and ClientConfig return
// nil (plaintext), IsMember reports true and RequireMember returns its
// handler unchanged.
//
// CA, NewCA, LoadCA and CA.Issue make a cluster CA and member certificates
// (ECDSA P-256) for tests, demos and the "eagle certs" command; a production
// cluster may equally use cert-manager or any other issuer.
package mtls
