package approvals_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/approvals"
	"github.com/mdmd/mdmd/storage"
	"github.com/mdmd/mdmd/storage/storagetest"
)

type countingExec struct {
	wipes, groups, bulks atomic.Int32
	fail                 error
}

func (e *countingExec) WipeDeviceFull(_ context.Context, deviceID, by, reason string, p approvals.WipeParams) (any, error) {
	e.wipes.Add(1)
	if e.fail != nil {
		return nil, e.fail
	}
	return map[string]any{"command_ids": []string{"C-" + deviceID}, "by": by, "mode": p.Mode}, nil
}

func (e *countingExec) WipeGroup(_ context.Context, groupID, by, reason string, p approvals.WipeParams) (any, error) {
	e.groups.Add(1)
	return map[string]any{"devices": 2, "mode": p.Mode}, nil
}

func (e *countingExec) StartBulkAction(_ context.Context, id, by string) (any, error) {
	e.bulks.Add(1)
	return map[string]any{"bulk_action_id": id}, nil
}

func admin(id string) *mdmd.Principal {
	return &mdmd.Principal{Type: mdmd.ActorToken, ID: id, Name: "admin-" + id, Role: mdmd.RoleAdmin}
}

// Two services on one database stand for two replicas: of many
// concurrent approvals exactly one carries the wipe out.
func TestApproveExecutesOnceAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	for _, b := range storagetest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			st1 := storagetest.Open(t, b.URL, storage.Options{})
			st2, err := storage.Open(ctx, b.URL, storage.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st2.Close() })
			exec := &countingExec{}
			replicas := []*approvals.Service{approvals.New(st1, exec, nil, nil), approvals.New(st2, exec, nil, nil)}

			a, err := replicas[0].Request(ctx, admin("alice"), mdmd.ApprovalDeviceWipeFull, "device", "dev-1", "stolen", approvals.WipeParams{Mode: "full"})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := replicas[1].Approve(ctx, admin("alice"), a.ID); !mdmd.IsCode(err, mdmd.EForbidden) {
				t.Fatalf("self-approval = %v", err)
			}
			const n = 8
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = replicas[i%2].Approve(ctx, admin(fmt.Sprintf("approver-%d", i)), a.ID)
				}()
			}
			wg.Wait()
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
				} else if !mdmd.IsCode(err, mdmd.EConflict) {
					t.Fatal(err)
				}
			}
			if ok != 1 || exec.wipes.Load() != 1 {
				t.Fatalf("%d approvals succeeded, %d wipes sent; want 1 and 1", ok, exec.wipes.Load())
			}
			got, err := replicas[0].Get(ctx, a.ID)
			if err != nil || got.State != mdmd.ApprovalApproved || len(got.Result) == 0 {
				t.Fatalf("approval = %+v, %v", got, err)
			}
			evs, _, _ := st1.ListAudit(ctx, mdmd.AuditFilter{TargetID: "dev-1", Limit: 100})
			count := map[string]int{}
			for _, e := range evs {
				count[e.Action+"/"+e.Outcome]++
			}
			if count["approval.request/success"] != 1 || count["approval.approve/success"] != 1 ||
				count["approval.approve/denied"] != 1 || count["approval.approve/failure"] != n-1 || count["device.wipe/success"] != 1 {
				t.Fatalf("audit = %v", count)
			}
		})
	}
}

func TestApprovalService(t *testing.T) {
	ctx := context.Background()
	st := storagetest.Open(t, storagetest.SQLiteURL(t), storage.Options{})
	now := time.Now()
	exec := &countingExec{}
	s := approvals.New(st, exec, nil, func() time.Time { return now })

	// Unknown kinds and wrong targets are refused.
	if _, err := s.Request(ctx, admin("alice"), "device.delete", "device", "d", "r", nil); !mdmd.IsCode(err, mdmd.EInvalid) {
		t.Fatalf("unknown kind = %v", err)
	}
	if _, err := s.Request(ctx, admin("alice"), mdmd.ApprovalGroupWipe, "device", "d", "r", nil); !mdmd.IsCode(err, mdmd.EInvalid) {
		t.Fatalf("wrong target = %v", err)
	}
	if _, err := s.Request(ctx, nil, mdmd.ApprovalGroupWipe, "group", "g", "r", nil); !mdmd.IsCode(err, mdmd.EUnauthenticated) {
		t.Fatalf("no requester = %v", err)
	}

	// A failed action ends failed, with the error as its result.
	exec.fail = mdmd.Errorf(mdmd.EConflict, "device gone")
	a, _ := s.Request(ctx, admin("alice"), mdmd.ApprovalDeviceWipeFull, "device", "d1", "lost", approvals.WipeParams{Mode: "full"})
	got, err := s.Approve(ctx, admin("bob"), a.ID)
	if err != nil || got.State != mdmd.ApprovalFailed || string(got.Result) != `{"error":"device gone"}` {
		t.Fatalf("failed approval = %+v, %v", got, err)
	}
	exec.fail = nil

	// Group wipes go to the group executor; rejecting needs a reason; the
	// requester may withdraw.
	g, _ := s.Request(ctx, admin("alice"), mdmd.ApprovalGroupWipe, "group", "g1", "returned", approvals.WipeParams{Mode: "selective"})
	if _, err := s.Reject(ctx, admin("bob"), g.ID, ""); !mdmd.IsCode(err, mdmd.EInvalid) {
		t.Fatalf("reject without reason = %v", err)
	}
	if got, err := s.Approve(ctx, admin("bob"), g.ID); err != nil || got.State != mdmd.ApprovalApproved || exec.groups.Load() != 1 {
		t.Fatalf("group approval = %+v, %v", got, err)
	}
	w, _ := s.Request(ctx, admin("alice"), mdmd.ApprovalGroupWipe, "group", "g1", "returned", approvals.WipeParams{Mode: "full"})
	if got, err := s.Reject(ctx, admin("alice"), w.ID, "mistake"); err != nil || got.State != mdmd.ApprovalRejected {
		t.Fatalf("withdrawal = %+v, %v", got, err)
	}

	// Requests expire after the TTL: listing marks them.
	e, _ := s.Request(ctx, admin("alice"), mdmd.ApprovalDeviceWipeFull, "device", "d2", "lost", approvals.WipeParams{Mode: "full"})
	now = now.Add(mdmd.DefaultApprovalTTL + time.Minute)
	if _, err := s.Approve(ctx, admin("bob"), e.ID); !mdmd.IsCode(err, mdmd.EConflict) {
		t.Fatalf("approving an expired request = %v", err)
	}
	expired, err := s.List(ctx, mdmd.ApprovalExpired, 0)
	if err != nil || len(expired) != 1 || expired[0].ID != e.ID {
		t.Fatalf("expired = %+v, %v", expired, err)
	}
	if exec.wipes.Load() != 1 {
		t.Fatalf("%d wipes, want 1 (the failed one)", exec.wipes.Load())
	}
}
