package storagetest

import (
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

func androidTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"AndroidTokens", testAndroidTokens},
		{"AndroidUpdates", testAndroidUpdates},
	}
}

func testAndroidTokens(t *testing.T, s *storage.Store) {
	wantCode(t, s.CreateAndroidToken(ctx, &mdmd.AndroidToken{Kind: "dedicated", Name: "n", ValueSealed: []byte{1}}), mdmd.EInvalid)
	tok := &mdmd.AndroidToken{Kind: mdmd.AndroidWorkProfile, Name: "enterprises/E/enrollmentTokens/T1", OwnerUser: "u@example.com",
		OneTime: true, ValueSealed: []byte("v"), QRSealed: []byte("q"), ExpiresAt: time.Now().Add(time.Hour)}
	must(t, s.CreateAndroidToken(ctx, tok))
	wantCode(t, s.CreateAndroidToken(ctx, &mdmd.AndroidToken{Kind: mdmd.AndroidWorkProfile, Name: tok.Name, ValueSealed: []byte("v"),
		QRSealed: []byte("q"), ExpiresAt: time.Now()}), mdmd.EConflict)
	got, err := s.GetAndroidToken(ctx, tok.ID)
	must(t, err)
	if got.Name != tok.Name || string(got.ValueSealed) != "v" || !got.OneTime {
		t.Fatalf("token = %+v", got)
	}
	rev, err := s.RevokeAndroidToken(ctx, tok.ID)
	must(t, err)
	if rev.RevokedAt == nil {
		t.Fatal("not revoked")
	}
	list, _ := s.ListAndroidTokens(ctx)
	if len(list) != 1 {
		t.Fatalf("tokens = %d", len(list))
	}
	_, err = s.GetAndroidToken(ctx, "missing")
	wantCode(t, err, mdmd.ENotFound)
}

func testAndroidUpdates(t *testing.T, s *storage.Store) {
	tok := &mdmd.AndroidToken{Kind: mdmd.AndroidFullyManaged, Name: "enterprises/E/enrollmentTokens/T2", OwnerUser: "ops@example.com",
		ValueSealed: []byte("v"), QRSealed: []byte("q"), ExpiresAt: time.Now().Add(time.Hour)}
	must(t, s.CreateAndroidToken(ctx, tok))
	name := "enterprises/E/devices/D1"
	t0 := time.Now().Add(-time.Minute)
	yes := true
	update := func(id string, at time.Time, enrollment bool, os string) mdmd.AndroidUpdate {
		return mdmd.AndroidUpdate{MessageID: id, PublishTime: at, Enrollment: enrollment, Model: "Pixel 9", SerialNumber: "S1", OSVersion: os,
			State:   mdmd.AndroidDevice{AMAPIName: name, TokenID: tok.ID, ManagementMode: "DEVICE_OWNER", AMAPIOwnership: "COMPANY_OWNED", AppliedState: "ACTIVE", AppliedPolicyVersion: 3},
			Posture: &mdmd.Posture{OSVersion: os, SecurityPatch: "2026-10-05", Encrypted: &yes}}
	}
	_, _, err := s.ApplyAndroidUpdate(ctx, update("m0", t0, false, "15"))
	wantCode(t, err, mdmd.ENotFound) // a status report before the enrollment
	res, id, err := s.ApplyAndroidUpdate(ctx, update("m1", t0, true, "15"))
	must(t, err)
	if res != mdmd.UpdateApplied {
		t.Fatalf("enrollment = %s", res)
	}
	d, _ := s.GetDevice(ctx, id)
	if d.Platform != mdmd.PlatformAndroid || *d.AMAPIName != name || d.Ownership != mdmd.OwnershipCorporate || d.OwnerUser != "ops@example.com" ||
		d.EnrollmentState != mdmd.EnrollmentEnrolled || d.OSVersion != "15" || d.SerialNumber != "S1" {
		t.Fatalf("device = %+v", d)
	}
	// The report that was refused before the enrollment now applies.
	res, _, err = s.ApplyAndroidUpdate(ctx, update("m0", t0.Add(time.Second), false, "15"))
	must(t, err)
	if res != mdmd.UpdateApplied {
		t.Fatalf("redelivered report = %s", res)
	}
	res, _, _ = s.ApplyAndroidUpdate(ctx, update("m0", t0.Add(time.Hour), false, "16"))
	if res != mdmd.UpdateDuplicate {
		t.Fatalf("duplicate = %s", res)
	}
	res, _, _ = s.ApplyAndroidUpdate(ctx, update("m2", t0.Add(-time.Hour), false, "12"))
	if res != mdmd.UpdateStale {
		t.Fatalf("older report = %s", res)
	}
	if p, _ := s.GetPosture(ctx, id); p.OSVersion != "15" {
		t.Fatalf("a stale report changed the posture: %s", p.OSVersion)
	}
	res, _, _ = s.ApplyAndroidUpdate(ctx, update("m3", t0.Add(time.Minute), false, "16"))
	if p, _ := s.GetPosture(ctx, id); res != mdmd.UpdateApplied || p.OSVersion != "16" || p.SecurityPatch != "2026-10-05" {
		t.Fatalf("newer report: %s, posture %+v", res, p)
	}
	ad, err := s.GetAndroidDevice(ctx, id)
	must(t, err)
	if ad.TokenID != tok.ID || ad.AppliedPolicyVersion != 3 || ad.ManagementMode != "DEVICE_OWNER" {
		t.Fatalf("android device = %+v", ad)
	}
	del := update("m4", t0.Add(2*time.Minute), false, "16")
	del.State.AppliedState = "DELETED"
	_, _, err = s.ApplyAndroidUpdate(ctx, del)
	must(t, err)
	if d, _ := s.GetDevice(ctx, id); d.EnrollmentState != mdmd.EnrollmentUnenrolled {
		t.Fatalf("after DELETED = %s", d.EnrollmentState)
	}
	// A report from before the deletion, arriving late, does not bring it back.
	_, _, err = s.ApplyAndroidUpdate(ctx, update("m5", t0.Add(3*time.Minute), false, "16"))
	must(t, err)
	if d, _ := s.GetDevice(ctx, id); d.EnrollmentState != mdmd.EnrollmentUnenrolled {
		t.Fatalf("a late report re-enrolled the device: %s", d.EnrollmentState)
	}
	_, _, err = s.ApplyAndroidUpdate(ctx, mdmd.AndroidUpdate{MessageID: ""})
	wantCode(t, err, mdmd.EInvalid)
	n, err := s.PrunePubsubMessages(ctx, time.Now().Add(time.Hour))
	must(t, err)
	if n != 6 {
		t.Fatalf("pruned %d messages, want 6", n)
	}
}
