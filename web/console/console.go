// Package console is mdmd's web console: server-rendered pages
// (html/template, embedded with the stylesheet, no JavaScript) for signing
// in with a password and a TOTP second factor, the dashboard, the device
// list and a device's detail and actions, and two-person approvals.
//
// Every page and form declares the permission it needs; one wrapper
// (guard) checks it with mdmd.Role.Can, the same table the API uses, and
// audits denials as the API does. Templates get a "can" function backed
// by the same check, so a hidden button and a refused route never disagree.
package console

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/web"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Store is what the console reads and writes.
type Store interface {
	GetAdminUser(ctx context.Context, id string) (*mdmd.AdminUser, error)
	GetAdminUserByUsername(ctx context.Context, username string) (*mdmd.AdminUser, error)
	RecordLoginFailure(ctx context.Context, userID string, maxFailures int, lockFor time.Duration) (*mdmd.AdminUser, error)
	RecordLoginSuccess(ctx context.Context, userID string) error

	CreateConsoleSession(ctx context.Context, cs *mdmd.ConsoleSession) error
	GetConsoleSession(ctx context.Context, idHash string) (*mdmd.ConsoleSession, error)
	TouchConsoleSession(ctx context.Context, idHash string, at time.Time) error
	DeleteConsoleSession(ctx context.Context, idHash string) error
	PruneConsoleSessions(ctx context.Context, idleBefore time.Time) (int64, error)

	GetAdminTOTP(ctx context.Context, userID string) (*mdmd.AdminTOTP, error)
	PutPendingTOTP(ctx context.Context, userID string, sealed []byte) error
	UseTOTPStep(ctx context.Context, userID string, step int64, confirm bool) (bool, error)

	ConsoleListDevices(ctx context.Context, f mdmd.ConsoleDeviceFilter) ([]mdmd.ConsoleDevice, string, error)
	ConsoleCountDevices(ctx context.Context, f mdmd.ConsoleDeviceFilter) (int64, error)
	ConsoleDashboard(ctx context.Context, recent int) (*mdmd.Dashboard, error)
	DeviceTimeline(ctx context.Context, deviceID string, limit int) ([]mdmd.TimelineEntry, error)

	GetDevice(ctx context.Context, id string) (*mdmd.Device, error)
	DeviceGroups(ctx context.Context, deviceID string) ([]mdmd.Group, error)
	ListGroups(ctx context.Context) ([]mdmd.Group, error)
	GetPosture(ctx context.Context, deviceID string) (*mdmd.Posture, error)
	GetCompliance(ctx context.Context, deviceID string) (*mdmd.DeviceCompliance, error)
	ListCommands(ctx context.Context, f mdmd.CommandFilter) ([]mdmd.Command, string, error)
	DeviceProfiles(ctx context.Context, deviceID string) ([]mdmd.DeviceProfile, error)
	AppendAudit(ctx context.Context, e *mdmd.AuditEvent) error
}

// Approvals is the two-person approval service (package approvals).
type Approvals interface {
	Request(ctx context.Context, by *mdmd.Principal, kind, targetType, targetID, reason string, params any) (*mdmd.Approval, error)
	Approve(ctx context.Context, by *mdmd.Principal, id string) (*mdmd.Approval, error)
	Reject(ctx context.Context, by *mdmd.Principal, id, reason string) (*mdmd.Approval, error)
	List(ctx context.Context, state string, limit int) ([]mdmd.Approval, error)
	Get(ctx context.Context, id string) (*mdmd.Approval, error)
}

