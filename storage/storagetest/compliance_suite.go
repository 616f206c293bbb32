package storagetest

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

func complianceTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"ComplianceStates", testComplianceStates},
		{"ComplianceFeedConcurrent", testComplianceFeedConcurrent},
		{"CompliancePolicies", testCompliancePolicies},
		{"Threats", testThreats},
		{"ComplianceActions", testComplianceActions},
	}
}

func testComplianceStates(t *testing.T, s *storage.Store) {
	d := iosDevice("C1")
	must(t, s.CreateDevice(ctx, d))
	rules := mdmd.RawJSON(`[{"rule":"min_os_version","outcome":"failed"}]`)

	bad := []struct {
		name  string
		c     mdmd.DeviceCompliance
		cause string
	}{
		{"unknown state", mdmd.DeviceCompliance{DeviceID: d.ID, State: "trusted"}, "posture"},
		{"no device", mdmd.DeviceCompliance{State: "compliant"}, "posture"},
		{"no cause", mdmd.DeviceCompliance{DeviceID: d.ID, State: "compliant"}, ""},
		{"rules not JSON", mdmd.DeviceCompliance{DeviceID: d.ID, State: "compliant", Rules: mdmd.RawJSON("{")}, "posture"},
	}
	for _, b := range bad {
		_, _, err := s.RecordCompliance(ctx, &b.c, b.cause)
		wantCode(t, err, mdmd.EInvalid)
	}
	_, err := s.GetCompliance(ctx, d.ID)
	wantCode(t, err, mdmd.ENotFound)
	_, _, err = s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: "no-such-device", State: "compliant"}, "posture")
	wantCode(t, err, mdmd.ENotFound)

	since := time.Date(2026, 11, 20, 8, 0, 0, 0, time.FixedZone("CET", 3600))
	c := &mdmd.DeviceCompliance{DeviceID: d.ID, State: "in_grace", Reason: "min_os_version: too old", Rules: rules,
		FailingSince: &since, EvaluatedAt: since.Add(time.Hour)}
	prev, changed, err := s.RecordCompliance(ctx, c, "posture")
	must(t, err)
	if prev != "" || !changed {
		t.Fatalf("first record: prev %q changed %v", prev, changed)
	}
	got, err := s.GetCompliance(ctx, d.ID)
	must(t, err)
	if got.State != "in_grace" || got.FailingSince == nil || !got.FailingSince.Equal(since) || string(got.Rules) != string(rules) ||
		got.ChangedAt.IsZero() || !got.EvaluatedAt.Equal(since.Add(time.Hour)) {
		t.Fatalf("stored %+v", got)
	}
	firstChange := got.ChangedAt

	// The same state again refreshes the evaluation, not the feed.
	c2 := &mdmd.DeviceCompliance{DeviceID: d.ID, State: "in_grace", Reason: "still", Rules: rules, FailingSince: &since,
		EvaluatedAt: since.Add(2 * time.Hour)}
	prev, changed, err = s.RecordCompliance(ctx, c2, "schedule")
	must(t, err)
	if prev != "in_grace" || changed {
		t.Fatalf("same state: prev %q changed %v", prev, changed)
	}
	got, _ = s.GetCompliance(ctx, d.ID)
	if !got.ChangedAt.Equal(firstChange) || got.Reason != "still" {
		t.Fatalf("after the same state: %+v", got)
	}

	prev, changed, err = s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: d.ID, State: "noncompliant", Reason: "grace over"}, "schedule")
	must(t, err)
	if prev != "in_grace" || !changed {
		t.Fatalf("to noncompliant: prev %q changed %v", prev, changed)
	}
	prev, changed, err = s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: d.ID, State: "compliant"}, "posture")
	must(t, err)
	if prev != "noncompliant" || !changed {
		t.Fatalf("to compliant: prev %q changed %v", prev, changed)
	}
	got, _ = s.GetCompliance(ctx, d.ID)
	if got.FailingSince != nil || string(got.Rules) != "[]" {
		t.Fatalf("compliant state kept old data: %+v", got)
	}

	feed, err := s.ListComplianceChanges(ctx, 0, 10)
	must(t, err)
	var steps []string
	for _, ch := range feed {
		steps = append(steps, ch.FromState+">"+ch.ToState+"("+ch.Cause+")")
	}
	if got := fmt.Sprint(steps); got != "[>in_grace(posture) in_grace>noncompliant(schedule) noncompliant>compliant(posture)]" {
		t.Fatalf("feed = %s", got)
	}
	rest, err := s.ListComplianceChanges(ctx, feed[0].Seq, 10)
	must(t, err)
	if len(rest) != 2 || rest[0].Seq != feed[1].Seq {
		t.Fatalf("resuming after %d: %+v", feed[0].Seq, rest)
	}
	page, err := s.ListComplianceChanges(ctx, 0, 1)
	must(t, err)
	if len(page) != 1 || page[0].Seq != feed[0].Seq {
		t.Fatalf("limit 1: %+v", page)
	}

	// An evaluation that began before the stored one loses the race.
	cur, _ := s.GetCompliance(ctx, d.ID)
	late := &mdmd.DeviceCompliance{DeviceID: d.ID, State: "noncompliant", EvaluatedAt: cur.EvaluatedAt.Add(-time.Millisecond)}
	prev, changed, err = s.RecordCompliance(ctx, late, "schedule")
	must(t, err)
	if prev != "compliant" || changed {
		t.Fatalf("stale evaluation: prev %q changed %v", prev, changed)
	}
	if got, _ := s.GetCompliance(ctx, d.ID); got.State != "compliant" || !got.EvaluatedAt.Equal(cur.EvaluatedAt) {
		t.Fatalf("a stale evaluation overwrote the state: %+v", got)
	}

	// A device's history stays in the feed after the device is deleted.
	_, err = s.UpdateDevice(ctx, d.ID, mdmd.DeviceUpdate{EnrollmentState: ptr(mdmd.EnrollmentUnenrolled)})
	must(t, err)
	must(t, s.DeleteDevice(ctx, d.ID))
	_, err = s.GetCompliance(ctx, d.ID)
	wantCode(t, err, mdmd.ENotFound)
	if after, _ := s.ListComplianceChanges(ctx, 0, 10); len(after) != 3 {
		t.Fatalf("feed after delete has %d changes", len(after))
	}
}

