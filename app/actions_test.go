package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/compliance"
)

// Noncompliance actions against a simulated iPhone: when it begins
// failing, the due actions run once for the episode — the notification
// is logged, the lock reaches the device — and the selective wipe waits
// for an administrator, whose approval removes corporate data.
func TestNoncomplianceActions(t *testing.T) { eachBackend(t, testNoncomplianceActions) }

func testNoncomplianceActions(t *testing.T, dbURL string) {
	env := newAppleEnv(t, dbURL)
	st, ctx := env.srv.Store(), context.Background()
	url, _ := env.link(t, map[string]any{"owner_user": "ana@example.com"})
	old := applesim.DefaultPosture
	old.OSVersion = "17.6"
	sim, dev := env.enroll(t, url, "00008110-00AC7100", old)

	// Bad action lists are refused.
	for _, actions := range []any{
		[]map[string]any{{"action": "explode", "after_days": 0}},
		[]map[string]any{{"action": "lock", "after_days": -1}},
		[]map[string]any{{"action": "lock", "after_days": 1}, {"action": "lock", "after_days": 2}},
	} {
		if r := env.do("POST", "/api/v1/compliance/policies", env.Token, map[string]any{"name": "bad",
			"rules": map[string]any{"min_os_version": "18", "actions": actions}}); r.Status != 400 {
			t.Fatalf("actions %v: %d %s", actions, r.Status, r.Body)
		}
	}
	env.mustDo(201, "POST", "/api/v1/compliance/policies", env.Token, map[string]any{"name": "os", "is_default": true,
		"rules": map[string]any{"min_os_version": "18", "actions": []map[string]any{
			{"action": "mark", "after_days": 2}, {"action": "notify", "after_days": 0},
			{"action": "lock", "after_days": 0}, {"action": "selective_wipe", "after_days": 0}}}})
	env.action(t, env.Token, dev.ID, "query", map[string]any{})
	eventually(t, 15*time.Second, "the device in grace", func() bool {
		c, err := st.GetCompliance(ctx, dev.ID)
		return err == nil && c.State == "in_grace"
	})

	byAction := func() map[string]mdmd.ComplianceAction {
		var out struct{ Items []mdmd.ComplianceAction }
		env.mustDo(200, "GET", "/api/v1/compliance/actions?device_id="+dev.ID, env.Token, nil).json(t, &out)
		m := map[string]mdmd.ComplianceAction{}
		for _, a := range out.Items {
			if _, dup := m[a.Action]; dup {
				t.Fatalf("action %s taken twice in one episode", a.Action)
			}
			m[a.Action] = a
		}
		return m
	}
	var acts map[string]mdmd.ComplianceAction
	eventually(t, 15*time.Second, "the lock to reach the device and the wipe to wait", func() bool {
		acts = byAction()
		return sim.State().Locked && len(acts) == 3
	})
	if acts["notify"].State != mdmd.ActionDone || acts["lock"].State != mdmd.ActionDone || acts["lock"].CommandID == "" ||
		acts["selective_wipe"].State != mdmd.ActionPendingApproval || len(acts) != 3 {
		t.Fatalf("actions = %+v", acts)
	}
	evs, err := st.ListEvents(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	notified := false
	for _, e := range evs {
		notified = notified || (e.Type == mdmd.EventComplianceAction && e.DeviceID == dev.ID && strings.Contains(string(e.Data), `"action":"notify"`))
	}
	if !notified {
		t.Error("no notify event in the log")
	}

	// A second scheduler (as on another replica) takes nothing twice.
	again := &compliance.Actions{Store: st, Do: env.srv.Commands(), Log: env.srv.log}
	if n, err := again.Run(ctx); err != nil || n != 0 {
		t.Fatalf("a second run: %d, %v", n, err)
	}
	if len(byAction()) != 3 {
		t.Fatal("a second run took actions again")
	}

	// Helpdesk cannot approve a wipe; rejecting needs a reason; an
	// admin's approval sends it and the device checks out.
	wipe := acts["selective_wipe"]
	helpdesk := (&fixture{testServer: env.testServer}).tokenFor(t, mdmd.RoleHelpdesk)
	if r := env.do("POST", "/api/v1/compliance/actions/"+wipe.ID+"/approve", helpdesk, map[string]any{}); r.Status != 403 {
		t.Fatalf("helpdesk approving: %d", r.Status)
	}
	if r := env.do("POST", "/api/v1/compliance/actions/"+wipe.ID+"/reject", env.Token, map[string]any{}); r.Status != 400 {
		t.Fatalf("reject without reason: %d", r.Status)
	}
	if r := env.do("POST", "/api/v1/compliance/actions/"+acts["lock"].ID+"/approve", env.Token, map[string]any{}); r.Status != 409 {
		t.Fatalf("approving a lock: %d", r.Status)
	}
	var approved mdmd.ComplianceAction
	env.mustDo(200, "POST", "/api/v1/compliance/actions/"+wipe.ID+"/approve", env.Token, map[string]any{"reason": "confirmed with the user"}).json(t, &approved)
	if approved.State != mdmd.ActionDone || approved.DecidedBy == "" || approved.CommandID == "" {
		t.Fatalf("approved = %+v", approved)
	}
	if r := env.do("POST", "/api/v1/compliance/actions/"+wipe.ID+"/approve", env.Token, map[string]any{}); r.Status != 409 {
		t.Fatalf("approving twice: %d", r.Status)
	}
	eventually(t, 15*time.Second, "the device to leave management", func() bool {
		d, err := st.GetDevice(ctx, dev.ID)
		return err == nil && d.EnrollmentState == mdmd.EnrollmentUnenrolled && !sim.State().Enrolled
	})
}