// Options configure the console.
type Options struct {
	Store    Store
	Commands *commands.Service
	// Approvals, when set, lets a full wipe be requested and approved;
	// without it the console offers no full wipe.
	Approvals Approvals
	// Audit, when set, adds the audit log viewer (permission audit:read).
	Audit AuditStore
	// Admin, when set, adds the settings pages for API tokens
	// (tokens:manage) and users (users:manage).
	Admin AdminStore
	// Enrollment, when set, adds the enrollment page (enroll:manage).
	Enrollment *Enrollment
	// PushCert, when set, adds the push certificate page (settings:manage).
	PushCert PushCertificate
	// Groups, when set, adds the groups page (devices:read to see,
	// groups:write to create and delete).
	Groups GroupStore
	// Policies, when set, adds the compliance policy pages (policies.go).
	Policies PolicyService
	// Profiles, when set, adds the configuration profile pages (profiles.go).
	Profiles ProfileService
	// AndroidEnterprise, when set, adds the Android Enterprise binding
	// settings page (android.go).
	AndroidEnterprise AndroidEnterprise
	// Webhooks, when set, adds the webhook settings pages (webhooks.go).
	Webhooks WebhookService
	// SSF, when set, adds the shared-signals stream settings page (ssf.go).
	SSF SSFAdmin
	// MTD, when set, adds the threat-defence partner settings page (mtd.go).
	MTD MTDAdmin
	// Bulk, when set, adds bulk actions on a filtered device list with
	// their progress (bulk.go).
	Bulk   BulkActions
	Box    *secret.Box
	Logger *slog.Logger
	// PublicURL is the server's URL: its origin is accepted on forms, and
	// an https URL makes cookies Secure even behind a TLS-terminating proxy.
	PublicURL string
	// TLS is set when the server itself serves TLS.
	TLS bool
	// Issuer names the server in authenticator apps (default "mdmd").
	Issuer string
	// MFARoles must use a TOTP second factor (default: admin).
	MFARoles []mdmd.Role
	// IdleTimeout ends an unused session (default 30 minutes);
	// MaxLifetime ends any session (default 12 hours).
	IdleTimeout, MaxLifetime time.Duration
	// MaxFailures failed sign-ins lock an account for LockFor (defaults 5, 15 minutes).
	MaxFailures int
	LockFor     time.Duration
	Now         func() time.Time
}

// DefaultIdleTimeout ends a console session nobody used for this long.
const DefaultIdleTimeout = 30 * time.Minute

// Route is one console route and the permission it requires ("" for
// pages every signed-in user may see, such as sign-in and sign-out).
type Route struct {
	Method, Pattern string
	Permission      mdmd.Permission
}

// Console serves the web console.
type Console struct {
	o      Options
	log    *slog.Logger
	pages  map[string]*template.Template
	routes []Route
	secure bool
	origin string
}

// New builds the console.
func New(o Options) (*Console, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Issuer == "" {
		o.Issuer = "mdmd"
	}
	if o.MFARoles == nil {
		o.MFARoles = []mdmd.Role{mdmd.RoleAdmin}
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.MaxLifetime <= 0 {
		o.MaxLifetime = 12 * time.Hour
	}
	if o.MaxFailures <= 0 {
		o.MaxFailures = 5
	}
	if o.LockFor <= 0 {
		o.LockFor = 15 * time.Minute
	}
	c := &Console{o: o, log: o.Logger, pages: map[string]*template.Template{}}
	if u, err := url.Parse(o.PublicURL); err == nil && u.Host != "" {
		c.origin = u.Scheme + "://" + u.Host
		c.secure = u.Scheme == "https"
	}
	c.secure = c.secure || o.TLS
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t, err := template.New(base).Funcs(c.funcs(nil)).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, err
		}
		c.pages[base] = t
	}
	return c, nil
}

// Routes lists every console route with its permission.
func (c *Console) Routes() []Route { return append([]Route(nil), c.routes...) }

