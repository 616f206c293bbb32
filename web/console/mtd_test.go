package console

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// The threat-defence page on every backend: a verdict a partner reported
// through the MTD API is listed with its partner; releasing the device
// forgets it, marks the device for evaluation and wakes the evaluator as
// the API's release does, and is audited; an unknown device is 404 and
// changes nothing; other roles get 403.
func TestMTDPage(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			g := newSettingsRig(t, be.URL)
			admin := mdmd.RoleAdmin
			partner, tok := g.token("Acme MTD", mdmd.RoleMTDPartner)
			g.token("Idle MTD", mdmd.RoleMTDPartner)
			var ids []string
			for _, udid := range []string{"MTD-A", "MTD-B"} {
				d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: "phone " + udid, EnrollmentState: mdmd.EnrollmentEnrolled,
					Ownership: mdmd.OwnershipCorporate}
				if err := g.st.CreateDevice(ctx, d); err != nil {
					t.Fatal(err)
				}
				if status, body := g.call("PUT", "/mtd/devices/"+d.ID+"/threat", partner, map[string]any{"level": "high", "source": "Acme cloud"}); status != http.StatusOK {
					t.Fatalf("report: %d %s", status, body)
				}
				ids = append(ids, d.ID)
			}
			sort.Strings(ids)

			status, page := g.do(admin, "GET", "/settings/mtd", nil)
			for _, want := range []string{"Acme MTD", "Idle MTD", tok.Prefix, "phone MTD-A", "phone MTD-B", "Acme cloud", "high", `href="/settings/tokens"`} {
				if !strings.Contains(page, want) {
					t.Errorf("the page lacks %q", want)
				}
			}
			if status != http.StatusOK || strings.Contains(page, "badge failed\">stale") {
				t.Fatalf("GET /settings/mtd: %d (or fresh verdicts shown stale)", status)
			}
			if _, page := g.do(admin, "GET", "/settings/mtd?cursor="+url.QueryEscape(ids[0]), nil); strings.Contains(page, "/settings/mtd/devices/"+ids[0]+"/release") ||
				!strings.Contains(page, "/settings/mtd/devices/"+ids[1]+"/release") {
				t.Error("the cursor does not page the verdicts")
			}

			// An unknown device: 404 with the message, nothing released.
			if status, page := g.do(admin, "POST", "/settings/mtd/devices/no-such-device/release", url.Values{}); status != http.StatusNotFound ||
				!strings.Contains(page, "no threat level is stored") {
				t.Errorf("releasing an unknown device: %d", status)
			}
			g.forbiddenToOthers([][2]string{{"GET", "/settings/mtd"}, {"POST", "/settings/mtd/devices/" + ids[0] + "/release"}})
			if _, err := g.st.GetThreat(ctx, ids[0]); err != nil {
				t.Fatalf("a refused release changed the verdict: %v", err)
			}

			// Release: forgotten, marked for evaluation, evaluator woken, audited.
			if _, err := g.st.DB().ExecContext(ctx, "DELETE FROM compliance_dirty"); err != nil {
				t.Fatal(err)
			}
			g.mu.Lock()
			woken := g.woken
			g.mu.Unlock()
			if status, _ := g.do(admin, "POST", "/settings/mtd/devices/"+ids[0]+"/release", url.Values{}); status != http.StatusSeeOther {
				t.Fatalf("release: %d", status)
			}
			if _, err := g.st.GetThreat(ctx, ids[0]); !mdmd.IsCode(err, mdmd.ENotFound) {
				t.Errorf("the verdict is still stored: %v", err)
			}
			var dirty int
			if err := g.st.DB().QueryRowContext(ctx, "SELECT COUNT(*) FROM compliance_dirty WHERE device_id = $1", ids[0]).Scan(&dirty); err != nil || dirty != 1 {
				t.Errorf("the released device is not marked for evaluation: %d %v", dirty, err)
			}
			g.mu.Lock()
			if g.woken != woken+1 {
				t.Errorf("the evaluator was woken %d times, want once", g.woken-woken)
			}
			g.mu.Unlock()
			if evs := g.audits("mtd.threat.release"); len(evs) != 1 || evs[0].TargetID != ids[0] {
				t.Errorf("the release's audit: %+v", evs)
			}
			if _, page := g.do(admin, "GET", "/settings/mtd?done=release", nil); strings.Contains(page, "/settings/mtd/devices/"+ids[0]+"/release") {
				t.Error("the released device is still listed")
			}
		})
	}
}
