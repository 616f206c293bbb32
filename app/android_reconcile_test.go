package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/android"
	"github.com/mdmd/mdmd/android/fakeamapi"
)

// TestAndroidReconciliation: notifications that never arrive are caught
// by the periodic device listing and by asking AMAPI about operations.
func TestAndroidReconciliation(t *testing.T) { eachBackend(t, testAndroidReconciliation) }

func testAndroidReconciliation(t *testing.T, dbURL string) {
	env := newAndroidEnv(t, dbURL)
	ctx := context.Background()
	runJob := func(kind string) {
		t.Helper()
		if _, err := env.srv.Store().EnqueueJob(ctx, &mdmd.Job{Kind: kind}); err != nil {
			t.Fatal(err)
		}
	}
	// The periodic listing runs once at start; let it finish first.
	eventually(t, 10*time.Second, "the start-up listing", func() bool {
		var n int
		env.srv.Store().DB().QueryRow("SELECT count(*) FROM jobs WHERE kind = $1 AND status = 'done'", android.DevicesJob).Scan(&n)
		return n >= 1
	})
	listed := env.amapi.Calls("devices.list")
	// Enrollments whose notifications are lost (more than one list page).
	env.amapi.Silence("ENROLLMENT", true)
	env.amapi.Silence("STATUS_REPORT", true)
	tok := env.token(t, map[string]any{"kind": "fully_managed", "one_time": false, "owner_user": "it@example.com"})
	var names []string
	for i := 0; i < 130; i++ {
		n, err := env.amapi.Enroll(tok.Value, fakeamapi.HealthyPosture)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	time.Sleep(100 * time.Millisecond)
	if n, _ := env.srv.Store().CountDevices(ctx, mdmd.DeviceFilter{}); n != 0 {
		t.Fatalf("%d devices known before reconciliation", n)
	}
	runJob(android.DevicesJob)
	eventually(t, 15*time.Second, "the listing to find every device", func() bool {
		n, _ := env.srv.Store().CountDevices(ctx, mdmd.DeviceFilter{Platform: mdmd.PlatformAndroid})
		return n == 130
	})
	d, err := env.srv.Store().GetDeviceByAMAPIName(ctx, names[0])
	if err != nil || d.OwnerUser != "it@example.com" || d.EnrollmentState != mdmd.EnrollmentEnrolled {
		t.Fatalf("reconciled device = %+v, %v", d, err)
	}
	if p, err := env.srv.Store().GetPosture(ctx, d.ID); err != nil || p.OSVersion != "15" {
		t.Fatalf("reconciled posture = %+v, %v", p, err)
	}
	if n := env.amapi.Calls("devices.list") - listed; n != 2 {
		t.Fatalf("devices.list called %d times, want 2 pages", n)
	}

	// A command whose COMMAND notification is lost is resolved by
	// operations.get.
	env.amapi.Silence("COMMAND", true)
	env.amapi.SetAutoComplete(false) // the device is offline when the lock is issued
	lock := (&androidEnv{testServer: env.testServer, amapi: env.amapi}).act(t, 202, d.ID, "lock", map[string]any{})
	eventually(t, 10*time.Second, "the lock to be sent", func() bool {
		c, _ := env.srv.Store().GetCommand(ctx, lock.ID)
		return c.Status == mdmd.CommandSent
	})
	if n := env.amapi.CompleteOperations(); n != 1 { // it comes online; the notification is lost
		t.Fatalf("%d operations completed", n)
	}
	if _, err := env.srv.Store().DB().Exec("UPDATE commands SET sent_at = $1 WHERE id = $2", time.Now().Add(-10*time.Minute).UTC(), lock.ID); err != nil {
		t.Fatal(err)
	}
	runJob(android.ReconcileJob)
	if c := env.waitCommand(t, lock.ID); c.Status != mdmd.CommandAcknowledged {
		t.Fatalf("lock after operations.get = %+v", c)
	}
	if env.amapi.Calls("operations.get") != 1 {
		t.Fatalf("operations.get called %d times", env.amapi.Calls("operations.get"))
	}
	// A command for a device that is then deleted never completes: once
	// AMAPI no longer knows its operation, it ends with an error.
	d2, _ := env.srv.Store().GetDeviceByAMAPIName(ctx, names[1])
	stuck := (&androidEnv{testServer: env.testServer, amapi: env.amapi}).act(t, 202, d2.ID, "lock", map[string]any{})
	eventually(t, 10*time.Second, "the lock to be sent", func() bool {
		c, _ := env.srv.Store().GetCommand(ctx, stuck.ID)
		return c.Status == mdmd.CommandSent
	})
	wipe := fullWipeApproved(t, env.testServer, d2.ID, map[string]any{"mode": "full", "reason": "gone", "confirm": d2.Name})[0]
	env.waitCommand(t, wipe.ID)
	if _, err := env.srv.Store().DB().Exec("UPDATE commands SET sent_at = $1 WHERE id = $2", time.Now().Add(-10*time.Minute).UTC(), stuck.ID); err != nil {
		t.Fatal(err)
	}
	runJob(android.ReconcileJob)
	if c := env.waitCommand(t, stuck.ID); c.Status != mdmd.CommandError || !strings.Contains(c.Error, "left the enterprise") {
		t.Fatalf("stuck command = %+v", c)
	}
}