// Register adds the console's routes (everything but the dashboard at /,
// which the application router shares with its discovery document; it
// calls Dashboard for browsers).
func (c *Console) Register(r chi.Router) {
	static, _ := fs.Sub(staticFS, "static")
	files := http.StripPrefix("/static/", http.FileServer(http.FS(static)))
	r.Get("/static/*", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, r)
	})
	r.Group(func(r chi.Router) {
		r.Use(c.headers, c.checkOrigin)
		r.Get("/login", c.loginForm)
		r.Post("/login", c.login)
		r.Get("/login/totp", c.totpForm)
		r.Post("/login/totp", c.totp)
		r.Group(func(r chi.Router) {
			r.Use(c.authenticate)
			c.handle(r, "POST", "/logout", "", c.logout)
			c.handle(r, "GET", "/devices", mdmd.PermDevicesRead, c.devices)
			c.handle(r, "GET", "/devices/{id}", mdmd.PermDevicesRead, c.device)
			c.handle(r, "POST", "/devices/{id}/actions/query", mdmd.PermCommandsQuery, c.actQuery)
			c.handle(r, "POST", "/devices/{id}/actions/lock", mdmd.PermCommandsLock, c.actLock)
			c.handle(r, "POST", "/devices/{id}/actions/clear-passcode", mdmd.PermCommandsLock, c.actClearPasscode)
			c.handle(r, "POST", "/devices/{id}/actions/wipe-selective", mdmd.PermCommandsWipe, c.actWipeSelective)
			if c.o.Groups != nil {
				c.handle(r, "GET", "/groups", mdmd.PermDevicesRead, c.groups)
				c.handle(r, "POST", "/groups", mdmd.PermGroupsWrite, c.createGroup)
				c.handle(r, "POST", "/groups/{id}/delete", mdmd.PermGroupsWrite, c.deleteGroup)
				c.handle(r, "GET", "/groups/{id}", mdmd.PermDevicesRead, c.group)
				c.handle(r, "POST", "/groups/{id}/members", mdmd.PermGroupsWrite, c.addMembers)
				c.handle(r, "POST", "/groups/{id}/members/{device}/remove", mdmd.PermGroupsWrite, c.removeMember)
			}
			if c.o.PushCert != nil {
				c.handle(r, "GET", "/settings/push-certificate", mdmd.PermSettingsManage, c.pushCert)
				c.handle(r, "POST", "/settings/push-certificate", mdmd.PermSettingsManage, c.uploadPushCert)
			}
			if c.o.Enrollment != nil {
				c.handle(r, "GET", "/enrollment", mdmd.PermEnrollManage, c.enrollment)
				c.handle(r, "POST", "/enrollment/links", mdmd.PermEnrollManage, c.createLink)
				c.handle(r, "POST", "/enrollment/links/{id}/revoke", mdmd.PermEnrollManage, c.revokeLink)
				c.handle(r, "POST", "/enrollment/android-tokens", mdmd.PermEnrollManage, c.createAndroidToken)
				c.handle(r, "POST", "/enrollment/android-tokens/{id}/revoke", mdmd.PermEnrollManage, c.revokeAndroidToken)
			}
			if c.o.Admin != nil {
				c.handle(r, "GET", "/settings/tokens", mdmd.PermTokensManage, c.tokens)
				c.handle(r, "POST", "/settings/tokens", mdmd.PermTokensManage, c.createToken)
				c.handle(r, "POST", "/settings/tokens/{id}/revoke", mdmd.PermTokensManage, c.revokeToken)
				c.handle(r, "GET", "/settings/users", mdmd.PermUsersManage, c.usersList)
				c.handle(r, "POST", "/settings/users", mdmd.PermUsersManage, c.createUser)
				c.handle(r, "POST", "/settings/users/{id}/disable", mdmd.PermUsersManage, c.setUserDisabled(true))
				c.handle(r, "POST", "/settings/users/{id}/enable", mdmd.PermUsersManage, c.setUserDisabled(false))
				c.handle(r, "POST", "/settings/users/{id}/reset-totp", mdmd.PermUsersManage, c.resetTOTP)
			}
			if c.o.Audit != nil {
				c.handle(r, "GET", "/audit", mdmd.PermAuditRead, c.auditLog)
			}
			c.handle(r, "GET", "/settings", mdmd.PermSettingsManage, c.settingsIndex)
			c.registerPolicies(r)
			c.registerProfiles(r)
			c.registerAndroid(r)
			c.registerWebhooks(r)
			c.registerSSF(r)
			c.registerMTD(r)
			c.registerBulk(r)
			if c.o.Approvals != nil {
				c.handle(r, "POST", "/devices/{id}/actions/wipe-full", mdmd.PermCommandsWipe, c.actWipeFull)
				c.handle(r, "GET", "/approvals", mdmd.PermCommandsWipe, c.approvals)
				c.handle(r, "POST", "/approvals/{id}/approve", mdmd.PermCommandsWipe, c.approve)
				c.handle(r, "POST", "/approvals/{id}/reject", mdmd.PermCommandsWipe, c.reject)
			}
		})
	})
	c.routes = append(c.routes, Route{Method: "GET", Pattern: "/", Permission: mdmd.PermDevicesRead})
}

// Dashboard serves the front page to a browser.
func (c *Console) Dashboard() http.Handler {
	return c.headers(c.authenticate(c.guard("GET", "/", mdmd.PermDevicesRead, c.dashboard)))
}

