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

func appleTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"EnrollmentLinksAndChallenges", testLinksAndChallenges},
		{"AppleEnrollmentBinding", testAppleBinding},
		{"RenewalChallenge", testRenewalChallenge},
		{"Posture", testPosture},
		{"Pushes", testPushes},
		{"BulkCommands", testBulkCommands},
		{"Profiles", testProfiles},
	}
}

func newLink(t *testing.T, s *storage.Store, oneTime bool, expires time.Duration) *mdmd.EnrollmentLink {
	t.Helper()
	l := &mdmd.EnrollmentLink{TokenHash: fmt.Sprintf("%064x", time.Now().UnixNano()), Platform: mdmd.PlatformIOS, OneTime: oneTime,
		Ownership: mdmd.OwnershipPersonal, OwnerUser: "eve@example.com", ExpiresAt: time.Now().Add(expires)}
	must(t, s.CreateEnrollmentLink(ctx, l))
	return l
}

// redeem issues a certificate with a challenge, as the SCEP server does.
func redeem(s *storage.Store, hash string) (*mdmd.DeviceCert, error) {
	c := &mdmd.DeviceCert{Fingerprint: fmt.Sprintf("fp-%s-%d", hash, time.Now().UnixNano()), Serial: fmt.Sprint(time.Now().UnixNano()),
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)}
	return c, s.IssueDeviceCert(ctx, hash, c)
}

func testLinksAndChallenges(t *testing.T, s *storage.Store) {
	wantCode(t, s.CreateEnrollmentLink(ctx, &mdmd.EnrollmentLink{Platform: "windows", Ownership: mdmd.OwnershipCorporate,
		TokenHash: fmt.Sprintf("%064x", 1), ExpiresAt: time.Now().Add(time.Hour)}), mdmd.EInvalid)
	one := newLink(t, s, true, time.Hour)
	got, err := s.GetEnrollmentLinkByTokenHash(ctx, one.TokenHash)
	must(t, err)
	if got.ID != one.ID || !got.Usable(time.Now()) {
		t.Fatalf("link = %+v", got)
	}
	must(t, s.CreateSCEPChallenge(ctx, one.ID, "c1", time.Now().Add(time.Hour)))
	must(t, s.CreateSCEPChallenge(ctx, one.ID, "c2", time.Now().Add(time.Hour)))
	must(t, s.CreateSCEPChallenge(ctx, one.ID, "old", time.Now().Add(-time.Second)))
	_, err = redeem(s, "old")
	wantCode(t, err, mdmd.EForbidden)
	cert, err := redeem(s, "c1")
	must(t, err)
	if cert.EnrollmentLinkID == nil || *cert.EnrollmentLinkID != one.ID || cert.UDID != nil {
		t.Fatalf("issued certificate = %+v", cert)
	}
	if stored, err := s.GetDeviceCert(ctx, cert.Fingerprint); err != nil || *stored.EnrollmentLinkID != one.ID {
		t.Fatalf("stored certificate: %+v %v", stored, err)
	}
	l, _ := s.GetEnrollmentLink(ctx, one.ID)
	if l.Uses != 1 || l.Usable(time.Now()) {
		t.Fatalf("one-time link after use = %+v", l)
	}
	_, err = redeem(s, "c1") // replay
	wantCode(t, err, mdmd.EForbidden)
	failed, err := redeem(s, "c2") // the link is spent
	wantCode(t, err, mdmd.EForbidden)
	if _, err := s.GetDeviceCert(ctx, failed.Fingerprint); !mdmd.IsCode(err, mdmd.ENotFound) {
		t.Fatal("a refused challenge still recorded a certificate")
	}
	_, err = redeem(s, "nope")
	wantCode(t, err, mdmd.EForbidden)
	wantCode(t, s.CreateSCEPChallenge(ctx, one.ID, "c3", time.Now().Add(time.Hour)), mdmd.EForbidden)

	// Concurrent redemptions of one challenge: exactly one wins.
	many := newLink(t, s, false, time.Hour)
	must(t, s.CreateSCEPChallenge(ctx, many.ID, "race", time.Now().Add(time.Hour)))
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := 0; i < 6; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := redeem(s, "race"); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			} else if !mdmd.IsCode(err, mdmd.EForbidden) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d concurrent redemptions of one challenge succeeded", wins)
	}
	for i := 0; i < 2; i++ {
		must(t, s.CreateSCEPChallenge(ctx, many.ID, fmt.Sprint("m", i), time.Now().Add(time.Hour)))
		_, err := redeem(s, fmt.Sprint("m", i))
		must(t, err)
	}
	must(t, s.CreateSCEPChallenge(ctx, many.ID, "late", time.Now().Add(time.Hour)))
	rev, err := s.RevokeEnrollmentLink(ctx, many.ID)
	must(t, err)
	if rev.RevokedAt == nil || rev.Uses != 3 {
		t.Fatalf("revoked link = %+v", rev)
	}
	_, err = redeem(s, "late")
	wantCode(t, err, mdmd.EForbidden)
	links, err := s.ListEnrollmentLinks(ctx, mdmd.PlatformIOS)
	must(t, err)
	if len(links) != 2 || links[0].ID != many.ID {
		t.Fatalf("links = %+v", links)
	}
}