// Writers racing on many devices: every change lands in the feed once,
// with strictly increasing seq.
func testComplianceFeedConcurrent(t *testing.T, s *storage.Store) {
	const devices, rounds = 6, 5
	var ids []string
	for i := range devices {
		d := androidDevice(fmt.Sprintf("F%d", i))
		must(t, s.CreateDevice(ctx, d))
		ids = append(ids, d.ID)
	}
	states := []string{"compliant", "noncompliant"}
	var wg sync.WaitGroup
	errs := make(chan error, devices*rounds*2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				for i, id := range ids {
					// Both writers write the same state for a device in a
					// round: exactly one of them changes it.
					st := states[(r+i)%2]
					if _, _, err := s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: id, State: st}, fmt.Sprintf("w%d", w)); err != nil {
						errs <- err
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	feed, err := s.ListComplianceChanges(ctx, 0, 1000)
	must(t, err)
	// Each device changes state on every round (the first from nothing),
	// unless both writers' rounds interleave; at least one change each
	// round, and never a change to the state a device already had.
	last := map[string]string{}
	var seq int64
	for _, ch := range feed {
		if ch.Seq <= seq {
			t.Fatalf("seq %d after %d", ch.Seq, seq)
		}
		seq = ch.Seq
		if ch.FromState != last[ch.DeviceID] || ch.FromState == ch.ToState {
			t.Fatalf("change %+v does not follow %q", ch, last[ch.DeviceID])
		}
		last[ch.DeviceID] = ch.ToState
	}
	for i, id := range ids {
		c, err := s.GetCompliance(ctx, id)
		must(t, err)
		if c.State != last[id] || c.State != states[(rounds-1+i)%2] {
			t.Errorf("device %d: stored %s, feed ends at %s", i, c.State, last[id])
		}
	}
}

func testCompliancePolicies(t *testing.T, s *storage.Store) {
	rules := mdmd.RawJSON(`{"min_os_version":"17"}`)
	for _, bad := range []mdmd.CompliancePolicy{
		{Name: "", Rules: rules},
		{Name: "p", Platform: "windows", Rules: rules},
		{Name: "p", Rules: mdmd.RawJSON(`[1]`)},
		{Name: "p", Rules: mdmd.RawJSON(`{`)},
		{Name: "p"},
	} {
		wantCode(t, s.CreateCompliancePolicy(ctx, &bad), mdmd.EInvalid)
	}
	if ps, _ := s.ListCompliancePolicies(ctx); len(ps) != 0 {
		t.Fatalf("invalid policies stored: %+v", ps)
	}

	all := &mdmd.CompliancePolicy{Name: "baseline", Rules: rules, IsDefault: true}
	iosDefault := &mdmd.CompliancePolicy{Name: "ios baseline", Platform: mdmd.PlatformIOS, Rules: rules, IsDefault: true}
	strict := &mdmd.CompliancePolicy{Name: "strict", Rules: mdmd.RawJSON(`{"min_os_version":"18"}`)}
	androidOnly := &mdmd.CompliancePolicy{Name: "android strict", Platform: mdmd.PlatformAndroid, Rules: rules}
	for _, p := range []*mdmd.CompliancePolicy{all, iosDefault, strict, androidOnly} {
		must(t, s.CreateCompliancePolicy(ctx, p))
	}
	wantCode(t, s.CreateCompliancePolicy(ctx, &mdmd.CompliancePolicy{Name: "baseline", Rules: rules}), mdmd.EConflict)
	wantCode(t, s.CreateCompliancePolicy(ctx, &mdmd.CompliancePolicy{Name: "second ios default", Platform: mdmd.PlatformIOS,
		Rules: rules, IsDefault: true}), mdmd.EConflict)

	phone, pixel := iosDevice("P1"), androidDevice("P2")
	must(t, s.CreateDevice(ctx, phone))
	must(t, s.CreateDevice(ctx, pixel))
	policyOf := func(id string) string {
		t.Helper()
		p, err := s.PolicyForDevice(ctx, id)
		must(t, err)
		return p.Name
	}
	if got := policyOf(phone.ID); got != "ios baseline" {
		t.Fatalf("iPhone without groups: %s", got)
	}
	if got := policyOf(pixel.ID); got != "baseline" {
		t.Fatalf("Android without groups: %s", got)
	}

	g1, g2 := &mdmd.Group{Name: "execs"}, &mdmd.Group{Name: "field"}
	must(t, s.CreateGroup(ctx, g1))
	must(t, s.CreateGroup(ctx, g2))
	must(t, s.AddGroupMembers(ctx, g1.ID, []string{phone.ID, pixel.ID}))
	must(t, s.AddGroupMembers(ctx, g2.ID, []string{phone.ID, pixel.ID}))
	must(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: strict.ID, GroupID: g1.ID, Priority: 20}))
	must(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: androidOnly.ID, GroupID: g2.ID, Priority: 10}))
	wantCode(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: strict.ID, GroupID: "nope"}), mdmd.ENotFound)
	wantCode(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: "nope", GroupID: g1.ID}), mdmd.ENotFound)
	wantCode(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: strict.ID, GroupID: g1.ID, Priority: -1}), mdmd.EInvalid)
	// The Android-only policy has the better priority but does not apply to an iPhone.
	if got := policyOf(phone.ID); got != "strict" {
		t.Fatalf("iPhone in both groups: %s", got)
	}
	if got := policyOf(pixel.ID); got != "android strict" {
		t.Fatalf("Android in both groups: %s", got)
	}
	// Re-assigning changes the priority.
	must(t, s.AssignCompliancePolicy(ctx, &mdmd.CompliancePolicyGroup{PolicyID: strict.ID, GroupID: g1.ID, Priority: 5}))
	if got := policyOf(pixel.ID); got != "strict" {
		t.Fatalf("after re-prioritising: %s", got)
	}
	must(t, s.UnassignCompliancePolicy(ctx, strict.ID, g1.ID))
	wantCode(t, s.UnassignCompliancePolicy(ctx, strict.ID, g1.ID), mdmd.ENotFound)
	if got := policyOf(pixel.ID); got != "android strict" {
		t.Fatalf("after unassigning: %s", got)
	}

	// Updating bumps the version and keeps the platform.
	upd := &mdmd.CompliancePolicy{ID: androidOnly.ID, Name: "android strict v2", Platform: mdmd.PlatformIOS,
		Rules: mdmd.RawJSON(`{"min_os_version":"15"}`)}
	must(t, s.UpdateCompliancePolicy(ctx, upd))
	if upd.Version != 2 || upd.Platform != mdmd.PlatformAndroid || string(upd.Rules) != `{"min_os_version":"15"}` {
		t.Fatalf("updated = %+v", upd)
	}
	wantCode(t, s.UpdateCompliancePolicy(ctx, &mdmd.CompliancePolicy{ID: all.ID, Name: "baseline", Rules: mdmd.RawJSON("nope")}), mdmd.EInvalid)
	if got, _ := s.GetCompliancePolicy(ctx, all.ID); string(got.Rules) != string(rules) || got.Version != 1 {
		t.Fatalf("a rejected update changed the policy: %+v", got)
	}
	wantCode(t, s.UpdateCompliancePolicy(ctx, &mdmd.CompliancePolicy{ID: "nope", Name: "x", Rules: rules}), mdmd.ENotFound)

	// Deleting removes assignments; a device then falls back to a default.
	must(t, s.DeleteCompliancePolicy(ctx, androidOnly.ID))
	wantCode(t, s.DeleteCompliancePolicy(ctx, androidOnly.ID), mdmd.ENotFound)
	if got := policyOf(pixel.ID); got != "baseline" {
		t.Fatalf("after deleting: %s", got)
	}
	must(t, s.DeleteCompliancePolicy(ctx, all.ID))
	_, err := s.PolicyForDevice(ctx, pixel.ID)
	wantCode(t, err, mdmd.ENotFound)
	_, err = s.PolicyForDevice(ctx, "no-such-device")
	wantCode(t, err, mdmd.ENotFound)
}

