package compliance_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/compliance"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

func policyJSON(t testing.TB, p compliance.Policy) mdmd.RawJSON {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The service against real storage on every backend: a posture change
// flips the state, silence flips it with no contact, and every change
// lands in the feed once.
func TestServiceOnStorage(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
			now := func() time.Time { return clock }
			st := storagetest.Open(t, be.URL, storage.Options{Now: now})
			svc := compliance.NewService(st, slog.New(slog.NewTextHandler(io.Discard, nil)), now)

			name := "enterprises/LC01/devices/d1"
			d := &mdmd.Device{Platform: mdmd.PlatformAndroid, AMAPIName: &name, Name: "Pixel", Ownership: mdmd.OwnershipCorporate,
				EnrollmentState: mdmd.EnrollmentEnrolled, LastSeenAt: &clock}
			if err := st.CreateDevice(ctx, d); err != nil {
				t.Fatal(err)
			}
			eval := func(cause string) *compliance.Result {
				t.Helper()
				r, err := svc.EvaluateDevice(ctx, d.ID, cause)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			if r := eval("enrollment"); r.State != compliance.StateNotEvaluated || !strings.Contains(r.Reason, "no compliance policy") {
				t.Fatalf("without a policy: %s (%s)", r.State, r.Reason)
			}

			pol := compliance.Policy{MinOSVersion: "13", MaxPatchAgeDays: 90, BlockCompromised: true, RequireSecurePosture: true,
				CheckInValidityDays: 7, GraceDays: 2}
			if err := st.CreateCompliancePolicy(ctx, &mdmd.CompliancePolicy{Name: "baseline", Rules: policyJSON(t, pol), IsDefault: true}); err != nil {
				t.Fatal(err)
			}
			if r := eval("policy"); r.State != compliance.StateNotEvaluated {
				t.Fatalf("before any posture: %s (%s)", r.State, r.Reason)
			}
			secure := func(ok bool) *mdmd.Posture {
				compromised, posture := !ok, "SECURE"
				if !ok {
					posture = "POTENTIALLY_COMPROMISED"
				}
				details, _ := json.Marshal(map[string]any{"device_posture": posture})
				return &mdmd.Posture{DeviceID: d.ID, OSVersion: "14", SecurityPatch: "2026-11-01", Compromised: &compromised,
					Details: details, ObservedAt: clock}
			}
			if err := st.UpsertPosture(ctx, secure(true)); err != nil {
				t.Fatal(err)
			}
			if r := eval("posture"); r.State != compliance.StateCompliant || !r.Changed || r.Previous != "not_evaluated" {
				t.Fatalf("healthy: %s changed=%v from %q (%s)", r.State, r.Changed, r.Previous, r.Reason)
			}

			// Rooted: in grace first, noncompliant once the grace is over.
			if err := st.UpsertPosture(ctx, secure(false)); err != nil {
				t.Fatal(err)
			}
			r := eval("posture")
			if r.State != compliance.StateInGrace || strings.Join(r.Failed(), ",") != "not_compromised,secure_posture" {
				t.Fatalf("rooted: %s %v", r.State, r.Failed())
			}
			clock = clock.Add(49 * time.Hour)
			if r := eval("schedule"); r.State != compliance.StateNoncompliant || r.Previous != "in_grace" {
				t.Fatalf("grace over: %s from %s", r.State, r.Previous)
			}
			stored, err := st.GetCompliance(ctx, d.ID)
			if err != nil {
				t.Fatal(err)
			}
			var rules []compliance.RuleResult
			if err := json.Unmarshal(stored.Rules, &rules); err != nil || len(rules) == 0 {
				t.Fatalf("stored rules %s: %v", stored.Rules, err)
			}
			if stored.FailingSince == nil || !stored.FailingSince.Equal(clock.Add(-49*time.Hour)) {
				t.Fatalf("failing since %v", stored.FailingSince)
			}

			// Fixed: compliant again at once; then silence alone ends the trust.
			if err := st.UpsertPosture(ctx, secure(true)); err != nil {
				t.Fatal(err)
			}
			if r := eval("posture"); r.State != compliance.StateCompliant {
				t.Fatalf("fixed: %s (%s)", r.State, r.Reason)
			}
			clock = clock.Add(10 * 24 * time.Hour)
			r = eval("schedule")
			if r.State != compliance.StateInGrace || strings.Join(r.Failed(), ",") != "check_in_validity" {
				t.Fatalf("silent: %s %v", r.State, r.Failed())
			}
			if again := eval("schedule"); again.Changed {
				t.Fatal("an unchanged state was recorded as a change")
			}

			feed, err := st.ListComplianceChanges(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var steps []string
			for _, ch := range feed {
				steps = append(steps, ch.ToState)
			}
			want := "not_evaluated,compliant,in_grace,noncompliant,compliant,in_grace"
			if got := strings.Join(steps, ","); got != want {
				t.Fatalf("feed = %s, want %s", got, want)
			}
		})
	}
}