func issue(t *testing.T, s *storage.Store, fp string, linkID, renews, udid *string) {
	t.Helper()
	must(t, s.RecordDeviceCert(ctx, &mdmd.DeviceCert{Fingerprint: fp, Serial: "sn-" + fp, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), EnrollmentLinkID: linkID, Renews: renews, UDID: udid}))
}

func testAppleBinding(t *testing.T, s *storage.Store) {
	link := newLink(t, s, false, time.Hour)
	issue(t, s, "fpA", &link.ID, nil, nil)
	issue(t, s, "fpB", &link.ID, nil, nil)
	auth := func(udid, fp string) (*mdmd.Device, error) {
		return s.BindAppleEnrollment(ctx, mdmd.AppleAuthenticate{UDID: udid, CertFingerprint: fp, SerialNumber: "SER-" + udid,
			ProductName: "iPhone16,2", OSVersion: "18.0", DeviceName: "Phone " + udid})
	}
	_, err := auth("UDID-A", "never-issued")
	wantCode(t, err, mdmd.EDeviceAuth)
	dev, err := auth("UDID-A", "fpA")
	must(t, err)
	if dev.EnrollmentState != mdmd.EnrollmentPending || dev.OwnerUser != "eve@example.com" || dev.Ownership != mdmd.OwnershipPersonal ||
		dev.SerialNumber != "SER-UDID-A" || dev.Model != "iPhone16,2" {
		t.Fatalf("device after Authenticate = %+v", dev)
	}
	// A bound certificate cannot authenticate another UDID.
	_, err = auth("UDID-B", "fpA")
	wantCode(t, err, mdmd.EDeviceAuth)
	if _, err := s.GetDeviceByUDID(ctx, "UDID-B"); !mdmd.IsCode(err, mdmd.ENotFound) {
		t.Fatal("a refused Authenticate created a device")
	}
	enr, err := s.ResolveAppleIdentity(ctx, "fpA")
	must(t, err)
	if enr.UDID != "UDID-A" || enr.TokenValid {
		t.Fatalf("enrollment = %+v", enr)
	}
	must(t, s.UpdateAppleToken(ctx, dev.ID, mdmd.AppleTokenUpdate{Topic: "com.apple.mgmt.X", PushToken: "aa", PushMagic: "M", UnlockTokenSealed: []byte{1}}))
	d, _ := s.GetDevice(ctx, dev.ID)
	if d.EnrollmentState != mdmd.EnrollmentEnrolled || d.EnrolledAt == nil {
		t.Fatalf("device after TokenUpdate = %+v", d)
	}
	targets, err := s.ApplePushTargets(ctx, []string{dev.ID, "other"})
	must(t, err)
	if len(targets) != 1 || targets[0].PushToken != "aa" || targets[0].PushMagic != "M" {
		t.Fatalf("push targets = %+v", targets)
	}
	must(t, s.SetAppleBootstrapToken(ctx, dev.ID, []byte("sealed")))
	if e, _ := s.GetAppleEnrollment(ctx, dev.ID); string(e.BootstrapSealed) != "sealed" || len(e.UnlockTokenSealed) != 1 || e.UnlockTokenSealed[0] != 1 {
		t.Fatalf("sealed tokens = %+v", e)
	}

	// Renewal: a certificate issued to renew fpA takes over on first use.
	if udid, err := s.RenewalTarget(ctx, "fpA"); err != nil || udid != "UDID-A" {
		t.Fatalf("RenewalTarget = %q, %v", udid, err)
	}
	_, err = s.RenewalTarget(ctx, "fpB") // unbound
	wantCode(t, err, mdmd.EDeviceAuth)
	renews, udid := "fpA", "UDID-A"
	issue(t, s, "fpA2", nil, &renews, &udid)
	enr, err = s.ResolveAppleIdentity(ctx, "fpA2")
	must(t, err)
	if enr.DeviceID != dev.ID || enr.CertFingerprint != "fpA2" {
		t.Fatalf("renewed enrollment = %+v", enr)
	}
	_, err = s.ResolveAppleIdentity(ctx, "fpA")
	wantCode(t, err, mdmd.EDeviceAuth)

	// Enrolling again while managed: only through a link for the same
	// owner; an anonymous link or another owner's cannot take the device.
	anon := &mdmd.EnrollmentLink{TokenHash: fmt.Sprintf("%064x", time.Now().UnixNano()+1), Platform: mdmd.PlatformIOS,
		Ownership: mdmd.OwnershipPersonal, ExpiresAt: time.Now().Add(time.Hour)}
	must(t, s.CreateEnrollmentLink(ctx, anon))
	other := &mdmd.EnrollmentLink{TokenHash: fmt.Sprintf("%064x", time.Now().UnixNano()+2), Platform: mdmd.PlatformIOS,
		Ownership: mdmd.OwnershipPersonal, OwnerUser: "mallory@example.com", ExpiresAt: time.Now().Add(time.Hour)}
	must(t, s.CreateEnrollmentLink(ctx, other))
	issue(t, s, "fpAnon", &anon.ID, nil, nil)
	issue(t, s, "fpMallory", &other.ID, nil, nil)
	must(t, s.SetAppleBootstrapToken(ctx, dev.ID, []byte("escrow")))
	for _, fp := range []string{"fpAnon", "fpMallory"} {
		_, err = auth("UDID-A", fp)
		wantCode(t, err, mdmd.EDeviceAuth)
	}
	if e, _ := s.GetAppleEnrollment(ctx, dev.ID); e.CertFingerprint != "fpA2" || string(e.BootstrapSealed) != "escrow" {
		t.Fatalf("a refused takeover changed the enrollment: %+v", e)
	}
	// The same owner's link may (a reset phone enrolling again): the old
	// enrollment's secrets, commands, profiles and posture are gone.
	pending := &mdmd.Command{DeviceID: dev.ID, RequestType: "SecurityInfo"}
	must(t, s.EnqueueCommand(ctx, pending))
	must(t, s.PutDeviceProfile(ctx, &mdmd.DeviceProfile{DeviceID: dev.ID, Identifier: "io.x", Version: 1, State: mdmd.ProfileInstalled}))
	must(t, s.UpsertPosture(ctx, &mdmd.Posture{DeviceID: dev.ID, OSVersion: "18.0"}))
	_, err = auth("UDID-A", "fpB")
	must(t, err)
	_, err = s.ResolveAppleIdentity(ctx, "fpA2")
	wantCode(t, err, mdmd.EDeviceAuth)
	e, _ := s.GetAppleEnrollment(ctx, dev.ID)
	if e.CertFingerprint != "fpB" || e.BootstrapSealed != nil || e.UnlockTokenSealed != nil || e.TokenValid {
		t.Fatalf("re-enrolled enrollment = %+v", e)
	}
	if c, _ := s.GetCommand(ctx, pending.ID); c.Status != mdmd.CommandCanceled {
		t.Fatalf("open command after re-enrollment = %s", c.Status)
	}
	if dps, _ := s.DeviceProfiles(ctx, dev.ID); len(dps) != 0 {
		t.Fatal("installed profiles survived re-enrollment")
	}
	if _, err := s.GetPosture(ctx, dev.ID); !mdmd.IsCode(err, mdmd.ENotFound) {
		t.Fatal("posture survived re-enrollment")
	}
	if n, _ := s.CountDevices(ctx, mdmd.DeviceFilter{}); n != 1 {
		t.Fatalf("re-enrollment made %d devices", n)
	}
	must(t, s.UpdateAppleToken(ctx, dev.ID, mdmd.AppleTokenUpdate{Topic: "t", PushToken: "cc", PushMagic: "m"}))

	// CheckOut: token invalid, certificate revoked, commands canceled.
	c := &mdmd.Command{DeviceID: dev.ID, RequestType: "DeviceLock"}
	must(t, s.EnqueueCommand(ctx, c))
	must(t, s.EndAppleEnrollment(ctx, dev.ID, mdmd.EnrollmentUnenrolled))
	if got, _ := s.GetCommand(ctx, c.ID); got.Status != mdmd.CommandCanceled {
		t.Fatalf("command after check-out = %s", got.Status)
	}
	_, err = s.ResolveAppleIdentity(ctx, "fpB")
	wantCode(t, err, mdmd.EDeviceAuth)
	if targets, _ := s.ApplePushTargets(ctx, []string{dev.ID}); len(targets) != 0 {
		t.Fatal("a checked-out device is still a push target")
	}
	// Out of management, any link may enroll it, and the link decides the owner.
	got, err := auth("UDID-A", "fpMallory")
	must(t, err)
	if got.OwnerUser != "mallory@example.com" || got.EnrollmentState != mdmd.EnrollmentPending {
		t.Fatalf("device enrolled after check-out = %+v", got)
	}
}

