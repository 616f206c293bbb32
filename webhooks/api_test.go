package webhooks_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/storage/storagetest"
	"github.com/mdmd/mdmd/web"
	"github.com/mdmd/mdmd/webhooks"
)

type apiClient struct {
	t   *testing.T
	srv *httptest.Server
}

func newAPI(t *testing.T, e *env) *apiClient {
	api := web.NewAPI(web.APIDeps{Devices: e.st, Groups: e.st, Commands: e.st, Tokens: e.st, Audit: e.st, Now: e.clock.Now,
		Modules: []web.Module{e.svc}})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return &apiClient{t: t, srv: srv}
}

func token(t *testing.T, e *env, role mdmd.Role) string {
	t.Helper()
	sec, hash := auth.NewToken()
	must(t, e.st.CreateAPIToken(ctx, &mdmd.APIToken{Name: string(role), Prefix: auth.DisplayPrefix(sec), Hash: hash, Role: role,
		ExpiresAt: e.clock.Now().Add(24 * time.Hour)}))
	return sec
}

// call sends a request; body is JSON-encoded unless it is a string.
func (c *apiClient) call(tok, method, path string, body any) (int, map[string]any, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		must(c.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.srv.URL+"/v1"+path, rd)
	must(c.t, err)
	req.Header.Set("Authorization", "Bearer "+tok)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.srv.Client().Do(req)
	must(c.t, err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m, raw
}

func (c *apiClient) want(status int, tok, method, path string, body any) map[string]any {
	c.t.Helper()
	got, m, raw := c.call(tok, method, path, body)
	if got != status {
		c.t.Fatalf("%s %s = %d %s, want %d", method, path, got, raw, status)
	}
	return m
}

func auditCount(t *testing.T, e *env, action string) int {
	t.Helper()
	evs, _, err := e.st.ListAudit(ctx, mdmd.AuditFilter{Action: action, Limit: 100})
	must(t, err)
	return len(evs)
}

func TestAPI(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := newClock()
			rcv := newReceiver(t, clk, false)
			e := newEnv(t, be.URL, webhooks.Options{}, clk, nil)
			api := newAPI(t, e)
			admin, viewer := token(t, e, mdmd.RoleAdmin), token(t, e, mdmd.RoleViewer)

			in := map[string]any{"name": "okta", "url": rcv.URL("/okta"), "event_types": []string{mdmd.EventThreatChanged}}
			api.want(http.StatusForbidden, viewer, "POST", "/webhooks", in)
			api.want(http.StatusForbidden, viewer, "GET", "/webhooks", nil)

			created := api.want(http.StatusCreated, admin, "POST", "/webhooks", in)
			id, _ := created["id"].(string)
			sec1, _ := created["secret"].(string)
			if id == "" || !strings.HasPrefix(sec1, "whsec_") || created["enabled"] != true {
				t.Fatalf("created = %v", created)
			}
			rcv.set(sec1, http.StatusOK)

			list := api.want(http.StatusOK, admin, "GET", "/webhooks", nil)
			items, _ := list["items"].([]any)
			if len(items) != 1 {
				t.Fatalf("list = %v", list)
			}
			for k := range items[0].(map[string]any) {
				if strings.Contains(k, "secret") {
					t.Fatalf("a listing shows %q", k)
				}
			}
			one := api.want(http.StatusOK, admin, "GET", "/webhooks/"+id, nil)
			if _, ok := one["secret"]; ok || one["name"] != "okta" {
				t.Fatalf("get = %v", one)
			}
			api.want(http.StatusNotFound, admin, "GET", "/webhooks/missing", nil)

			upd := api.want(http.StatusOK, admin, "PATCH", "/webhooks/"+id,
				map[string]any{"event_types": []string{mdmd.EventThreatChanged, mdmd.EventComplianceChanged}})
			if types, _ := upd["event_types"].([]any); len(types) != 2 || upd["name"] != "okta" {
				t.Fatalf("patched = %v", upd)
			}

			// A test ping is delivered, signed with the secret the API showed.
			ping := api.want(http.StatusAccepted, admin, "POST", "/webhooks/"+id+"/test", nil)
			if ping["event_type"] != mdmd.EventWebhookTest || ping["state"] != mdmd.WebhookPending {
				t.Fatalf("test = %v", ping)
			}
			e.deliver(t, 1)
			got := rcv.all()
			if len(got) != 1 || got[0].Type != mdmd.EventWebhookTest || got[0].ID != ping["message_id"] {
				t.Fatalf("receiver got %+v", got)
			}

			page := api.want(http.StatusOK, admin, "GET", "/webhooks/"+id+"/deliveries", nil)
			ds, _ := page["items"].([]any)
			if len(ds) != 1 {
				t.Fatalf("deliveries = %v", page)
			}
			d := ds[0].(map[string]any)
			log, _ := d["attempt_log"].([]any)
			if d["state"] != mdmd.WebhookDelivered || len(log) != 1 || log[0].(map[string]any)["status"] != float64(200) {
				t.Fatalf("delivery = %v", d)
			}
			did := d["id"].(string)
			if empty := api.want(http.StatusOK, admin, "GET", "/webhooks/"+id+"/deliveries?state=failed", nil); len(empty["items"].([]any)) != 0 {
				t.Fatalf("failed deliveries = %v", empty)
			}
			api.want(http.StatusBadRequest, admin, "GET", "/webhooks/"+id+"/deliveries?state=lost", nil)
			api.want(http.StatusBadRequest, admin, "GET", "/webhooks/"+id+"/deliveries?limit=0", nil)
			api.want(http.StatusNotFound, admin, "GET", "/webhooks/missing/deliveries", nil)
			api.want(http.StatusOK, admin, "GET", "/webhooks/"+id+"/deliveries/"+did, nil)

			// Redelivery goes again with the same webhook-id.
			other := api.want(http.StatusCreated, admin, "POST", "/webhooks", map[string]any{"name": "other", "url": rcv.URL("/other")})
			api.want(http.StatusNotFound, admin, "GET", "/webhooks/"+other["id"].(string)+"/deliveries/"+did, nil)
			api.want(http.StatusNotFound, admin, "POST", "/webhooks/"+other["id"].(string)+"/deliveries/"+did+"/redeliver", nil)
			api.want(http.StatusAccepted, admin, "POST", "/webhooks/"+id+"/deliveries/"+did+"/redeliver", nil)
			e.deliver(t, 1)
			if got := rcv.all(); len(got) != 2 || got[1].ID != got[0].ID {
				t.Fatalf("redelivery: %+v", got)
			}

			// Rotation shows the new secret once; the old one signs for a day.
			rot := api.want(http.StatusOK, admin, "POST", "/webhooks/"+id+"/rotate-secret", nil)
			sec2, _ := rot["secret"].(string)
			if !strings.HasPrefix(sec2, "whsec_") || sec2 == sec1 || rot["previous_secret_expires_at"] == nil {
				t.Fatalf("rotated = %v", rot)
			}
			api.want(http.StatusBadRequest, admin, "POST", "/webhooks/"+id+"/rotate-secret?keep_previous=perhaps", nil)
			api.want(http.StatusAccepted, admin, "POST", "/webhooks/"+id+"/test", nil)
			e.deliver(t, 1)
			last := rcv.all()[2]
			for _, s := range []string{sec1, sec2} {
				must(t, webhooks.Verify(s, last.Header, last.Body, time.Minute, clk.Now()))
			}
			rot = api.want(http.StatusOK, admin, "POST", "/webhooks/"+id+"/rotate-secret?keep_previous=false", nil)
			if _, kept := rot["previous_secret_expires_at"]; kept {
				t.Fatalf("rotation without keeping kept the previous secret: %v", rot)
			}

			// A disabled endpoint takes no tests.
			api.want(http.StatusOK, admin, "PATCH", "/webhooks/"+id, map[string]any{"enabled": false})
			api.want(http.StatusConflict, admin, "POST", "/webhooks/"+id+"/test", nil)

			api.want(http.StatusNoContent, admin, "DELETE", "/webhooks/"+id, nil)
			api.want(http.StatusNotFound, admin, "GET", "/webhooks/"+id, nil)
			api.want(http.StatusNotFound, admin, "DELETE", "/webhooks/"+id, nil)

			// Every change is audited, and no secret is in the audit log.
			for action, n := range map[string]int{"webhook.create": 2, "webhook.update": 2, "webhook.test": 2,
				"webhook.redeliver": 1, "webhook.rotate_secret": 2, "webhook.delete": 1} {
				if got := auditCount(t, e, action); got != n {
					t.Errorf("%d %s audit entries, want %d", got, action, n)
				}
			}
			evs, _, err := e.st.ListAudit(ctx, mdmd.AuditFilter{Limit: 1000})
			must(t, err)
			for _, ev := range evs {
				if strings.Contains(string(ev.Details), "whsec_") {
					t.Fatalf("audit entry %s holds a secret: %s", ev.Action, ev.Details)
				}
			}
		})
	}
}

