package origin

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/containerd/containerd/v2/core/remotes/docker/auth"
)

// AuthTransport is an http.RoundTripper that logs in to registries as
// docker clients do, so that PushRandomImage and PushRandomIndex can push to
// a registry that requires authentication:
//
//   - a request answered 401 with a Basic challenge is sent again with
//     Username and Password;
//   - a request answered 401 with a Bearer challenge makes it fetch a token
//     from the challenge's realm (GET with basic credentials, the
//     challenge's service and scope; containerd's token client) and send
//     the request again with it.
//
// The Authorization obtained is remembered per host and sent up front on
// later requests, so a request whose body cannot be replayed (a streamed
// upload) goes through once an earlier request to the host has logged in. A
// request that is refused again, or whose body cannot be replayed, gets the
// 401 response. A request that already carries an Authorization is left
// alone. AuthTransport is safe for concurrent use.
type AuthTransport struct {
	// Base makes the requests, the token requests included; nil means
	// http.DefaultTransport.
	Base http.RoundTripper
	// Username and Password are the credentials.
	Username, Password string

	mu    sync.Mutex
	authz map[string]string // host → Authorization last obtained
}

// NewAuthTransport returns an AuthTransport over base (nil for
// http.DefaultTransport) with the given credentials.
func NewAuthTransport(base http.RoundTripper, username, password string) *AuthTransport {
	return &AuthTransport{Base: base, Username: username, Password: password}
}

func (t *AuthTransport) base() http.RoundTripper {
	if t.Base == nil {
		return http.DefaultTransport
	}
	return t.Base
}

// RoundTrip implements http.RoundTripper.
func (t *AuthTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" {
		return t.base().RoundTrip(req)
	}
	host := req.URL.Host
	t.mu.Lock()
	sent := t.authz[host]
	t.mu.Unlock()

	first := req.Clone(req.Context())
	if sent != "" {
		first.Header.Set("Authorization", sent)
	}
	resp, err := t.base().RoundTrip(first)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	authz, err := t.login(req, resp)
	if err != nil {
		_ = resp.Body.Close()
		return nil, fmt.Errorf("origin: log in to %s: %w", host, err)
	}
	if authz == "" || authz == sent {
		// No usable challenge, or these credentials were just refused.
		return resp, nil
	}
	t.mu.Lock()
	if t.authz == nil {
		t.authz = make(map[string]string)
	}
	t.authz[host] = authz
	t.mu.Unlock()

	retry := req.Clone(req.Context())
	switch {
	case req.Body == nil || req.Body == http.NoBody:
	case req.GetBody != nil:
		body, err := req.GetBody()
		if err != nil {
			_ = resp.Body.Close()
			return nil, fmt.Errorf("origin: replay request body: %w", err)
		}
		retry.Body = body
	default:
		// The body went with the first attempt; the caller sees the 401.
		return resp, nil
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
	_ = resp.Body.Close()
	retry.Header.Set("Authorization", authz)
	return t.base().RoundTrip(retry)
}

// login answers resp's challenge and returns the Authorization value to
// send, or "" when resp has no Basic or Bearer challenge.
func (t *AuthTransport) login(req *http.Request, resp *http.Response) (string, error) {
	for _, c := range auth.ParseAuthHeader(resp.Header) {
		switch c.Scheme {
		case auth.BearerAuth:
			to, err := auth.GenerateTokenOptions(req.Context(), req.URL.Host, t.Username, t.Password, c)
			if err != nil {
				return "", err
			}
			tr, err := auth.FetchToken(req.Context(), &http.Client{Transport: t.base()}, nil, to)
			if err != nil {
				return "", fmt.Errorf("fetch token from %s: %w", to.Realm, err)
			}
			return "Bearer " + tr.Token, nil
		case auth.BasicAuth:
			if t.Username == "" {
				return "", nil
			}
			return "Basic " + base64.StdEncoding.EncodeToString([]byte(t.Username+":"+t.Password)), nil
		}
	}
	return "", nil
}
