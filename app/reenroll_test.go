package app

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/micromdm/plist"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/enroll"
)

// TestIdentityTakeoverAndRetire: a UDID is not a secret, so an enrollment
// link cannot take over a managed device; an admin retires a device that
// is gone, and then it may enroll again.
func TestIdentityTakeoverAndRetire(t *testing.T) {
	env := newAppleEnv(t, backends(t)[0].URL)
	ctx := context.Background()
	owned, _ := env.link(t, map[string]any{"one_time": true, "owner_user": "ana@example.com"})
	victim, dev := env.enroll(t, owned, "00008110-0000000000C20001", applesim.DefaultPosture)

	anyone, _ := env.link(t, map[string]any{"one_time": false})
	attacker := applesim.New(victim.UDID, "FAKE", applesim.DefaultPosture)
	if err := attacker.Enroll(ctx, anyone, env.trust); err == nil {
		t.Fatal("an enrollment link took over a managed device")
	}
	if d, _ := env.srv.Store().GetDevice(ctx, dev.ID); d.OwnerUser != "ana@example.com" || d.EnrollmentState != mdmd.EnrollmentEnrolled {
		t.Fatalf("device after the refused takeover = %+v", d)
	}
	if _, err := victim.Connect(ctx); err != nil {
		t.Fatalf("the real device lost its enrollment: %v", err)
	}

	// The phone is lost; an admin retires it. Its identity stops working.
	env.mustDo(400, "POST", "/api/v1/devices/"+dev.ID+"/actions/retire", env.Token, map[string]any{})
	env.mustDo(204, "POST", "/api/v1/devices/"+dev.ID+"/actions/retire", env.Token, map[string]any{"reason": "lost on a train"})
	if _, err := victim.Connect(ctx); err == nil {
		t.Fatal("a retired identity still works")
	}
	// Found and reset, it enrolls again through any link.
	again := applesim.New(victim.UDID, victim.Serial, applesim.DefaultPosture)
	if err := again.Enroll(ctx, anyone, env.trust); err != nil {
		t.Fatalf("re-enrollment after retire: %v", err)
	}
	if d, _ := env.srv.Store().GetDevice(ctx, dev.ID); d.EnrollmentState != mdmd.EnrollmentEnrolled || d.OwnerUser != "" {
		t.Fatalf("device after re-enrollment = %+v", d)
	}
}

// TestReenrollmentReinstallsProfiles: after a selective wipe and a new
// enrollment, the device gets its assigned profiles again.
func TestReenrollmentReinstallsProfiles(t *testing.T) {
	env := newAppleEnv(t, backends(t)[0].URL)
	ctx := context.Background()
	url, _ := env.link(t, map[string]any{"one_time": false, "owner_user": "bo@example.com"})
	sim, dev := env.enroll(t, url, "00008110-0000000000C30001", applesim.DefaultPosture)
	var p mdmd.Profile
	env.mustDo(201, "POST", "/api/v1/profiles", env.Token, map[string]any{"name": "Passcode", "kind": "passcode", "settings": map[string]any{}}).json(t, &p)
	env.mustDo(201, "POST", "/api/v1/profiles/"+p.ID+"/assignments", env.Token, map[string]string{"target_type": "device", "target_id": dev.ID})
	has := func(s *applesim.Device) bool { return slices.Contains(s.State().Profiles, p.Identifier) }
	eventually(t, 15*time.Second, "installed", func() bool { return has(sim) })

	env.action(t, env.Token, dev.ID, "wipe", map[string]any{"mode": "selective", "reason": "re-issue", "confirm": sim.Serial})
	eventually(t, 10*time.Second, "checked out", func() bool {
		d, _ := env.srv.Store().GetDevice(ctx, dev.ID)
		return d.EnrollmentState == mdmd.EnrollmentUnenrolled
	})
	if dps, _ := env.srv.Store().DeviceProfiles(ctx, dev.ID); len(dps) != 0 {
		t.Fatalf("profiles remembered after check-out: %+v", dps)
	}
	// The wiped phone is gone: a push still on its way to its old token
	// must not make it connect with its revoked identity.
	env.mu.Lock()
	delete(env.devices, sim.PushToken())
	env.mu.Unlock()
	sim2 := applesim.New(sim.UDID, sim.Serial, applesim.DefaultPosture)
	if err := sim2.Enroll(ctx, url, env.trust); err != nil {
		t.Fatal(err)
	}
	env.mu.Lock()
	env.devices[sim2.PushToken()] = sim2
	env.mu.Unlock()
	// A device connects right after enrolling (a push may have come before
	// the test registered it).
	eventually(t, 30*time.Second, "reinstalled after re-enrollment", func() bool {
		sim2.Connect(ctx)
		return has(sim2)
	})
}

