package app

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/ssf"
)

// received lists the event types of the verified messages, then "bad"
// for each message with a wrong signature.
func (h *hookReceiver) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.got {
		out = append(out, m.Type)
	}
	for range h.bad {
		out = append(out, "bad")
	}
	return out
}

// newHookServer serves a receiver on 127.0.0.1 for the test's duration.
func newHookServer(t *testing.T, rc *hookReceiver) *httptest.Server {
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return srv
}

func containsString(ss []string, s string) bool { return slices.Contains(ss, s) }

var consoleSecretRE = regexp.MustCompile(`id="new-secret" readonly value="([^"]+)"`)

// The webhook, SSF and MTD settings pages against a running server on
// every backend: a webhook made in the console delivers a signed test
// event through the server's own job runner; an SSF stream a receiver
// made through the API is paused from the console for good; a partner's
// verdict is released from the console and the device evaluated again;
// every route is 403 to viewers, helpdesk and auditors.
func TestConsoleSettingsPages(t *testing.T) { eachBackend(t, testConsoleSettingsPages) }

func testConsoleSettingsPages(t *testing.T, dbURL string) {
	f := newFixture(t, dbURL)
	st := f.srv.Store()
	admin := consoleSession(t, f.testServer, mdmd.RoleAdmin)

	// Webhooks.
	rc := &hookReceiver{}
	rcSrv := newHookServer(t, rc)
	if status, page := admin("POST", "/settings/webhooks", url.Values{"name": {"siem"}, "url": {"http://10.0.0.1/hook"}}); status != 400 ||
		!strings.Contains(page, "plain http is allowed only to localhost") {
		t.Errorf("an internal http URL: %d", status)
	}
	status, page := admin("POST", "/settings/webhooks", url.Values{"name": {"siem"}, "url": {rcSrv.URL}, "enabled": {"on"}})
	m := consoleSecretRE.FindStringSubmatch(page)
	if status != 201 || m == nil {
		t.Fatalf("create webhook: %d", status)
	}
	secret := html.UnescapeString(m[1])
	rc.secret = secret
	var list struct{ Items []mdmd.WebhookEndpoint }
	f.mustDo(200, "GET", "/api/v1/webhooks", f.Token, nil).json(t, &list)
	if len(list.Items) != 1 || list.Items[0].URL != rcSrv.URL {
		t.Fatalf("the API lists %+v", list.Items)
	}
	hook := "/settings/webhooks/" + list.Items[0].ID
	if _, page := admin("GET", "/settings/webhooks", nil); strings.Contains(page, m[1]) {
		t.Error("the webhook list shows the secret")
	}
	if status, _ := admin("POST", hook+"/test", url.Values{}); status != http.StatusSeeOther {
		t.Fatalf("test: %d", status)
	}
	eventually(t, 20*time.Second, "the signed test event to arrive", func() bool { return containsString(rc.received(), mdmd.EventWebhookTest) })
	if got := rc.received(); containsString(got, "bad") {
		t.Fatalf("the receiver got badly signed messages: %v", got)
	}
	eventually(t, 10*time.Second, "the delivery log to show it delivered", func() bool {
		_, page := admin("GET", hook, nil)
		return strings.Contains(page, "badge delivered") && strings.Contains(page, "HTTP 204")
	})

	// SSF: a receiver's stream, paused by an administrator for good.
	rcv := f.tokenFor(t, mdmd.RoleSSFReceiver)
	var stream struct {
		StreamID string `json:"stream_id"`
	}
	f.mustDo(201, "POST", "/api/v1"+ssf.StreamsPath, rcv, map[string]any{"delivery": map[string]any{"method": mdmd.SSFDeliveryPoll}}).json(t, &stream)
	if _, page := admin("GET", "/settings/ssf", nil); !strings.Contains(page, stream.StreamID) {
		t.Fatal("the SSF page does not list the receiver's stream")
	}
	if status, _ := admin("POST", "/settings/ssf/"+stream.StreamID+"/status", url.Values{"status": {"paused"}, "reason": {"maintenance"}}); status != http.StatusSeeOther {
		t.Fatalf("pause: %d", status)
	}
	if r := f.do("POST", "/api/v1"+ssf.StatusPath, rcv, map[string]any{"stream_id": stream.StreamID, "status": "enabled"}); r.Status != 403 {
		t.Errorf("the receiver undoing the pause: %d", r.Status)
	}
	var status2 struct{ Status string }
	f.mustDo(200, "GET", "/api/v1"+ssf.StatusPath+"?stream_id="+stream.StreamID, rcv, nil).json(t, &status2)
	if status2.Status != "paused" || f.auditCount(t, "ssf.stream.status") != 1 {
		t.Errorf("after the pause: %q, %d audit entries", status2.Status, f.auditCount(t, "ssf.stream.status"))
	}

	// MTD: a partner's high verdict makes the iPhone noncompliant; the
	// release from the console forgets it and the device is evaluated again.
	f.mustDo(201, "POST", "/api/v1/compliance/policies", f.Token, map[string]any{"name": "mtd", "is_default": true,
		"rules": map[string]any{"max_threat_level": "medium"}})
	state := func() string {
		c, err := st.GetCompliance(t.Context(), f.ios.ID)
		if err != nil {
			return ""
		}
		return c.State
	}
	partner := f.tokenFor(t, mdmd.RoleMTDPartner)
	f.mustDo(200, "PUT", "/api/v1/mtd/devices/"+f.ios.ID+"/threat", partner, map[string]any{"level": "high", "source": "Acme MTD"})
	eventually(t, 10*time.Second, "noncompliant at high", func() bool { return state() == "noncompliant" })
	if _, page := admin("GET", "/settings/mtd", nil); !strings.Contains(page, "Ana&#39;s iPhone") || !strings.Contains(page, "Acme MTD") {
		t.Fatal("the MTD page does not list the verdict")
	}
	if status, _ := admin("POST", "/settings/mtd/devices/"+f.ios.ID+"/release", url.Values{}); status != http.StatusSeeOther {
		t.Fatalf("release: %d", status)
	}
	f.mustDo(404, "GET", "/api/v1/devices/"+f.ios.ID+"/threat", f.Token, nil)
	eventually(t, 10*time.Second, "compliant after the release", func() bool { return state() == "compliant" })
	if f.auditCount(t, "mtd.threat.release") != 1 {
		t.Error("the release is not audited")
	}

	// Other roles: 403 on every route, nothing changed.
	routes := [][2]string{{"GET", "/settings/webhooks"}, {"POST", "/settings/webhooks"}, {"GET", hook}, {"POST", hook + "/enable"},
		{"POST", hook + "/disable"}, {"POST", hook + "/rotate-secret"}, {"POST", hook + "/test"}, {"POST", hook + "/delete"},
		{"POST", hook + "/deliveries/x/redeliver"}, {"GET", "/settings/ssf"}, {"POST", "/settings/ssf/" + stream.StreamID + "/status"},
		{"POST", "/settings/ssf/" + stream.StreamID + "/delete"}, {"GET", "/settings/mtd"}, {"POST", "/settings/mtd/devices/" + f.ios.ID + "/release"}}
	for _, role := range []mdmd.Role{mdmd.RoleViewer, mdmd.RoleHelpdesk, mdmd.RoleAuditor} {
		as := consoleSession(t, f.testServer, role)
		for _, rt := range routes {
			var form url.Values
			if rt[0] == "POST" {
				form = url.Values{"status": {"enabled"}, "confirm": {stream.StreamID}, "name": {"x"}, "url": {"https://x.example.com"}}
			}
			if status, _ := as(rt[0], rt[1], form); status != http.StatusForbidden {
				t.Errorf("%s %s %s: %d", role, rt[0], rt[1], status)
			}
		}
	}
	f.mustDo(200, "GET", "/api/v1/webhooks", f.Token, nil).json(t, &list)
	f.mustDo(200, "GET", "/api/v1"+ssf.StatusPath+"?stream_id="+stream.StreamID, rcv, nil).json(t, &status2)
	if len(list.Items) != 1 || !list.Items[0].Enabled || status2.Status != "paused" {
		t.Errorf("refused requests changed something: %+v, stream %s", list.Items, status2.Status)
	}
}