func testThreats(t *testing.T, s *storage.Store) {
	d := iosDevice("THREAT-1")
	must(t, s.CreateDevice(ctx, d))
	for _, bad := range []mdmd.DeviceThreat{
		{DeviceID: d.ID, Level: "critical", Source: "x"},
		{DeviceID: d.ID, Level: "low"},
		{DeviceID: d.ID, Level: "low", Source: "x", Details: mdmd.RawJSON(`[1]`)},
	} {
		_, err := s.ReportThreat(ctx, &bad)
		wantCode(t, err, mdmd.EInvalid)
	}
	_, err := s.ReportThreat(ctx, &mdmd.DeviceThreat{DeviceID: "no-such-device", Level: "low", Source: "x", ReportedBy: "p1"})
	wantCode(t, err, mdmd.ENotFound)
	wantCode(t, s.ThreatHeartbeat(ctx, "p1", []string{d.ID}), mdmd.ENotFound)
	if _, err := s.GetThreat(ctx, d.ID); !mdmd.IsCode(err, mdmd.ENotFound) {
		t.Fatalf("rejected reports were stored: %v", err)
	}

	for i, level := range []string{"low", "low", "high"} {
		prev, err := s.ReportThreat(ctx, &mdmd.DeviceThreat{DeviceID: d.ID, Level: level, Source: "Acme", ReportedBy: "p1"})
		must(t, err)
		if want := []string{"", "low", "low"}[i]; prev != want {
			t.Errorf("report %d: previous %q, want %q", i, prev, want)
		}
	}
	evs, err := s.ListEvents(ctx, 0, 10)
	must(t, err)
	if len(evs) != 2 {
		t.Fatalf("%d threat events, want 2 (a repeated level is not an event)", len(evs))
	}
	var data mdmd.ThreatChangedData
	must(t, json.Unmarshal(evs[1].Data, &data))
	if data.PreviousLevel != "low" || data.CurrentLevel != "high" || data.DeviceID != d.ID {
		t.Errorf("event = %+v", data)
	}
	before, err := s.GetThreat(ctx, d.ID)
	must(t, err)
	// Another partner can neither overwrite the verdict nor keep it fresh.
	_, err = s.ReportThreat(ctx, &mdmd.DeviceThreat{DeviceID: d.ID, Level: "secured", Source: "Other", ReportedBy: "p2"})
	wantCode(t, err, mdmd.EConflict)
	wantCode(t, s.ThreatHeartbeat(ctx, "p2", []string{d.ID}), mdmd.ENotFound)
	must(t, s.ThreatHeartbeat(ctx, "p1", []string{d.ID, d.ID}))
	after, err := s.GetThreat(ctx, d.ID)
	must(t, err)
	if after.HeartbeatAt.Before(before.HeartbeatAt) || after.ReportedAt != before.ReportedAt || after.Level != "high" {
		t.Errorf("heartbeat changed more than the heartbeat: %+v -> %+v", before, after)
	}
	marks, err := s.ClaimDirtyDevices(ctx, 10, time.Minute)
	must(t, err)
	if len(marks) != 1 || marks[0].DeviceID != d.ID {
		t.Errorf("a report did not mark the device: %+v", marks)
	}
	// Released by an admin, the device can be reported by another partner.
	must(t, s.DeleteThreat(ctx, d.ID))
	wantCode(t, s.DeleteThreat(ctx, d.ID), mdmd.ENotFound)
	_, err = s.ReportThreat(ctx, &mdmd.DeviceThreat{DeviceID: d.ID, Level: "secured", Source: "Other", ReportedBy: "p2"})
	must(t, err)
}

func testComplianceActions(t *testing.T, s *storage.Store) {
	d := iosDevice("ACTIONS-1")
	must(t, s.CreateDevice(ctx, d))
	episode := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	_, _, err := s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: d.ID, State: "noncompliant", FailingSince: &episode}, "posture")
	must(t, err)
	failing, err := s.FailingDevices(ctx, "", 10)
	must(t, err)
	if len(failing) != 1 || !failing[0].FailingSince.Equal(episode) {
		t.Fatalf("failing = %+v", failing)
	}

	// Of concurrent starters, exactly one starts the action.
	var wg sync.WaitGroup
	var mu sync.Mutex
	started := 0
	for range 4 {
		wg.Go(func() {
			ok, err := s.StartComplianceAction(ctx, &mdmd.ComplianceAction{DeviceID: d.ID, Episode: episode, Action: "lock", State: mdmd.ActionRunning})
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				started++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if started != 1 {
		t.Fatalf("%d starters started the action", started)
	}
	_, err = s.StartComplianceAction(ctx, &mdmd.ComplianceAction{DeviceID: d.ID, Episode: episode, Action: "lock", State: mdmd.ActionDone})
	wantCode(t, err, mdmd.EInvalid)
	acts, err := s.EpisodeActions(ctx, []string{d.ID})
	must(t, err)
	if len(acts) != 1 {
		t.Fatalf("actions = %+v", acts)
	}
	lock := acts[0]
	_, err = s.FinishComplianceAction(ctx, lock.ID, mdmd.ActionPendingApproval, mdmd.ComplianceAction{State: mdmd.ActionDone})
	wantCode(t, err, mdmd.EConflict)
	_, err = s.FinishComplianceAction(ctx, lock.ID, mdmd.ActionRunning, mdmd.ComplianceAction{State: "exploded"})
	wantCode(t, err, mdmd.EInvalid)
	done, err := s.FinishComplianceAction(ctx, lock.ID, mdmd.ActionRunning, mdmd.ComplianceAction{State: mdmd.ActionDone, CommandID: "c1"})
	must(t, err)
	if done.State != mdmd.ActionDone || done.CommandID != "c1" {
		t.Errorf("finished = %+v", done)
	}

	// A wipe waiting for approval is cancelled once the episode ends.
	ok, err := s.StartComplianceAction(ctx, &mdmd.ComplianceAction{DeviceID: d.ID, Episode: episode, Action: "selective_wipe", State: mdmd.ActionPendingApproval})
	must(t, err)
	if !ok {
		t.Fatal("the wipe did not start")
	}
	_, ended, err := s.StaleComplianceActions(ctx, time.Now().Add(-time.Hour))
	must(t, err)
	if len(ended) != 0 {
		t.Fatalf("an approval of a running episode counts as ended: %+v", ended)
	}
	_, _, err = s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: d.ID, State: "compliant"}, "posture")
	must(t, err)
	_, ended, err = s.StaleComplianceActions(ctx, time.Now().Add(-time.Hour))
	must(t, err)
	if len(ended) != 1 || ended[0].Action != "selective_wipe" {
		t.Fatalf("ended = %+v", ended)
	}
	pending, err := s.ListComplianceActions(ctx, mdmd.ActionPendingApproval, "", 10)
	must(t, err)
	if len(pending) != 1 {
		t.Errorf("pending = %+v", pending)
	}
	// Approving it now cancels it: the device recovered.
	_, err = s.ApproveComplianceAction(ctx, ended[0].ID, "admin")
	wantCode(t, err, mdmd.EConflict)
	if a, err := s.GetComplianceAction(ctx, ended[0].ID); err != nil || a.State != mdmd.ActionCancelled {
		t.Errorf("after approving a recovered device's wipe: %+v, %v", a, err)
	}

	// A failing device's wipe is approved, once; a stale running action
	// is reclaimed by one scheduler only.
	d2 := iosDevice("ACTIONS-2")
	must(t, s.CreateDevice(ctx, d2))
	_, _, err = s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: d2.ID, State: "noncompliant", FailingSince: &episode}, "posture")
	must(t, err)
	wipe := &mdmd.ComplianceAction{DeviceID: d2.ID, Episode: episode, Action: "selective_wipe", State: mdmd.ActionPendingApproval}
	_, err = s.StartComplianceAction(ctx, wipe)
	must(t, err)
	approved, err := s.ApproveComplianceAction(ctx, wipe.ID, "admin")
	must(t, err)
	if approved.State != mdmd.ActionRunning || approved.DecidedBy != "admin" {
		t.Errorf("approved = %+v", approved)
	}
	_, err = s.ApproveComplianceAction(ctx, wipe.ID, "admin")
	wantCode(t, err, mdmd.EConflict)
	later := time.Now().Add(time.Hour)
	first, err := s.ReclaimComplianceAction(ctx, wipe.ID, later)
	must(t, err)
	second, err := s.ReclaimComplianceAction(ctx, wipe.ID, s.Now().Add(-time.Minute))
	must(t, err)
	if !first || second {
		t.Errorf("reclaims: %v then %v, want only the first", first, second)
	}
	_, err = s.ListComplianceActions(ctx, "exploded", "", 10)
	wantCode(t, err, mdmd.EInvalid)
}
