package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/compliance"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// jobLog records the jobs queued.
type jobLog struct{ kinds []string }

func (j *jobLog) Enqueue(_ context.Context, job *mdmd.Job) (bool, error) {
	j.kinds = append(j.kinds, job.Kind)
	return true, nil
}

// fullPolicyForm sets every rule and action the form offers.
func fullPolicyForm() url.Values {
	return url.Values{"name": {"baseline"}, "platform": {"android"}, "is_default": {"on"},
		"min_os_version": {"14"}, "max_os_version": {"16.1"}, "max_patch_age_days": {"60"}, "patch_not_before": {"2026-01-31"},
		"block_compromised": {"on"}, "require_passcode": {"on"}, "min_passcode_length": {"6"}, "require_encryption": {"on"},
		"require_secure_posture": {"on"}, "max_threat_level": {"low"}, "require_threat_data": {"on"}, "threat_max_age_hours": {"12"},
		"required_profiles": {"com.example.wifi\r\ncom.example.vpn, com.example.wifi"}, "check_in_validity_days": {"7"},
		"action_mark": {"on"}, "action_mark_days": {"2"}, "action_notify": {"on"}, "action_notify_days": {""},
		"action_lock": {"on"}, "action_lock_days": {"3"}, "action_selective_wipe": {"on"}, "action_selective_wipe_days": {"10"}}
}

func withForm(v url.Values, kv ...string) url.Values {
	out := cloneValues(v)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			out.Del(kv[i])
		} else {
			out.Set(kv[i], kv[i+1])
		}
	}
	return out
}

