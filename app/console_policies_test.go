package app

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/compliance"
)

// The console's policy and group pages against a running server, on
// every backend: a policy made in the console is the one the API serves;
// a bad rule is refused with the service's message and stores nothing; a
// device added to a group in the console gets the group's policy (it was
// marked for re-evaluation) and its profiles (the membership observer
// reconciled it), exactly as when the API adds it, and loses both when
// removed; viewers and helpdesk get 403 on every change.
func TestConsolePolicies(t *testing.T) { eachBackend(t, testConsolePolicies) }

func testConsolePolicies(t *testing.T, dbURL string) {
	env := newAppleEnv(t, dbURL)
	ctx, st := context.Background(), env.srv.Store()
	admin := consoleSession(t, env.testServer, mdmd.RoleAdmin)
	viewer := consoleSession(t, env.testServer, mdmd.RoleViewer)
	helpdesk := consoleSession(t, env.testServer, mdmd.RoleHelpdesk)
	link, _ := env.link(t, map[string]any{"one_time": false})
	viaConsole, dev := env.enroll(t, link, "00008110-00000000000C0A51", applesim.DefaultPosture)
	viaAPI, devAPI := env.enroll(t, link, "00008110-00000000000C0A52", applesim.DefaultPosture)

	// A group with a profile, made in the console and the API.
	if status, _ := admin("POST", "/groups", url.Values{"name": {"field"}}); status != http.StatusSeeOther {
		t.Fatalf("create group: %d", status)
	}
	gs, _ := st.ListGroups(ctx)
	if len(gs) != 1 {
		t.Fatalf("groups: %+v", gs)
	}
	g := gs[0]
	var passcode mdmd.Profile
	env.mustDo(201, "POST", "/api/v1/profiles", env.Token, map[string]any{"name": "Passcode", "kind": "passcode", "settings": map[string]any{}}).json(t, &passcode)
	env.mustDo(201, "POST", "/api/v1/profiles/"+passcode.ID+"/assignments", env.Token, map[string]string{"target_type": "group", "target_id": g.ID})

	// The policy: refused when a rule is bad, stored when good.
	form := url.Values{"name": {"field phones"}, "platform": {"ios"}, "min_os_version": {"99"}, "require_passcode": {"on"},
		"action_notify": {"on"}, "action_notify_days": {"1"}}
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("min_passcode_length", "8")
	bad.Del("require_passcode")
	if status, page := admin("POST", "/policies", bad); status != http.StatusBadRequest || !strings.Contains(page, "needs require_passcode") ||
		!strings.Contains(page, `id="min_passcode_length-error"`) {
		t.Errorf("a passcode length without a passcode: %d", status)
	}
	if status, _ := admin("POST", "/policies", form); status != http.StatusSeeOther {
		t.Fatalf("create policy: %d", status)
	}
	var list struct {
		Items []mdmd.CompliancePolicy `json:"items"`
	}
	env.mustDo(200, "GET", "/api/v1/compliance/policies", env.Token, nil).json(t, &list)
	if len(list.Items) != 1 {
		t.Fatalf("the API lists %d policies, want 1", len(list.Items))
	}
	pol := list.Items[0]
	var rules compliance.Policy
	if err := json.Unmarshal(pol.Rules, &rules); err != nil || rules.MinOSVersion != "99" || !rules.RequirePasscode ||
		len(rules.Actions) != 1 || rules.Actions[0].AfterDays != 1 || pol.Platform != mdmd.PlatformIOS {
		t.Fatalf("the stored policy: %+v %s", pol, pol.Rules)
	}
	if status, _ := admin("POST", "/policies/"+pol.ID+"/groups", url.Values{"group": {g.ID}, "priority": {"10"}}); status != http.StatusSeeOther {
		t.Fatalf("assign: %d", status)
	}
	if status, page := admin("GET", "/policies", nil); status != 200 || !strings.Contains(page, ">field</a> (10)") {
		t.Errorf("the policy list: %d", status)
	}

	// Membership: one device through the console, one through the API;
	// both get the policy and the profile.
	state := func(id string) (string, string) {
		c, err := st.GetCompliance(ctx, id)
		if err != nil {
			return "", ""
		}
		return c.State, c.PolicyID
	}
	if status, _ := admin("POST", "/groups/"+g.ID+"/members", url.Values{"devices": {dev.SerialNumber + ", unknown-serial"}}); status != http.StatusBadRequest {
		t.Errorf("adding an unknown serial: %d", status)
	}
	if status, _ := admin("POST", "/groups/"+g.ID+"/members", url.Values{"devices": {dev.SerialNumber}}); status != http.StatusSeeOther {
		t.Fatalf("add member: %d", status)
	}
	env.mustDo(204, "POST", "/api/v1/groups/"+g.ID+"/members", env.Token, map[string]any{"device_ids": []string{devAPI.ID}})
	for _, d := range []struct {
		name string
		id   string
		sim  *applesim.Device
	}{{"console", dev.ID, viaConsole}, {"api", devAPI.ID, viaAPI}} {
		eventually(t, 15*time.Second, d.name+": the group's policy applied", func() bool {
			// Its posture is not queried: evaluated, it awaits it.
			s, p := state(d.id)
			return s == "not_evaluated" && p == pol.ID
		})
		eventually(t, 15*time.Second, d.name+": the group's profile installed", func() bool {
			return slices.Contains(d.sim.State().Profiles, passcode.Identifier)
		})
	}
	if status, page := viewer("GET", "/groups/"+g.ID, nil); status != 200 || !strings.Contains(page, `href="/devices/`+dev.ID+`"`) ||
		strings.Contains(page, `action="/groups/`) {
		t.Errorf("the viewer's group page: %d", status)
	}

	// Viewers and helpdesk change nothing.
	for _, sid := range []func(string, string, url.Values) (int, string){viewer, helpdesk} {
		for _, path := range []string{"/policies", "/policies/" + pol.ID, "/policies/" + pol.ID + "/delete", "/policies/" + pol.ID + "/groups",
			"/policies/" + pol.ID + "/groups/" + g.ID + "/remove", "/groups/" + g.ID + "/members", "/groups/" + g.ID + "/members/" + dev.ID + "/remove"} {
			if status, _ := sid("POST", path, url.Values{"name": {"x"}, "group": {g.ID}, "priority": {"1"}, "devices": {dev.SerialNumber}}); status != http.StatusForbidden {
				t.Errorf("POST %s: %d", path, status)
			}
		}
	}

	// Removed in the console: the policy and the profile go.
	if status, _ := admin("POST", "/groups/"+g.ID+"/members/"+dev.ID+"/remove", url.Values{}); status != http.StatusSeeOther {
		t.Fatalf("remove member: %d", status)
	}
	eventually(t, 15*time.Second, "no policy after removal", func() bool {
		s, p := state(dev.ID)
		return s == "not_evaluated" && p == ""
	})
	eventually(t, 15*time.Second, "the profile removed", func() bool {
		return !slices.Contains(viaConsole.State().Profiles, passcode.Identifier)
	})
	if _, p := state(devAPI.ID); p != pol.ID {
		t.Errorf("the other member lost its policy: %q", p)
	}
	for _, a := range []string{"compliance.policy.create", "compliance.policy.assign", "group.members.add", "group.members.remove"} {
		if n := env.auditCount(t, a); n < 1 {
			t.Errorf("%s not audited", a)
		}
	}
}
