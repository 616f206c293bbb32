package app

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android/fakeamapi"
)

func (env *androidEnv) waitCommand(t *testing.T, id string) mdmd.Command {
	t.Helper()
	var c *mdmd.Command
	eventually(t, 40*time.Second, "command "+id+" to finish", func() bool {
		c, _ = env.srv.Store().GetCommand(context.Background(), id)
		return c != nil && c.Status.Final()
	})
	return *c
}

func (env *androidEnv) act(t *testing.T, status int, deviceID, action string, body map[string]any) *mdmd.Command {
	t.Helper()
	r := env.mustDo(status, "POST", "/api/v1/devices/"+deviceID+"/actions/"+action, env.Token, body)
	if status != 202 {
		return nil
	}
	var out struct {
		Commands []mdmd.Command `json:"commands"`
	}
	r.json(t, &out)
	return &out.Commands[0]
}

func TestAndroidCommandsAndWipes(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			env := newAndroidEnv(t, b.URL)
			ctx := context.Background()
			byod := env.token(t, map[string]any{"kind": "work_profile", "owner_user": "eve@example.com"})
			personalName, personal := env.enroll(t, byod.Value, fakeamapi.HealthyPosture)
			corp := env.token(t, map[string]any{"kind": "fully_managed"})
			corpName, company := env.enroll(t, corp.Value, fakeamapi.HealthyPosture)

			// Lock: issued with a long duration, acknowledged through the
			// COMMAND notification.
			lock := env.act(t, 202, personal.ID, "lock", map[string]any{})
			if got := env.waitCommand(t, lock.ID); got.Status != mdmd.CommandAcknowledged || got.ExternalID == nil {
				t.Fatalf("lock = %+v", got)
			}
			var lockOp string
			for _, op := range env.amapi.Operations() {
				if strings.HasPrefix(op.Name, personalName+"/operations/") && strings.Contains(string(op.Metadata), `"LOCK"`) {
					lockOp = string(op.Metadata)
				}
			}
			if !strings.Contains(lockOp, `"duration":"604800s"`) {
				t.Fatalf("lock not issued for a week: %s", lockOp)
			}

			// Reset password (sealed at rest) and clear passcode.
			rp := env.act(t, 202, personal.ID, "reset-password", map[string]any{"new_password": "8675309!", "flags": []string{"REQUIRE_ENTRY", "LOCK_NOW"}})
			if got := env.waitCommand(t, rp.ID); got.Status != mdmd.CommandAcknowledged {
				t.Fatalf("reset password = %+v", got)
			}
			if dump := dumpTables(t, env.srv.Store().DB(), "commands", "jobs"); strings.Contains(string(dump), "8675309") {
				t.Fatal("the new password is readable in the database")
			}
			env.act(t, 400, personal.ID, "reset-password", map[string]any{"new_password": "12"})
			env.act(t, 400, personal.ID, "reset-password", map[string]any{"flags": []string{"WIPE_EVERYTHING"}})
			cp := env.act(t, 202, personal.ID, "clear-passcode", map[string]any{})
			if got := env.waitCommand(t, cp.ID); got.RequestType != "RESET_PASSWORD" || got.Status != mdmd.CommandAcknowledged {
				t.Fatalf("clear passcode = %+v", got)
			}

			// Management-mode rules, refused before anything is sent.
			env.act(t, 409, personal.ID, "reboot", map[string]any{})
			env.act(t, 409, personal.ID, "lost-mode", map[string]any{"enable": true, "message": "lost"})
			env.act(t, 409, company.ID, "relinquish", map[string]any{"reason": "leaving"})
			reboot := env.act(t, 202, company.ID, "reboot", map[string]any{})
			lost := env.act(t, 202, company.ID, "lost-mode", map[string]any{"enable": true, "message": "Please call IT", "phone_number": "+1 555 0100"})
			env.act(t, 400, company.ID, "lost-mode", map[string]any{"enable": true})
			for _, c := range []*mdmd.Command{reboot, lost} {
				if got := env.waitCommand(t, c.ID); got.Status != mdmd.CommandAcknowledged {
					t.Fatalf("%s = %+v", c.RequestType, got)
				}
			}
			stop := env.act(t, 202, company.ID, "lost-mode", map[string]any{"enable": false})
			env.waitCommand(t, stop.ID)

			// A company-owned device with a work profile can be given up.
			cope := fakeamapi.HealthyPosture
			cope.CompanyOwned = true
			_, copeDev := env.enroll(t, env.token(t, map[string]any{"kind": "work_profile"}).Value, cope)
			env.act(t, 400, copeDev.ID, "relinquish", map[string]any{})
			// Deleting a company device resets it: no "selective" for it.
			env.act(t, 409, copeDev.ID, "wipe", map[string]any{"mode": "selective", "reason": "x", "confirm": copeDev.Name})
			rel := env.act(t, 202, copeDev.ID, "relinquish", map[string]any{"reason": "device sold to the employee"})
			if got := env.waitCommand(t, rel.ID); got.Status != mdmd.CommandAcknowledged {
				t.Fatalf("relinquish = %+v", got)
			}
			// AMAPI's error codes come back on the command.
			env.amapi.FailCommands("API_LEVEL")
			failing := env.act(t, 202, company.ID, "lock", map[string]any{})
			if got := env.waitCommand(t, failing.ID); got.Status != mdmd.CommandError || !strings.Contains(got.Error, "API_LEVEL") {
				t.Fatalf("failed command = %+v", got)
			}
			env.amapi.FailCommands("")

			// Wipes: the wrong kind for the device is refused.
			env.act(t, 409, personal.ID, "wipe", map[string]any{"mode": "full", "reason": "x", "confirm": personal.Name})
			env.act(t, 409, company.ID, "wipe", map[string]any{"mode": "selective", "reason": "x", "confirm": company.Name})
			// Selective wipe of the personal device: the work profile goes,
			// with the reason shown to the user.
			sw := env.act(t, 202, personal.ID, "wipe", map[string]any{"mode": "selective", "reason": "You left Acme: your work profile is removed.", "confirm": personal.Name})
			if got := env.waitCommand(t, sw.ID); got.Status != mdmd.CommandAcknowledged {
				t.Fatalf("selective wipe = %+v", got)
			}
			del, ok := env.amapi.Deleted(personalName)
			if !ok || del.WipeReasonMessage != "You left Acme: your work profile is removed." || len(del.WipeDataFlags) != 0 {
				t.Fatalf("selective wipe call = %+v, %v", del, ok)
			}
			eventually(t, 10*time.Second, "unenrolled", func() bool {
				d, _ := env.srv.Store().GetDevice(ctx, personal.ID)
				return d.EnrollmentState == mdmd.EnrollmentUnenrolled
			})
			// Full wipe of the company device keeps factory reset protection.
			// (sent once a second admin approves it)
			fw := fullWipeApproved(t, env.testServer, company.ID, map[string]any{"mode": "full", "reason": "stolen", "confirm": company.Name})[0]
			env.waitCommand(t, fw.ID)
			del, ok = env.amapi.Deleted(corpName)
			if !ok || !slices.Contains(del.WipeDataFlags, "PRESERVE_RESET_PROTECTION_DATA") {
				t.Fatalf("full wipe call = %+v, %v", del, ok)
			}
			time.Sleep(200 * time.Millisecond) // the DELETED report arrives
			if d, _ := env.srv.Store().GetDevice(ctx, company.ID); d.EnrollmentState != mdmd.EnrollmentWiped {
				t.Fatalf("company device after a full wipe = %s", d.EnrollmentState)
			}
			var audit struct {
				Items []mdmd.AuditEvent `json:"items"`
			}
			env.mustDo(200, "GET", "/api/v1/audit?action=device.wipe", env.Token, nil).json(t, &audit)
			if len(audit.Items) != 2 {
				t.Fatalf("audited wipes = %d", len(audit.Items))
			}
			// Every command reached AMAPI exactly once.
			// lock, reset password, clear passcode, reboot, lost mode on and
			// off, relinquish, the failing lock
			if n := env.amapi.Calls("issueCommand"); n != 8 {
				t.Fatalf("issueCommand called %d times, want 8", n)
			}
		})
	}
}