// A required profile counts only once mdmd has recorded it installed.
func TestServiceRequiredProfiles(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t, storagetest.SQLiteURL(t), storage.Options{})
	svc := compliance.NewService(st, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	udid := "00008110-0001"
	d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: "iPhone", Ownership: mdmd.OwnershipCorporate,
		EnrollmentState: mdmd.EnrollmentEnrolled}
	if err := st.CreateDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	pol := compliance.Policy{RequiredProfiles: []string{"com.example.wifi"}}
	if err := st.CreateCompliancePolicy(ctx, &mdmd.CompliancePolicy{Name: "ios", Platform: mdmd.PlatformIOS,
		Rules: policyJSON(t, pol), IsDefault: true}); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		state string
		want  compliance.State
	}{
		{"", compliance.StateNoncompliant},
		{"installing", compliance.StateNoncompliant},
		{"installed", compliance.StateCompliant},
	} {
		if step.state != "" {
			if err := st.PutDeviceProfile(ctx, &mdmd.DeviceProfile{DeviceID: d.ID, Identifier: "com.example.wifi", Version: 1,
				State: step.state}); err != nil {
				t.Fatal(err)
			}
		}
		r, err := svc.EvaluateDevice(ctx, d.ID, "profiles")
		if err != nil {
			t.Fatal(err)
		}
		if r.State != step.want {
			t.Errorf("profile %q: %s (%s)", step.state, r.State, r.Reason)
		}
	}
	if _, err := svc.EvaluateDevice(ctx, "no-such-device", "posture"); !mdmd.IsCode(err, mdmd.ENotFound) {
		t.Errorf("unknown device: %v", err)
	}
}

// cancelAfterSave ends a sweep's context once it has saved its position.
type cancelAfterSave struct {
	*storage.Store
	cancel context.CancelFunc
}

func (c cancelAfterSave) PutSetting(ctx context.Context, key, value string) error {
	err := c.Store.PutSetting(ctx, key, value)
	if value != "" {
		c.cancel()
	}
	return err
}

// The sweep reaches every device, in batches, and a sweep cut short is
// carried on by the next from where it stopped.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
			now := func() time.Time { return clock }
			st := storagetest.Open(t, be.URL, storage.Options{Now: now})
			svc := compliance.NewService(st, slog.New(slog.NewTextHandler(io.Discard, nil)), now)
			svc.SetBatchSize(100)
			pol := compliance.Policy{CheckInValidityDays: 7}
			if err := st.CreateCompliancePolicy(ctx, &mdmd.CompliancePolicy{Name: "p", Rules: policyJSON(t, pol), IsDefault: true}); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for i := range 450 {
				udid := fmt.Sprintf("sweep-%03d", i)
				seen := clock
				d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Ownership: mdmd.OwnershipCorporate,
					EnrollmentState: mdmd.EnrollmentEnrolled, LastSeenAt: &seen}
				if err := st.CreateDevice(ctx, d); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, d.ID)
			}
			if n, err := svc.Sweep(ctx); err != nil || n != 450 {
				t.Fatalf("first sweep: %d, %v", n, err)
			}
			for _, id := range []string{ids[0], ids[449]} {
				if c, err := st.GetCompliance(ctx, id); err != nil || c.State != "compliant" {
					t.Fatalf("after the first sweep: %+v, %v", c, err)
				}
			}
			// Eight days on, with no contact, the next sweep finds them all silent.
			clock = clock.Add(8 * 24 * time.Hour)
			if n, err := svc.Sweep(ctx); err != nil || n != 450 {
				t.Fatalf("second sweep: %d, %v", n, err)
			}
			for _, id := range []string{ids[0], ids[449]} {
				c, err := st.GetCompliance(ctx, id)
				if err != nil || c.State != "noncompliant" || !c.EvaluatedAt.Equal(clock) {
					t.Fatalf("after the silence: %+v, %v", c, err)
				}
			}
			// A sweep cut short after its first batch: the next one does the
			// rest, and the one after that starts over.
			clock = clock.Add(time.Hour)
			short, cancel := context.WithCancel(ctx)
			defer cancel()
			cut := compliance.NewService(cancelAfterSave{st, cancel}, slog.New(slog.NewTextHandler(io.Discard, nil)), now)
			cut.SetBatchSize(100)
			if n, err := cut.Sweep(short); err == nil || n != 300 { // three batches at a time
				t.Fatalf("cancelled sweep: %d, %v", n, err)
			}
			if n, err := svc.Sweep(ctx); err != nil || n != 150 {
				t.Fatalf("sweep after a cancelled one: %d, %v", n, err)
			}
			if n, err := svc.Sweep(ctx); err != nil || n != 450 {
				t.Fatalf("the next full sweep: %d, %v", n, err)
			}
		})
	}
}

