package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/eagle-p2p/eagle/mtls"
	"github.com/eagle-p2p/eagle/seeder"
	"github.com/eagle-p2p/eagle/seeder/preheat"
)

// preheatConfig is the preheat: section of "eagle seeder": the preheat API
// (registry notifications, Harbor webhooks, POST /preheat) on a listener
// of its own.
type preheatConfig struct {
	// Listen is the API's listen address, e.g. ":7072". Required.
	Listen string `yaml:"listen"`
	// Secret, or SecretFile (a file holding it), is the shared secret
	// callers send as "Authorization: Bearer <secret>". One of them is
	// required unless TLS.ClientCA makes the listener mutual TLS.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Seeders are the gRPC addresses of the cluster's seeders (the list the
	// agents use; it may name this seeder). A blob is warmed at the seeder
	// that owns it by rendezvous hashing, so that seeders notified of the
	// same push cost the origin one copy. Required.
	Seeders []string `yaml:"seeders"`
	// TLS serves the API over HTTPS (cert, key), requiring client
	// certificates from client_ca when that is set.
	TLS preheatTLS `yaml:"tls"`
	// Config: registries (credentials), platforms, concurrency, max_jobs,
	// job_timeout, max_body.
	preheat.Config `yaml:",inline"`
}

// preheatTLS is preheat.tls.
type preheatTLS struct {
	Cert     string `yaml:"cert"`
	Key      string `yaml:"key"`
	ClientCA string `yaml:"client_ca"`
}

// validate checks the section, naming its keys, and reads the secret file.
// allowed are the seeder's allowed_upstreams.
func (c *preheatConfig) validate(allowed []string) error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("preheat.listen is empty"))
	}
	if len(c.Seeders) == 0 {
		errs = append(errs, errors.New("preheat.seeders is empty: list the cluster's seeders (as the agents do), so that each blob is warmed at the seeder that owns it"))
	}
	if c.Secret != "" && c.SecretFile != "" {
		errs = append(errs, errors.New("preheat.secret and preheat.secret_file are exclusive"))
	}
	if c.SecretFile != "" {
		b, err := os.ReadFile(c.SecretFile)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("preheat.secret_file: %w", err))
		case strings.TrimSpace(string(b)) == "":
			errs = append(errs, fmt.Errorf("preheat.secret_file %s is empty", c.SecretFile))
		default:
			c.Secret = strings.TrimSpace(string(b))
		}
	}
	if c.Secret == "" && c.SecretFile == "" && c.TLS.ClientCA == "" {
		errs = append(errs, errors.New("preheat: set secret, secret_file or tls.client_ca: the API must not be open to anyone"))
	}
	if (c.TLS.Cert == "") != (c.TLS.Key == "") {
		errs = append(errs, errors.New("preheat.tls.cert and preheat.tls.key go together"))
	}
	if c.TLS.ClientCA != "" && c.TLS.Cert == "" {
		errs = append(errs, errors.New("preheat.tls.client_ca needs preheat.tls.cert and key"))
	}
	c.AllowedUpstreams = allowed
	c.Config.Secret = c.Secret
	if err := c.Config.Validate(); err != nil {
		// Name the keys as they are in the seeder's YAML: under preheat.
		msg := strings.TrimPrefix(err.Error(), preheat.ErrInvalidConfig.Error()+": ")
		for _, line := range strings.Split(msg, "\n") {
			errs = append(errs, errors.New("preheat."+line))
		}
	}
	return errors.Join(errs...)
}

// startPreheat starts the preheat API; stop closes it, its jobs and its
// seeder client.
func startPreheat(c *preheatConfig, cluster mtls.Config, log *slog.Logger) (stop func(), err error) {
	creds, err := mtls.Load(cluster)
	if err != nil {
		return nil, err
	}
	client, err := seeder.NewClient(seeder.ClientConfig{Seeders: c.Seeders, Credentials: creds, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("preheat.seeders: %w", err)
	}
	c.Logger = log
	svc, err := preheat.New(c.Config, client)
	if err != nil {
		client.Close()
		return nil, err
	}
	lis, err := listenOn(c.Listen, "preheat.listen")
	if err != nil {
		svc.Close()
		client.Close()
		return nil, err
	}
	if c.TLS.Cert != "" {
		tc, err := preheatServerTLS(c.TLS)
		if err != nil {
			lis.Close()
			svc.Close()
			client.Close()
			return nil, err
		}
		lis = tls.NewListener(lis, tc)
	}
	srv := &http.Server{Handler: svc.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("preheat server failed", "error", err)
		}
	}()
	log.Info("preheat listening", "addr", lis.Addr().String(), "seeders", c.Seeders)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-done
		svc.Close()
		client.Close()
	}, nil
}

