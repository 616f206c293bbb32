package storagetest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

func consoleTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"ConsoleSessions", testConsoleSessions},
		{"ConsoleLockout", testConsoleLockout},
		{"ConsoleTOTP", testConsoleTOTP},
		{"ConsoleDeviceList", testConsoleDeviceList},
		{"ConsoleDashboard", testConsoleDashboard},
	}
}

func sessionHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func consoleUser(t *testing.T, s *storage.Store, name string) *mdmd.AdminUser {
	t.Helper()
	u := &mdmd.AdminUser{Username: name, PasswordHash: "$argon2id$x", Role: mdmd.RoleAdmin}
	must(t, s.CreateAdminUser(ctx, u))
	return u
}

func testConsoleSessions(t *testing.T, s *storage.Store) {
	u := consoleUser(t, s, "ana")
	h := sessionHash("session-1")
	wantCode(t, s.CreateConsoleSession(ctx, &mdmd.ConsoleSession{IDHash: "short", UserID: u.ID, CSRFToken: "c",
		ExpiresAt: time.Now().Add(time.Hour)}), mdmd.EInvalid)
	must(t, s.CreateConsoleSession(ctx, &mdmd.ConsoleSession{IDHash: h, UserID: u.ID, CSRFToken: "csrf",
		ExpiresAt: time.Now().Add(12 * time.Hour)}))
	got, err := s.GetConsoleSession(ctx, h)
	must(t, err)
	if got.UserID != u.ID || got.CSRFToken != "csrf" || got.MFADone {
		t.Fatalf("session = %+v", got)
	}
	must(t, s.CompleteConsoleMFA(ctx, h))
	wantCode(t, s.CompleteConsoleMFA(ctx, sessionHash("other")), mdmd.ENotFound)
	got, err = s.GetConsoleSession(ctx, h)
	must(t, err)
	// Touching within a minute writes nothing; later it moves last_seen_at.
	must(t, s.TouchConsoleSession(ctx, h, got.LastSeenAt.Add(30*time.Second)))
	again, _ := s.GetConsoleSession(ctx, h)
	if !again.MFADone || !again.LastSeenAt.Equal(got.LastSeenAt) {
		t.Fatalf("after touch within a minute: %+v", again)
	}
	later := got.LastSeenAt.Add(5 * time.Minute)
	must(t, s.TouchConsoleSession(ctx, h, later))
	again, _ = s.GetConsoleSession(ctx, h)
	if !again.LastSeenAt.Equal(later) {
		t.Fatalf("last seen = %v, want %v", again.LastSeenAt, later)
	}
	// An idle session is pruned; the active one stays until it idles.
	idle := sessionHash("session-2")
	must(t, s.CreateConsoleSession(ctx, &mdmd.ConsoleSession{IDHash: idle, UserID: u.ID, CSRFToken: "c2",
		ExpiresAt: time.Now().Add(time.Hour)}))
	n, err := s.PruneConsoleSessions(ctx, later.Add(-time.Second))
	must(t, err)
	if n != 1 {
		t.Fatalf("pruned %d, want 1", n)
	}
	_, err = s.GetConsoleSession(ctx, idle)
	wantCode(t, err, mdmd.ENotFound)
	must(t, s.DeleteConsoleSession(ctx, h))
	must(t, s.DeleteConsoleSession(ctx, h))
	_, err = s.GetConsoleSession(ctx, h)
	wantCode(t, err, mdmd.ENotFound)
}