// TestAndroidOutagesAndRestart: a 429 storm and a restart lose no command
// and send none twice; retries of a 429 wait at least 60 s; the client
// stays under its rate limit.
func TestAndroidOutagesAndRestart(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) { androidOutage(t, b.URL) })
	}
}

func androidOutage(t *testing.T, dbURL string) {
	fake := fakeamapi.Start()
	defer fake.Close()
	dir := t.TempDir()
	args := []string{"--data-dir", dir, "--database-url", dbURL, "--amapi-endpoint", fake.URL(), "--amapi-project", "p",
		"--amapi-pubsub-topic", "projects/p/topics/t", "--job-poll", "20ms", "--amapi-rate", "6", "--amapi-rate-window", "1s",
		"--workers", "8"}
	ts := start(t, args...)
	name := fake.CreateEnterprise("Outage Co")
	var ent struct {
		PushEndpoint string `json:"push_endpoint"`
	}
	ts.mustDo(200, "PUT", "/api/v1/android/enterprise", ts.Token, map[string]string{"name": name}).json(t, &ent)
	fake.SetPushEndpoint(ent.PushEndpoint)
	env := &androidEnv{testServer: ts, amapi: fake, push: ent.PushEndpoint}
	tok := env.token(t, map[string]any{"kind": "work_profile", "one_time": false})
	var devices []*mdmd.Device
	for i := 0; i < 10; i++ {
		_, d := env.enroll(t, tok.Value, fakeamapi.HealthyPosture)
		devices = append(devices, d)
	}
	ctx := context.Background()
	// AMAPI answers 429 to the first calls, then fails twice with 503.
	fake.FailNext(429, 429, 429, 503, 503)
	var ids []string
	for _, d := range devices {
		ids = append(ids, env.act(t, 202, d.ID, "lock", map[string]any{}).ID)
	}
	// The rate-limited jobs wait at least a minute after a 429.
	eventually(t, 10*time.Second, "the 429 retries to be scheduled", func() bool {
		var n int
		env.srv.Store().DB().QueryRow("SELECT count(*) FROM jobs WHERE kind = 'android.command' AND status = 'queued' AND last_error LIKE '%429%'").Scan(&n)
		return n == 3
	})
	var soonest time.Time
	if err := env.srv.Store().DB().QueryRow("SELECT run_at FROM jobs WHERE kind = 'android.command' AND last_error LIKE '%429%' ORDER BY run_at LIMIT 1").Scan(&soonest); err != nil {
		t.Fatal(err)
	}
	if d := time.Until(soonest); d < 55*time.Second {
		t.Fatalf("a 429 is retried after %s", d)
	}
	// Restart mdmd while those wait; bring their retry time forward.
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	ts2 := start(t, args...)
	if _, err := ts2.srv.Store().DB().Exec("UPDATE jobs SET run_at = $1 WHERE kind = 'android.command' AND status = 'queued'", time.Now().UTC()); err != nil {
		t.Fatal(err)
	}
	env2 := &androidEnv{testServer: ts2, amapi: fake, push: ent.PushEndpoint}
	for _, id := range ids {
		if c := env2.waitCommand(t, id); c.Status != mdmd.CommandAcknowledged {
			t.Fatalf("command %s = %s (%s)", id, c.Status, c.Error)
		}
	}
	if n := fake.Calls("issueCommand"); n != len(ids) {
		t.Fatalf("issueCommand called %d times for %d commands", n, len(ids))
	}
	// Never more than 6 calls in any one-second span, wherever it starts
	// (the 429s included).
	times := fake.CallTimes()
	for i := range times {
		n := 0
		for _, at := range times[i:] {
			if at.Sub(times[i]) < time.Second {
				n++
			}
		}
		if n > 6 {
			t.Fatalf("%d AMAPI calls within one second of %s, limit 6", n, times[i].Format(time.StampMilli))
		}
	}
	_ = ctx
}
