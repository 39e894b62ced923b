package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/eagle-p2p/eagle/mtls"
	"gopkg.in/yaml.v3"
)

// loadYAML decodes the file at path into v, refusing unknown keys. An empty
// path leaves v as it is.
func loadYAML(path string, v any) error {
	if path == "" {
		return nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return decodeYAML(path, b, v)
}

// decodeYAML decodes the YAML document b, read from the file called name,
// into v, refusing unknown keys; its errors name the file and the keys.
// An empty document leaves v as it is.
func decodeYAML(name string, b []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", name, nameYAMLKeys(b, err))
	}
	return nil
}

// listFlag is a repeatable, comma-separated string list flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// parseFlags parses args into fs, then loads the --config file into cfg and
// applies the flags the user set, so that a flag overrides the file.
func parseFlags(fs *flag.FlagSet, args []string, configPath *string, cfg any, apply func(name string)) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected arguments: %q\n", fs.Args())
		return errUsage
	}
	if err := loadYAML(*configPath, cfg); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { apply(f.Name) })
	return nil
}

// tlsFlags are the --tls-* flags every part takes, for the keys under tls:.
type tlsFlags struct {
	ca, cert, key *string
	insecure      *bool
}

// addTLSFlags defines the --tls-* flags on fs.
func addTLSFlags(fs *flag.FlagSet) *tlsFlags {
	return &tlsFlags{
		ca:       fs.String("tls-ca", "", "cluster CA bundle (PEM) of the internal planes' mutual TLS (tls.ca)"),
		cert:     fs.String("tls-cert", "", "this member's certificate (PEM) (tls.cert)"),
		key:      fs.String("tls-key", "", "this member's private key (PEM) (tls.key)"),
		insecure: fs.Bool("tls-insecure", false, "run the internal planes in plaintext, open to anyone who reaches them (tls.insecure)"),
	}
}

// apply sets the key of cfg that the flag called name stands for.
func (t *tlsFlags) apply(name string, cfg *mtls.Config) {
	switch name {
	case "tls-ca":
		cfg.CA = *t.ca
	case "tls-cert":
		cfg.Cert = *t.cert
	case "tls-key":
		cfg.Key = *t.key
	case "tls-insecure":
		cfg.Insecure = *t.insecure
	}
}
