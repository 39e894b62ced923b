package mtls

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// ErrInvalidConfig reports a Config that Validate rejected.
var ErrInvalidConfig = errors.New("mtls: invalid config")

// Config says where a member's credentials are, or that mutual TLS is off.
// The binaries load it from the "tls" key of their YAML, and Validate's
// errors name the keys that way (tls.ca, tls.cert, …).
//
// The zero value is invalid: an operator must either give the three files or
// say insecure: true. Setting both is invalid too, since it is not clear which
// was meant.
type Config struct {
	// CA is the path of the cluster CA certificate bundle (PEM, one or more
	// certificates). A peer is a member if its certificate chains to one of
	// them. During a CA rotation the bundle holds the old and the new CA.
	CA string `yaml:"ca"`

	// Cert is the path of this member's certificate (PEM), optionally
	// followed by intermediate certificates up to the CA.
	Cert string `yaml:"cert"`

	// Key is the path of this member's private key (PEM: PKCS #8, PKCS #1 or
	// SEC 1).
	Key string `yaml:"key"`

	// Insecure turns mutual TLS off: the internal planes run in plaintext
	// and accept anyone who can reach them. Default false. Only for tests
	// and networks where nothing else can connect.
	Insecure bool `yaml:"insecure"`

	// Logger receives a warning when Insecure is set and a line for every
	// credential reload or failed reload. Nil: no logging.
	Logger *slog.Logger `yaml:"-"`
}

// Validate reports whether c is usable: either Insecure alone, or all of CA,
// Cert and Key. Errors wrap ErrInvalidConfig and name the YAML keys.
func (c Config) Validate() error {
	paths := []struct{ key, value string }{{"tls.ca", c.CA}, {"tls.cert", c.Cert}, {"tls.key", c.Key}}
	var set, missing []string
	for _, p := range paths {
		if p.value == "" {
			missing = append(missing, p.key)
		} else {
			set = append(set, p.key)
		}
	}
	switch {
	case c.Insecure && len(set) > 0:
		return fmt.Errorf("%w: tls.insecure: true conflicts with %s: set either the files or insecure, not both", ErrInvalidConfig, strings.Join(set, ", "))
	case c.Insecure:
		return nil
	case len(missing) == 1:
		return fmt.Errorf("%w: %s is required (or set tls.insecure: true)", ErrInvalidConfig, missing[0])
	case len(missing) > 1:
		return fmt.Errorf("%w: %s and %s are required (or set tls.insecure: true)", ErrInvalidConfig, strings.Join(missing[:len(missing)-1], ", "), missing[len(missing)-1])
	}
	return nil
}
