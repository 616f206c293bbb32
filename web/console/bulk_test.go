package console

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/bulk"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/jobs"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// The bulk pages on every backend: a running action's page reloads itself
// as an automatic request every 10 seconds; a role may stop only what it
// may start, with a reason, and the stop shows; a viewer sees neither the
// stop form nor the forms to start actions.
func TestBulkPages(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			var svc *bulk.Service
			p := newPages(t, be, func(st *storage.Store) Options {
				// No job runs: an action stays running until a test sends it.
				svc = bulk.New(st, commands.NewService(st, jobs.New(st, jobs.Options{}), nil), nil, nil, nil)
				return Options{Bulk: svc}
			})
			for i := range 3 {
				udid := "bulk-page-" + string(rune('a'+i))
				if err := p.st.CreateDevice(ctx, &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: udid,
					Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}); err != nil {
					t.Fatal(err)
				}
			}
			admin, help, viewer := p.session(mdmd.RoleAdmin), p.session(mdmd.RoleHelpdesk), p.session(mdmd.RoleViewer)

			status, _ := p.do(help, "POST", "/bulk/lock", url.Values{"q": {"bulk-page"}, "message": {"hold"}})
			if status != 303 {
				t.Fatalf("bulk lock: %d", status)
			}
			bs, _ := svc.List(ctx, 10)
			id := bs[0].ID
			status, page := p.do(help, "GET", "/bulk/"+id+"?state=pending&done=create", nil)
			if status != 200 || !strings.Contains(page, `<meta http-equiv="refresh" content="10; url=?auto=1&amp;state=pending">`) ||
				!strings.Contains(page, `action="/bulk/`+id+`/cancel"`) {
				t.Fatalf("running action page (%d):\n%s", status, page)
			}
			if _, page := p.do(viewer, "GET", "/bulk/"+id, nil); strings.Contains(page, "/cancel") {
				t.Error("a viewer is offered to cancel")
			}
			if _, page := p.do(viewer, "GET", "/bulk/new", nil); strings.Contains(page, `action="/bulk/`) || !strings.Contains(page, "Act on 3 devices") {
				t.Error("a viewer is offered bulk actions")
			}
			for _, tc := range []struct {
				sid    string
				form   url.Values
				status int
			}{
				{viewer, url.Values{"reason": {"x"}}, 403},
				{help, url.Values{"reason": {"x"}, "csrf": {"-"}}, 403},
				{help, url.Values{"reason": {""}}, 400},
			} {
				if status, _ := p.do(tc.sid, "POST", "/bulk/"+id+"/cancel", tc.form); status != tc.status {
					t.Errorf("cancel %v: %d, want %d", tc.form, status, tc.status)
				}
			}
			if b, _ := svc.Get(ctx, id); b.State != mdmd.BulkRunning {
				t.Fatalf("refused cancels changed the action: %s", b.State)
			}
			if status, _ := p.do(help, "POST", "/bulk/"+id+"/cancel", url.Values{"reason": {"wrong devices"}}); status != 303 {
				t.Fatalf("cancel: %d", status)
			}
			_, page = p.do(admin, "GET", "/bulk/"+id+"?done=cancel", nil)
			if !strings.Contains(page, `id="bulk-state">cancelled<`) || strings.Contains(page, "http-equiv") || strings.Contains(page, "/cancel\"") {
				t.Fatalf("cancelled action page:\n%s", page)
			}
			if n, err := svc.Run(ctx); err != nil || n != 0 {
				t.Fatalf("a cancelled action sent %d (%v)", n, err)
			}
			if len(p.audited("bulk.cancel")) != 1 {
				t.Error("the cancel was not audited")
			}
		})
	}
}
