package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// BenchmarkConsolePages renders the console's heaviest pages server-side,
// from the router to the last byte of HTML, for a signed-in viewer on
// PostgreSQL with a fleet of 100,000 devices (MDMD_BENCH_DEVICES). One op
// is one page; the worst op is reported too. Targets: the device list
// under 200 ms, the dashboard under 300 ms.
//
//	MDMD_TEST_DATABASE_URL=postgres://... go test -run '^$' -bench ConsolePages ./web/console/
func BenchmarkConsolePages(b *testing.B) {
	url := storagetest.PostgresURL(b)
	if url == "" {
		b.Skip("needs PostgreSQL (" + storagetest.EnvPostgres + ")")
	}
	ctx := context.Background()
	st := storagetest.Open(b, url, storage.Options{})
	storagetest.SeedFleet(b, st, storagetest.FleetSize(100_000))
	u := &mdmd.AdminUser{Username: "bench", PasswordHash: "x", Role: mdmd.RoleViewer}
	if err := st.CreateAdminUser(ctx, u); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	const sid = "bench-session"
	if err := st.CreateConsoleSession(ctx, &mdmd.ConsoleSession{IDHash: hashID(sid), UserID: u.ID, CSRFToken: "t", MFADone: true,
		CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(24 * time.Hour)}); err != nil {
		b.Fatal(err)
	}
	c, err := New(Options{Store: st, PublicURL: "http://127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	r := chi.NewRouter()
	c.Register(r)
	r.Handle("/", c.Dashboard())
	for _, page := range []struct{ name, path string }{
		{"dashboard", "/"},
		{"devices", "/devices"},
		{"devices-noncompliant-ios", "/devices?compliance=noncompliant&platform=ios"},
		{"devices-search", "/devices?q=model+7"},
		{"device", "/devices/dev-0000070"},
	} {
		b.Run(page.name, func(b *testing.B) {
			var worst time.Duration
			for b.Loop() {
				req := httptest.NewRequest("GET", page.path, nil)
				req.AddCookie(&http.Cookie{Name: c.cookieName("mdmd_session"), Value: sid})
				rec := httptest.NewRecorder()
				start := time.Now()
				r.ServeHTTP(rec, req)
				worst = max(worst, time.Since(start))
				if rec.Code != http.StatusOK {
					b.Fatalf("GET %s: %d %s", page.path, rec.Code, rec.Body.String())
				}
			}
			b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
		})
	}
}