func testRenewalChallenge(t *testing.T, s *storage.Store) {
	link := newLink(t, s, false, time.Hour)
	issue(t, s, "fpR", &link.ID, nil, nil)
	dev, err := s.BindAppleEnrollment(ctx, mdmd.AppleAuthenticate{UDID: "UDID-R", CertFingerprint: "fpR"})
	must(t, err)
	wantCode(t, s.CreateRenewalChallenge(ctx, dev.ID, "r0", time.Now().Add(time.Hour)), mdmd.EConflict) // no token yet
	must(t, s.UpdateAppleToken(ctx, dev.ID, mdmd.AppleTokenUpdate{Topic: "t", PushToken: "dd", PushMagic: "m"}))
	must(t, s.SetAppleBootstrapToken(ctx, dev.ID, []byte("keep")))
	ids, err := s.ExpiringAppleIdentities(ctx, time.Now().Add(2*time.Hour), 10)
	must(t, err)
	if len(ids) != 1 || ids[0] != dev.ID {
		t.Fatalf("expiring identities = %v", ids)
	}
	if ids, _ := s.ExpiringAppleIdentities(ctx, time.Now().Add(time.Minute), 10); len(ids) != 0 {
		t.Fatalf("identities expiring within a minute = %v", ids)
	}
	must(t, s.CreateRenewalChallenge(ctx, dev.ID, "r1", time.Now().Add(time.Hour)))
	if pending, _ := s.PendingRenewal(ctx, dev.ID); !pending {
		t.Fatal("renewal not pending")
	}
	if ids, _ := s.ExpiringAppleIdentities(ctx, time.Now().Add(2*time.Hour), 10); len(ids) != 0 {
		t.Fatal("a device with a renewal on its way is listed again")
	}
	cert, err := redeem(s, "r1")
	must(t, err)
	if cert.UDID == nil || *cert.UDID != "UDID-R" || cert.Renews == nil || *cert.Renews != "fpR" || cert.EnrollmentLinkID != nil {
		t.Fatalf("renewal certificate = %+v", cert)
	}
	// The device uses the new identity at once (no new Authenticate).
	e, err := s.ResolveAppleIdentity(ctx, cert.Fingerprint)
	must(t, err)
	if e.DeviceID != dev.ID || !e.TokenValid || string(e.BootstrapSealed) != "keep" {
		t.Fatalf("renewed enrollment = %+v", e)
	}
	// …or sends Authenticate with it: still the same enrollment.
	must(t, s.CreateRenewalChallenge(ctx, dev.ID, "r2", time.Now().Add(time.Hour)))
	cert2, err := redeem(s, "r2")
	must(t, err)
	_, err = s.BindAppleEnrollment(ctx, mdmd.AppleAuthenticate{UDID: "UDID-R", CertFingerprint: cert2.Fingerprint})
	must(t, err)
	e, _ = s.GetAppleEnrollment(ctx, dev.ID)
	if e.CertFingerprint != cert2.Fingerprint || !e.TokenValid || string(e.BootstrapSealed) != "keep" {
		t.Fatalf("enrollment after renewal Authenticate = %+v", e)
	}
	_, err = s.ResolveAppleIdentity(ctx, cert.Fingerprint)
	wantCode(t, err, mdmd.EDeviceAuth)
	// Another device cannot use a renewal challenge's certificate.
	_, err = s.BindAppleEnrollment(ctx, mdmd.AppleAuthenticate{UDID: "UDID-X", CertFingerprint: cert2.Fingerprint})
	wantCode(t, err, mdmd.EDeviceAuth)
}