// preheatServerTLS is the API listener's TLS: its certificate, and client
// certificates required from ClientCA when set.
func preheatServerTLS(c preheatTLS) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("preheat.tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if c.ClientCA != "" {
		pem, err := os.ReadFile(c.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("preheat.tls.client_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("preheat.tls.client_ca %s: no PEM certificate", c.ClientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// runPreheat is "eagle preheat": it asks a seeder's preheat API to warm an
// image and follows the job to its end.
func runPreheat(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eagle preheat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: eagle preheat [flags] <image>\n\nWarms an image's layers in the seeders (see README, Preheat).\n\nflags:")
		fs.PrintDefaults()
	}
	api := fs.String("seeder-api", envOr("EAGLE_PREHEAT_URL", "http://127.0.0.1:7072"), "a seeder's preheat API base URL (env EAGLE_PREHEAT_URL)")
	secretFile := fs.String("secret-file", "", "file holding the shared secret (default env EAGLE_PREHEAT_SECRET)")
	interval := fs.Duration("interval", time.Second, "how often the job's progress is asked for")
	timeout := fs.Duration("timeout", 30*time.Minute, "how long to wait for the job")
	var plats listFlag
	fs.Var(&plats, "platform", `platform of an index to warm, "linux/amd64" (repeatable; default the seeder's preheat.platforms)`)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "eagle preheat: want exactly one image reference, e.g. registry.example.com/team/app:1.2")
		fs.Usage()
		return errUsage
	}
	if *interval <= 0 {
		return fmt.Errorf("flag --interval %v: must be positive", *interval)
	}
	if *timeout <= 0 {
		return fmt.Errorf("flag --timeout %v: must be positive", *timeout)
	}
	if !strings.HasPrefix(*api, "http://") && !strings.HasPrefix(*api, "https://") {
		return fmt.Errorf("flag --seeder-api %q: want an http:// or https:// URL", *api)
	}
	secret := os.Getenv("EAGLE_PREHEAT_SECRET")
	if *secretFile != "" {
		b, err := os.ReadFile(*secretFile)
		if err != nil {
			return fmt.Errorf("flag --secret-file: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cl := &preheat.Client{URL: *api, Secret: secret, HTTPClient: &http.Client{Timeout: 30 * time.Second}}
	j, err := cl.Submit(ctx, preheat.Request{Image: fs.Arg(0), Platforms: plats})
	if err != nil {
		return fmt.Errorf("flag --seeder-api %s: %w", *api, err)
	}
	fmt.Fprintf(stdout, "preheat job %s: %s\n", j.ID, j.Image)
	p := newProgress(stdout)
	j, err = cl.Wait(ctx, j.ID, *interval, p.show)
	p.end()
	if err != nil {
		return err
	}
	for _, b := range j.Blobs {
		if b.State != preheat.StateDone {
			fmt.Fprintf(stdout, "failed %s: %s\n", b.Digest, b.Error)
		}
	}
	if j.State != preheat.StateDone {
		return fmt.Errorf("job %s %s: %s", j.ID, j.State, j.Error)
	}
	fmt.Fprintf(stdout, "done: %d blobs, %s\n", len(j.Blobs), humanBytes(total(j, true)))
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// progress shows a job's progress: one bar redrawn with \r on a terminal,
// a line per blob that ends otherwise (logs, CI).
type progress struct {
	w     io.Writer
	tty   bool
	drawn bool
	seen  map[string]bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, seen: map[string]bool{}}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) show(j preheat.Job) {
	if p.tty {
		const width = 30
		all, done := total(j, false), total(j, true)
		n := 0
		if all > 0 {
			n = int(int64(width) * done / all)
		}
		fmt.Fprintf(p.w, "\r[%s%s] %d/%d blobs %s/%s %s ", strings.Repeat("=", n), strings.Repeat(" ", width-n),
			count(j), len(j.Blobs), humanBytes(done), humanBytes(all), j.State)
		p.drawn = true
		return
	}
	for _, b := range j.Blobs {
		if (b.State == preheat.StateDone || b.State == preheat.StateFailed) && !p.seen[b.Digest.String()] {
			p.seen[b.Digest.String()] = true
			fmt.Fprintf(p.w, "%s %s %s\n", b.State, b.Digest, humanBytes(b.Size))
		}
	}
}

func (p *progress) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
	}
}

// total is the bytes of j's blobs, or of those done.
func total(j preheat.Job, onlyDone bool) int64 {
	var n int64
	for _, b := range j.Blobs {
		if !onlyDone || b.State == preheat.StateDone {
			n += b.Size
		}
	}
	return n
}

func count(j preheat.Job) int {
	n := 0
	for _, b := range j.Blobs {
		if b.State == preheat.StateDone {
			n++
		}
	}
	return n
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
