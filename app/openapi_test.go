package app

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// The OpenAPI document is valid OpenAPI, needs no token, and lists
// exactly the routes the server serves, each with its permission.
func TestOpenAPIDocument(t *testing.T) {
	ts := start(t, "--data-dir", t.TempDir(), "--database-url", backends(t)[0].URL)
	resp, err := http.Get(ts.URL + "/api/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET /api/openapi.json: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("not valid OpenAPI: %v", err)
	}
	var plain struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
			Permission  string `json:"x-mdmd-permission"`
			RequestBody any    `json:"requestBody"`
		}
	}
	if err := json.Unmarshal(raw, &plain); err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, rt := range ts.srv.APIRoutes() {
		key := strings.ToLower(rt.Method) + " " + rt.Pattern
		served[key] = true
		op, ok := plain.Paths[rt.Pattern][strings.ToLower(rt.Method)]
		if !ok {
			t.Errorf("route %s is missing from the document", key)
			continue
		}
		if op.Permission != string(rt.Permission) || (op.RequestBody != nil) != rt.Body {
			t.Errorf("%s: permission %q body %v, want %q %v", key, op.Permission, op.RequestBody != nil, rt.Permission, rt.Body)
		}
	}
	ids := map[string]bool{}
	for path, ops := range plain.Paths {
		for method, op := range ops {
			if !served[method+" "+path] {
				t.Errorf("the document lists %s %s, which is not served", method, path)
			}
			if ids[op.OperationID] {
				t.Errorf("operationId %s twice", op.OperationID)
			}
			ids[op.OperationID] = true
		}
	}
	if len(served) < 100 {
		t.Errorf("only %d routes", len(served))
	}
}