// TestIdentityRenewal renews a device's identity the way iOS expects (a new
// copy of the enrollment profile, with a challenge bound to the device).
func TestIdentityRenewal(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			env := newAppleEnv(t, b.URL)
			ctx := context.Background()
			url, _ := env.link(t, map[string]any{"one_time": true})
			sim, dev := env.enroll(t, url, "00008110-0000000000C40001", applesim.DefaultPosture)
			if _, _, err := sim.CheckIn(ctx, map[string]any{"MessageType": "SetBootstrapToken", "UDID": sim.UDID, "BootstrapToken": []byte("bt")}); err != nil {
				t.Fatal(err)
			}
			old, oldKey := sim.Cert(), sim.Key()
			cmds := env.action(t, env.Token, dev.ID, "renew-identity", map[string]any{})
			if cmds[0].RequestType != "InstallProfile" || cmds[0].Status != mdmd.CommandAcknowledged {
				t.Fatalf("renewal command = %+v", cmds[0])
			}
			if sim.Cert().Equal(old) {
				t.Fatal("the device kept its old identity")
			}
			e, _ := env.srv.Store().GetAppleEnrollment(ctx, dev.ID)
			if e.CertFingerprint != apple.CertFingerprint(sim.Cert()) || !e.TokenValid || len(e.BootstrapSealed) == 0 {
				t.Fatalf("enrollment after renewal = %+v", e)
			}
			body := mustPlist(t, map[string]any{"UDID": sim.UDID, "Status": "Idle"})
			if status, _ := rawDeviceRequest(t, sim.ServerURL(), "application/x-apple-aspen-mdm", body, signWith(t, old, oldKey, body)); status != 403 {
				t.Fatalf("the replaced identity answered %d", status)
			}
			if n, err := sim.Connect(ctx); err != nil || n != 0 {
				t.Fatalf("connect with the renewed identity: %d, %v", n, err)
			}
			// The periodic sweep renews identities close to expiry.
			current := apple.CertFingerprint(sim.Cert())
			if _, err := env.srv.Store().DB().Exec("UPDATE device_certs SET not_after = $1 WHERE fingerprint = $2",
				time.Now().Add(10*24*time.Hour).UTC(), current); err != nil {
				t.Fatal(err)
			}
			sweep := func() {
				if _, err := env.srv.Store().EnqueueJob(ctx, &mdmd.Job{Kind: enroll.RenewJob}); err != nil {
					t.Fatal(err)
				}
			}
			sweep()
			eventually(t, 15*time.Second, "the sweep's renewal", func() bool {
				e, _ := env.srv.Store().GetAppleEnrollment(ctx, dev.ID)
				return e.CertFingerprint != current && e.CertFingerprint == apple.CertFingerprint(sim.Cert())
			})
			// A renewed identity is not renewed again.
			sweep()
			time.Sleep(300 * time.Millisecond)
			list, _, _ := env.srv.Store().ListCommands(ctx, mdmd.CommandFilter{DeviceID: dev.ID, Limit: 100})
			installs := 0
			for _, c := range list {
				if c.RequestType == "InstallProfile" {
					installs++
				}
			}
			if installs != 2 {
				t.Fatalf("%d identity renewals, want 2", installs)
			}
		})
	}
}

