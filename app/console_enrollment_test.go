package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android/fakeamapi"
	"github.com/mdmd/mdmd/apple/fakeapns"
)

// consoleSession signs a user of the role in without the sign-in pages
// (which TestConsoleBrowser covers) and returns a client for console
// pages and forms.
func consoleSession(t *testing.T, ts *testServer, role mdmd.Role) func(method, path string, form url.Values) (int, string) {
	t.Helper()
	ctx := context.Background()
	u := &mdmd.AdminUser{Username: "console-" + string(role), PasswordHash: "x", Role: role}
	if err := ts.srv.Store().CreateAdminUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	id, csrf := "sid-"+string(role)+"-0123456789abcdef", "csrf-"+string(role)
	sum := sha256.Sum256([]byte(id))
	now := time.Now()
	if err := ts.srv.Store().CreateConsoleSession(ctx, &mdmd.ConsoleSession{IDHash: hex.EncodeToString(sum[:]), UserID: u.ID,
		CSRFToken: csrf, MFADone: true, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return func(method, path string, form url.Values) (int, string) {
		t.Helper()
		var req *http.Request
		if form != nil {
			form.Set("csrf", csrf)
			req, _ = http.NewRequest(method, ts.URL+path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		} else {
			req, _ = http.NewRequest(method, ts.URL+path, nil)
		}
		req.Header.Set("Accept", "text/html")
		req.AddCookie(&http.Cookie{Name: "mdmd_session", Value: id})
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return resp.StatusCode, b.String()
	}
}

// The console's enrollment page on every backend: an iOS link made there
// serves the enrollment profile, an Android token made there shows its QR
// code and enrolls a simulated device; bad input is refused next to its
// form; a viewer gets 403.
func TestConsoleEnrollment(t *testing.T) { eachBackend(t, testConsoleEnrollment) }

func testConsoleEnrollment(t *testing.T, dbURL string) {
	env := newAndroidEnv(t, dbURL)
	// iOS profiles name the push topic: upload a push certificate.
	certPEM, keyPEM, err := fakeapns.PushCertificate("com.apple.mgmt.External.console-test", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	env.mustDo(200, "PUT", "/api/v1/apple/push-certificate", env.Token, map[string]string{"cert_pem": string(certPEM), "key_pem": string(keyPEM)})
	admin := consoleSession(t, env.testServer, mdmd.RoleAdmin)
	viewer := consoleSession(t, env.testServer, mdmd.RoleViewer)

	if status, page := admin("GET", "/enrollment", nil); status != 200 || !strings.Contains(page, "Android: enrollment tokens") ||
		!strings.Contains(page, `action="/enrollment/android-tokens"`) {
		t.Fatalf("GET /enrollment: %d", status)
	}
	status, page := admin("POST", "/enrollment/links", url.Values{"owner": {"dana@example.com"}, "ownership": {"corporate"}, "hours": {"24"}, "one_time": {"on"}})
	link := regexp.MustCompile(`value="(http://[^"]+/enroll/[^"]+)"`).FindStringSubmatch(page)
	if status != 201 || link == nil {
		t.Fatalf("create link: %d", status)
	}
	resp, err := http.Get(link[1])
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), "apple-aspen-config") {
		t.Errorf("the new link's profile: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if status, page := admin("POST", "/enrollment/links", url.Values{"hours": {"99999"}}); status != 400 || !strings.Contains(page, `id="link-error"`) {
		t.Errorf("a link for 99999 hours: %d", status)
	}

	status, page = admin("POST", "/enrollment/android-tokens", url.Values{"kind": {"fully_managed"}, "owner": {"erik@example.com"}, "hours": {"24"}})
	value := regexp.MustCompile(`id="new-token" readonly value="([^"]+)"`).FindStringSubmatch(page)
	if status != 201 || value == nil || !strings.Contains(page, `src="data:image/png;base64,`) {
		t.Fatalf("create Android token: %d", status)
	}
	env.enroll(t, value[1], fakeamapi.HealthyPosture)
	if status, page := admin("POST", "/enrollment/android-tokens", url.Values{"kind": {"tamagotchi"}}); status != 400 || !strings.Contains(page, `id="token-error"`) {
		t.Errorf("an unknown kind: %d", status)
	}
	links, _ := env.srv.Store().ListEnrollmentLinks(context.Background(), mdmd.PlatformIOS)
	if len(links) != 1 {
		t.Fatalf("%d links after one good and one refused form", len(links))
	}
	if status, _ := admin("POST", "/enrollment/links/"+links[0].ID+"/revoke", url.Values{}); status != http.StatusSeeOther {
		t.Errorf("revoke: %d", status)
	}
	if resp, err := http.Get(link[1]); err != nil || resp.StatusCode == 200 {
		t.Errorf("a revoked link still serves its profile: %v", err)
	} else {
		resp.Body.Close()
	}

	if status, _ := viewer("GET", "/enrollment", nil); status != 403 {
		t.Errorf("viewer: %d", status)
	}
	if status, _ := viewer("POST", "/enrollment/links", url.Values{"hours": {"24"}}); status != 403 {
		t.Errorf("viewer creating a link: %d", status)
	}
}

// The push certificate page: an upload through the console replaces the
// certificate, one that expires soon shows the warning, and bad input is
// refused next to the form; only settings:manage reaches it.
func TestConsolePushCertificate(t *testing.T) {
	ts := start(t, "--data-dir", t.TempDir(), "--database-url", backends(t)[0].URL)
	admin := consoleSession(t, ts, mdmd.RoleAdmin)
	helpdesk := consoleSession(t, ts, mdmd.RoleHelpdesk)
	if status, page := admin("GET", "/settings/push-certificate", nil); status != 200 || !strings.Contains(page, `id="push-missing"`) {
		t.Fatalf("before any upload: %d", status)
	}
	certPEM, keyPEM, err := fakeapns.PushCertificate("com.apple.mgmt.External.soon", 10*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if status, page := admin("POST", "/settings/push-certificate", url.Values{"cert_pem": {string(certPEM)}, "key_pem": {"not a key"}}); status != 400 || !strings.Contains(page, `id="push-error"`) {
		t.Errorf("a bad key: %d", status)
	}
	if status, _ := admin("POST", "/settings/push-certificate", url.Values{"cert_pem": {string(certPEM)}, "key_pem": {string(keyPEM)}}); status != http.StatusSeeOther {
		t.Fatalf("upload: %d", status)
	}
	status, page := admin("GET", "/settings/push-certificate", nil)
	if status != 200 || !strings.Contains(page, "com.apple.mgmt.External.soon") || !strings.Contains(page, `id="push-warning"`) {
		t.Errorf("after uploading a certificate that expires in 10 days: %d", status)
	}
	if status, _ := helpdesk("GET", "/settings/push-certificate", nil); status != 403 {
		t.Errorf("helpdesk: %d", status)
	}
}

// The groups page: an admin creates and deletes groups, a taken name is
// refused next to the form, a viewer sees the list but cannot change it.
func TestConsoleGroups(t *testing.T) { eachBackend(t, testConsoleGroups) }

func testConsoleGroups(t *testing.T, dbURL string) {
	ts := start(t, "--data-dir", t.TempDir(), "--database-url", dbURL)
	admin := consoleSession(t, ts, mdmd.RoleAdmin)
	viewer := consoleSession(t, ts, mdmd.RoleViewer)
	if status, _ := admin("POST", "/groups", url.Values{"name": {"sales"}, "description": {"field sales"}}); status != http.StatusSeeOther {
		t.Fatalf("create: %d", status)
	}
	if status, page := admin("POST", "/groups", url.Values{"name": {"sales"}}); status != http.StatusConflict || !strings.Contains(page, `id="group-error"`) {
		t.Errorf("a taken name: %d", status)
	}
	gs, err := ts.srv.Store().ListGroups(context.Background())
	if err != nil || len(gs) != 1 || gs[0].Description != "field sales" {
		t.Fatalf("groups = %+v, %v", gs, err)
	}
	status, page := viewer("GET", "/groups", nil)
	if status != 200 || !strings.Contains(page, "sales") || strings.Contains(page, `action="/groups"`) {
		t.Errorf("viewer's groups page: %d", status)
	}
	if status, _ := viewer("POST", "/groups/"+gs[0].ID+"/delete", url.Values{}); status != 403 {
		t.Errorf("viewer deleting: %d", status)
	}
	if status, _ := admin("POST", "/groups/"+gs[0].ID+"/delete", url.Values{}); status != http.StatusSeeOther {
		t.Errorf("delete: %d", status)
	}
	if gs, _ := ts.srv.Store().ListGroups(context.Background()); len(gs) != 0 {
		t.Errorf("after delete: %+v", gs)
	}
}