// WantsHTML reports whether a request to a shared path comes from a
// browser (it accepts text/html), rather than an API client.
func WantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (c *Console) handle(r chi.Router, method, pattern string, perm mdmd.Permission, h handlerFunc) {
	if method != "POST" || pattern != "/logout" {
		c.routes = append(c.routes, Route{Method: method, Pattern: pattern, Permission: perm})
	}
	r.Method(method, pattern, c.guard(method, pattern, perm, h))
}

// guard is where every signed-in console request is checked: the CSRF
// token of a form, then the route's permission (a denial is audited as
// the API audits it), then the handler, whose error becomes a page.
func (c *Console) guard(method, pattern string, perm mdmd.Permission, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := stateFrom(r.Context())
		if r.Method == http.MethodPost && !c.validCSRF(r, s.sess.CSRFToken) {
			c.audit(r, "access.denied", "route", method+" "+pattern, mdmd.OutcomeDenied, "missing or wrong CSRF token", nil)
			c.fail(w, r, mdmd.Errorf(mdmd.EForbidden,
				"The form was refused because its security token was missing or out of date. Reload the page and try again."))
			return
		}
		if perm != "" && !s.principal.Role.Can(perm) {
			c.audit(r, "access.denied", "route", method+" "+pattern, mdmd.OutcomeDenied, "", nil)
			c.fail(w, r, mdmd.Errorf(mdmd.EForbidden, "Your role (%s) lacks the permission %s needed here.", s.principal.Role, perm))
			return
		}
		if err := h(w, r); err != nil {
			c.fail(w, r, err)
		}
	})
}

// headers sets what every console page carries: no caching of pages with
// fleet data, and a content security policy that allows no script at all.
func (c *Console) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		// With no-referrer, browsers send "Origin: null" on form posts;
		// same-origin keeps the origin check meaningful and leaks nothing
		// to other sites.
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "+
			"frame-ancestors 'none'; base-uri 'none'")
		next.ServeHTTP(w, r)
	})
}

// checkOrigin refuses a cross-site state-changing request before anything
// else looks at it: the browser's Sec-Fetch-Site and Origin headers must
// name this server. (The CSRF token is checked as well.)
func (c *Console) checkOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !c.sameOrigin(r) {
			c.audit(r, "access.denied", "route", r.Method+" "+r.URL.Path, mdmd.OutcomeDenied, "cross-site request", nil)
			c.fail(w, r, mdmd.Errorf(mdmd.EForbidden, "The form was refused: it was sent from another site."))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (c *Console) sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true // not sent by older browsers on same-origin posts; the CSRF token still applies
	}
	if o == "null" {
		return false
	}
	if c.origin != "" && o == c.origin {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// pageData is what every template gets.
type pageData struct {
	Title   string
	Nav     string
	User    *mdmd.AdminUser
	CSRF    string
	Flash   string
	Error   string
	Field   string // the field the error is about, if any
	Form    url.Values
	Content any
	// FullWipe reports whether full wipes (with approval) are available.
	FullWipe bool
	// Refresh, when positive, reloads the page after that many seconds
	// (a bulk action's progress; the console runs no script), marked as
	// an automatic request (AutoRefresh) that does not keep the session
	// alive.
	Refresh      int
	RefreshQuery string
}

// funcs are the template functions for a request by p (nil while parsing).
func (c *Console) funcs(p *mdmd.Principal) template.FuncMap {
	return template.FuncMap{
		"can": func(perm string) bool { return p != nil && p.Role.Can(mdmd.Permission(perm)) },
		// has reports whether an optional part of the console is configured.
		"has":   c.has,
		"chart": barChart,
		"label": labelText,
		"ago":   ago,
		"when": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				return v.UTC().Format("2006-01-02 15:04 UTC")
			case *time.Time:
				if v == nil {
					return "never"
				}
				return v.UTC().Format("2006-01-02 15:04 UTC")
			}
			return ""
		},
		"deref": func(s *string) string {
			if s == nil {
				return ""
			}
			return *s
		},
		"deref2": func(b *bool) bool { return b != nil && *b },
		"yesno": func(b *bool) string {
			if b == nil {
				return "unknown"
			}
			if *b {
				return "yes"
			}
			return "no"
		},
		// query is a link's query string: v with the pairs in kv set (or
		// removed when empty), encoded once. (As a plain string,
		// html/template would escape it again after the "?".)
		"query": func(v url.Values, kv ...string) template.URL {
			q := url.Values{}
			for k, vs := range v {
				q[k] = vs
			}
			for i := 0; i+1 < len(kv); i += 2 {
				if kv[i+1] == "" {
					q.Del(kv[i])
				} else {
					q.Set(kv[i], kv[i+1])
				}
			}
			return template.URL(q.Encode())
		},
		"get": func(v url.Values, k string) string { return v.Get(k) },
	}
}

