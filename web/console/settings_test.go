package console

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// The settings pages for API tokens and users, on every backend: a token
// minted in the console is shown once and belongs to the signed-in admin;
// forms without the CSRF token change nothing; disabling a user revokes
// their tokens; nobody disables themselves; other roles get 403.
func TestSettingsPages(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := storagetest.Open(t, be.URL, storage.Options{})
			c, err := New(Options{Store: st, Admin: st, PublicURL: "http://127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			r := chi.NewRouter()
			c.Register(r)
			users := map[mdmd.Role]*mdmd.AdminUser{}
			session := func(role mdmd.Role) string {
				sid, u := signIn(t, st, role)
				users[role] = u
				return sid
			}
			do := func(sid, method, path string, form url.Values) (int, string) {
				return send(r, sid, method, path, form, nil)
			}
			admin, viewer := session(mdmd.RoleAdmin), session(mdmd.RoleViewer)

			// A token: shown once, owned by the admin, listed afterwards
			// by its prefix only.
			status, body := do(admin, "POST", "/settings/tokens", url.Values{"name": {"ci"}, "role": {"viewer"}, "days": {"30"}})
			secret := regexp.MustCompile(`mdmd_[A-Za-z0-9_-]{43}`).FindString(body)
			if status != http.StatusCreated || secret == "" {
				t.Fatalf("create token: %d, secret %q", status, secret)
			}
			p, err := auth.AuthenticateToken(ctx, st, secret, time.Now())
			if err != nil || p.Person != users[mdmd.RoleAdmin].ID || p.Role != mdmd.RoleViewer {
				t.Fatalf("the new token: %+v, %v", p, err)
			}
			if _, page := do(admin, "GET", "/settings/tokens", nil); strings.Contains(page, secret) || !strings.Contains(page, secret[:11]) {
				t.Error("the token list shows the secret, or not the prefix")
			}
			for _, bad := range []url.Values{
				{"name": {""}, "role": {"viewer"}},
				{"name": {"x"}, "role": {"god"}},
				{"name": {"x"}, "role": {"viewer"}, "days": {"400"}},
				{"name": {"x"}, "role": {"relying_party"}},
				{"name": {"x"}, "role": {"viewer"}, "csrf": {"-"}},
			} {
				if status, _ := do(admin, "POST", "/settings/tokens", bad); status < 400 || status >= 500 {
					t.Errorf("token %v: %d", bad, status)
				}
			}
			ts, _ := st.ListAPITokens(ctx)
			if len(ts) != 1 {
				t.Fatalf("%d tokens after refused forms, want 1", len(ts))
			}

			// Users: add one, who cannot be added twice; disable them and
			// their tokens stop; nobody disables themselves.
			if status, _ := do(admin, "POST", "/settings/users", url.Values{"username": {"carol"}, "password": {"carol's long password"}, "role": {"helpdesk"}}); status != http.StatusSeeOther {
				t.Fatalf("add user: %d", status)
			}
			if status, body := do(admin, "POST", "/settings/users", url.Values{"username": {"carol"}, "password": {"another long password"}, "role": {"viewer"}}); status != http.StatusConflict || !strings.Contains(body, "user-error") {
				t.Errorf("a taken username: %d", status)
			}
			carol, err := st.GetAdminUserByUsername(ctx, "carol")
			if err != nil {
				t.Fatal(err)
			}
			carolTok, hash := auth.NewToken()
			if err := st.CreateAPIToken(ctx, &mdmd.APIToken{Name: "carol", Role: mdmd.RoleHelpdesk, OwnerUserID: carol.ID, Hash: hash,
				Prefix: auth.DisplayPrefix(carolTok), CreatedBy: "carol", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			if status, _ := do(admin, "POST", "/settings/users/"+carol.ID+"/disable", url.Values{"csrf": {"-"}}); status != http.StatusForbidden {
				t.Errorf("disable without CSRF: %d", status)
			}
			if status, _ := do(admin, "POST", "/settings/users/"+carol.ID+"/disable", url.Values{}); status != http.StatusSeeOther {
				t.Fatalf("disable: %d", status)
			}
			if _, err := auth.AuthenticateToken(ctx, st, carolTok, time.Now()); !mdmd.IsCode(err, mdmd.EUnauthenticated) {
				t.Errorf("a disabled user's token still works: %v", err)
			}
			if status, _ := do(admin, "POST", "/settings/users/"+users[mdmd.RoleAdmin].ID+"/disable", url.Values{}); status != http.StatusConflict {
				t.Errorf("disabling yourself: %d", status)
			}
			if status, _ := do(admin, "POST", "/settings/users/"+carol.ID+"/reset-totp", url.Values{}); status != http.StatusSeeOther {
				t.Errorf("reset TOTP: %d", status)
			}

			// A viewer sees neither page nor link.
			for _, path := range []string{"/settings/tokens", "/settings/users"} {
				if status, _ := do(viewer, "GET", path, nil); status != http.StatusForbidden {
					t.Errorf("viewer GET %s: %d", path, status)
				}
			}
			if status, _ := do(viewer, "POST", "/settings/tokens", url.Values{"name": {"x"}, "role": {"admin"}}); status != http.StatusForbidden {
				t.Errorf("viewer minting an admin token: %d", status)
			}
			if _, page := do(admin, "GET", "/settings/users", nil); !strings.Contains(page, "carol") || !strings.Contains(page, "disabled") {
				t.Error("the users page does not show carol disabled")
			}
		})
	}
}
