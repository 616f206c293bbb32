package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// Sessions end when idle too long or past their lifetime, on every
// backend: the browser is sent to sign in with the reason, and the
// session is gone from the database.
func TestSessionTimeouts(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := storagetest.Open(t, be.URL, storage.Options{})
			clock := time.Now()
			c, err := New(Options{Store: st, PublicURL: "http://127.0.0.1", Now: func() time.Time { return clock }})
			if err != nil {
				t.Fatal(err)
			}
			r := chi.NewRouter()
			c.Register(r)
			u := &mdmd.AdminUser{Username: "idle", PasswordHash: "x", Role: mdmd.RoleViewer}
			if err := st.CreateAdminUser(ctx, u); err != nil {
				t.Fatal(err)
			}
			start := clock
			for _, tc := range []struct {
				name    string
				after   time.Duration // since the session was last used
				expires time.Duration // lifetime from its start
				ended   bool
			}{
				{"fresh", time.Minute, 12 * time.Hour, false},
				{"idle", 31 * time.Minute, 12 * time.Hour, true},
				{"expired", 10 * time.Minute, 5 * time.Minute, true},
			} {
				clock = start
				id := "session-" + tc.name
				if err := st.CreateConsoleSession(ctx, &mdmd.ConsoleSession{IDHash: hashID(id), UserID: u.ID, CSRFToken: "t",
					MFADone: true, ExpiresAt: start.Add(tc.expires)}); err != nil {
					t.Fatal(err)
				}
				clock = start.Add(tc.after)
				req := httptest.NewRequest("GET", "/devices", nil)
				req.AddCookie(&http.Cookie{Name: c.cookieName("mdmd_session"), Value: id})
				rec := httptest.NewRecorder()
				r.ServeHTTP(rec, req)
				loc := rec.Header().Get("Location")
				if tc.ended != (rec.Code == http.StatusSeeOther && strings.HasPrefix(loc, "/login?") && strings.Contains(loc, "timed+out")) ||
					(!tc.ended && rec.Code != http.StatusOK) {
					t.Errorf("%s: %d to %q", tc.name, rec.Code, loc)
				}
				_, err := st.GetConsoleSession(ctx, hashID(id))
				if gone := mdmd.IsCode(err, mdmd.ENotFound); gone != tc.ended {
					t.Errorf("%s: session gone = %v (%v)", tc.name, gone, err)
				}
			}
		})
	}
}
