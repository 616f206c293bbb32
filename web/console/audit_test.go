package console

import (
	"context"
	"fmt"
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

// The audit log viewer on every backend: filters, pages of 50 newest
// first, a clear error for a bad filter, and only roles with audit:read.
func TestAuditViewer(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := storagetest.Open(t, be.URL, storage.Options{})
			for i := range 120 {
				action := "device.lock"
				if i%3 == 0 {
					action = "device.wipe"
				}
				if err := st.AppendAudit(ctx, &mdmd.AuditEvent{ActorType: mdmd.ActorAdmin, Actor: fmt.Sprintf("admin%d", i%2),
					Action: action, TargetType: "device", TargetID: fmt.Sprintf("dev-%03d", i), Outcome: mdmd.OutcomeSuccess}); err != nil {
					t.Fatal(err)
				}
			}
			if err := st.AppendAudit(ctx, &mdmd.AuditEvent{ActorType: mdmd.ActorAdmin, Actor: "alice (01a2-ffff)",
				Action: "token.create", TargetType: "token", TargetID: "tok-alice", Outcome: mdmd.OutcomeSuccess}); err != nil {
				t.Fatal(err)
			}
			c, err := New(Options{Store: st, Audit: st, PublicURL: "http://127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			r := chi.NewRouter()
			c.Register(r)
			session := func(role mdmd.Role) string {
				u := &mdmd.AdminUser{Username: "u-" + string(role), PasswordHash: "x", Role: role}
				if err := st.CreateAdminUser(ctx, u); err != nil {
					t.Fatal(err)
				}
				now := time.Now()
				id := "session-" + string(role)
				if err := st.CreateConsoleSession(ctx, &mdmd.ConsoleSession{IDHash: hashID(id), UserID: u.ID, CSRFToken: "t",
					MFADone: true, CreatedAt: now, LastSeenAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
					t.Fatal(err)
				}
				return id
			}
			get := func(sid, path string) (int, string) {
				req := httptest.NewRequest("GET", path, nil)
				req.AddCookie(&http.Cookie{Name: c.cookieName("mdmd_session"), Value: sid})
				rec := httptest.NewRecorder()
				r.ServeHTTP(rec, req)
				return rec.Code, rec.Body.String()
			}
			auditor, viewer := session(mdmd.RoleAuditor), session(mdmd.RoleViewer)

			for _, tc := range []struct {
				path       string
				status     int
				want, miss []string
			}{
				{"/audit", 200, []string{"tok-alice", "dev-119", "dev-071", "Older entries"}, []string{"dev-070"}},
				{"/audit?actor=alice", 200, []string{"tok-alice"}, []string{"dev-119"}},
				{"/audit?actor=ali", 200, []string{"No audit entries match"}, []string{"tok-alice"}},
				{"/audit?action=device.wipe&actor=admin0", 200, []string{"dev-114", "dev-000"}, []string{"dev-003<", "device.lock"}},
				{"/audit?target=dev-007", 200, []string{"dev-007"}, []string{"dev-008"}},
				{"/audit?since=yesterday", 400, []string{"Since must be a date"}, nil},
				{"/audit?before=x", 400, []string{"not valid"}, nil},
			} {
				status, body := get(auditor, tc.path)
				if status != tc.status {
					t.Errorf("GET %s: %d", tc.path, status)
				}
				for _, w := range tc.want {
					if !strings.Contains(body, w) {
						t.Errorf("GET %s: no %q in the page", tc.path, w)
					}
				}
				for _, m := range tc.miss {
					if strings.Contains(body, m) {
						t.Errorf("GET %s: %q should not be on the page", tc.path, m)
					}
				}
			}
			// The next page starts where the first ended.
			_, first := get(auditor, "/audit")
			i := strings.Index(first, `/audit?actor=`)
			if j := strings.Index(first, `rel="next"`); j < 0 || i < 0 {
				i = -1
			} else {
				i = strings.LastIndex(first[:j], `/audit?actor=`)
			}
			if i < 0 {
				t.Fatal("no link to older entries")
			}
			next := first[i : i+strings.IndexByte(first[i:], '"')]
			if _, older := get(auditor, strings.ReplaceAll(next, "&amp;", "&")); !strings.Contains(older, "dev-070") || strings.Contains(older, "dev-071<") {
				t.Error("the second page does not follow the first")
			}
			if status, _ := get(viewer, "/audit"); status != http.StatusForbidden {
				t.Errorf("a viewer reading the audit log: %d", status)
			}
			if _, body := get(viewer, "/devices"); strings.Contains(body, `href="/audit"`) {
				t.Error("the viewer's navigation links to the audit log")
			}
		})
	}
}
