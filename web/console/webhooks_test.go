package console

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/compliance"
	"github.com/mdmd/mdmd/jwtsign"
	"github.com/mdmd/mdmd/secret"
	"github.com/mdmd/mdmd/ssf"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
	"github.com/mdmd/mdmd/web"
	"github.com/mdmd/mdmd/webhooks"
)

// settingsRig is a console with the webhook, SSF and MTD settings pages
// beside the admin API on the same services, on one backend.
type settingsRig struct {
	t        *testing.T
	st       *storage.Store
	hooks    *webhooks.Service
	tr       *ssf.Transmitter
	console  http.Handler
	api      http.Handler
	sessions map[mdmd.Role]string
	woken    int
	mu       sync.Mutex
}

func newSettingsRig(t *testing.T, dbURL string) *settingsRig {
	t.Helper()
	g := &settingsRig{t: t, sessions: map[mdmd.Role]string{}}
	g.st = storagetest.Open(t, dbURL, storage.Options{})
	box, err := secret.New(bytes.Repeat([]byte{9}, secret.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	g.hooks = webhooks.New(g.st, box, webhooks.Options{Logger: log})
	keys := jwtsign.New(g.st, box, jwtsign.Options{Ring: ssf.KeyRing, MaxTokenLifetime: ssf.KeyRetention, Logger: log, PrePublish: -1})
	if g.tr, err = ssf.New(g.st, ssf.Options{Issuer: "https://mdm.example.com", Keys: keys, Box: box, Logger: log}); err != nil {
		t.Fatal(err)
	}
	mtd := compliance.MTDAPI{Store: g.st, Wake: func() { g.mu.Lock(); g.woken++; g.mu.Unlock() }}
	c, err := New(Options{Store: g.st, Admin: g.st, Webhooks: g.hooks, SSF: g.tr, MTD: MTD{MTDStore: g.st, MTDAPI: mtd},
		PublicURL: "http://127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	c.Register(r)
	g.console = r
	api := web.NewAPI(web.APIDeps{Devices: g.st, Groups: g.st, Commands: g.st, Tokens: g.st, Audit: g.st, Logger: log,
		Modules: []web.Module{g.hooks, g.tr, mtd}})
	root := chi.NewRouter()
	root.Mount("/api", api)
	g.api = root
	for _, role := range []mdmd.Role{mdmd.RoleAdmin, mdmd.RoleViewer, mdmd.RoleHelpdesk, mdmd.RoleAuditor} {
		g.sessions[role], _ = signIn(t, g.st, role)
	}
	return g
}

// do sends a console request as a user of the role. A form gets the
// session's CSRF token unless its "csrf" is "-".
func (g *settingsRig) do(role mdmd.Role, method, path string, form url.Values) (int, string) {
	return send(g.console, g.sessions[role], method, path, form, nil)
}

// call sends an admin API request with a bearer token.
func (g *settingsRig) call(method, path, token string, body any) (int, []byte) {
	g.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req := httptest.NewRequest(method, "/api/v1"+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	g.api.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// token mints an API token of the role.
func (g *settingsRig) token(name string, role mdmd.Role) (string, *mdmd.APIToken) {
	g.t.Helper()
	plain, hash := auth.NewToken()
	tok := &mdmd.APIToken{Name: name, Role: role, Hash: hash, Prefix: auth.DisplayPrefix(plain), CreatedBy: "test",
		ExpiresAt: time.Now().Add(time.Hour)}
	if err := g.st.CreateAPIToken(context.Background(), tok); err != nil {
		g.t.Fatal(err)
	}
	return plain, tok
}

// audits returns the audit entries of an action made through the console.
func (g *settingsRig) audits(action string) []mdmd.AuditEvent {
	g.t.Helper()
	evs, _, err := g.st.ListAudit(context.Background(), mdmd.AuditFilter{Action: action, Limit: mdmd.MaxPageSize})
	if err != nil {
		g.t.Fatal(err)
	}
	var out []mdmd.AuditEvent
	for _, e := range evs {
		if strings.Contains(string(e.Details), `"via":"console"`) {
			out = append(out, e)
		}
	}
	return out
}

// forbiddenToOthers checks that viewers, helpdesk and auditors get 403 on
// every route and that a form without its CSRF token gets 403 too.
func (g *settingsRig) forbiddenToOthers(routes [][2]string) {
	g.t.Helper()
	for _, rt := range routes {
		for _, role := range []mdmd.Role{mdmd.RoleViewer, mdmd.RoleHelpdesk, mdmd.RoleAuditor} {
			var form url.Values
			if rt[0] == "POST" {
				form = url.Values{}
			}
			if status, _ := g.do(role, rt[0], rt[1], form); status != http.StatusForbidden {
				g.t.Errorf("%s %s %s: %d, want 403", role, rt[0], rt[1], status)
			}
		}
		if rt[0] == "POST" {
			if status, _ := g.do(mdmd.RoleAdmin, "POST", rt[1], url.Values{"csrf": {"-"}}); status != http.StatusForbidden {
				g.t.Errorf("admin POST %s without CSRF: %d, want 403", rt[1], status)
			}
		}
	}
}

var newSecretRE = regexp.MustCompile(`id="new-secret" readonly value="([^"]+)"`)

func shownSecret(page string) string {
	m := newSecretRE.FindStringSubmatch(page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

// receiver is a local webhook receiver that verifies signatures with the
// secret it is given.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	secret string
	got    []string // verified message types, or "bad: ..." for a failed check
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if err := webhooks.Verify(rc.secret, r.Header, body, time.Minute, time.Now()); err != nil {
			rc.got = append(rc.got, "bad: "+err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var msg struct{ Type string }
		json.Unmarshal(body, &msg)
		rc.got = append(rc.got, msg.Type)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) received() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.got...)
}

// The webhook pages on every backend: an endpoint made in the console is
// stored and its secret shown once; a test event reaches a local receiver
// with a valid signature and shows in the delivery log; disable, rotate,
// redeliver and delete work and are audited as the API's; the URLs the
// API refuses are refused with the same message; other roles get 403.
func TestWebhookPages(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			g := newSettingsRig(t, be.URL)
			admin := mdmd.RoleAdmin
			rc := newReceiver(t)

			// Refused forms: the service's message next to the field, nothing stored.
			apiToken, _ := g.token("api", mdmd.RoleAdmin)
			for _, tc := range []struct {
				name  string
				form  url.Values
				field string
			}{
				{"metadata over http", url.Values{"name": {"x"}, "url": {"http://169.254.169.254/latest/meta-data"}}, "url"},
				{"credentials", url.Values{"name": {"x"}, "url": {"https://user:pw@hooks.example.com/"}}, "url"},
				{"other scheme", url.Values{"name": {"x"}, "url": {"gopher://127.0.0.1/"}}, "url"},
				{"no name", url.Values{"name": {""}, "url": {"https://hooks.example.com/"}}, "name"},
				{"unknown event", url.Values{"name": {"x"}, "url": {"https://hooks.example.com/"}, "event_types": {"device.exploded"}}, "event_types"},
			} {
				status, page := g.do(admin, "POST", "/settings/webhooks", tc.form)
				apiStatus, apiBody := g.call("POST", "/webhooks", apiToken, map[string]any{"name": tc.form.Get("name"),
					"url": tc.form.Get("url"), "event_types": tc.form["event_types"]})
				var apiErr struct{ Error struct{ Message string } }
				json.Unmarshal(apiBody, &apiErr)
				if status != apiStatus || status != http.StatusBadRequest || !strings.Contains(page, `id="webhook-error"`) ||
					!strings.Contains(page, html.EscapeString(apiErr.Error.Message)) || !strings.HasPrefix(apiErr.Error.Message, tc.field+":") {
					t.Errorf("%s: console %d, API %d %s", tc.name, status, apiStatus, apiBody)
				}
			}
			if es, _ := g.st.ListWebhookEndpoints(ctx); len(es) != 0 {
				t.Fatalf("%d endpoints stored by refused forms", len(es))
			}

			// Create: 201 with the secret once; stored as asked.
			status, page := g.do(admin, "POST", "/settings/webhooks", url.Values{"name": {"siem"}, "url": {rc.URL + "/hook"},
				"event_types": {mdmd.EventComplianceChanged, mdmd.EventThreatChanged}, "enabled": {"on"}})
			sec := shownSecret(page)
			if status != http.StatusCreated || !strings.HasPrefix(sec, webhooks.SecretPrefix) {
				t.Fatalf("create: %d, secret %q", status, sec)
			}
			es, _ := g.st.ListWebhookEndpoints(ctx)
			if len(es) != 1 || es[0].URL != rc.URL+"/hook" || !es[0].Enabled || len(es[0].EventTypes) != 2 {
				t.Fatalf("stored endpoints: %+v", es)
			}
			e := es[0]
			if len(g.audits("webhook.create")) != 1 {
				t.Error("the creation is not audited with via console")
			}
			_, list := g.do(admin, "GET", "/settings/webhooks", nil)
			if strings.Contains(list, sec) || strings.Contains(list, html.EscapeString(sec)) || !strings.Contains(list, "siem") {
				t.Error("the list shows the secret, or not the endpoint")
			}

			// A test event: signed with the shown secret, delivered, logged.
			rc.secret = sec
			endpoint := "/settings/webhooks/" + e.ID
			if status, _ := g.do(admin, "POST", endpoint+"/test", url.Values{}); status != http.StatusSeeOther {
				t.Fatalf("test: %d", status)
			}
			if _, err := g.hooks.Deliver(ctx); err != nil {
				t.Fatal(err)
			}
			if got := rc.received(); len(got) != 1 || got[0] != mdmd.EventWebhookTest {
				t.Fatalf("the receiver got %v", got)
			}
			_, page = g.do(admin, "GET", endpoint, nil)
			if !strings.Contains(page, "webhook.test") || !strings.Contains(page, `badge delivered`) || !strings.Contains(page, "HTTP 204") ||
				strings.Contains(page, sec) {
				t.Errorf("the delivery log does not show the delivered test (or shows the secret):\n%s", page)
			}
			_, list = g.do(admin, "GET", "/settings/webhooks", nil)
			if !strings.Contains(list, "HTTP 204") {
				t.Error("the list does not show the last delivery's status")
			}

			// Redeliver it: the same message again, audited.
			ds, _, _ := g.st.ListWebhookDeliveries(ctx, mdmd.WebhookDeliveryFilter{EndpointID: e.ID})
			if status, _ := g.do(admin, "POST", endpoint+"/deliveries/"+ds[0].ID+"/redeliver", url.Values{}); status != http.StatusSeeOther {
				t.Fatalf("redeliver: %d", status)
			}
			g.hooks.Deliver(ctx)
			if got := rc.received(); len(got) != 2 || len(g.audits("webhook.redeliver")) != 1 {
				t.Errorf("after a redelivery the receiver got %v", got)
			}

			// Rotate: a new secret shown once; the next test verifies with it.
			status, page = g.do(admin, "POST", endpoint+"/rotate-secret", url.Values{"forget_previous": {"on"}})
			sec2 := shownSecret(page)
			if status != http.StatusOK || sec2 == "" || sec2 == sec {
				t.Fatalf("rotate: %d, secret %q", status, sec2)
			}
			if _, page := g.do(admin, "GET", endpoint, nil); strings.Contains(page, html.EscapeString(sec2)) || shownSecret(page) != "" {
				t.Error("the endpoint page shows the rotated secret again")
			}
			rc.mu.Lock()
			rc.secret = sec2
			rc.mu.Unlock()
			g.do(admin, "POST", endpoint+"/test", url.Values{})
			g.hooks.Deliver(ctx)
			if got := rc.received(); len(got) != 3 || got[2] != mdmd.EventWebhookTest {
				t.Errorf("after rotation the receiver got %v", got)
			}

			// Disable: stored, and a test is refused with the service's message.
			if status, _ := g.do(admin, "POST", endpoint+"/disable", url.Values{}); status != http.StatusSeeOther {
				t.Fatalf("disable: %d", status)
			}
			if got, _ := g.st.GetWebhookEndpoint(ctx, e.ID); got.Enabled {
				t.Error("the endpoint is still enabled")
			}
			if status, page := g.do(admin, "POST", endpoint+"/test", url.Values{}); status != http.StatusConflict || !strings.Contains(page, "enable it first") {
				t.Errorf("a test to a disabled endpoint: %d", status)
			}
			for _, action := range []string{"webhook.update", "webhook.rotate_secret", "webhook.test"} {
				if len(g.audits(action)) == 0 {
					t.Errorf("no %s audited with via console", action)
				}
			}

			routes := [][2]string{{"GET", "/settings/webhooks"}, {"POST", "/settings/webhooks"}, {"GET", endpoint},
				{"POST", endpoint + "/enable"}, {"POST", endpoint + "/disable"}, {"POST", endpoint + "/rotate-secret"},
				{"POST", endpoint + "/test"}, {"POST", endpoint + "/delete"}, {"POST", endpoint + "/deliveries/" + ds[0].ID + "/redeliver"}}
			g.forbiddenToOthers(routes)
			if got, _ := g.st.GetWebhookEndpoint(ctx, e.ID); got.Enabled {
				t.Error("a refused enable changed the endpoint")
			}

			// Delete.
			if status, _ := g.do(admin, "POST", endpoint+"/delete", url.Values{}); status != http.StatusSeeOther {
				t.Fatalf("delete: %d", status)
			}
			if _, err := g.st.GetWebhookEndpoint(ctx, e.ID); !mdmd.IsCode(err, mdmd.ENotFound) || len(g.audits("webhook.delete")) != 1 {
				t.Errorf("after delete: %v", err)
			}
			if status, _ := g.do(admin, "GET", endpoint, nil); status != http.StatusNotFound {
				t.Errorf("a deleted endpoint's page: %d", status)
			}
		})
	}
}
