package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/eagle-p2p/eagle/internal/cluster"
	"github.com/eagle-p2p/eagle/internal/origin"
	"github.com/eagle-p2p/eagle/internal/pull"
)

// demoLayerSizes are the demo image's layers: 96 MiB of random bytes in all.
var demoLayerSizes = []int64{48 << 20, 32 << 20, 16 << 20}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("eagle demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	agents := fs.Int("agents", 4, "number of agents")
	seeders := fs.Int("seeders", 2, "number of seeders")
	verbose := fs.Bool("v", false, "log every component to stderr")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: eagle demo [flags]\n\nStarts, in this process on 127.0.0.1, an origin registry, a tracker,\n"+
			"seeders and agents; pushes a generated 3-layer image (96 MiB) to the origin;\n"+
			"pulls it through every agent at once with containerd's resolver (the agent\n"+
			"as a hosts.toml mirror); verifies every digest and reports where the bytes came from.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if *agents < 1 || *seeders < 1 {
		fmt.Fprintln(stderr, "demo: -agents and -seeders must be at least 1")
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	line, err := demo(ctx, *agents, *seeders, *verbose, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stdout, "demo: FAIL %v\n", err)
		return errDemoFailed
	}
	fmt.Fprintln(stdout, line)
	return nil
}

var errDemoFailed = errors.New("demo failed")

func demo(ctx context.Context, nAgents, nSeeders int, verbose bool, stdout, stderr io.Writer) (string, error) {
	log := slog.New(slog.DiscardHandler)
	if verbose {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	fmt.Fprintf(stdout, "demo: starting origin, tracker, %d seeders, %d agents on 127.0.0.1 (mutual TLS from the demo's own CA)\n", nSeeders, nAgents)
	c, err := cluster.Start(ctx, cluster.Options{Seeders: nSeeders, Agents: nAgents, Logger: log})
	if err != nil {
		return "", err
	}
	defer c.Close()

	img, err := origin.PushRandomImage(ctx, nil, c.Origin.URL, "demo/app", "latest", demoLayerSizes, time.Now().UnixNano())
	if err != nil {
		return "", fmt.Errorf("push: %w", err)
	}
	var imageBytes int64
	for _, b := range img.Blobs() {
		imageBytes += b.Size
	}
	fmt.Fprintf(stdout, "demo: pushed %s/%s:%s (%d blobs, %d bytes)\n", c.Origin.Host, img.Repository, img.Tag, len(img.Blobs()), imageBytes)
	c.Origin.ResetCounts()

	ref := c.Origin.Host + "/" + img.Repository + ":" + img.Tag
	results := make([]pull.Result, len(c.Agents))
	errs := make([]error, len(c.Agents))
	var wg sync.WaitGroup
	for i, a := range c.Agents {
		hosts := filepath.Join(os.TempDir(), fmt.Sprintf("eagle-demo-hosts-%d-%d", os.Getpid(), i))
		defer os.RemoveAll(hosts)
		if err := pull.WriteHostsTOML(hosts, c.Origin.Host, a.URL); err != nil {
			return "", err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = pull.Pull(ctx, ref, pull.Options{HostsDir: hosts})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return "", err
	}

	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "agent\ttime\tblobs\tMiB pulled\tMiB from agents\tMiB from seeders\t")
	var peerBytes int64
	for i, a := range c.Agents {
		st := a.Node.Engine.Stats()
		peerBytes += st.BytesFromAgents
		fmt.Fprintf(tw, "%s\t%.2fs\t%d\t%.1f\t%.1f\t%.1f\t\n", a.Name, results[i].Duration.Seconds(), len(results[i].Blobs),
			mib(results[i].Bytes), mib(st.BytesFromAgents), mib(st.BytesFromSeeders))
		if results[i].Bytes != imageBytes {
			return "", fmt.Errorf("%s pulled %d bytes, the image has %d", a.Name, results[i].Bytes, imageBytes)
		}
	}
	tw.Flush()
	originBytes := c.Origin.BlobBytes()
	var problems []string
	if originBytes != imageBytes {
		problems = append(problems, fmt.Sprintf("origin served %d blob bytes for an image of %d", originBytes, imageBytes))
	}
	if nAgents > 1 && peerBytes == 0 {
		problems = append(problems, "no bytes moved between agents")
	}
	if len(problems) > 0 {
		return "", errors.New(strings.Join(problems, "; "))
	}
	return fmt.Sprintf("demo: OK agents=%d blobs=%d image_bytes=%d origin_blob_bytes=%d p2p_peer_bytes=%d",
		nAgents, len(img.Blobs()), imageBytes, originBytes, peerBytes), nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }
