package storagetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

// consoleSettingsTests are the conformance tests of the store methods
// behind the console's webhook and threat-defence settings pages.
func consoleSettingsTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"ConsoleWebhookEndpointStats", testConsoleWebhookEndpointStats},
		{"ConsoleMTDPartners", testConsoleMTDPartners},
	}
}

// Stats count each endpoint's pending and failed deliveries and name its
// newest one; an endpoint without deliveries is absent.
func testConsoleWebhookEndpointStats(t *testing.T, s *storage.Store) {
	a, b := newWebhookEndpoint(t, s, "siem"), newWebhookEndpoint(t, s, "idp")
	newWebhookEndpoint(t, s, "quiet")
	ds := createDeliveries(t, s, testPing(a.ID), testPing(a.ID), testPing(a.ID), testPing(b.ID))
	// One of a's deliveries fails for good, one is delivered.
	claimed, err := s.ClaimWebhookDeliveries(ctx, "w", 10, time.Minute)
	must(t, err)
	if len(claimed) != 4 {
		t.Fatalf("claimed %d deliveries, want 4", len(claimed))
	}
	_, err = s.RecordWebhookAttempt(ctx, ds[0].ID, "w", mdmd.WebhookAttempt{Status: 500, Error: "boom"}, mdmd.WebhookFailed, time.Time{})
	must(t, err)
	_, err = s.RecordWebhookAttempt(ctx, ds[1].ID, "w", mdmd.WebhookAttempt{Status: 204}, mdmd.WebhookDelivered, time.Time{})
	must(t, err)
	_, err = s.RecordWebhookAttempt(ctx, ds[2].ID, "w", mdmd.WebhookAttempt{Status: 503}, mdmd.WebhookPending, time.Now().Add(time.Hour))
	must(t, err)

	stats, err := s.WebhookEndpointStats(ctx)
	must(t, err)
	if len(stats) != 2 {
		t.Fatalf("stats for %d endpoints, want 2 (the quiet one has none): %+v", len(stats), stats)
	}
	sa, sb := stats[a.ID], stats[b.ID]
	if sa.Pending != 1 || sa.Failed != 1 || sa.Last == nil || sa.Last.ID != ds[2].ID || sa.Last.LastStatus != 503 {
		t.Errorf("siem's stats: %+v (last %+v)", sa, sa.Last)
	}
	if sb.Pending != 1 || sb.Failed != 0 || sb.Last == nil || sb.Last.ID != ds[3].ID {
		t.Errorf("idp's stats: %+v", sb)
	}
}

// Partners are the tokens of role mtd_partner with the verdicts they
// hold; the verdict list pages by device, with device and partner names.
func testConsoleMTDPartners(t *testing.T, s *storage.Store) {
	exp := time.Now().Add(24 * time.Hour)
	acme := &mdmd.APIToken{Name: "acme", Prefix: "mdmd_acm", Hash: fmt.Sprintf("%064x", 11), Role: mdmd.RoleMTDPartner, ExpiresAt: exp, CreatedBy: "admin"}
	idle := &mdmd.APIToken{Name: "idle", Prefix: "mdmd_idl", Hash: fmt.Sprintf("%064x", 12), Role: mdmd.RoleMTDPartner, ExpiresAt: exp, CreatedBy: "admin"}
	viewer := &mdmd.APIToken{Name: "viewer", Prefix: "mdmd_vie", Hash: fmt.Sprintf("%064x", 13), Role: mdmd.RoleViewer, ExpiresAt: exp, CreatedBy: "admin"}
	for _, tok := range []*mdmd.APIToken{acme, idle, viewer} {
		must(t, s.CreateAPIToken(ctx, tok))
	}
	var devs []*mdmd.Device
	for i := range 3 {
		d := iosDevice(fmt.Sprintf("MTD-%d", i))
		must(t, s.CreateDevice(ctx, d))
		devs = append(devs, d)
		_, err := s.ReportThreat(ctx, &mdmd.DeviceThreat{DeviceID: d.ID, Level: "high", Source: "Acme", ReportedBy: acme.ID})
		must(t, err)
	}

	ps, err := s.MTDPartners(ctx)
	must(t, err)
	got := map[string]storage.MTDPartner{}
	for _, p := range ps {
		got[p.Name] = p
	}
	if len(ps) != 2 || got["acme"].Devices != 3 || got["acme"].LastReportAt == nil || got["idle"].Devices != 0 || got["idle"].LastReportAt != nil {
		t.Fatalf("partners: %+v", ps)
	}

	var seen []storage.DeviceThreatRow
	cursor := ""
	for range 3 {
		rows, next, err := s.ListDeviceThreats(ctx, cursor, 2)
		must(t, err)
		seen = append(seen, rows...)
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(seen) != 3 {
		t.Fatalf("paged through %d verdicts, want 3", len(seen))
	}
	for i, r := range seen {
		if r.Level != "high" || r.PartnerName != "acme" || r.DeviceName == "" || r.Platform != string(mdmd.PlatformIOS) || r.ReportedAt.IsZero() ||
			(i > 0 && r.DeviceID <= seen[i-1].DeviceID) {
			t.Errorf("verdict %d: %+v", i, r)
		}
	}
	must(t, s.DeleteThreat(ctx, devs[0].ID))
	rows, next, err := s.ListDeviceThreats(ctx, "", 10)
	must(t, err)
	if len(rows) != 2 || next != "" {
		t.Errorf("after a release: %d verdicts, cursor %q", len(rows), next)
	}
}