func testPosture(t *testing.T, s *storage.Store) {
	d := iosDevice("POS1")
	must(t, s.CreateDevice(ctx, d))
	yes, no := true, false
	must(t, s.UpsertPosture(ctx, &mdmd.Posture{DeviceID: d.ID, OSVersion: "17.1", BuildVersion: "21B80", Supervised: &yes,
		Details: mdmd.RawJSON(`{"model":"iPhone15,2","capacity":128}`)}))
	must(t, s.UpsertPosture(ctx, &mdmd.Posture{DeviceID: d.ID, PasscodePresent: &no, Encrypted: &yes,
		Details: mdmd.RawJSON(`{"capacity":256,"caps":3}`)}))
	p, err := s.GetPosture(ctx, d.ID)
	must(t, err)
	var details map[string]any
	must(t, json.Unmarshal(p.Details, &details))
	if p.OSVersion != "17.1" || p.BuildVersion != "21B80" || p.Supervised == nil || !*p.Supervised || p.PasscodePresent == nil ||
		*p.PasscodePresent || p.Encrypted == nil || !*p.Encrypted || p.PasscodeCompliant != nil ||
		details["model"] != "iPhone15,2" || details["capacity"] != 256.0 || details["caps"] != 3.0 {
		t.Fatalf("merged posture = %+v details %s", p, p.Details)
	}
	if dev, _ := s.GetDevice(ctx, d.ID); dev.OSVersion != "17.1" {
		t.Fatalf("device OS version = %s", dev.OSVersion)
	}
	wantCode(t, s.UpsertPosture(ctx, &mdmd.Posture{DeviceID: d.ID, Details: mdmd.RawJSON(`{broken`)}), mdmd.EInvalid)
	wantCode(t, s.UpsertPosture(ctx, &mdmd.Posture{DeviceID: "missing", OSVersion: "1"}), mdmd.ENotFound)
	_, err = s.GetPosture(ctx, "missing")
	wantCode(t, err, mdmd.ENotFound)
}

