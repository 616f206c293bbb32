package web

import (
	"encoding/json"
	"net/http"
	"regexp"
	"sort"
	"strings"

	"github.com/mdmd/mdmd"
)

// OpenAPIPath is where the OpenAPI document of the admin API is served.
const OpenAPIPath = "/api/openapi.json"

var pathParam = regexp.MustCompile(`\{([a-z_]+)\}`)

// OpenAPI returns the OpenAPI 3.0 document of the admin API, built from
// the route table itself, so that it lists exactly the routes served:
// each operation with its path parameters, whether it takes a JSON body,
// the permission it needs (x-mdmd-permission) and the error shape.
func (a *API) OpenAPI(version, serverURL string) map[string]any {
	paths := map[string]map[string]any{}
	ids := map[string]int{}
	for _, rt := range a.routes {
		op := map[string]any{
			"operationId": operationID(rt, ids),
			"summary":     summary(rt),
			"tags":        []string{tag(rt.Pattern)},
			"responses": map[string]any{
				"2XX": map[string]any{"description": "success", "content": map[string]any{
					"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}},
				"400": errorResponse("invalid input; nothing was changed"),
				"401": errorResponse("no or an invalid bearer token"),
				"403": errorResponse("the token's role lacks the permission"),
				"404": errorResponse("no such object"),
				"409": errorResponse("the object's state does not allow it"),
			},
		}
		if rt.Permission != "" {
			op["x-mdmd-permission"] = string(rt.Permission)
		}
		var params []map[string]any
		for _, m := range pathParam.FindAllStringSubmatch(rt.Pattern, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.Body {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}}
			op["responses"].(map[string]any)["413"] = errorResponse("the body is too large")
			op["responses"].(map[string]any)["415"] = errorResponse("the body is not JSON")
		}
		p := paths[rt.Pattern]
		if p == nil {
			p = map[string]any{}
			paths[rt.Pattern] = p
		}
		p[strings.ToLower(rt.Method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{"title": "mdmd admin API", "version": version,
			"description": "Every route needs a bearer token; x-mdmd-permission names the permission a token's role must grant."},
		"servers":  []map[string]any{{"url": serverURL}},
		"security": []map[string]any{{"bearer": []string{}}},
		"paths":    paths,
		"components": map[string]any{
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer"}},
			"schemas": map[string]any{"Error": map[string]any{"type": "object", "required": []string{"error"},
				"properties": map[string]any{"error": map[string]any{"type": "object", "required": []string{"code", "message"},
					"properties": map[string]any{
						"code":       map[string]any{"type": "string", "enum": errorCodes()},
						"message":    map[string]any{"type": "string"},
						"request_id": map[string]any{"type": "string"}}}}}},
		},
	}
}

func errorResponse(what string) map[string]any {
	return map[string]any{"description": what, "content": map[string]any{
		"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/Error"}}}}
}

// ServeOpenAPI serves the document; it needs no token.
func (a *API) ServeOpenAPI(version, serverURL string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := json.MarshalIndent(a.OpenAPI(version, serverURL), "", "  ")
		if err != nil {
			WriteError(w, r, a.log, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}
}

func tag(pattern string) string {
	seg := strings.Split(strings.TrimPrefix(pattern, "/api/v1/"), "/")
	return seg[0]
}

// operationID is the method and the path's words, unique in the document.
func operationID(rt Route, seen map[string]int) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, seg := range strings.Split(strings.TrimPrefix(rt.Pattern, "/api/v1/"), "/") {
		seg = strings.Trim(seg, "{}")
		for _, w := range strings.FieldsFunc(seg, func(r rune) bool { return r == '-' || r == '_' || r == '.' || r == ':' }) {
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	id := b.String()
	seen[id]++
	if n := seen[id]; n > 1 {
		id += strings.Repeat("X", n-1)
	}
	return id
}

func summary(rt Route) string {
	verb := map[string]string{"GET": "Read", "POST": "Create or run", "PUT": "Replace", "PATCH": "Update", "DELETE": "Delete"}[rt.Method]
	return verb + " " + strings.TrimPrefix(rt.Pattern, "/api/v1")
}

func errorCodes() []string {
	codes := []string{mdmd.EInvalid, mdmd.EUnauthenticated, mdmd.EForbidden, mdmd.ENotFound, mdmd.EConflict, mdmd.ETooLarge,
		mdmd.EUnavailable, mdmd.ERateLimited, mdmd.EInternal, mdmd.ELeaseLost, mdmd.EUnsupported, mdmd.EMethod, mdmd.EDeviceAuth}
	sort.Strings(codes)
	return codes
}
