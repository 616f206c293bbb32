package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mdmd/mdmd"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyPrincipal
)

// RequestID returns the ID of the request being served.
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(keyRequestID).(string)
	return id
}

// PrincipalFrom returns the authenticated caller, or nil.
func PrincipalFrom(ctx context.Context) *mdmd.Principal {
	p, _ := ctx.Value(keyPrincipal).(*mdmd.Principal)
	return p
}

// WithPrincipal returns ctx carrying p (for authentication middleware).
func WithPrincipal(ctx context.Context, p *mdmd.Principal) context.Context {
	return context.WithValue(ctx, keyPrincipal, p)
}

var requestIDRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,100}$`)

// requestID takes a well-formed X-Request-Id from the caller (a proxy's) or
// makes one, and echoes it in the response.
func requestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if !requestIDRE.MatchString(id) {
			b := make([]byte, 12)
			rand.Read(b)
			id = hex.EncodeToString(b)
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyRequestID, id)))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// httpMetrics are the request metrics of one server.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mdmd_http_requests_total", Help: "HTTP requests by route pattern, method and status.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mdmd_http_request_duration_seconds", Help: "HTTP request latency by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 3, 10),
		}, []string{"route", "method"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration)
	}
	return m
}

// observe logs each request and records its metrics. It also recovers a
// panicking handler: the panic is logged with its stack and the caller gets
// a JSON 500, and the server keeps serving.
func observe(log *slog.Logger, m *httpMetrics) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			sw := &statusWriter{ResponseWriter: w}
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					log.ErrorContext(r.Context(), "panic serving request", "panic", p, "stack", string(debug.Stack()),
						"request_id", RequestID(r.Context()), "method", r.Method, "path", LogPath(r))
					if sw.status == 0 {
						WriteError(sw, r, log, mdmd.Errorf(mdmd.EInternal, "internal error"))
					}
				}
				route := routePattern(r)
				status := sw.status
				if status == 0 {
					status = http.StatusOK
				}
				elapsed := time.Since(start)
				m.requests.WithLabelValues(route, r.Method, strconv.Itoa(status)).Inc()
				m.duration.WithLabelValues(route, r.Method).Observe(elapsed.Seconds())
				level := slog.LevelInfo
				if route == "/healthz" || route == "/readyz" || route == "/metrics" {
					level = slog.LevelDebug
				}
				log.Log(r.Context(), level, "request", "method", r.Method, "route", route, "path", LogPath(r),
					"status", status, "bytes", sw.bytes, "duration_ms", float64(elapsed.Microseconds())/1000,
					"request_id", RequestID(r.Context()), "remote", r.RemoteAddr)
			}()
			next.ServeHTTP(sw, r)
		})
	}
}

// secretPaths are path prefixes whose rest is a secret (enrollment links).
var secretPaths = []string{"/enroll/", "/android/pubsub/"}

// LogPath is the request path as it may be logged: the secret part of an
// enrollment link is left out.
func LogPath(r *http.Request) string {
	for _, p := range secretPaths {
		if strings.HasPrefix(r.URL.Path, p) {
			return p + "[redacted]"
		}
	}
	return r.URL.Path
}

// routePattern is the matched chi pattern, so metrics stay low-cardinality.
func routePattern(r *http.Request) string {
	if rc := chi.RouteContext(r.Context()); rc != nil {
		if p := rc.RoutePattern(); p != "" {
			if p = strings.TrimSuffix(p, "/*"); p == "" {
				p = "/"
			}
			return p
		}
	}
	return "unmatched"
}

// limitBody caps every request body; a declared length over the cap is
// refused before the handler runs.
func limitBody(max int64, log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > max {
				WriteError(w, r, log, mdmd.Errorf(mdmd.ETooLarge, "request body exceeds %d bytes", max))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, max)
			next.ServeHTTP(w, r)
		})
	}
}

// securityHeaders sets headers every response should carry.
func securityHeaders(tls bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("X-Frame-Options", "DENY")
			h.Set("Referrer-Policy", "no-referrer")
			if tls {
				h.Set("Strict-Transport-Security", "max-age=31536000")
			}
			next.ServeHTTP(w, r)
		})
	}
}