func testConsoleLockout(t *testing.T, s *storage.Store) {
	u := consoleUser(t, s, "ben")
	for i := 1; i <= 4; i++ {
		got, err := s.RecordLoginFailure(ctx, u.ID, 5, 15*time.Minute)
		must(t, err)
		if got.FailedLogins != i || got.LockedUntil != nil {
			t.Fatalf("after %d failures: %+v", i, got)
		}
	}
	got, err := s.RecordLoginFailure(ctx, u.ID, 5, 15*time.Minute)
	must(t, err)
	if got.LockedUntil == nil || got.LockedUntil.Before(time.Now().Add(14*time.Minute)) || got.FailedLogins != 0 {
		t.Fatalf("after 5 failures: %+v", got)
	}
	stored, _ := s.GetAdminUser(ctx, u.ID)
	if stored.LockedUntil == nil {
		t.Fatal("lock not stored")
	}
	must(t, s.RecordLoginSuccess(ctx, u.ID))
	stored, _ = s.GetAdminUser(ctx, u.ID)
	if stored.LockedUntil != nil || stored.FailedLogins != 0 || stored.LastLoginAt == nil {
		t.Fatalf("after success: %+v", stored)
	}
}

func testConsoleTOTP(t *testing.T, s *storage.Store) {
	u := consoleUser(t, s, "cy")
	_, err := s.GetAdminTOTP(ctx, u.ID)
	wantCode(t, err, mdmd.ENotFound)
	must(t, s.PutPendingTOTP(ctx, u.ID, []byte("sealed-1")))
	must(t, s.PutPendingTOTP(ctx, u.ID, []byte("sealed-2"))) // replaces the unconfirmed one
	f, err := s.GetAdminTOTP(ctx, u.ID)
	must(t, err)
	if string(f.SecretSealed) != "sealed-2" || f.ConfirmedAt != nil {
		t.Fatalf("factor = %+v", f)
	}
	// A sign-in code is refused before enrollment is confirmed.
	if ok, err := s.UseTOTPStep(ctx, u.ID, 100, false); err != nil || ok {
		t.Fatalf("unconfirmed sign-in step = %v, %v", ok, err)
	}
	if ok, err := s.UseTOTPStep(ctx, u.ID, 100, true); err != nil || !ok {
		t.Fatalf("confirm = %v, %v", ok, err)
	}
	wantCode(t, s.PutPendingTOTP(ctx, u.ID, []byte("sealed-3")), mdmd.EConflict)
	// Each step is accepted once; an older step never again.
	for _, tc := range []struct {
		step int64
		want bool
	}{{100, false}, {99, false}, {101, true}, {101, false}, {103, true}, {102, false}} {
		ok, err := s.UseTOTPStep(ctx, u.ID, tc.step, false)
		must(t, err)
		if ok != tc.want {
			t.Fatalf("step %d accepted = %v, want %v", tc.step, ok, tc.want)
		}
	}
	must(t, s.DeleteAdminTOTP(ctx, u.ID))
	_, err = s.GetAdminTOTP(ctx, u.ID)
	wantCode(t, err, mdmd.ENotFound)
}