// The policy pages on every backend: a policy with every rule and action
// is created and edited through the forms and stored as the API would
// store it; bad values are refused next to their field with the service's
// message and change nothing; assignment to groups with a priority and
// unassignment; deletion; every change queues a sweep and is audited as
// the API audits it, via the console; viewers and helpdesk read but get
// no forms and 403 on every change; forms without CSRF are refused.
func TestPolicyPages(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			jobs := &jobLog{}
			var ps *compliance.Policies
			p := newPages(t, be, func(st *storage.Store) Options {
				ps = &compliance.Policies{Store: st, Jobs: jobs}
				return Options{Groups: ObserveGroups(st, nil), Policies: ps}
			})
			admin, viewer, helpdesk := p.session(mdmd.RoleAdmin), p.session(mdmd.RoleViewer), p.session(mdmd.RoleHelpdesk)

			// The new-policy form has a labelled field for every rule and action.
			status, page := p.do(admin, "GET", "/policies/new", nil)
			if status != 200 {
				t.Fatalf("GET /policies/new: %d", status)
			}
			var names []string
			for _, g := range ruleGroups {
				for _, s := range g.specs {
					names = append(names, s.name)
				}
			}
			for _, a := range policyActions {
				names = append(names, "action_"+a.name, "action_"+a.name+"_days")
			}
			for _, n := range append(names, "is_default") {
				if !strings.Contains(page, `name="`+n+`"`) || (!strings.Contains(page, `for="r-`+n+`"`) && n != "is_default") {
					t.Errorf("the form lacks a labelled field %s", n)
				}
			}

			status, _ = p.do(admin, "POST", "/policies", fullPolicyForm())
			if status != http.StatusSeeOther {
				t.Fatalf("create: %d", status)
			}
			list, _ := ps.List(ctx)
			if len(list) != 1 {
				t.Fatalf("%d policies after create", len(list))
			}
			stored := list[0]
			var rules compliance.Policy
			if err := json.Unmarshal(stored.Rules, &rules); err != nil {
				t.Fatal(err)
			}
			want := compliance.Policy{MinOSVersion: "14", MaxOSVersion: "16.1", MaxPatchAgeDays: 60, PatchNotBefore: "2026-01-31",
				BlockCompromised: true, RequirePasscode: true, MinPasscodeLength: 6, RequireEncryption: true, RequireSecurePosture: true,
				MaxThreatLevel: compliance.ThreatLow, RequireThreatData: true, ThreatMaxAgeHours: 12,
				RequiredProfiles: []string{"com.example.wifi", "com.example.vpn"}, CheckInValidityDays: 7,
				Actions: []compliance.ActionRule{{Action: "mark", AfterDays: 2}, {Action: "notify"}, {Action: "lock", AfterDays: 3},
					{Action: "selective_wipe", AfterDays: 10}}}
			if stored.Name != "baseline" || stored.Platform != mdmd.PlatformAndroid || !stored.IsDefault || !reflect.DeepEqual(rules, want) {
				t.Fatalf("stored %+v with rules %+v", stored, rules)
			}
			if len(jobs.kinds) != 1 || jobs.kinds[0] != compliance.SweepJob {
				t.Errorf("jobs after create: %v", jobs.kinds)
			}
			path := "/policies/" + stored.ID

			// Refused: the service's message next to the field, nothing stored.
			for _, tc := range []struct {
				name  string
				form  url.Values
				field string
				msg   string
			}{
				{"bad version", withForm(fullPolicyForm(), "name", "x", "is_default", "", "min_os_version", "fourteen"), "min_os_version", "is not a version like 17.4.1"},
				{"max below min", withForm(fullPolicyForm(), "name", "x", "is_default", "", "max_os_version", "13"), "max_os_version", "is below min_os_version"},
				{"bad date", withForm(fullPolicyForm(), "name", "x", "is_default", "", "patch_not_before", "31/01/2026"), "patch_not_before", "must be a date like 2026-01-31"},
				{"length without passcode", withForm(fullPolicyForm(), "name", "x", "is_default", "", "require_passcode", ""), "min_passcode_length", "needs require_passcode"},
				{"threat data without level", withForm(fullPolicyForm(), "name", "x", "is_default", "", "max_threat_level", ""), "require_threat_data", "needs max_threat_level"},
				{"unknown threat level", withForm(fullPolicyForm(), "name", "x", "is_default", "", "max_threat_level", "extreme"), "max_threat_level", "must be secured, low, medium or high"},
				{"grace too long", withForm(fullPolicyForm(), "name", "x", "is_default", "", "action_mark", "", "grace_days", "5000"), "grace_days", "must be between 0 and 3650"},
				{"grace and mark disagree", withForm(fullPolicyForm(), "name", "x", "is_default", "", "grace_days", "3"), "actions", "disagree"},
				{"negative action days", withForm(fullPolicyForm(), "name", "x", "is_default", "", "action_lock_days", "-1"), "actions", "after_days of lock must be between 0 and 3650"},
				{"not a number", withForm(fullPolicyForm(), "name", "x", "is_default", "", "check_in_validity_days", "a week"), "check_in_validity_days", "must be a whole number"},
				{"no name", withForm(fullPolicyForm(), "name", "", "is_default", ""), "name", "must be 1 to 200 characters"},
				{"unknown platform", withForm(fullPolicyForm(), "name", "x", "is_default", "", "platform", "windows"), "platform", "must be ios, android or empty"},
				{"second default", withForm(fullPolicyForm(), "name", "x"), "", "already exists"},
			} {
				status, page := p.do(admin, "POST", "/policies", tc.form)
				if status < 400 || status >= 500 {
					t.Errorf("%s: %d", tc.name, status)
				}
				id := `id="policy-error"`
				if tc.field != "" {
					id = `id="` + tc.field + `-error"`
				}
				if !strings.Contains(page, id) || !strings.Contains(page, tc.msg) {
					t.Errorf("%s: the page lacks %s with %q", tc.name, id, tc.msg)
				}
				if !strings.Contains(page, `value="`+tc.form.Get("min_os_version")+`"`) {
					t.Errorf("%s: the form lost what was typed", tc.name)
				}
			}
			if list, _ := ps.List(ctx); len(list) != 1 || len(jobs.kinds) != 1 {
				t.Fatalf("refused forms stored something: %d policies, jobs %v", len(list), jobs.kinds)
			}

			// The edit form shows what is stored; saving it unchanged
			// changes no rule; an edit stores the new rules and a 0
			// patch age (off) stays 0.
			_, page = p.do(admin, "GET", path, nil)
			for _, s := range []string{`name="min_os_version" value="14"`, `name="max_patch_age_days" value="60"`, `id="r-block_compromised" name="block_compromised" checked`,
				"com.example.wifi\ncom.example.vpn</textarea>", `name="action_lock_days" min="0" max="3650" inputmode="numeric" value="3"`,
				`<option value="low" selected>`, `action="` + path + `/delete"`} {
				if !strings.Contains(page, s) {
					t.Errorf("the edit page lacks %s", s)
				}
			}
			shown, err := policyValues(&stored)
			if err != nil {
				t.Fatal(err)
			}
			if status, _ := p.do(admin, "POST", path, shown); status != http.StatusSeeOther {
				t.Fatalf("save unchanged: %d", status)
			}
			again, _ := ps.Get(ctx, stored.ID)
			if again.Version != 2 || string(again.Rules) != string(stored.Rules) {
				t.Errorf("saving the form unchanged changed the rules: %s", again.Rules)
			}
			edit := withForm(shown, "min_os_version", "15", "action_lock", "", "max_patch_age_days", "0", "name", "baseline v2")
			if status, _ := p.do(admin, "POST", path, edit); status != http.StatusSeeOther {
				t.Fatalf("edit: %d", status)
			}
			again, _ = ps.Get(ctx, stored.ID)
			rules = compliance.Policy{}
			_ = json.Unmarshal(again.Rules, &rules)
			if again.Name != "baseline v2" || again.Version != 3 || rules.MinOSVersion != "15" || rules.MaxPatchAgeDays != 0 || len(rules.Actions) != 3 {
				t.Errorf("after edit: %s v%d %s", again.Name, again.Version, again.Rules)
			}
			if _, page := p.do(admin, "GET", path, nil); !strings.Contains(page, `name="max_patch_age_days" value="0"`) {
				t.Error("a patch age switched off is not shown as 0")
			}
			if status, page := p.do(admin, "POST", path, withForm(edit, "min_passcode_length", "-3")); status != 400 || !strings.Contains(page, `id="min_passcode_length-error"`) {
				t.Errorf("a bad edit: %d", status)
			}
			if v, _ := ps.Get(ctx, stored.ID); v.Version != 3 {
				t.Errorf("a refused edit stored version %d", v.Version)
			}

			// Assign to groups with a priority; bad ones refused.
			g1, g2 := &mdmd.Group{Name: "field"}, &mdmd.Group{Name: "office"}
			for _, g := range []*mdmd.Group{g1, g2} {
				if err := p.st.CreateGroup(ctx, g); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range []url.Values{{"group": {g1.ID}, "priority": {"10"}}, {"group": {g2.ID}, "priority": {"5"}}} {
				if status, _ := p.do(admin, "POST", path+"/groups", f); status != http.StatusSeeOther {
					t.Fatalf("assign %v: %d", f, status)
				}
			}
			for _, tc := range []struct {
				form url.Values
				msg  string
			}{
				{url.Values{"group": {g1.ID}, "priority": {"-1"}}, "must be between 0 and 1000000"},
				{url.Values{"group": {g1.ID}, "priority": {"high"}}, "must be a whole number"},
				{url.Values{"priority": {"1"}}, "choose a group"},
				{url.Values{"group": {"gone"}, "priority": {"1"}}, "no longer exists"},
			} {
				status, page := p.do(admin, "POST", path+"/groups", tc.form)
				if status < 400 || status >= 500 || !strings.Contains(page, `id="assign-error"`) || !strings.Contains(page, tc.msg) {
					t.Errorf("assign %v: %d", tc.form, status)
				}
			}
			as, _ := ps.Assignments(ctx)
			if len(as) != 2 || as[0].GroupID != g2.ID || as[0].Priority != 5 || as[1].Priority != 10 {
				t.Fatalf("assignments: %+v", as)
			}
			if _, page := p.do(viewer, "GET", "/policies", nil); !strings.Contains(page, "office</a> (5), <a") || !strings.Contains(page, "<td>11</td>") || !strings.Contains(page, "selective wipe after 10 days") {
				t.Error("the list does not show the groups by priority, or the number of rules")
			}

			// Viewers and helpdesk read, but change nothing.
			before := len(jobs.kinds)
			for _, sid := range []string{viewer, helpdesk} {
				for _, path := range []string{"/policies", path} {
					if status, page := p.do(sid, "GET", path, nil); status != 200 || strings.Contains(page, `action="/policies`) ||
						strings.Contains(page, "New policy") || strings.Contains(page, "Save policy") {
						t.Errorf("%s GET %s: %d, or it shows forms", sid, path, status)
					}
				}
				if status, _ := p.do(sid, "GET", "/policies/new", nil); status != http.StatusForbidden {
					t.Errorf("%s GET /policies/new: %d", sid, status)
				}
			}
			changes := []struct {
				path string
				form url.Values
			}{
				{"/policies", withForm(fullPolicyForm(), "name", "other", "is_default", "")},
				{path, withForm(edit, "min_os_version", "9")},
				{path + "/delete", url.Values{}},
				{path + "/groups", url.Values{"group": {g1.ID}, "priority": {"1"}}},
				{path + "/groups/" + g1.ID + "/remove", url.Values{}},
			}
			for _, ch := range changes {
				for _, sid := range []string{viewer, helpdesk} {
					if status, _ := p.do(sid, "POST", ch.path, ch.form); status != http.StatusForbidden {
						t.Errorf("%s POST %s: %d", sid, ch.path, status)
					}
				}
				if status, _ := p.do(admin, "POST", ch.path, withForm(ch.form, "csrf", "-")); status != http.StatusForbidden {
					t.Errorf("POST %s without CSRF: %d", ch.path, status)
				}
			}
			if list, _ := ps.List(ctx); len(list) != 1 || list[0].Version != 3 || len(jobs.kinds) != before {
				t.Fatalf("refused changes changed something: %+v, jobs %v", list, jobs.kinds)
			}
			if as, _ := ps.Assignments(ctx); len(as) != 2 || as[0].Priority != 5 {
				t.Fatalf("refused changes changed the assignments: %+v", as)
			}

			// Unassign and delete.
			if status, _ := p.do(admin, "POST", path+"/groups/"+g1.ID+"/remove", url.Values{}); status != http.StatusSeeOther {
				t.Fatalf("unassign: %d", status)
			}
			if as, _ := ps.Assignments(ctx); len(as) != 1 || as[0].GroupID != g2.ID {
				t.Errorf("after unassign: %+v", as)
			}
			if status, _ := p.do(admin, "POST", path+"/delete", url.Values{}); status != http.StatusSeeOther {
				t.Fatalf("delete: %d", status)
			}
			if _, err := ps.Get(ctx, stored.ID); !mdmd.IsCode(err, mdmd.ENotFound) {
				t.Errorf("after delete: %v", err)
			}
			if status, _ := p.do(admin, "GET", path, nil); status != http.StatusNotFound {
				t.Errorf("a deleted policy's page: %d", status)
			}
			// One sweep per change: create, 2 edits, 2 assigns, unassign, delete.
			if len(jobs.kinds) != 7 {
				t.Errorf("%d sweeps queued, want 7", len(jobs.kinds))
			}
			for action, n := range map[string]int{"compliance.policy.create": 1, "compliance.policy.update": 2, "compliance.policy.assign": 2,
				"compliance.policy.unassign": 1, "compliance.policy.delete": 1} {
				a := p.audited(action)
				if len(a) != n {
					t.Errorf("%d audit events %s, want %d", len(a), action, n)
				}
				for _, d := range a {
					if d["via"] != "console" {
						t.Errorf("%s audited without via console: %v", action, d)
					}
				}
			}
		})
	}
}
