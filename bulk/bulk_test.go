package bulk_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/bulk"
	"github.com/mdmd/mdmd/commands"
	"github.com/mdmd/mdmd/jobs"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

// A small bulk action is not stuck behind a fleet-wide one: a run sends
// one batch of each in turn, so an urgent lock is queued right after the
// fleet query's first batch. A cancelled action sends nothing more.
func TestRunTakesTurns(t *testing.T) {
	ctx := context.Background()
	for _, be := range storagetest.Backends(t) {
		t.Run(be.Name, func(t *testing.T) {
			st := storagetest.Open(t, be.URL, storage.Options{})
			g := &mdmd.Group{Name: "lost"}
			if err := st.CreateGroup(ctx, g); err != nil {
				t.Fatal(err)
			}
			var lost []string
			for i := range 25 {
				udid := fmt.Sprintf("turns-%02d", i)
				d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: udid, Ownership: mdmd.OwnershipCorporate,
					EnrollmentState: mdmd.EnrollmentEnrolled}
				if err := st.CreateDevice(ctx, d); err != nil {
					t.Fatal(err)
				}
				if i < 2 {
					lost = append(lost, d.ID)
				}
			}
			if err := st.AddGroupMembers(ctx, g.ID, lost); err != nil {
				t.Fatal(err)
			}
			svc := bulk.New(st, commands.NewService(st, jobs.New(st, jobs.Options{}), nil), nil, nil, nil)
			svc.Batch, svc.Lease = 10, time.Hour
			admin := &mdmd.Principal{Type: mdmd.ActorToken, ID: "t", Name: "admin", Role: mdmd.RoleAdmin}
			fleet, err := svc.Create(ctx, admin, bulk.Request{Action: mdmd.BulkQuery})
			if err != nil {
				t.Fatal(err)
			}
			urgent, err := svc.Create(ctx, admin, bulk.Request{Action: mdmd.BulkLock, Filter: mdmd.BulkFilter{GroupID: g.ID}})
			if err != nil {
				t.Fatal(err)
			}
			if n, err := svc.Run(ctx); err != nil || n != 27 {
				t.Fatalf("the run sent %d (%v), want 25 + 2", n, err)
			}
			// The urgent lock was queued after the fleet query's first
			// batch, not after all three.
			cmds, _, err := st.ListCommands(ctx, mdmd.CommandFilter{Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			var lockAt time.Time
			for _, c := range cmds {
				if c.RequestType == "DeviceLock" {
					lockAt = c.CreatedAt
				}
			}
			before := 0
			for _, c := range cmds {
				if c.RequestType == "DeviceInformation" && !c.CreatedAt.After(lockAt) {
					before++
				}
			}
			if lockAt.IsZero() || before != 10 {
				t.Fatalf("%d devices were queried before the urgent lock, want one batch of 10", before)
			}
			u, err := svc.Get(ctx, urgent.ID)
			if err != nil || u.State != mdmd.BulkDone || u.Progress.Sent != 2 {
				t.Fatalf("the urgent lock: %+v (%v)", u, err)
			}

			// A third action, cancelled after its first batch: the rest
			// is never sent.
			fleet, err = svc.Create(ctx, admin, bulk.Request{Action: mdmd.BulkQuery})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.ClaimBulkTargets(ctx, fleet.ID, 10, -time.Second); err != nil { // a replica took a batch and died
				t.Fatal(err)
			}
			// Cancelled: the rest is never sent. Only a role that may run
			// the action may stop it, and it needs a reason.
			helpdesk := &mdmd.Principal{Type: mdmd.ActorToken, ID: "h", Name: "help", Role: mdmd.RoleViewer}
			if _, err := svc.Cancel(ctx, helpdesk, fleet.ID, "stop"); !mdmd.IsCode(err, mdmd.EForbidden) {
				t.Fatalf("a viewer cancelled: %v", err)
			}
			if _, err := svc.Cancel(ctx, admin, fleet.ID, " "); !mdmd.IsCode(err, mdmd.EInvalid) {
				t.Fatalf("a cancel without reason: %v", err)
			}
			if _, err := svc.Cancel(ctx, admin, fleet.ID, "wrong filter"); err != nil {
				t.Fatal(err)
			}
			if n, err := svc.Run(ctx); err != nil || n != 0 {
				t.Fatalf("a run after the cancel sent %d (%v)", n, err)
			}
			f, err := svc.Get(ctx, fleet.ID)
			if err != nil || f.State != mdmd.BulkCancelled || f.Progress.Pending != 25 || f.FinishedAt == nil {
				t.Fatalf("cancelled fleet query: %+v (%v)", f, err)
			}
			if _, err := svc.Cancel(ctx, admin, fleet.ID, "again"); !mdmd.IsCode(err, mdmd.EConflict) {
				t.Fatalf("cancelling twice: %v", err)
			}
			if after, _, _ := st.ListCommands(ctx, mdmd.CommandFilter{Limit: 1000}); len(after) != len(cmds) {
				t.Fatalf("a cancelled action queued %d commands", len(after)-len(cmds))
			}
		})
	}
}