func testPushes(t *testing.T, s *storage.Store) {
	link := newLink(t, s, false, time.Hour)
	issue(t, s, "fpP", &link.ID, nil, nil)
	dev, err := s.BindAppleEnrollment(ctx, mdmd.AppleAuthenticate{UDID: "UDID-P", CertFingerprint: "fpP"})
	must(t, err)
	must(t, s.UpdateAppleToken(ctx, dev.ID, mdmd.AppleTokenUpdate{Topic: "t", PushToken: "bb", PushMagic: "m"}))
	must(t, s.RecordPushes(ctx, []mdmd.PushRecord{{DeviceID: dev.ID, At: time.Now(), Status: 200, APNsID: "a1", Result: mdmd.PushSent}}))
	if e, _ := s.GetAppleEnrollment(ctx, dev.ID); !e.TokenValid || e.LastPushResult != mdmd.PushSent || e.LastPushAt == nil {
		t.Fatalf("after a sent push: %+v", e)
	}
	// A 410 for a token the device has since replaced changes nothing.
	must(t, s.RecordPushes(ctx, []mdmd.PushRecord{{DeviceID: dev.ID, Token: "old", At: time.Now(), Status: 410, Result: mdmd.PushUnregistered}}))
	if e, _ := s.GetAppleEnrollment(ctx, dev.ID); !e.TokenValid {
		t.Fatal("a 410 for an old token invalidated the current one")
	}
	must(t, s.RecordPushes(ctx, []mdmd.PushRecord{{DeviceID: dev.ID, Token: "bb", At: time.Now().Add(time.Second), Status: 410, Reason: "Unregistered", Result: mdmd.PushUnregistered}}))
	if e, _ := s.GetAppleEnrollment(ctx, dev.ID); e.TokenValid || e.LastPushResult != mdmd.PushUnregistered {
		t.Fatalf("after 410: %+v", e)
	}
	recs, err := s.ListPushes(ctx, dev.ID, 10)
	must(t, err)
	if len(recs) != 3 || recs[0].Status != 410 || recs[2].APNsID != "a1" {
		t.Fatalf("push log = %+v", recs)
	}
	if err := s.RecordPushes(ctx, []mdmd.PushRecord{{DeviceID: dev.ID, Result: "maybe"}}); err == nil {
		t.Fatal("an unknown push result was stored")
	}
}