// Changes to a device's inputs mark it, and EvaluateDirty evaluates
// exactly the marked devices; a mark made while a device is being
// evaluated survives for the next pass.
func TestEvaluateDirty(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := storagetest.Open(t, be.URL, storage.Options{})
			svc := compliance.NewService(st, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			pol := compliance.Policy{MinOSVersion: "17"}
			if err := st.CreateCompliancePolicy(ctx, &mdmd.CompliancePolicy{Name: "p", Platform: mdmd.PlatformIOS, Rules: policyJSON(t, pol), IsDefault: true}); err != nil {
				t.Fatal(err)
			}
			var ids []string
			for i := range 3 {
				udid := fmt.Sprintf("dirty-%d", i)
				d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}
				if err := st.CreateDevice(ctx, d); err != nil {
					t.Fatal(err)
				}
				ids = append(ids, d.ID)
			}
			dirty := func(want int) {
				t.Helper()
				if n, err := svc.EvaluateDirty(ctx); err != nil || n != want {
					t.Fatalf("EvaluateDirty = %d, %v; want %d", n, err, want)
				}
			}
			state := func(id string) string {
				t.Helper()
				c, err := st.GetCompliance(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				return c.State
			}
			dirty(0)
			for i, v := range []string{"16.7", "18.1"} {
				if err := st.UpsertPosture(ctx, &mdmd.Posture{DeviceID: ids[i], OSVersion: v}); err != nil {
					t.Fatal(err)
				}
			}
			dirty(2)
			if state(ids[0]) != "noncompliant" || state(ids[1]) != "compliant" {
				t.Fatalf("states %s, %s", state(ids[0]), state(ids[1]))
			}
			if _, err := st.GetCompliance(ctx, ids[2]); !mdmd.IsCode(err, mdmd.ENotFound) {
				t.Fatalf("an unchanged device was evaluated: %v", err)
			}
			dirty(0)

			// Marked again while claimed: clearing the claim keeps the mark.
			if err := st.UpsertPosture(ctx, &mdmd.Posture{DeviceID: ids[0], OSVersion: "17.0"}); err != nil {
				t.Fatal(err)
			}
			marks, err := st.ClaimDirtyDevices(ctx, 10, time.Minute)
			if err != nil || len(marks) != 1 {
				t.Fatalf("claim: %v, %v", marks, err)
			}
			if again, _ := st.ClaimDirtyDevices(ctx, 10, time.Minute); len(again) != 0 {
				t.Fatalf("a claimed mark was claimed twice: %v", again)
			}
			if err := st.UpsertPosture(ctx, &mdmd.Posture{DeviceID: ids[0], OSVersion: "16.0"}); err != nil {
				t.Fatal(err)
			}
			if err := st.ClearDirtyDevices(ctx, marks); err != nil {
				t.Fatal(err)
			}
			dirty(1)
			if state(ids[0]) != "noncompliant" {
				t.Fatalf("after 16.0: %s", state(ids[0]))
			}

			// Joining a group marks the device.
			g := &mdmd.Group{Name: "g"}
			if err := st.CreateGroup(ctx, g); err != nil {
				t.Fatal(err)
			}
			if err := st.AddGroupMembers(ctx, g.ID, []string{ids[2], ids[2]}); err != nil {
				t.Fatal(err)
			}
			dirty(1)
		})
	}
}
