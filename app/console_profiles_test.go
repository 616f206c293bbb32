package app

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android/fakeamapi"
	"github.com/mdmd/mdmd/apple/applesim"
)

// A profile made and assigned to a group in the console reaches a
// simulated iPhone of the group (installed and verified), the console's
// profile page shows it installed there, and unassigning it in the
// console removes it; helpdesk may look but not assign.
func TestConsoleProfiles(t *testing.T) { eachBackend(t, testConsoleProfiles) }

func testConsoleProfiles(t *testing.T, dbURL string) {
	env := newAppleEnv(t, dbURL)
	ctx, st := context.Background(), env.srv.Store()
	link, _ := env.link(t, map[string]any{"one_time": false})
	sim, dev := env.enroll(t, link, "00008110-00000000C0501001", applesim.DefaultPosture)
	g := &mdmd.Group{Name: "field sales"}
	if err := st.CreateGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := st.AddGroupMembers(ctx, g.ID, []string{dev.ID}); err != nil {
		t.Fatal(err)
	}
	admin := consoleSession(t, env.testServer, mdmd.RoleAdmin)
	helpdesk := consoleSession(t, env.testServer, mdmd.RoleHelpdesk)

	if status, page := admin("POST", "/profiles", url.Values{"kind": {"passcode"}, "name": {"Passcode"}, "min_length": {"2"}}); status != 400 ||
		!strings.Contains(page, `id="new-passcode-min_length-error"`) {
		t.Fatalf("a too short passcode: %d", status)
	}
	if status, _ := admin("POST", "/profiles", url.Values{"kind": {"passcode"}, "name": {"Passcode"}, "min_length": {"8"}}); status != http.StatusSeeOther {
		t.Fatalf("create: %d", status)
	}
	ps, err := st.ListProfiles(ctx)
	if err != nil || len(ps) != 1 {
		t.Fatalf("profiles = %+v, %v", ps, err)
	}
	p := ps[0]
	if status, _ := helpdesk("POST", "/profiles/"+p.ID+"/assignments", url.Values{"target_id": {g.ID}}); status != http.StatusForbidden {
		t.Errorf("helpdesk assigning: %d", status)
	}
	if status, _ := admin("POST", "/profiles/"+p.ID+"/assignments", url.Values{"target_type": {"group"}, "target_id": {g.ID}}); status != http.StatusSeeOther {
		t.Fatalf("assign: %d", status)
	}
	eventually(t, 15*time.Second, "the InstallProfile command queued", func() bool {
		cmds, _, _ := st.ListCommands(ctx, mdmd.CommandFilter{DeviceID: dev.ID})
		return slices.ContainsFunc(cmds, func(c mdmd.Command) bool { return c.RequestType == "InstallProfile" })
	})
	eventually(t, 15*time.Second, "the profile installed and verified", func() bool {
		dps, _ := st.DeviceProfiles(ctx, dev.ID)
		return slices.Contains(sim.State().Profiles, p.Identifier) && len(dps) == 1 && dps[0].State == mdmd.ProfileInstalled
	})
	status, page := helpdesk("GET", "/profiles/"+p.ID, nil)
	if status != 200 || !regexp.MustCompile(`(?s)<td><a href="/devices/`+dev.ID+`">.*?</a></td>\s*<td><span class="badge success">installed</span>`).MatchString(page) ||
		!strings.Contains(page, "field sales") || strings.Contains(page, "Unassign") {
		t.Errorf("the profile page for helpdesk: %d", status)
	}
	if status, page := admin("GET", "/profiles", nil); status != 200 || !strings.Contains(page, "1 installed") {
		t.Errorf("the profile list: %d", status)
	}

	if status, _ := admin("POST", "/profiles/"+p.ID+"/assignments/delete", url.Values{"target_type": {"group"}, "target_id": {g.ID}}); status != http.StatusSeeOther {
		t.Fatalf("unassign: %d", status)
	}
	eventually(t, 15*time.Second, "the profile removed", func() bool {
		dps, _ := st.DeviceProfiles(ctx, dev.ID)
		return !slices.Contains(sim.State().Profiles, p.Identifier) && len(dps) == 0
	})
	if !slices.Contains(sim.State().Profiles, mdmd.AppleEnrollmentProfileID) {
		t.Fatal("the enrollment profile was removed")
	}
}

// Android Enterprise bound through the console of a running server
// against the fake AMAPI; the admin API then sees the binding.
func TestConsoleAndroidEnterprise(t *testing.T) { eachBackend(t, testConsoleAndroidEnterprise) }

func testConsoleAndroidEnterprise(t *testing.T, dbURL string) {
	fake := fakeamapi.Start()
	t.Cleanup(fake.Close)
	ts := start(t, "--data-dir", t.TempDir(), "--database-url", dbURL, "--amapi-endpoint", fake.URL(),
		"--amapi-project", "mdmd-test", "--amapi-pubsub-topic", "projects/mdmd-test/topics/amapi")
	admin := consoleSession(t, ts, mdmd.RoleAdmin)
	ts.mustDo(409, "GET", "/api/v1/android/enterprise", ts.Token, nil)
	status, page := admin("POST", "/settings/android/signup", url.Values{})
	name := regexp.MustCompile(`name="signup_url_name" value="([^"]+)"`).FindStringSubmatch(page)
	if status != 200 || name == nil || !strings.Contains(page, `id="signup-link"`) {
		t.Fatalf("sign-up: %d", status)
	}
	token, err := fake.CompleteSignup(name[1])
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := admin("POST", "/settings/android/enterprise", url.Values{"signup_url_name": {name[1]}, "enterprise_token": {token},
		"display_name": {"Acme"}}); status != http.StatusSeeOther {
		t.Fatalf("complete: %d", status)
	}
	var ent struct {
		Name         string `json:"name"`
		DisplayName  string `json:"display_name"`
		PushEndpoint string `json:"push_endpoint"`
	}
	ts.mustDo(200, "GET", "/api/v1/android/enterprise", ts.Token, nil).json(t, &ent)
	if ent.DisplayName != "Acme" || !strings.HasPrefix(ent.Name, "enterprises/") {
		t.Fatalf("enterprise = %+v", ent)
	}
	status, page = admin("GET", "/settings/android", nil)
	if status != 200 || !strings.Contains(page, ent.Name) || !strings.Contains(page, ent.PushEndpoint) || !strings.Contains(page, "by console-admin") {
		t.Errorf("the settings page after binding: %d", status)
	}
}