func testBulkCommands(t *testing.T, s *storage.Store) {
	var cmds []*mdmd.Command
	for i := 0; i < 3; i++ {
		d := iosDevice(fmt.Sprint("BULK", i))
		must(t, s.CreateDevice(ctx, d))
		cmds = append(cmds, &mdmd.Command{DeviceID: d.ID, RequestType: "DeviceInformation"})
	}
	must(t, s.EnqueueCommands(ctx, cmds))
	for _, c := range cmds {
		if got, err := s.GetCommand(ctx, c.ID); err != nil || got.Status != mdmd.CommandQueued {
			t.Fatalf("bulk command %s: %v %+v", c.ID, err, got)
		}
	}
	bad := []*mdmd.Command{{DeviceID: cmds[0].DeviceID, RequestType: "A"}, {DeviceID: "missing", RequestType: "B"}}
	wantCode(t, s.EnqueueCommands(ctx, bad), mdmd.ENotFound)
	if list, _, _ := s.ListCommands(ctx, mdmd.CommandFilter{DeviceID: cmds[0].DeviceID}); len(list) != 1 {
		t.Fatalf("a failed batch queued %d commands", len(list)-1)
	}
}

func testProfiles(t *testing.T, s *storage.Store) {
	p := &mdmd.Profile{Name: "Passcode", Identifier: "io.test.passcode", Kind: mdmd.ProfilePasscode, Payload: []byte("<plist/>"),
		Settings: json.RawMessage(`{"min_length":6}`)}
	must(t, s.CreateProfile(ctx, p))
	wantCode(t, s.CreateProfile(ctx, &mdmd.Profile{Name: "dup", Identifier: "io.test.passcode", Kind: mdmd.ProfileCustom, Payload: []byte("x")}), mdmd.EConflict)
	wantCode(t, s.CreateProfile(ctx, &mdmd.Profile{Name: "x", Identifier: "x", Kind: "firewall", Payload: []byte("x")}), mdmd.EInvalid)
	p.Payload, p.Name = []byte("<plist>v2</plist>"), "Passcode v2"
	must(t, s.UpdateProfile(ctx, p))
	if p.Version != 2 || p.Name != "Passcode v2" {
		t.Fatalf("updated profile = %+v", p)
	}
	changed := *p
	changed.Identifier = "io.test.other"
	wantCode(t, s.UpdateProfile(ctx, &changed), mdmd.EInvalid)

	d1, d2, d3 := iosDevice("PR1"), iosDevice("PR2"), iosDevice("PR3")
	for _, d := range []*mdmd.Device{d1, d2, d3} {
		must(t, s.CreateDevice(ctx, d))
	}
	g := &mdmd.Group{Name: "profiled"}
	must(t, s.CreateGroup(ctx, g))
	must(t, s.AddGroupMembers(ctx, g.ID, []string{d2.ID}))
	must(t, s.AssignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: p.ID, TargetType: mdmd.TargetDevice, TargetID: d1.ID}))
	must(t, s.AssignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: p.ID, TargetType: mdmd.TargetDevice, TargetID: d1.ID}))
	must(t, s.AssignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: p.ID, TargetType: mdmd.TargetGroup, TargetID: g.ID}))
	wantCode(t, s.AssignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: p.ID, TargetType: "user", TargetID: "x"}), mdmd.EInvalid)
	wantCode(t, s.AssignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: p.ID, TargetType: mdmd.TargetGroup, TargetID: "missing"}), mdmd.ENotFound)
	wantCode(t, s.AssignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: "missing", TargetType: mdmd.TargetDevice, TargetID: d1.ID}), mdmd.ENotFound)
	as, _ := s.ListAssignments(ctx, p.ID)
	if len(as) != 2 {
		t.Fatalf("assignments = %+v", as)
	}
	for _, tc := range []struct {
		dev  string
		want int
	}{{d1.ID, 1}, {d2.ID, 1}, {d3.ID, 0}} {
		got, err := s.DesiredProfiles(ctx, tc.dev)
		must(t, err)
		if len(got) != tc.want {
			t.Fatalf("desired for %s = %d, want %d", tc.dev, len(got), tc.want)
		}
	}
	// d3 has it installed from an earlier assignment.
	pid := p.ID
	must(t, s.PutDeviceProfile(ctx, &mdmd.DeviceProfile{DeviceID: d3.ID, Identifier: p.Identifier, ProfileID: &pid, Version: 1,
		State: mdmd.ProfileInstalling, CommandID: "cmd-1"}))
	ids, err := s.DevicesForProfile(ctx, p.ID)
	must(t, err)
	if len(ids) != 3 {
		t.Fatalf("devices for profile = %v", ids)
	}
	dp, err := s.DeviceProfileByCommand(ctx, "cmd-1")
	must(t, err)
	dp.State = mdmd.ProfileInstalled
	must(t, s.PutDeviceProfile(ctx, dp))
	if got, _ := s.DeviceProfiles(ctx, d3.ID); len(got) != 1 || got[0].State != mdmd.ProfileInstalled {
		t.Fatalf("device profiles = %+v", got)
	}
	_, err = s.DeviceProfileByCommand(ctx, "nope")
	wantCode(t, err, mdmd.ENotFound)

	must(t, s.UnassignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: p.ID, TargetType: mdmd.TargetDevice, TargetID: d1.ID}))
	wantCode(t, s.UnassignProfile(ctx, &mdmd.ProfileAssignment{ProfileID: p.ID, TargetType: mdmd.TargetDevice, TargetID: d1.ID}), mdmd.ENotFound)
	// Deleting the group drops its assignment.
	must(t, s.DeleteGroup(ctx, g.ID))
	if as, _ := s.ListAssignments(ctx, p.ID); len(as) != 0 {
		t.Fatalf("assignments after group deletion = %+v", as)
	}
	// Deleting the profile keeps what devices have, without a profile.
	must(t, s.DeleteProfile(ctx, p.ID))
	wantCode(t, s.DeleteProfile(ctx, p.ID), mdmd.ENotFound)
	got, _ := s.DeviceProfiles(ctx, d3.ID)
	if len(got) != 1 || got[0].ProfileID != nil {
		t.Fatalf("device profile after deletion = %+v", got)
	}
	must(t, s.DeleteDeviceProfile(ctx, d3.ID, got[0].Identifier))
	if got, _ := s.DeviceProfiles(ctx, d3.ID); len(got) != 0 {
		t.Fatal("device profile not deleted")
	}
}
