package app

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/compliance"
)

// The compliance admin API on every backend: policies with strict input,
// group assignment, evaluation from stored posture and the change feed.
func TestComplianceAPI(t *testing.T) { eachBackend(t, testComplianceAPI) }

func testComplianceAPI(t *testing.T, dbURL string) {
	f := newFixture(t, dbURL)
	st, ctx := f.srv.Store(), context.Background()

	// Bad input gets a 400 and stores nothing.
	for _, body := range []map[string]any{
		{"name": "p", "rules": map[string]any{"min_os_version": "seventeen"}},
		{"name": "p", "rules": map[string]any{"max_threat_level": "critical"}},
		{"name": "p", "rules": map[string]any{"no_such_rule": true}},
		{"name": "p", "platform": "windows", "rules": map[string]any{}},
		{"name": "", "rules": map[string]any{}},
		{"name": "p", "rules": map[string]any{"grace_days": -1}},
	} {
		if r := f.do("POST", "/api/v1/compliance/policies", f.Token, body); r.Status != 400 {
			t.Fatalf("%v: %d %s", body, r.Status, r.Body)
		}
	}
	var list struct{ Items []mdmd.CompliancePolicy }
	f.mustDo(200, "GET", "/api/v1/compliance/policies", f.Token, nil).json(t, &list)
	if len(list.Items) != 0 {
		t.Fatalf("rejected policies were stored: %+v", list.Items)
	}

	var strict mdmd.CompliancePolicy
	f.mustDo(201, "POST", "/api/v1/compliance/policies", f.Token, map[string]any{"name": "ios strict", "platform": "ios",
		"rules": map[string]any{"min_os_version": "17.5", "require_passcode": true}}).json(t, &strict)
	var baseline mdmd.CompliancePolicy
	f.mustDo(201, "POST", "/api/v1/compliance/policies", f.Token, map[string]any{"name": "baseline", "is_default": true,
		"rules": map[string]any{"min_os_version": "16"}}).json(t, &baseline)
	// A policy that may apply to Android gets the 90-day patch age by
	// default; an iOS-only one does not (iOS has no patch level).
	var got struct {
		MaxPatchAgeDays int `json:"max_patch_age_days"`
	}
	if err := json.Unmarshal(baseline.Rules, &got); err != nil || got.MaxPatchAgeDays != 90 {
		t.Fatalf("default patch age: %s", baseline.Rules)
	}
	got.MaxPatchAgeDays = -1
	if err := json.Unmarshal(strict.Rules, &got); err != nil || got.MaxPatchAgeDays != 0 {
		t.Fatalf("iOS policy patch age: %s", strict.Rules)
	}
	// A patch age switched off (0) survives a read and write back: the
	// rules read are the rules written, not the Android default.
	var off mdmd.CompliancePolicy
	f.mustDo(201, "POST", "/api/v1/compliance/policies", f.Token, map[string]any{"name": "no patch age", "platform": "android",
		"rules": map[string]any{"max_patch_age_days": 0}}).json(t, &off)
	f.mustDo(200, "GET", "/api/v1/compliance/policies/"+off.ID, f.Token, nil).json(t, &off)
	f.mustDo(200, "PUT", "/api/v1/compliance/policies/"+off.ID, f.Token, map[string]any{"name": off.Name, "platform": "android",
		"rules": off.Rules})
	f.mustDo(200, "GET", "/api/v1/compliance/policies/"+off.ID, f.Token, nil).json(t, &off)
	got.MaxPatchAgeDays = -1
	if err := json.Unmarshal(off.Rules, &got); err != nil || got.MaxPatchAgeDays != 0 {
		t.Fatalf("patch age after a read and write back: %s", off.Rules)
	}
	f.mustDo(204, "DELETE", "/api/v1/compliance/policies/"+off.ID, f.Token, nil)
	if r := f.do("PUT", "/api/v1/compliance/policies/"+strict.ID, f.Token, map[string]any{"name": "x", "platform": "android",
		"rules": map[string]any{}}); r.Status != 400 {
		t.Fatalf("platform change: %d", r.Status)
	}

	// The iPhone reports 17.4 with a passcode: the default passes it.
	yes := true
	if err := st.UpsertPosture(ctx, &mdmd.Posture{DeviceID: f.ios.ID, OSVersion: "17.4", PasscodePresent: &yes, PasscodeCompliant: &yes}); err != nil {
		t.Fatal(err)
	}
	evaluate := func() compliance.Result {
		t.Helper()
		var res compliance.Result
		f.mustDo(200, "POST", "/api/v1/devices/"+f.ios.ID+"/compliance/evaluate", f.Token, nil).json(t, &res)
		return res
	}
	if res := evaluate(); res.State != compliance.StateCompliant {
		t.Fatalf("under the default: %s (%s)", res.State, res.Reason)
	}
	// Its group gets the strict policy: noncompliant, with the rule that failed.
	f.mustDo(200, "PUT", "/api/v1/compliance/policies/"+strict.ID+"/groups/"+f.group.ID, f.Token, map[string]any{"priority": 1})
	if r := f.do("PUT", "/api/v1/compliance/policies/"+strict.ID+"/groups/nope", f.Token, map[string]any{"priority": 1}); r.Status != 404 {
		t.Fatalf("unknown group: %d", r.Status)
	}
	if err := st.AddGroupMembers(ctx, f.group.ID, []string{f.ios.ID}); err != nil {
		t.Fatal(err)
	}
	res := evaluate()
	if res.State != compliance.StateNoncompliant || res.PolicyID != strict.ID || fmt.Sprint(res.Failed()) != "[min_os_version]" {
		t.Fatalf("under strict: %s %s %v", res.State, res.PolicyID, res.Failed())
	}
	var stored mdmd.DeviceCompliance
	f.mustDo(200, "GET", "/api/v1/devices/"+f.ios.ID+"/compliance", f.Token, nil).json(t, &stored)
	if stored.State != "noncompliant" || len(stored.Rules) < 10 {
		t.Fatalf("stored %+v", stored)
	}
	if r := f.do("GET", "/api/v1/devices/no-such-device/compliance", f.Token, nil); r.Status != 404 {
		t.Fatalf("unknown device: %d", r.Status)
	}

	// The feed, one change per page, following the cursor. Background
	// sweeps (one runs at start) may add changes for other devices, so
	// only the iPhone's are checked.
	type page struct {
		Items     []mdmd.ComplianceChange
		NextAfter int64 `json:"next_after"`
		More      bool
	}
	feed := func(after int64) (ios []mdmd.ComplianceChange, last int64) {
		t.Helper()
		for pages := 0; ; pages++ {
			var p page
			f.mustDo(200, "GET", fmt.Sprintf("/api/v1/compliance/changes?limit=1&after=%d", after), f.Token, nil).json(t, &p)
			if len(p.Items) > 1 || pages > 50 {
				t.Fatalf("page of %d", len(p.Items))
			}
			if len(p.Items) == 0 {
				if p.More || p.NextAfter != after {
					t.Fatalf("empty page: %+v", p)
				}
				return ios, after
			}
			if p.Items[0].Seq <= after || p.NextAfter != p.Items[0].Seq || !p.More {
				t.Fatalf("page after %d: %+v", after, p)
			}
			if p.Items[0].DeviceID == f.ios.ID {
				ios = append(ios, p.Items[0])
			}
			after = p.NextAfter
		}
	}
	ios, cursor := feed(0)
	if len(ios) < 2 || ios[len(ios)-1].FromState != "compliant" || ios[len(ios)-1].ToState != "noncompliant" ||
		ios[len(ios)-2].ToState != "compliant" {
		t.Fatalf("iPhone's changes: %+v", ios)
	}
	for _, q := range []string{"after=-1", "after=x", "limit=0", "limit=100000"} {
		if r := f.do("GET", "/api/v1/compliance/changes?"+q, f.Token, nil); r.Status != 400 {
			t.Fatalf("%s: %d", q, r.Status)
		}
	}
	if n := f.auditCount(t, "compliance.policy.assign"); n != 1 {
		t.Fatalf("%d assignments audited", n)
	}

	// Relaxing the policy re-evaluates the fleet in the background: the
	// iPhone becomes compliant with nobody asking. (First the evaluation
	// of the group change settles, so that only the policy's sweep can
	// make the change.)
	eventually(t, 20*time.Second, "marked devices to be evaluated", func() bool {
		var n int
		return st.DB().QueryRowContext(ctx, "SELECT count(*) FROM compliance_dirty").Scan(&n) == nil && n == 0
	})
	f.mustDo(200, "PUT", "/api/v1/compliance/policies/"+strict.ID, f.Token, map[string]any{"name": "ios strict", "platform": "ios",
		"rules": map[string]any{"min_os_version": "17.0", "require_passcode": true}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		f.mustDo(200, "GET", "/api/v1/devices/"+f.ios.ID+"/compliance", f.Token, nil).json(t, &stored)
		if stored.State == "compliant" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after relaxing the policy the device is still %s", stored.State)
		}
		time.Sleep(200 * time.Millisecond)
	}
	later, _ := feed(cursor)
	if len(later) != 1 || later[0].FromState != "noncompliant" || later[0].ToState != "compliant" || later[0].Cause != "schedule" {
		t.Fatalf("the re-evaluation in the feed: %+v", later)
	}
}
