package auth_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/opencontainers/go-digest"

	"github.com/eagle-p2p/eagle/auth"
	"github.com/eagle-p2p/eagle/blob"
)

// A registry proxy asks the origin, with each client's own credentials,
// whether the client may read a blob before it hands out bytes it holds.
func Example() {
	// A registry that lets alice read every blob and challenges everyone
	// else, as a registry with htpasswd authentication does.
	registry := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user, pass, ok := r.BasicAuth(); !ok || user != "alice" || pass != "s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="registry"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer registry.Close()

	a, err := auth.New(auth.Config{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Close()

	ref := blob.Ref{
		Upstream:   registry.URL,
		Repository: "library/alpine",
		Digest:     digest.FromString("a layer"),
	}
	alice, _ := http.NewRequest(http.MethodGet, "/", nil)
	alice.SetBasicAuth("alice", "s3cret")
	ref.Authorization = alice.Header.Get("Authorization")
	fmt.Println("alice:", a.Authorize(context.Background(), ref))

	ref.Authorization = ""
	err = a.Authorize(context.Background(), ref)
	var refusal *blob.OriginError
	if errors.As(err, &refusal) {
		// Answer the client the way the origin would have, so that it
		// logs in.
		fmt.Printf("anonymous: %v; challenge %s\n", err, refusal.WWWAuthenticate)
	}
	// Output:
	// alice: <nil>
	// anonymous: origin answered 401 Unauthorized; challenge Basic realm="registry"
}
