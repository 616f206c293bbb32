package app

import (
	"encoding/json"
	"net/http"
)

// index serves a small discovery document at / and hands every other path
// to the API.
func index(api http.Handler, publicURL string) http.Handler {
	doc, _ := json.MarshalIndent(map[string]string{
		"name":    "mdmd",
		"version": Version,
		"api":     publicURL + "/api/v1",
		"health":  publicURL + "/healthz",
		"ready":   publicURL + "/readyz",
		"metrics": publicURL + "/metrics",
	}, "", "  ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" && r.Method == http.MethodGet {
			w.Header().Set("Content-Type", "application/json")
			w.Write(doc)
			return
		}
		api.ServeHTTP(w, r)
	})
}
