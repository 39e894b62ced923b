package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/eagle-p2p/eagle/internal/origin"
)

// registriesConf makes the agent (%[2]s) a mirror of the origin (%[1]s),
// both over plain HTTP. skopeo pings the mirror's /v2/ and sends no ns, so
// the agent serves the image from its default upstream, the origin.
const registriesConf = `unqualified-search-registries = []

[[registry]]
prefix = %[1]q
location = %[1]q
insecure = true

[[registry.mirror]]
location = %[2]q
insecure = true
`

// nobody is the user skopeo runs as: it needs no privilege to copy to an
// OCI directory, and as root it would write its blob-info cache to
// /var/lib/containers instead of the test's directory.
const nobody = 65534

// TestSkopeoCopy: skopeo copies the origin's image to an OCI layout
// directory twice at once, each copy with a registries.conf that names
// another agent as the origin's mirror.
func TestSkopeoCopy(t *testing.T) {
	requireTools(t, "skopeo")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	g := newEgressGuard(t)
	c := startCluster(t, ctx)
	img := pushImage(t, ctx, c, "eagle/skopeo", "v1", 505)
	src := "docker://" + c.Origin.Host + "/" + img.Repository + ":" + img.Tag

	layouts := make([]string, len(c.Agents))
	errs := make([]error, len(c.Agents))
	var wg sync.WaitGroup
	for i, a := range c.Agents {
		dir := privateDir(t, "e2e-skopeo-")
		write := func(name, body string) string {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}
		conf := write("registries.conf", fmt.Sprintf(registriesConf, c.Origin.Host, a.Host))
		policy := write("policy.json", `{"default": [{"type": "insecureAcceptAnything"}]}`)
		if err := os.Chown(dir, nobody, nobody); err != nil {
			t.Fatal(err)
		}
		layouts[i] = filepath.Join(dir, "oci")
		cmd := exec.CommandContext(ctx, "skopeo", "--registries-conf", conf, "--policy", policy,
			"copy", "--preserve-digests", src, "oci:"+layouts[i]+":"+img.Tag)
		cmd.Env = g.env("HOME="+dir, "XDG_RUNTIME_DIR="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir, "TMPDIR="+dir)
		cmd.Dir = dir
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.WaitDelay = 5 * time.Second
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("skopeo copy via %s: %w\n%s", a.Name, err, lastLines(string(out), 30))
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range layouts {
		if err := checkOCILayout(dir, img); err != nil {
			t.Error(err)
		}
	}
	checkOriginOnce(t, c, img)
	checkP2P(t, img, c.Agents...)
}

// checkOCILayout checks that the OCI layout in dir tags img's manifest
// with img's tag and holds the manifest, the config and every layer, each
// of the right size and digest.
func checkOCILayout(dir string, img origin.Image) error {
	b, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return err
	}
	var index ocispec.Index
	if err := json.Unmarshal(b, &index); err != nil {
		return fmt.Errorf("%s/index.json: %w", dir, err)
	}
	var found bool
	for _, m := range index.Manifests {
		if m.Annotations[ocispec.AnnotationRefName] == img.Tag {
			if m.Digest != img.Manifest.Digest {
				got, _ := os.ReadFile(filepath.Join(dir, "blobs", m.Digest.Algorithm().String(), m.Digest.Encoded()))
				return fmt.Errorf("%s: tag %s is manifest %s, want %s; it holds %.2000s", dir, img.Tag, m.Digest, img.Manifest.Digest, got)
			}
			found = true
		}
	}
	if !found {
		return fmt.Errorf("%s: index.json has no tag %s: %s", dir, img.Tag, b)
	}
	for _, d := range append(img.Blobs(), img.Manifest) {
		if err := checkBlobFile(filepath.Join(dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded()), d); err != nil {
			return err
		}
	}
	return nil
}

// checkBlobFile streams the file at path through d's digest.
func checkBlobFile(path string, d ocispec.Descriptor) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	v := d.Digest.Verifier()
	n, err := io.Copy(v, f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if n != d.Size || !v.Verified() {
		return fmt.Errorf("%s: %d bytes (want %d), matches %s: %v", path, n, d.Size, d.Digest, v.Verified())
	}
	return nil
}
