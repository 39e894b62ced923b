package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/eagle-p2p/eagle/mtls"
)

// dnsName is what --hosts accepts besides IP addresses: a DNS name, or a
// wildcard one.
var dnsName = regexp.MustCompile(`^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$`)

// runCerts is "eagle certs": it makes a cluster CA in a directory, or reuses
// the one already there, and issues member certificates for package mtls.
func runCerts(_ context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("eagle certs", flag.ContinueOnError)
	flags.SetOutput(stderr)
	dir := flags.String("dir", "", "directory of the CA and member files, created (0700) if missing")
	var names, hosts listFlag
	flags.Var(&names, "names", "members to issue certificates for, e.g. tracker,seeder-0,seeder-1,agent (comma-separated, repeatable)")
	flags.Var(&hosts, "hosts", "IP addresses and DNS names to put in every member certificate (optional: members do not check them)")
	validity := flags.Duration("validity", mtls.DefaultValidity, "lifetime of the member certificates")
	caValidity := flags.Duration("ca-validity", 10*mtls.DefaultValidity, "lifetime of a new CA (an existing CA is reused as it is)")
	caName := flags.String("ca-name", "eagle cluster CA", "common name of a new CA")
	force := flags.Bool("force", false, "replace member files that already exist")
	flags.Usage = func() {
		fmt.Fprintln(stderr, "usage: eagle certs --dir DIR --names NAME[,NAME...] [flags]\n\n"+
			"Makes a cluster CA in DIR (ca.pem, ca-key.pem), or reuses the one there, and\n"+
			"issues for each name a member certificate DIR/<name>.pem and its key\n"+
			"DIR/<name>-key.pem, for the tls: section of the tracker, seeder and agent\n"+
			"configs. Existing member files are kept unless --force.")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if flags.NArg() > 0 {
		fmt.Fprintf(stderr, "unexpected arguments: %q\n", flags.Args())
		return errUsage
	}
	switch {
	case *dir == "":
		return errors.New("--dir is required")
	case len(names) == 0:
		return errors.New("--names is required (e.g. --names tracker,seeder-0,agent)")
	case *validity <= 0:
		return fmt.Errorf("--validity %v must be positive", *validity)
	case *caValidity <= 0:
		return fmt.Errorf("--ca-validity %v must be positive", *caValidity)
	case *caName == "":
		return errors.New("--ca-name must not be empty")
	}
	for _, h := range hosts {
		if net.ParseIP(strings.Trim(h, "[]")) == nil && !dnsName.MatchString(h) {
			return fmt.Errorf("--hosts %q is neither an IP address nor a DNS name", h)
		}
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	members := make([]mtls.Config, len(names))
	seen := map[string]bool{}
	for i, n := range names {
		if seen[n] {
			return fmt.Errorf("--names: %q is given twice", n)
		}
		seen[n] = true
		if members[i], err = mtls.MemberFiles(abs, n); err != nil {
			return fmt.Errorf("--names: %w", err)
		}
		if *force {
			continue
		}
		for _, p := range []string{members[i].Cert, members[i].Key} {
			if _, err := os.Lstat(p); err == nil {
				return fmt.Errorf("--names: %s exists (use --force to replace it)", p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("--dir: %w", err)
			}
		}
	}

	// Everything is issued before anything is written, so that a failure
	// leaves the directory as it was.
	caCert, caKey := filepath.Join(abs, mtls.CAFileName), filepath.Join(abs, mtls.CAKeyFileName)
	ca, created, err := certsCA(caCert, caKey, *caName, *caValidity)
	if err != nil {
		return err
	}
	type issued struct{ cert, key []byte }
	out := make([]issued, len(names))
	for i, n := range names {
		if out[i].cert, out[i].key, err = ca.Issue(n, hosts, *validity); err != nil {
			return fmt.Errorf("issuing %s: %w", n, err)
		}
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	caInfo := fmt.Sprintf("%q, expires %s", ca.Certificate().Subject.CommonName, ca.Certificate().NotAfter.Format(time.DateOnly))
	if created {
		if err := certsWrite(caKey, ca.KeyPEM(), 0o600, false); err != nil {
			return err
		}
		if err := certsWrite(caCert, ca.CertPEM(), 0o644, false); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "made a new CA: %s and %s (%s)\n", caCert, caKey, caInfo)
	} else {
		fmt.Fprintf(stdout, "reused the CA in %s (%s)\n", caCert, caInfo)
	}
	for i, m := range members {
		if err := certsWrite(m.Key, out[i].key, 0o600, *force); err != nil {
			return err
		}
		if err := certsWrite(m.Cert, out[i].cert, 0o644, *force); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s (%s, expires %s)\n", m.Cert, m.Key, names[i], certsExpiry(out[i].cert))
	}

	fmt.Fprintf(stdout, "\nKeep %s off the nodes: whoever has it can make members.\n"+
		"Give each part %s, its certificate and its key, and these keys in its YAML config:\n", caKey, mtls.CAFileName)
	for i, m := range members {
		snippet, err := yaml.Marshal(struct {
			TLS certsTLSKeys `yaml:"tls,flow"`
		}{certsTLSKeys{m.CA, m.Cert, m.Key}})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\n# %s\n%s", names[i], snippet)
	}
	return nil
}

// certsExpiry is the expiry date of a PEM certificate Issue just made.
func certsExpiry(certPEM []byte) string {
	if b, _ := pem.Decode(certPEM); b != nil {
		if c, err := x509.ParseCertificate(b.Bytes); err == nil {
			return c.NotAfter.Format(time.DateOnly)
		}
	}
	return "?"
}

// certsTLSKeys is the tls: section printed for each member.
type certsTLSKeys struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// certsCA loads the CA in certPath and keyPath, or makes a new one (created)
// if neither file exists. One without the other is an error: the key is
// needed to issue members, and a new CA would not match the members that
// trust the old certificate.
func certsCA(certPath, keyPath, name string, validity time.Duration) (ca *mtls.CA, created bool, err error) {
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case certErr == nil && keyErr == nil:
		ca, err = mtls.LoadCA(certPath, keyPath)
		if err != nil {
			return nil, false, fmt.Errorf("--dir: %w", err)
		}
		return ca, false, nil
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		ca, err = mtls.NewCA(name, validity)
		if err != nil {
			return nil, false, err
		}
		return ca, true, nil
	case certErr == nil && errors.Is(keyErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("--dir: %s exists but %s does not: the CA's key is needed to issue members", certPath, keyPath)
	case keyErr == nil && errors.Is(certErr, fs.ErrNotExist):
		return nil, false, fmt.Errorf("--dir: %s exists but %s does not", keyPath, certPath)
	}
	return nil, false, fmt.Errorf("--dir: %w", errors.Join(certErr, keyErr))
}

// certsWrite writes a file through a temporary file and a rename, so that a
// member reloading its files never reads half of one. Unless replace, an
// existing file is an error.
func certsWrite(path string, data []byte, perm os.FileMode, replace bool) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && replace {
		err = os.Rename(tmp, path)
	} else if err == nil {
		// A hard link fails if path exists, where a rename would replace it.
		if err = os.Link(tmp, path); err == nil {
			os.Remove(tmp)
		}
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
