package proxy

import (
	"net/http"
	"testing"
)

// TestBlobDeleteThroughProxy: a blob deleted at the origin through the
// proxy is not served by the proxy afterwards, although its bytes stay in
// the node's cache and a positive authorization was cached for it. (The
// OCI conformance suite deletes blobs through the node and HEADs them.)
func TestBlobDeleteThroughProxy(t *testing.T) {
	e := newEnv(t, Config{}, nil)
	im := e.push(t, "eagle/delete", 10*kib, 20*kib)
	gone, kept := im.Layers[0].Digest, im.Layers[1].Digest
	blobURL := func(d string) string { return e.srv.URL + "/v2/" + im.Repository + "/blobs/" + d }

	// Both blobs are read through the proxy: cached in the source, and
	// their authorizations cached for a minute.
	for _, d := range []string{gone.String(), kept.String()} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			resp := e.do(t, method, blobURL(d))
			readAll(t, resp)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s before the delete: %s", method, d, resp.Status)
			}
		}
	}
	fetches := e.src.fetches.Load() + e.src.stats.Load()

	// A delete the origin refuses (the digest is not in this repository)
	// changes nothing.
	resp := e.do(t, http.MethodDelete, e.srv.URL+"/v2/eagle/other/blobs/"+gone.String())
	readAll(t, resp)
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("DELETE in another repository: %s, want 404 from the origin", resp.Status)
	}

	resp = e.do(t, http.MethodDelete, blobURL(gone.String()))
	readAll(t, resp)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE through the proxy: %s, want 202 from the origin", resp.Status)
	}
	if n := e.origin.BlobGETs(gone); n != 1 {
		t.Fatalf("origin served the deleted blob %d times, want 1 (the source's fill)", n)
	}

	resp = e.do(t, http.MethodHead, blobURL(gone.String()))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("HEAD after the delete: %s, want 404", resp.Status)
	}
	wantOCIError(t, e.do(t, http.MethodGet, blobURL(gone.String())), http.StatusNotFound, CodeBlobUnknown)

	// The other blob of the repository is still served from the cache.
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		resp := e.do(t, method, blobURL(kept.String()))
		readAll(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s of the blob not deleted: %s", method, resp.Status)
		}
	}
	if n := e.src.fetches.Load() + e.src.stats.Load() - fetches; n != 2 {
		t.Fatalf("blob source called %d times after the delete, want 2 (the blob not deleted)", n)
	}
	if n := e.methods.count(http.MethodDelete); n != 2 {
		t.Fatalf("proxy saw %d DELETEs, want 2", n)
	}
}