// Bad input is refused with 400 and changes nothing.
func TestAPIBadInput(t *testing.T) {
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clk := newClock()
			e := newEnv(t, be.URL, webhooks.Options{}, clk, nil)
			api := newAPI(t, e)
			admin := token(t, e, mdmd.RoleAdmin)
			good := "https://siem.example.com/hook"
			creates := []struct {
				name string
				body any
			}{
				{"unknown event type", map[string]any{"name": "s", "url": good, "event_types": []string{mdmd.EventThreatChanged, "device.exploded"}}},
				{"test event type", map[string]any{"name": "s", "url": good, "event_types": []string{mdmd.EventWebhookTest}}},
				{"plain http", map[string]any{"name": "s", "url": "http://siem.example.com/hook"}},
				{"not a URL", map[string]any{"name": "s", "url": "siem"}},
				{"credentials in URL", map[string]any{"name": "s", "url": "https://u:p@siem.example.com/"}},
				{"oversized name", map[string]any{"name": strings.Repeat("n", 201), "url": good}},
				{"no name", map[string]any{"url": good}},
				{"own secret", map[string]any{"name": "s", "url": good, "secret": "whsec_bWluZQ=="}},
				{"malformed JSON", `{"name": "s", "url": `},
				{"event types not a list", `{"name": "s", "url": "https://siem.example.com/hook", "event_types": "threat.changed"}`},
			}
			for _, tc := range creates {
				t.Run("create/"+tc.name, func(t *testing.T) {
					api.want(http.StatusBadRequest, admin, "POST", "/webhooks", tc.body)
				})
			}
			if list, _ := e.st.ListWebhookEndpoints(ctx); len(list) != 0 {
				t.Fatalf("bad input stored endpoints: %+v", list)
			}
			if n := auditCount(t, e, "webhook.create"); n != 0 {
				t.Fatalf("%d create audit entries for refused input", n)
			}

			created := api.want(http.StatusCreated, admin, "POST", "/webhooks", map[string]any{"name": "siem", "url": good,
				"event_types": []string{mdmd.EventComplianceChanged}})
			id := created["id"].(string)
			before, err := e.st.GetWebhookEndpoint(ctx, id)
			must(t, err)
			patches := []struct {
				name string
				body any
			}{
				{"unknown event type", map[string]any{"event_types": []string{"device.exploded"}}},
				{"bad URL", map[string]any{"url": "ftp://siem.example.com"}},
				{"oversized name", map[string]any{"name": strings.Repeat("n", 201), "event_types": []string{mdmd.EventThreatChanged}}},
				{"empty name", map[string]any{"name": ""}},
				{"unknown field", map[string]any{"secret": "whsec_bWluZQ=="}},
			}
			for _, tc := range patches {
				t.Run("patch/"+tc.name, func(t *testing.T) {
					api.want(http.StatusBadRequest, admin, "PATCH", "/webhooks/"+id, tc.body)
				})
			}
			after, err := e.st.GetWebhookEndpoint(ctx, id)
			must(t, err)
			if after.Name != before.Name || after.URL != before.URL || strings.Join(after.EventTypes, ",") != mdmd.EventComplianceChanged ||
				!after.UpdatedAt.Equal(before.UpdatedAt) || !bytes.Equal(after.SecretSealed, before.SecretSealed) {
				t.Fatalf("refused patches changed the endpoint: %+v", after)
			}
			if n := auditCount(t, e, "webhook.update"); n != 0 {
				t.Fatalf("%d update audit entries for refused input", n)
			}
		})
	}
}
