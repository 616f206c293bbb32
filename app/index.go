package app

import (
	"encoding/json"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android"
	"github.com/mdmd/mdmd/apple/mdm"
	"github.com/mdmd/mdmd/bulk"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/compliance"
	"github.com/mdmd/mdmd/enroll"
	"github.com/mdmd/mdmd/profiles"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/ssf"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/web"
	"github.com/mdmd/mdmd/web/console"
	"github.com/mdmd/mdmd/webhooks"
)

// routes assembles everything served once the database is ready: the web
// console for browsers (its dashboard at /), a discovery document at / for
// every other client and at /.well-known/mdmd, the admin API, and the
// device-facing endpoints (enrollment profile, SCEP, MDM check-in and
// commands). The console's paths (/login, /logout, /devices, /approvals,
// /static) are disjoint from every other route.
func (s *Server) routes(api http.Handler, enr *enroll.Service, m *mdm.Service, and *android.Service, con *console.Console, public ...func(chi.Router)) http.Handler {
	doc, _ := json.MarshalIndent(map[string]string{
		"name":            "mdmd",
		"version":         Version,
		"api":             s.cfg.PublicURL + "/api/v1",
		"health":          s.cfg.PublicURL + "/healthz",
		"ready":           s.cfg.PublicURL + "/readyz",
		"metrics":         s.cfg.PublicURL + "/metrics",
		"ssf":             s.cfg.PublicURL + "/.well-known/ssf-configuration",
		"compliance_jwks": s.cfg.PublicURL + "/compliance/jwks.json",
		"console":         s.cfg.PublicURL + "/",
	}, "", "  ")
	r := chi.NewRouter()
	log := s.log.With("component", "http")
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		web.WriteError(w, r, log, mdmd.Errorf(mdmd.ENotFound, "no such route: %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		web.WriteError(w, r, log, mdmd.Errorf(mdmd.EMethod, "method %s is not allowed on %s", r.Method, r.URL.Path))
	})
	discovery := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	}
	var dashboard http.Handler
	if con != nil {
		dashboard = con.Dashboard()
		con.Register(r)
	}
	r.Get("/", func(w http.ResponseWriter, r *http.Request) {
		if dashboard != nil && console.WantsHTML(r) {
			w.Header().Add("Vary", "Accept")
			dashboard.ServeHTTP(w, r)
			return
		}
		w.Header().Add("Vary", "Accept")
		discovery(w, r)
	})
	r.Get("/.well-known/mdmd", discovery)
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

// newConsole builds the web console on the server's services. Full wipes
// from the console go through the approval service.
// consoleDeps are the services the console's pages use.
type consoleDeps struct {
	st          *storage.Store
	cmds        *commands.Service
	approvals   console.Approvals
	box         *secret.Box
	enroll      *enroll.Service
	android     *android.Service
	push        console.PushCertificate
	compliance  *compliance.Service
	profiles    *profiles.Service
	webhooks    *webhooks.Service
	transmitter *ssf.Transmitter
	bulk        *bulk.Service
}

func (s *Server) newConsole(d consoleDeps) (*console.Console, error) {
	enrollment := &console.Enrollment{Links: d.enroll, Android: d.android, Store: d.st}
	return console.New(console.Options{Store: d.st, Commands: d.cmds, Approvals: d.approvals, Audit: d.st, Admin: d.st, Box: d.box,
		Enrollment: enrollment, Logger: s.log.With("component", "console"), PublicURL: s.cfg.PublicURL,
		TLS: s.cfg.TLSCert != "", Issuer: consoleIssuer(s.cfg.Org), PushCert: d.push, Groups: console.ObserveGroups(d.st, d.profiles),
		Policies: d.compliance.Policies(d.st), Profiles: d.profiles, AndroidEnterprise: d.android, Webhooks: d.webhooks,
		SSF: d.transmitter, MTD: console.MTD{MTDStore: d.st, MTDAPI: compliance.MTDAPI{Store: d.st, Wake: d.compliance.Wake}}, Bulk: d.bulk})
}

func consoleIssuer(org string) string {
	if org == "" {
		return "mdmd"
	}
	return "mdmd " + org
}