// TestCanceledProfileInstallIsRetried: an install whose command an admin
// canceled does not stay "installing" forever.
func TestCanceledProfileInstallIsRetried(t *testing.T) {
	env := newAppleEnv(t, backends(t)[0].URL)
	ctx := context.Background()
	url, _ := env.link(t, map[string]any{"one_time": true})
	sim, dev := env.enroll(t, url, "00008110-0000000000C50001", applesim.DefaultPosture)
	sim.NotNowFor("InstallProfile", 1000)
	var p mdmd.Profile
	env.mustDo(201, "POST", "/api/v1/profiles", env.Token, map[string]any{"name": "Passcode", "kind": "passcode", "settings": map[string]any{}}).json(t, &p)
	env.mustDo(201, "POST", "/api/v1/profiles/"+p.ID+"/assignments", env.Token, map[string]string{"target_type": "device", "target_id": dev.ID})
	var install mdmd.Command
	eventually(t, 15*time.Second, "the install deferred by the device", func() bool {
		list, _, _ := env.srv.Store().ListCommands(ctx, mdmd.CommandFilter{DeviceID: dev.ID, Status: mdmd.CommandNotNow})
		for _, c := range list {
			if c.RequestType == "InstallProfile" {
				install = c
				return true
			}
		}
		return false
	})
	env.mustDo(200, "POST", "/api/v1/commands/"+install.ID+"/cancel", env.Token, nil)
	sim.NotNowFor("InstallProfile", 0)
	var sync struct {
		Commands []mdmd.Command `json:"commands"`
	}
	env.mustDo(202, "POST", "/api/v1/devices/"+dev.ID+"/actions/sync-profiles", env.Token, map[string]any{}).json(t, &sync)
	// The sync queues the install again, unless a background
	// reconciliation got there first: either way it is installed.
	env.waitFinal(t, sync.Commands)
	t.Cleanup(func() {
		if t.Failed() {
			dps, _ := env.srv.Store().DeviceProfiles(ctx, dev.ID)
			list, _, _ := env.srv.Store().ListCommands(ctx, mdmd.CommandFilter{DeviceID: dev.ID})
			t.Logf("at the failure: sync queued %d, device profiles %+v", len(sync.Commands), dps)
			for _, c := range list {
				t.Logf("command %s %s %s", c.ID, c.RequestType, c.Status)
			}
		}
	})
	eventually(t, 15*time.Second, "the profile installed after the retry", func() bool {
		return slices.Contains(sim.State().Profiles, p.Identifier)
	})
	eventually(t, 15*time.Second, "the install recorded", func() bool {
		dps, _ := env.srv.Store().DeviceProfiles(ctx, dev.ID)
		return len(dps) == 1 && dps[0].State == mdmd.ProfileInstalled
	})
	dps, _ := env.srv.Store().DeviceProfiles(ctx, dev.ID)
	if len(dps) != 1 || dps[0].State != mdmd.ProfileInstalled || dps[0].Version != 1 {
		t.Fatalf("device profiles = %+v", dps)
	}
}

// A device that answers NotNow to a command an admin cancelled while the
// device held it is not refused: nothing is deferred and it moves on (a
// 4xx would make a real device retry or give up its connection).
func TestNotNowForCancelledCommand(t *testing.T) {
	env := newAppleEnv(t, backends(t)[0].URL)
	ctx := context.Background()
	url, _ := env.link(t, map[string]any{"one_time": true})
	sim, dev := env.enroll(t, url, "00008110-0000000000C50002", applesim.DefaultPosture)
	// The device fetches a command, the admin cancels it, the device
	// answers NotNow.
	query := env.mustDo(202, "POST", "/api/v1/devices/"+dev.ID+"/actions/query", env.Token, map[string]any{"push": false, "queries": []string{"device_information"}})
	var out struct{ Commands []mdmd.Command }
	query.json(t, &out)
	idle, _ := plist.Marshal(map[string]any{"UDID": sim.UDID, "Status": "Idle"})
	status, raw, err := sim.Do(ctx, sim.ServerURL(), "application/x-apple-aspen-mdm", idle)
	if err != nil || status != 200 || !strings.Contains(string(raw), out.Commands[0].ID) {
		t.Fatalf("Idle: %d %v %s", status, err, raw)
	}
	env.mustDo(200, "POST", "/api/v1/commands/"+out.Commands[0].ID+"/cancel", env.Token, nil)
	notNow, _ := plist.Marshal(map[string]any{"UDID": sim.UDID, "Status": "NotNow", "CommandUUID": out.Commands[0].ID})
	status, raw, err = sim.Do(ctx, sim.ServerURL(), "application/x-apple-aspen-mdm", notNow)
	if err != nil || status != 200 {
		t.Fatalf("NotNow for a cancelled command: %d %v %s", status, err, raw)
	}
	if c, err := env.srv.Store().GetCommand(ctx, out.Commands[0].ID); err != nil || c.Status != mdmd.CommandCanceled {
		t.Fatalf("the cancelled command became %+v (%v)", c, err)
	}
}
