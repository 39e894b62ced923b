package preheat_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/eagle-p2p/eagle/blob"
	"github.com/eagle-p2p/eagle/seeder/preheat"
)

// unreachable is a MetaInfoSource for the fuzz target, whose jobs never
// get past their manifest (nothing listens at the allowed upstream).
type unreachable struct{}

func (unreachable) MetaInfo(context.Context, blob.Ref) ([]byte, error) {
	return nil, errors.New("no seeder in the fuzz test")
}

// FuzzHandler posts arbitrary bodies to every POST endpoint: the answer is
// a JSON 202, 400, 413 or 415, never a panic or a 5xx.
func FuzzHandler(f *testing.F) {
	for _, s := range []string{
		`{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","repository":"a/b","url":"http://127.0.0.1:1/v2/a/b/manifests/x","tag":"t"}}]}`,
		`{"events":[{"action":"pull","target":{}}]}`,
		`{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","resource_url":"127.0.0.1:1/a/b:t"}],"repository":{"repo_full_name":"a/b"}}}`,
		`{"specversion":"1.0","type":"harbor.artifact.pushed","data":{"resources":[],"repository":{"namespace":"a","name":"b"}}}`,
		`{"image":"127.0.0.1:1/a/b:t","platforms":["linux/arm64/v8"]}`,
		`{"image":"127.0.0.1:1/a/b@sha256:zz"}`,
		`{"events":null}`, `[]`, `null`, ``, `{"image":7}`,
	} {
		for _, path := range []string{"/notifications", "/notifications/harbor", "/preheat"} {
			f.Add(path, s)
		}
	}
	f.Fuzz(func(t *testing.T, path, body string) {
		if path != "/notifications" && path != "/notifications/harbor" {
			path = "/preheat"
		}
		svc, err := preheat.New(preheat.Config{Secret: "s", AllowedUpstreams: []string{"127.0.0.1:1"}, MaxBody: 4096,
			Registries: []preheat.Registry{{Host: "127.0.0.1:1", PlainHTTP: true}}}, unreachable{})
		if err != nil {
			t.Fatal(err)
		}
		defer svc.Close()
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer s")
		w := httptest.NewRecorder()
		svc.Handler().ServeHTTP(w, req)
		switch w.Code {
		case http.StatusAccepted, http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		default:
			t.Fatalf("POST %s %q: %d %s", path, body, w.Code, w.Body.String())
		}
		if !json.Valid(w.Body.Bytes()) {
			t.Fatalf("POST %s %q: answer is not JSON: %q", path, body, w.Body.String())
		}
	})
}