func testConsoleDeviceList(t *testing.T, s *storage.Store) {
	var ids []string
	for i := 0; i < 7; i++ {
		var d *mdmd.Device
		if i%2 == 0 {
			d = iosDevice(fmt.Sprintf("cl-%d", i))
		} else {
			d = androidDevice(fmt.Sprintf("cl-%d", i))
		}
		d.Name = fmt.Sprintf("dev %c", 'g'-i) // names sort in reverse of creation
		must(t, s.CreateDevice(ctx, d))
		ids = append(ids, d.ID)
	}
	for i, state := range map[int]string{0: "compliant", 1: "noncompliant", 2: "noncompliant", 3: "not_evaluated"} {
		_, _, err := s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: ids[i], State: state, Rules: mdmd.RawJSON(`[]`),
			EvaluatedAt: time.Now()}, "test")
		must(t, err)
	}
	list := func(f mdmd.ConsoleDeviceFilter) []string {
		t.Helper()
		var out []string
		for pages := 0; ; pages++ {
			devs, next, err := s.ConsoleListDevices(ctx, f)
			must(t, err)
			for _, d := range devs {
				out = append(out, d.ID)
				if d.ComplianceState == "" {
					t.Fatalf("device %s has no compliance state", d.ID)
				}
			}
			if next == "" {
				return out
			}
			if pages > 20 {
				t.Fatal("paging does not end")
			}
			f.After = next
		}
	}
	eq := func(what string, got, want []string) {
		t.Helper()
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s = %v, want %v", what, got, want)
		}
	}
	eq("all by id", list(mdmd.ConsoleDeviceFilter{DeviceFilter: mdmd.DeviceFilter{Limit: 2}}), ids)
	eq("noncompliant", list(mdmd.ConsoleDeviceFilter{ComplianceState: "noncompliant", DeviceFilter: mdmd.DeviceFilter{Limit: 1}}),
		[]string{ids[1], ids[2]})
	eq("not evaluated (stored or never)", list(mdmd.ConsoleDeviceFilter{ComplianceState: mdmd.NotEvaluated}),
		[]string{ids[3], ids[4], ids[5], ids[6]})
	eq("noncompliant android", list(mdmd.ConsoleDeviceFilter{ComplianceState: "noncompliant",
		DeviceFilter: mdmd.DeviceFilter{Platform: mdmd.PlatformAndroid}}), []string{ids[1]})
	rev := []string{ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}
	eq("by name", list(mdmd.ConsoleDeviceFilter{Sort: mdmd.SortName, DeviceFilter: mdmd.DeviceFilter{Limit: 3}}), rev)
	eq("newest", list(mdmd.ConsoleDeviceFilter{Sort: mdmd.SortNewest, DeviceFilter: mdmd.DeviceFilter{Limit: 3}}), rev)
	n, err := s.ConsoleCountDevices(ctx, mdmd.ConsoleDeviceFilter{ComplianceState: "noncompliant"})
	must(t, err)
	if n != 2 {
		t.Fatalf("count = %d", n)
	}
	_, _, err = s.ConsoleListDevices(ctx, mdmd.ConsoleDeviceFilter{ComplianceState: "bogus"})
	wantCode(t, err, mdmd.EInvalid)
	_, _, err = s.ConsoleListDevices(ctx, mdmd.ConsoleDeviceFilter{Sort: "name", DeviceFilter: mdmd.DeviceFilter{After: "!!"}})
	wantCode(t, err, mdmd.EInvalid)
}

func testConsoleDashboard(t *testing.T, s *storage.Store) {
	a, b := iosDevice("db-1"), androidDevice("db-2")
	must(t, s.CreateDevice(ctx, a))
	must(t, s.CreateDevice(ctx, b))
	_, err := s.MarkDevicesSeen(ctx, []string{a.ID}, time.Now())
	must(t, err)
	_, _, err = s.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: a.ID, State: "noncompliant", Reason: "os too old",
		Rules: mdmd.RawJSON(`[]`), EvaluatedAt: time.Now()}, "test")
	must(t, err)
	must(t, s.AppendAudit(ctx, &mdmd.AuditEvent{ActorType: mdmd.ActorAdmin, Actor: "ana", Action: "device.lock",
		TargetType: "device", TargetID: a.ID, Outcome: mdmd.OutcomeSuccess}))
	d, err := s.ConsoleDashboard(ctx, 5)
	must(t, err)
	if fmt.Sprint(d.ByPlatform) != "[{android 1} {ios 1}]" || fmt.Sprint(d.ByCompliance) != "[{noncompliant 1} {not_evaluated 1}]" {
		t.Fatalf("dashboard counts = %v %v", d.ByPlatform, d.ByCompliance)
	}
	if d.StaleCount != 1 || len(d.Stale) != 1 || d.Stale[0].ID != b.ID || len(d.Recent) != 1 {
		t.Fatalf("dashboard = %+v", d)
	}
	tl, err := s.DeviceTimeline(ctx, a.ID, 10)
	must(t, err)
	kinds := map[string]bool{}
	for _, e := range tl {
		kinds[e.Kind] = true
	}
	if !kinds["audit"] || !kinds["compliance"] {
		t.Fatalf("timeline = %+v", tl)
	}
}
