package app

import (
	"context"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
)

// An MTD partner reports through its own token: a high threat level makes
// the device noncompliant without anyone asking, stale partner data is
// noncompliant when the policy requires it, and bad reports store nothing.
func TestMTDPartnerAPI(t *testing.T) { eachBackend(t, testMTDPartnerAPI) }

func testMTDPartnerAPI(t *testing.T, dbURL string) {
	f := newFixture(t, dbURL)
	st, ctx := f.srv.Store(), context.Background()
	partner := f.tokenFor(t, mdmd.RoleMTDPartner)
	dev := "/api/v1/mtd/devices/" + f.ios.ID

	f.mustDo(201, "POST", "/api/v1/compliance/policies", f.Token, map[string]any{"name": "mtd", "is_default": true,
		"rules": map[string]any{"max_threat_level": "medium", "require_threat_data": true, "threat_max_age_hours": 1}})
	state := func() string {
		c, err := st.GetCompliance(ctx, f.ios.ID)
		if err != nil {
			return ""
		}
		return c.State
	}

	// Bad reports: 4xx and nothing stored.
	for _, tc := range []struct {
		path string
		body any
		want int
	}{
		{dev + "/threat", map[string]any{"level": "critical", "source": "Acme MTD"}, 400},
		{dev + "/threat", map[string]any{"level": "HIGH", "source": "Acme MTD"}, 400},
		{dev + "/threat", map[string]any{"level": "low"}, 400},
		{dev + "/threat", map[string]any{"level": "low", "source": "Acme MTD", "details": []int{1}}, 400},
		{dev + "/threat", map[string]any{"level": "low", "source": "Acme MTD", "extra": 1}, 400},
		{"/api/v1/mtd/devices/no-such-device/threat", map[string]any{"level": "low", "source": "Acme MTD"}, 404},
	} {
		if r := f.do("PUT", tc.path, partner, tc.body); r.Status != tc.want {
			t.Errorf("%s %v: %d %s", tc.path, tc.body, r.Status, r.Body)
		}
	}
	if r := f.do("POST", dev+"/heartbeat", partner, nil); r.Status != 404 {
		t.Errorf("heartbeat before any report: %d", r.Status)
	}
	if _, err := st.GetThreat(ctx, f.ios.ID); !mdmd.IsCode(err, mdmd.ENotFound) {
		t.Fatalf("a rejected report was stored: %v", err)
	}
	// The partner can do nothing else, and nobody else can report.
	if r := f.do("GET", "/api/v1/devices", partner, nil); r.Status != 403 {
		t.Errorf("partner listing devices: %d", r.Status)
	}
	if r := f.do("PUT", dev+"/threat", f.Token, map[string]any{"level": "low", "source": "admin"}); r.Status != 403 {
		t.Errorf("admin reporting a threat: %d", r.Status)
	}

	// Medium is within the policy; high is not, and the state follows
	// with no further request (the device is marked and evaluated).
	f.mustDo(200, "PUT", dev+"/threat", partner, map[string]any{"level": "medium", "source": "Acme MTD", "details": map[string]any{"app": "x"}})
	eventually(t, 10*time.Second, "compliant at medium", func() bool { return state() == "compliant" })
	f.mustDo(200, "PUT", dev+"/threat", partner, map[string]any{"level": "high", "source": "Acme MTD"})
	eventually(t, 10*time.Second, "noncompliant at high", func() bool { return state() == "noncompliant" })
	var th mdmd.DeviceThreat
	f.mustDo(200, "GET", "/api/v1/devices/"+f.ios.ID+"/threat", f.Token, nil).json(t, &th)
	if th.Level != "high" || th.Source != "Acme MTD" || th.ReportedBy == "" {
		t.Errorf("stored threat = %+v", th)
	}
	evs, err := st.ListEvents(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var levels []string
	for _, e := range evs {
		if e.Type == mdmd.EventThreatChanged {
			levels = append(levels, string(e.Data))
		}
	}
	if len(levels) != 2 {
		t.Errorf("threat events: %v, want medium then high", levels)
	}

	// Back to low, then the partner goes quiet: an hour later the data
	// is stale and, as the policy requires it, the device is noncompliant;
	// a heartbeat makes it fresh again.
	f.mustDo(200, "PUT", dev+"/threat", partner, map[string]any{"level": "low", "source": "Acme MTD"})
	eventually(t, 10*time.Second, "compliant at low", func() bool { return state() == "compliant" })
	old := time.Now().Add(-2 * time.Hour).UTC()
	if _, err := st.DB().ExecContext(ctx, "UPDATE device_threats SET heartbeat_at = $1 WHERE device_id = $2", old, f.ios.ID); err != nil {
		t.Fatal(err)
	}
	f.mustDo(200, "POST", "/api/v1/devices/"+f.ios.ID+"/compliance/evaluate", f.Token, nil)
	if s := state(); s != "noncompliant" {
		t.Fatalf("with stale partner data: %s", s)
	}
	f.mustDo(204, "POST", "/api/v1/mtd/heartbeat", partner, map[string]any{"device_ids": []string{f.ios.ID}})
	eventually(t, 10*time.Second, "compliant after the heartbeat", func() bool { return state() == "compliant" })
	if r := f.do("POST", "/api/v1/mtd/heartbeat", partner, map[string]any{"device_ids": []string{f.ios.ID, f.android.ID}}); r.Status != 404 {
		t.Errorf("heartbeat naming a device without a report: %d", r.Status)
	}

	// A second partner can neither overwrite the first one's verdict nor
	// keep it fresh, until an admin releases the device.
	var second struct{ Secret string }
	f.mustDo(201, "POST", "/api/v1/tokens", f.Token, map[string]any{"name": "other-mtd", "role": mdmd.RoleMTDPartner}).json(t, &second)
	if r := f.do("PUT", dev+"/threat", second.Secret, map[string]any{"level": "secured", "source": "Acme MTD"}); r.Status != 409 {
		t.Errorf("another partner overwriting: %d", r.Status)
	}
	if r := f.do("POST", dev+"/heartbeat", second.Secret, nil); r.Status != 404 {
		t.Errorf("another partner's heartbeat: %d", r.Status)
	}
	f.mustDo(204, "DELETE", "/api/v1/devices/"+f.ios.ID+"/threat", f.Token, nil)
	f.mustDo(200, "PUT", dev+"/threat", second.Secret, map[string]any{"level": "secured", "source": "Other MTD"})
}
