// Package web is mdmd's HTTP layer: the root handler with health,
// readiness and metrics endpoints, the middleware every request passes
// (request IDs, logging, metrics, panic recovery, body limits, security
// headers), and the admin JSON API under /api/v1.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mdmd/mdmd"
)

// RootOptions configure the root handler.
type RootOptions struct {
	Logger       *slog.Logger
	Registry     *prometheus.Registry
	MaxBodyBytes int64
	TLS          bool
}

// Root is the server's top-level handler. It serves /healthz, /readyz and
// /metrics from the first moment; every other path answers 503 until the
// application is ready (database connected and migrated) and SetReady
// installs it.
type Root struct {
	router chi.Router
	log    *slog.Logger
	app    atomic.Pointer[readyState]
}

type readyState struct {
	handler http.Handler
	check   func(context.Context) error
}

// NewRoot builds the root handler.
func NewRoot(o RootOptions) *Root {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 4 << 20
	}
	rt := &Root{router: chi.NewRouter(), log: o.Logger}
	m := newHTTPMetrics(o.Registry)
	rt.router.Use(requestID, observe(o.Logger, m), securityHeaders(o.TLS), limitBody(o.MaxBodyBytes, o.Logger))
	rt.router.MethodNotAllowed(methodNotAllowed(o.Logger))
	rt.router.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	rt.router.Get("/readyz", rt.readyz)
	if o.Registry != nil {
		rt.router.Method(http.MethodGet, "/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{}))
	}
	rt.router.Handle("/*", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := rt.app.Load()
		if st == nil {
			WriteError(w, r, rt.log, mdmd.Errorf(mdmd.EUnavailable, "mdmd is starting: the database is not ready yet"))
			return
		}
		st.handler.ServeHTTP(w, r)
	}))
	return rt
}

func methodNotAllowed(log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, log, mdmd.Errorf(mdmd.EMethod, "method %s is not allowed on %s", r.Method, r.URL.Path))
	}
}

// SetReady installs the application handler and the readiness check that
// /readyz runs from now on.
func (rt *Root) SetReady(h http.Handler, check func(context.Context) error) {
	rt.app.Store(&readyState{handler: h, check: check})
}

func (rt *Root) ServeHTTP(w http.ResponseWriter, r *http.Request) { rt.router.ServeHTTP(w, r) }

func (rt *Root) readyz(w http.ResponseWriter, r *http.Request) {
	st := rt.app.Load()
	if st == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "starting", "reason": "database not ready"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := st.check(ctx); err != nil {
		rt.log.Warn("readiness check failed", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "database unreachable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
