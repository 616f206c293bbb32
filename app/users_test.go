package app

import (
	"context"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/auth"
)

// Admins manage console users through the API: bad input stores nothing,
// nobody demotes or disables themselves, and disabling a user revokes
// every token they own.
func TestUserManagement(t *testing.T) { eachBackend(t, testUserManagement) }

func testUserManagement(t *testing.T, dbURL string) {
	f := newFixture(t, dbURL)
	ctx := context.Background()
	for _, bad := range []map[string]any{
		{"username": "bob", "password": "short", "role": "admin"},
		{"username": "bob", "password": "a long enough password", "role": "god"},
		{"username": "bad name!", "password": "a long enough password", "role": "viewer"},
		{"username": "bob", "password": "a long enough password", "role": "admin", "extra": 1},
	} {
		if r := f.do("POST", "/api/v1/users", f.Token, bad); r.Status != 400 {
			t.Errorf("%v: %d %s", bad, r.Status, r.Body)
		}
	}
	var bob mdmd.AdminUser
	f.mustDo(201, "POST", "/api/v1/users", f.Token, map[string]any{"username": "bob", "password": "a long enough password", "role": "admin"}).json(t, &bob)
	if r := f.do("POST", "/api/v1/users", f.Token, map[string]any{"username": "bob", "password": "another long password", "role": "viewer"}); r.Status != 409 {
		t.Errorf("a taken username: %d", r.Status)
	}
	var list struct{ Items []mdmd.AdminUser }
	f.mustDo(200, "GET", "/api/v1/users", f.Token, nil).json(t, &list)
	if len(list.Items) != 2 || string(f.mustDo(200, "GET", "/api/v1/users", f.Token, nil).Body) == "" {
		t.Fatalf("users = %+v", list.Items)
	}
	for _, u := range list.Items {
		if u.PasswordHash != "" {
			t.Fatal("a password hash left the server")
		}
	}

	// Bob's own token; the tokens Bob mints with it are Bob's too.
	secret, hash := auth.NewToken()
	if err := f.srv.Store().CreateAPIToken(ctx, &mdmd.APIToken{Name: "bob", Role: mdmd.RoleAdmin, OwnerUserID: bob.ID, Hash: hash,
		Prefix: auth.DisplayPrefix(secret), CreatedBy: "bob", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var minted struct{ Secret string }
	f.mustDo(201, "POST", "/api/v1/tokens", secret, map[string]any{"name": "bob-script", "role": "viewer"}).json(t, &minted)
	if r := f.do("PATCH", "/api/v1/users/"+bob.ID, secret, map[string]any{"disabled": true}); r.Status != 409 {
		t.Errorf("bob disabling himself: %d", r.Status)
	}
	if r := f.do("PATCH", "/api/v1/users/"+bob.ID, secret, map[string]any{"role": "viewer"}); r.Status != 409 {
		t.Errorf("bob changing his own role: %d", r.Status)
	}
	f.mustDo(200, "PATCH", "/api/v1/users/"+bob.ID, secret, map[string]any{"password": "bob's new long password"})
	f.mustDo(204, "DELETE", "/api/v1/users/"+bob.ID+"/totp", f.Token, nil)

	// Demoting a user revokes their tokens: a token keeps the role it was
	// minted with.
	var dan mdmd.AdminUser
	f.mustDo(201, "POST", "/api/v1/users", f.Token, map[string]any{"username": "dan", "password": "a long enough password", "role": "admin"}).json(t, &dan)
	danTok, danHash := auth.NewToken()
	if err := f.srv.Store().CreateAPIToken(ctx, &mdmd.APIToken{Name: "dan", Role: mdmd.RoleAdmin, OwnerUserID: dan.ID, Hash: danHash,
		Prefix: auth.DisplayPrefix(danTok), CreatedBy: "dan", ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	f.mustDo(200, "GET", "/api/v1/users", danTok, nil)
	f.mustDo(200, "PATCH", "/api/v1/users/"+dan.ID, f.Token, map[string]any{"role": "viewer"})
	if r := f.do("GET", "/api/v1/me", danTok, nil); r.Status != 401 {
		t.Errorf("a demoted admin's token: %d", r.Status)
	}

	// The first admin disables Bob: both of Bob's tokens stop working.
	var disabled mdmd.AdminUser
	f.mustDo(200, "PATCH", "/api/v1/users/"+bob.ID, f.Token, map[string]any{"disabled": true}).json(t, &disabled)
	if !disabled.Disabled {
		t.Fatalf("after disabling: %+v", disabled)
	}
	for _, tok := range []string{secret, minted.Secret} {
		if r := f.do("GET", "/api/v1/me", tok, nil); r.Status != 401 {
			t.Errorf("a disabled user's token: %d", r.Status)
		}
	}
	if r := f.do("PATCH", "/api/v1/users/no-such-user", f.Token, map[string]any{"disabled": true}); r.Status != 404 {
		t.Errorf("unknown user: %d", r.Status)
	}
}