func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	d := time.Since(*t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour") + " ago"
	}
	return plural(int(d.Hours()/24), "day") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strings.TrimSpace(strings.Join([]string{itoa(n), unit + "s"}, " "))
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// render writes a page. It renders into a buffer first, so a template
// error is a clean 500 rather than half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, d *pageData) {
	var p *mdmd.Principal
	if s := stateFrom(r.Context()); s != nil {
		p = s.principal
		d.User = s.user
		if s.sess != nil {
			d.CSRF = s.sess.CSRFToken
		}
	}
	d.FullWipe = c.o.Approvals != nil
	if d.Refresh > 0 {
		q := r.URL.Query()
		q.Del("done")
		q.Set(AutoRefresh, "1")
		d.RefreshQuery = q.Encode()
	}
	base, ok := c.pages[name]
	if !ok {
		c.log.Error("console: no such template", "name", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	t, err := base.Clone()
	if err == nil {
		t = t.Funcs(c.funcs(p))
		var buf bytes.Buffer
		if err = t.ExecuteTemplate(&buf, "layout", d); err == nil {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(status)
			w.Write(buf.Bytes())
			return
		}
	}
	c.log.ErrorContext(r.Context(), "console: rendering failed", "page", name, "err", err, "request_id", web.RequestID(r.Context()))
	http.Error(w, "internal error", http.StatusInternalServerError)
}

// fail renders an error as a page with the status its code maps to. An
// internal error is logged and shown without its details.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	msg := mdmd.ErrorMessage(err)
	if status == http.StatusInternalServerError {
		if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
			return
		}
		c.log.ErrorContext(r.Context(), "console request failed", "err", err, "path", r.URL.Path,
			"request_id", web.RequestID(r.Context()))
		msg = "Something went wrong on the server. The error was logged with request ID " + web.RequestID(r.Context()) + "."
	}
	c.render(w, r, status, "error", &pageData{Title: http.StatusText(status), Error: msg})
}

// refusedForm shows a page again after a form was refused: the error next
// to its field and what was typed (refusedData), with the status the
// error maps to. An error of the server's own is an error page instead.
func refusedForm(r *http.Request, err error, show func(status int, data *pageData) error) error {
	if statusOf(err) == http.StatusInternalServerError {
		return err
	}
	return show(statusOf(err), refusedData(r, err))
}

// refusedData is the page data of a refused form: the error, the field it
// is about, and the form as typed, without its CSRF token and without any
// password (never sent back to the browser).
func refusedData(r *http.Request, err error) *pageData {
	form := url.Values{}
	for k, vs := range r.PostForm {
		switch k {
		case "csrf", "password", "new_password":
		default:
			form[k] = vs
		}
	}
	return &pageData{Error: mdmd.ErrorMessage(err), Field: fieldOf(err), Form: form}
}

// statusOf is the HTTP status of an error, from the API's one mapping.
func statusOf(err error) int { return web.StatusOf(err) }

// audit records a console action the way the API records its own.
func (c *Console) audit(r *http.Request, action, targetType, targetID, outcome, reason string, details any) {
	c.auditAs(r, nil, action, targetType, targetID, outcome, reason, details)
}

// auditAs is audit on behalf of a user who is not signed in yet.
func (c *Console) auditAs(r *http.Request, u *mdmd.AdminUser, action, targetType, targetID, outcome, reason string, details any) {
	e := &mdmd.AuditEvent{ActorType: mdmd.ActorAdmin, Actor: "anonymous", Action: action, TargetType: targetType,
		TargetID: targetID, Outcome: outcome, Reason: reason, RequestID: web.RequestID(r.Context())}
	if s := stateFrom(r.Context()); s != nil && s.principal != nil {
		e.Actor = s.principal.Name + " (" + s.principal.ID + ")"
	} else if u != nil {
		e.Actor = u.Username + " (" + u.ID + ")"
	}
	if details != nil {
		e.Details, _ = json.Marshal(details)
	}
	if err := c.o.Store.AppendAudit(r.Context(), e); err != nil {
		c.log.Error("audit append failed", "err", err, "action", action, "request_id", e.RequestID)
	}
}
