package console

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android"
	"github.com/mdmd/mdmd/android/fakeamapi"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// The Android Enterprise page on every backend, against the fake AMAPI:
// sign-up through the console (Google's page returns to it with the
// token), a wrong token refused next to its form, the binding shown with
// its Pub/Sub setup and when it was made, binding another enterprise
// instead; only settings:manage reaches the page and its forms.
func TestAndroidEnterprisePage(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			fake := fakeamapi.Start()
			t.Cleanup(fake.Close)
			g := newPageRig(t, be.URL)
			svc := android.New(g.st, g.box, android.Config{Endpoint: fake.URL(), ProjectID: "mdmd-test",
				PubsubTopic: "projects/mdmd-test/topics/amapi", PublicURL: "http://127.0.0.1"})
			g.start(Options{AndroidEnterprise: svc})
			const admin = mdmd.RoleAdmin

			if status, page := g.do(admin, "GET", "/settings/android", nil, nil); status != 200 || !strings.Contains(page, `id="android-unbound"`) ||
				!strings.Contains(page, `action="/settings/android/signup"`) {
				t.Fatalf("before binding: %d", status)
			}
			status, page := g.do(admin, "POST", "/settings/android/signup", url.Values{}, nil)
			link := regexp.MustCompile(`<a href="(https://[^"]+)" target="_blank"`).FindStringSubmatch(page)
			name := regexp.MustCompile(`name="signup_url_name" value="([^"]+)"`).FindStringSubmatch(page)
			if status != 200 || link == nil || name == nil {
				t.Fatalf("sign-up: %d", status)
			}
			if u := html.UnescapeString(link[1]); !strings.Contains(u, "callbackUrl=http://127.0.0.1/settings/android") {
				t.Errorf("Google's page does not return to the console: %s", u)
			}
			if !g.audited("android.signup", "android.enterprise") {
				t.Error("the sign-up was not audited")
			}
			token, err := fake.CompleteSignup(name[1])
			if err != nil {
				t.Fatal(err)
			}
			// Google's page sends the admin back with the token: the form
			// is filled in, with the sign-up it belongs to.
			_, page = g.do(admin, "GET", "/settings/android?enterpriseToken="+token, nil, nil)
			if !strings.Contains(page, `value="`+token+`"`) || !strings.Contains(page, `value="`+name[1]+`"`) {
				t.Error("the completion form is not filled in from Google's callback")
			}
			status, page = g.do(admin, "POST", "/settings/android/enterprise", url.Values{"signup_url_name": {name[1]}, "enterprise_token": {"wrong"}}, nil)
			if status != 400 || !strings.Contains(page, `id="complete-error"`) || !strings.Contains(page, "invalid signupUrlName or enterpriseToken") {
				t.Errorf("a wrong token: %d", status)
			}
			if _, err := svc.GetEnterprise(ctx); err == nil {
				t.Fatal("a wrong token bound an enterprise")
			}
			if status, _ := g.do(admin, "POST", "/settings/android/enterprise", url.Values{"signup_url_name": {name[1]}, "enterprise_token": {token},
				"display_name": {"Acme"}, "csrf": {"-"}}, nil); status != http.StatusForbidden {
				t.Errorf("without the CSRF token: %d", status)
			}
			if status, _ := g.do(admin, "POST", "/settings/android/enterprise", url.Values{"signup_url_name": {name[1]}, "enterprise_token": {token},
				"display_name": {"Acme"}}, nil); status != http.StatusSeeOther {
				t.Fatalf("complete: %d", status)
			}
			e, err := svc.GetEnterprise(ctx)
			if err != nil || e.DisplayName != "Acme" || e.PubsubTopic != "projects/mdmd-test/topics/amapi" {
				t.Fatalf("bound: %+v, %v", e, err)
			}
			if !g.audited("android.enterprise.create", e.Name) {
				t.Error("the binding was not audited")
			}
			status, page = g.do(admin, "GET", "/settings/android?done=create", nil, nil)
			view, _ := svc.View(ctx, nil)
			for _, want := range []string{e.Name, "Acme", "projects/mdmd-test/topics/amapi", "ENROLLMENT, STATUS_REPORT, COMMAND",
				`value="` + view.PushEndpoint + `"`, "by u-admin", `action="/settings/android/bind"`} {
				if !strings.Contains(page, want) {
					t.Errorf("the bound page lacks %q", want)
				}
			}
			if status != 200 || strings.Contains(page, `action="/settings/android/enterprise"`) {
				t.Errorf("the bound page: %d, or still offers a sign-up", status)
			}

			// Bind another enterprise instead; bad names are refused.
			for _, bad := range []struct {
				name   string
				status int
			}{{"LC0ABC", 400}, {"enterprises/missing", 404}} {
				status, page := g.do(admin, "POST", "/settings/android/bind", url.Values{"name": {bad.name}}, nil)
				if status != bad.status || !strings.Contains(page, `id="bind-error"`) {
					t.Errorf("bind %q: %d", bad.name, status)
				}
			}
			if got, _ := svc.GetEnterprise(ctx); got.Name != e.Name {
				t.Fatalf("a refused bind changed the binding to %s", got.Name)
			}
			other := fake.CreateEnterprise("Acme EU")
			if status, _ := g.do(admin, "POST", "/settings/android/bind", url.Values{"name": {other}}, nil); status != http.StatusSeeOther {
				t.Fatalf("bind: %d", status)
			}
			if got, _ := svc.GetEnterprise(ctx); got.Name != other || got.PubsubTopic == "" || !g.audited("android.enterprise.bind", other) {
				t.Errorf("after binding %s: %+v", other, got)
			}
			if v, _ := svc.View(ctx, nil); v.PushEndpoint != view.PushEndpoint {
				t.Error("binding another enterprise changed the push endpoint")
			}

			// Other roles.
			for _, role := range []mdmd.Role{mdmd.RoleViewer, mdmd.RoleHelpdesk} {
				for _, tc := range []struct {
					method, path string
					form         url.Values
				}{
					{"GET", "/settings/android", nil},
					{"POST", "/settings/android/signup", url.Values{}},
					{"POST", "/settings/android/enterprise", url.Values{"signup_url_name": {"x"}, "enterprise_token": {"y"}}},
					{"POST", "/settings/android/bind", url.Values{"name": {e.Name}}},
				} {
					if status, _ := g.do(role, tc.method, tc.path, tc.form, nil); status != http.StatusForbidden {
						t.Errorf("%s %s %s: %d", role, tc.method, tc.path, status)
					}
				}
			}
			if got, _ := svc.GetEnterprise(ctx); got.Name != other {
				t.Error("a refused role changed the binding")
			}
		})
	}
}

// Without AMAPI configured the page says so and offers no form.
func TestAndroidEnterprisePageUnconfigured(t *testing.T) {
	g := newPageRig(t, storagetest.Backends(t)[0].URL)
	g.start(Options{AndroidEnterprise: android.New(g.st, g.box, android.Config{})})
	status, page := g.do(mdmd.RoleAdmin, "GET", "/settings/android", nil, nil)
	if status != 200 || !strings.Contains(page, `id="android-unconfigured"`) || strings.Contains(page, "<form method=\"post\" action=\"/settings/android") {
		t.Errorf("unconfigured: %d", status)
	}
}
