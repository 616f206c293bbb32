package app

import (
	"encoding/json"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android"
	"github.com/mdmd/mdmd/apple/mdm"
	"github.com/mdmd/mdmd/enroll"
	"github.com/mdmd/mdmd/web"
)

// routes assembles everything served once the database is ready: a
// discovery document at /, the admin API, and the device-facing endpoints
// (enrollment profile, SCEP, MDM check-in and commands).
func (s *Server) routes(api http.Handler, enr *enroll.Service, m *mdm.Service, and *android.Service, public ...func(chi.Router)) http.Handler {
	doc, _ := json.MarshalIndent(map[string]string{
		"name":            "mdmd",
		"version":         Version,
		"api":             s.cfg.PublicURL + "/api/v1",
		"health":          s.cfg.PublicURL + "/healthz",
		"ready":           s.cfg.PublicURL + "/readyz",
		"metrics":         s.cfg.PublicURL + "/metrics",
		"ssf":             s.cfg.PublicURL + "/.well-known/ssf-configuration",
		"compliance_jwks": s.cfg.PublicURL + "/compliance/jwks.json",
	}, "", "  ")
	r := chi.NewRouter()
	log := s.log.With("component", "http")
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		web.WriteError(w, r, log, mdmd.Errorf(mdmd.ENotFound, "no such route: %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		web.WriteError(w, r, log, mdmd.Errorf(mdmd.EMethod, "method %s is not allowed on %s", r.Method, r.URL.Path))
	})
	r.Get("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	})
	r.Mount("/api", api)
	r.Get("/enroll/{token}", enr.ServeEnroll)
	r.HandleFunc(enroll.PathSCEP, enr.ServeSCEP)
	r.HandleFunc(enroll.PathMDMCheckin, m.ServeCheckin)
	r.HandleFunc(enroll.PathMDMConnect, m.ServeConnect)
	r.Post("/android/pubsub/{secret}", and.ServePubSub)
	for _, add := range public {
		add(r)
	}
	return r
}
