package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/bulk"
	"github.com/mdmd/mdmd/migrations"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/web"
)

// Bulk actions on every backend, with simulated iPhones: a query reaches
// every enrolled device of the filter (an Android device is skipped), a
// lock of a group's devices locks exactly them, a bulk wipe waits for a
// second admin (a rejected one is cancelled and sends nothing, an approved
// one removes the group's management), roles and bad input are refused
// with nothing stored, and the console's forms and progress page do the
// same through the same service.
func TestBulkActions(t *testing.T) { eachBackend(t, testBulkActions) }

func testBulkActions(t *testing.T, dbURL string) {
	env := newAppleEnv(t, dbURL)
	ctx := context.Background()
	st := env.srv.Store()
	link, _ := env.link(t, map[string]any{"one_time": false})
	var sims []*applesim.Device
	var devs []*mdmd.Device
	for i := range 3 {
		sim, dev := env.enroll(t, link, fmt.Sprintf("00008110-000A1C2E3F4DB%03d", i), applesim.DefaultPosture)
		sims, devs = append(sims, sim), append(devs, dev)
	}
	amapi := "enterprises/LC0bulk/devices/1"
	android := &mdmd.Device{Platform: mdmd.PlatformAndroid, AMAPIName: &amapi, Name: "Pixel", Ownership: mdmd.OwnershipCorporate,
		EnrollmentState: mdmd.EnrollmentEnrolled}
	if err := st.CreateDevice(ctx, android); err != nil {
		t.Fatal(err)
	}
	var g mdmd.Group
	env.mustDo(201, "POST", "/api/v1/groups", env.Token, map[string]any{"name": "field"}).json(t, &g)
	env.mustDo(204, "POST", "/api/v1/groups/"+g.ID+"/members", env.Token, map[string]any{"device_ids": []string{devs[0].ID, devs[1].ID}})
	fx := &fixture{testServer: env.testServer}
	helpdesk, viewer := fx.tokenFor(t, mdmd.RoleHelpdesk), fx.tokenFor(t, mdmd.RoleViewer)
	second := secondAdmin(t, env.testServer)

	status := func(id string) bulk.Status {
		t.Helper()
		var s bulk.Status
		env.mustDo(200, "GET", "/api/v1/bulk-actions/"+id, viewer, nil).json(t, &s)
		return s
	}
	waitDone := func(id string, acknowledged int) bulk.Status {
		t.Helper()
		var s bulk.Status
		eventually(t, 20*time.Second, "bulk action "+id+" to be done and acknowledged", func() bool {
			s = status(id)
			return s.State == mdmd.BulkDone && s.Progress.Acknowledged == acknowledged && s.Progress.InFlight == 0
		})
		return s
	}
	count := func() int {
		bs, err := st.ListBulkActions(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		return len(bs)
	}

	// A posture query to every enrolled device: the iPhones answer it, the
	// Android device is skipped with the reason.
	var q mdmd.BulkAction
	env.mustDo(202, "POST", "/api/v1/bulk-actions/query", helpdesk, map[string]any{}).json(t, &q)
	if q.Total != 4 || q.State != mdmd.BulkRunning || q.Action != mdmd.BulkQuery {
		t.Fatalf("bulk query = %+v", q)
	}
	s := waitDone(q.ID, 3)
	if s.Progress.Skipped != 1 || s.Progress.Sent != 3 || s.Progress.Failed != 0 || s.FinishedAt == nil {
		t.Fatalf("bulk query progress = %+v", s.Progress)
	}
	var skipped web.Page[mdmd.BulkTarget]
	env.mustDo(200, "GET", "/api/v1/bulk-actions/"+q.ID+"/devices?state=skipped", viewer, nil).json(t, &skipped)
	if len(skipped.Items) != 1 || skipped.Items[0].DeviceID != android.ID || !strings.Contains(skipped.Items[0].Error, "Android") {
		t.Fatalf("skipped = %+v", skipped.Items)
	}
	for _, sim := range sims {
		if !slicesContain(sim.State().Handled, "SecurityInfo") {
			t.Errorf("%s never answered SecurityInfo: %v", sim.Name, sim.State().Handled)
		}
	}

	// A lock of the group's devices locks exactly them, with the message.
	var lock mdmd.BulkAction
	env.mustDo(202, "POST", "/api/v1/bulk-actions/lock", helpdesk, map[string]any{"filter": map[string]any{"group_id": g.ID},
		"message": "Call IT"}).json(t, &lock)
	if lock.Total != 2 {
		t.Fatalf("bulk lock total = %d, want 2", lock.Total)
	}
	waitDone(lock.ID, 2)
	if !sims[0].State().Locked || !sims[1].State().Locked || sims[2].State().Locked || sims[0].State().LockMessage != "Call IT" {
		t.Fatalf("locked: %v %v %v", sims[0].State(), sims[1].State(), sims[2].State())
	}

	// Refused, with nothing stored: a role without the permission, bad
	// input, a filter that selects nothing, a wrong confirmation.
	before := count()
	for _, tc := range []struct {
		name, path, token string
		body              map[string]any
		status            int
	}{
		{"helpdesk wipes", "/api/v1/bulk-actions/wipe", helpdesk, map[string]any{"mode": "selective", "reason": "r", "confirm": "2", "filter": map[string]any{"group_id": g.ID}}, 403},
		{"viewer locks", "/api/v1/bulk-actions/lock", viewer, map[string]any{}, 403},
		{"unknown platform", "/api/v1/bulk-actions/query", helpdesk, map[string]any{"filter": map[string]any{"platform": "windows"}}, 400},
		{"unknown compliance state", "/api/v1/bulk-actions/query", helpdesk, map[string]any{"filter": map[string]any{"compliance": "fine"}}, 400},
		{"unknown field", "/api/v1/bulk-actions/query", helpdesk, map[string]any{"filters": map[string]any{}}, 400},
		{"nothing selected", "/api/v1/bulk-actions/lock", helpdesk, map[string]any{"filter": map[string]any{"q": "no such phone"}}, 400},
		{"message on a query", "/api/v1/bulk-actions/query", helpdesk, map[string]any{"message": "hi"}, 400},
		{"mode on a lock", "/api/v1/bulk-actions/lock", helpdesk, map[string]any{"mode": "full"}, 400},
		{"unknown wipe mode", "/api/v1/bulk-actions/wipe", env.Token, map[string]any{"mode": "partial", "reason": "r", "confirm": "2"}, 400},
		{"wipe without reason", "/api/v1/bulk-actions/wipe", env.Token, map[string]any{"mode": "full", "confirm": "2", "filter": map[string]any{"group_id": g.ID}}, 400},
		{"wrong confirmation", "/api/v1/bulk-actions/wipe", env.Token, map[string]any{"mode": "selective", "reason": "r", "confirm": "3", "filter": map[string]any{"group_id": g.ID}}, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := env.do("POST", tc.path, tc.token, tc.body); r.Status != tc.status {
				t.Fatalf("%s = %d %s, want %d", tc.path, r.Status, r.Body, tc.status)
			}
		})
	}
	if count() != before {
		t.Fatalf("refused requests stored bulk actions: %d, want %d", count(), before)
	}

	// A bulk wipe waits for a second admin; rejected, it is cancelled and
	// nothing reaches the devices.
	wipe := map[string]any{"mode": "selective", "reason": "contractors leave", "confirm": "2", "filter": map[string]any{"group_id": g.ID}}
	var rej mdmd.BulkAction
	env.mustDo(202, "POST", "/api/v1/bulk-actions/wipe", env.Token, wipe).json(t, &rej)
	if rej.State != mdmd.BulkAwaitingApproval || rej.ApprovalID == "" || rej.Total != 2 || rej.StartedAt != nil {
		t.Fatalf("bulk wipe = %+v", rej)
	}
	env.mustDo(403, "POST", "/api/v1/approvals/"+rej.ApprovalID+"/approve", env.Token, nil)
	env.mustDo(200, "POST", "/api/v1/approvals/"+rej.ApprovalID+"/reject", second, map[string]any{"reason": "not today"})
	var listed web.Page[mdmd.BulkAction]
	env.mustDo(200, "GET", "/api/v1/bulk-actions", viewer, nil).json(t, &listed)
	if len(listed.Items) == 0 || listed.Items[0].ID != rej.ID || listed.Items[0].State != mdmd.BulkCancelled {
		t.Fatalf("the list does not show the rejected bulk wipe cancelled: %+v", listed.Items)
	}
	if s := status(rej.ID); s.State != mdmd.BulkCancelled || s.Approval == nil || s.Approval.State != mdmd.ApprovalRejected || s.Progress.Pending != 2 {
		t.Fatalf("rejected bulk wipe = %+v", s)
	}
	env.mustDo(409, "POST", "/api/v1/approvals/"+rej.ApprovalID+"/approve", second, nil)
	time.Sleep(200 * time.Millisecond) // a periodic run would have sent it by now
	for _, d := range devs {
		if n := countRequestType(deviceCommands(t, env.testServer, d.ID), "RemoveProfile"); n != 0 {
			t.Fatalf("a rejected bulk wipe queued %d RemoveProfile commands", n)
		}
	}

	// Cancelled while it waits, a second admin's approval cannot start it.
	// A full wipe's approval shows whether factory reset protection goes.
	var stopped mdmd.BulkAction
	env.mustDo(202, "POST", "/api/v1/bulk-actions/wipe", env.Token, map[string]any{"mode": "full", "reason": "lost shipment",
		"confirm": "2", "preserve_frp": false, "filter": map[string]any{"group_id": g.ID}}).json(t, &stopped)
	var pending mdmd.Approval
	env.mustDo(200, "GET", "/api/v1/approvals/"+stopped.ApprovalID, second, nil).json(t, &pending)
	if !strings.Contains(string(pending.Params), `"preserve_frp":false`) || !strings.Contains(string(pending.Params), `"devices":2`) {
		t.Fatalf("the approval does not say what the wipe does: %s", pending.Params)
	}
	// Roles that cannot see approvals see its state, not who asked or why.
	var seen bulk.Status
	env.mustDo(200, "GET", "/api/v1/bulk-actions/"+stopped.ID, viewer, nil).json(t, &seen)
	if seen.Approval == nil || seen.Approval.State != mdmd.ApprovalPending || seen.Approval.RequestedByName != "" || seen.Approval.Reason != "" {
		t.Fatalf("a viewer sees the approval %+v", seen.Approval)
	}
	env.mustDo(403, "POST", "/api/v1/bulk-actions/"+stopped.ID+"/cancel", helpdesk, map[string]any{"reason": "no"})
	env.mustDo(400, "POST", "/api/v1/bulk-actions/"+stopped.ID+"/cancel", env.Token, map[string]any{})
	env.mustDo(200, "POST", "/api/v1/bulk-actions/"+stopped.ID+"/cancel", env.Token, map[string]any{"reason": "found the shipment"})
	if a := approve(t, env.testServer, second, stopped.ApprovalID); a.State != mdmd.ApprovalFailed {
		t.Fatalf("approving a cancelled bulk wipe: %+v", a)
	}
	env.mustDo(409, "POST", "/api/v1/bulk-actions/"+stopped.ID+"/cancel", env.Token, map[string]any{"reason": "again"})
	if s := status(stopped.ID); s.State != mdmd.BulkCancelled || s.Progress.Pending != 2 {
		t.Fatalf("cancelled bulk wipe = %s %+v", s.State, s.Progress)
	}
	for _, d := range devs {
		if n := countRequestType(deviceCommands(t, env.testServer, d.ID), "EraseDevice"); n != 0 {
			t.Fatalf("a cancelled bulk wipe queued %d EraseDevice commands", n)
		}
	}

	// Approved, it removes management from the group's devices only.
	var ok mdmd.BulkAction
	env.mustDo(202, "POST", "/api/v1/bulk-actions/wipe", env.Token, wipe).json(t, &ok)
	if a := approve(t, env.testServer, second, ok.ApprovalID); a.State != mdmd.ApprovalApproved {
		t.Fatalf("approval = %+v", a)
	}
	s = waitDone(ok.ID, 2)
	eventually(t, 10*time.Second, "the group's devices to check out", func() bool {
		a, _ := st.GetDevice(ctx, devs[0].ID)
		b, _ := st.GetDevice(ctx, devs[1].ID)
		return a.EnrollmentState == mdmd.EnrollmentUnenrolled && b.EnrollmentState == mdmd.EnrollmentUnenrolled
	})
	if d, _ := st.GetDevice(ctx, devs[2].ID); d.EnrollmentState != mdmd.EnrollmentEnrolled || sims[2].State().Erased {
		t.Fatalf("a device outside the group was wiped: %+v", d)
	}
	// bulk.start: the approved wipe, and the refused start of the cancelled one.
	if fx.auditCount(t, "bulk.create") != 5 || fx.auditCount(t, "bulk.start") != 2 || fx.auditCount(t, "bulk.done") != 3 ||
		fx.auditCount(t, "bulk.cancel") != 1 {
		t.Errorf("audit: bulk.create %d, bulk.start %d, bulk.done %d", fx.auditCount(t, "bulk.create"),
			fx.auditCount(t, "bulk.start"), fx.auditCount(t, "bulk.done"))
	}

	// The console: a helpdesk user locks the remaining iPhone through the
	// form and lands on its progress page; the wipe form is not theirs.
	help := consoleSession(t, env.testServer, mdmd.RoleHelpdesk)
	code, page := help("GET", "/bulk/new?platform=ios", nil)
	if code != 200 || !strings.Contains(page, `action="/bulk/lock"`) || strings.Contains(page, `action="/bulk/wipe"`) ||
		!strings.Contains(page, "Act on 1 device") {
		t.Fatalf("helpdesk bulk page = %d:\n%s", code, page)
	}
	code, page = help("POST", "/bulk/lock", url.Values{"platform": {"ios"}, "message": {"Return to IT"}})
	if code != 303 {
		t.Fatalf("console bulk lock = %d:\n%s", code, page)
	}
	if code, _ := help("POST", "/bulk/wipe", url.Values{"platform": {"ios"}, "mode": {"full"}, "reason": {"x"}, "confirm": {"1"}}); code != 403 {
		t.Fatalf("helpdesk console bulk wipe = %d", code)
	}
	bs, _ := st.ListBulkActions(ctx, 1)
	waitDone(bs[0].ID, 1)
	if !sims[2].State().Locked || sims[2].State().LockMessage != "Return to IT" {
		t.Fatalf("the console's bulk lock did not reach the device: %+v", sims[2].State())
	}
	code, page = help("GET", "/bulk/"+bs[0].ID, nil)
	if code != 200 || !strings.Contains(page, `id="c-ack">1<`) || !strings.Contains(page, "Bulk lock of 1 device") || !strings.Contains(page, `id="bulk-state">done<`) {
		t.Fatalf("progress page = %d:\n%s", code, page)
	}
	// The page's own refresh does not keep a session alive.
	sum := sha256.Sum256([]byte("sid-helpdesk-0123456789abcdef"))
	lastSeen := func() time.Time {
		cs, err := st.GetConsoleSession(ctx, hex.EncodeToString(sum[:]))
		if err != nil {
			t.Fatal(err)
		}
		return cs.LastSeenAt
	}
	if _, err := st.DB().Exec(rebind(st, "UPDATE console_sessions SET last_seen_at = ? WHERE id_hash = ?"),
		time.Now().Add(-10*time.Minute).UTC().Truncate(time.Microsecond), hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	was := lastSeen()
	if code, _ := help("GET", "/bulk/"+bs[0].ID+"?auto=1", nil); code != 200 || !lastSeen().Equal(was) {
		t.Fatalf("an automatic refresh (%d) counted as use of the session", code)
	}
	if help("GET", "/bulk/"+bs[0].ID, nil); !lastSeen().After(was) {
		t.Fatal("opening the page did not count as use of the session")
	}
	adm := consoleSession(t, env.testServer, mdmd.RoleAdmin)
	code, page = adm("POST", "/bulk/wipe", url.Values{"platform": {"ios"}, "mode": {"full"}, "reason": {"x"}, "confirm": {"9"}})
	if code != 400 || !strings.Contains(page, "type the number of devices the filter selects (1)") {
		t.Fatalf("wrong confirmation in the console = %d:\n%s", code, page)
	}
	code, page = adm("POST", "/bulk/wipe", url.Values{"platform": {"ios"}, "mode": {"full"}, "reason": {"lost in transit"}, "confirm": {"1"}})
	if code != 303 {
		t.Fatalf("console bulk wipe = %d:\n%s", code, page)
	}
	code, page = adm("GET", "/approvals", nil)
	if code != 200 || !strings.Contains(page, "Bulk full wipe of 1 devices") {
		t.Fatalf("approvals page = %d:\n%s", code, page)
	}
	viewerPage := consoleSession(t, env.testServer, mdmd.RoleViewer)
	if code, page := viewerPage("GET", "/devices", nil); code != 200 || strings.Contains(page, "/bulk/new") {
		t.Fatalf("a viewer is offered bulk actions (%d)", code)
	}
}

func slicesContain(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// rebind writes a statement's placeholders for the store's dialect.
func rebind(st *storage.Store, q string) string {
	if st.DialectName() != migrations.Postgres {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
