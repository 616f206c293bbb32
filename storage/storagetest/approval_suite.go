package storagetest

import (
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

func approvalTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"Approvals", testApprovals},
		{"ApprovalConcurrentApprove", testApprovalConcurrentApprove},
		{"ApprovalExpiry", testApprovalExpiry},
		{"ApprovalListByState", testApprovalListByState},
	}
}

func newApproval(by string) *mdmd.Approval {
	return &mdmd.Approval{Kind: mdmd.ApprovalDeviceWipeFull, TargetType: "device", TargetID: "dev-1",
		Params: mdmd.RawJSON(`{"mode":"full"}`), Reason: "stolen", RequestedBy: by, RequestedByName: "name-" + by}
}

func testApprovals(t *testing.T, s *storage.Store) {
	a := newApproval("alice")
	must(t, s.CreateApproval(ctx, a))
	if a.ID == "" || a.State != mdmd.ApprovalPending || a.RequestedAt.IsZero() ||
		!a.ExpiresAt.Equal(a.RequestedAt.Add(mdmd.DefaultApprovalTTL)) {
		t.Fatalf("CreateApproval = %+v", a)
	}
	got, err := s.GetApproval(ctx, a.ID)
	must(t, err)
	if got.Kind != a.Kind || got.TargetID != "dev-1" || got.RequestedBy != "alice" || got.RequestedByName != "name-alice" ||
		!got.RequestedAt.Equal(a.RequestedAt) || !got.ExpiresAt.Equal(a.ExpiresAt) || string(got.Params) != `{"mode":"full"}` ||
		got.DecidedAt != nil || got.Result != nil {
		t.Fatalf("GetApproval = %+v, want %+v", got, a)
	}
	_, err = s.GetApproval(ctx, "nope")
	wantCode(t, err, mdmd.ENotFound)

	// Invalid requests are refused.
	for _, edit := range []func(a *mdmd.Approval){
		func(a *mdmd.Approval) { a.Kind = "device.delete" },
		func(a *mdmd.Approval) { a.TargetType = "group" },
		func(a *mdmd.Approval) { a.TargetID = "" },
		func(a *mdmd.Approval) { a.Reason = "" },
		func(a *mdmd.Approval) { a.RequestedBy = "" },
	} {
		bad := newApproval("alice")
		edit(bad)
		wantCode(t, s.CreateApproval(ctx, bad), mdmd.EInvalid)
	}

	// The requester cannot approve their own request; nothing changes.
	_, err = s.DecideApproval(ctx, a.ID, mdmd.ApprovalDecision{State: mdmd.ApprovalApproved, By: "alice", ByName: "name-alice"})
	wantCode(t, err, mdmd.EForbidden)
	if cur, _ := s.GetApproval(ctx, a.ID); cur.State != mdmd.ApprovalPending || cur.DecidedBy != "" {
		t.Fatalf("refused self-approval changed the request: %+v", cur)
	}
	_, err = s.DecideApproval(ctx, a.ID, mdmd.ApprovalDecision{State: "maybe", By: "bob"})
	wantCode(t, err, mdmd.EInvalid)
	_, err = s.DecideApproval(ctx, "nope", mdmd.ApprovalDecision{State: mdmd.ApprovalApproved, By: "bob"})
	wantCode(t, err, mdmd.ENotFound)

	// A second admin approves; the decision is final.
	ok, err := s.DecideApproval(ctx, a.ID, mdmd.ApprovalDecision{State: mdmd.ApprovalApproved, By: "bob", ByName: "name-bob"})
	must(t, err)
	if ok.State != mdmd.ApprovalApproved || ok.DecidedBy != "bob" || ok.DecidedByName != "name-bob" || ok.DecidedAt == nil {
		t.Fatalf("approved = %+v", ok)
	}
	_, err = s.DecideApproval(ctx, a.ID, mdmd.ApprovalDecision{State: mdmd.ApprovalRejected, By: "carol", Reason: "late"})
	wantCode(t, err, mdmd.EConflict)

	// Its result is recorded once.
	done, err := s.FinishApproval(ctx, a.ID, mdmd.ApprovalApproved, mdmd.RawJSON(`{"command_ids":["C1"]}`))
	must(t, err)
	if done.State != mdmd.ApprovalApproved || string(done.Result) != `{"command_ids":["C1"]}` {
		t.Fatalf("finished = %+v", done)
	}
	_, err = s.FinishApproval(ctx, a.ID, mdmd.ApprovalPending, nil)
	wantCode(t, err, mdmd.EInvalid)

	// A failed action ends failed and cannot be finished again.
	b := newApproval("alice")
	must(t, s.CreateApproval(ctx, b))
	_, err = s.FinishApproval(ctx, b.ID, mdmd.ApprovalFailed, nil)
	wantCode(t, err, mdmd.EConflict) // not approved yet
	_, err = s.DecideApproval(ctx, b.ID, mdmd.ApprovalDecision{State: mdmd.ApprovalApproved, By: "bob"})
	must(t, err)
	failed, err := s.FinishApproval(ctx, b.ID, mdmd.ApprovalFailed, mdmd.RawJSON(`{"error":"gone"}`))
	must(t, err)
	if failed.State != mdmd.ApprovalFailed {
		t.Fatalf("failed = %+v", failed)
	}
	_, err = s.FinishApproval(ctx, b.ID, mdmd.ApprovalApproved, nil)
	wantCode(t, err, mdmd.EConflict)

	// A requester may withdraw (reject) their own request.
	c := newApproval("alice")
	must(t, s.CreateApproval(ctx, c))
	rej, err := s.DecideApproval(ctx, c.ID, mdmd.ApprovalDecision{State: mdmd.ApprovalRejected, By: "alice", Reason: "mistake"})
	must(t, err)
	if rej.State != mdmd.ApprovalRejected || rej.DecisionReason != "mistake" {
		t.Fatalf("withdrawn = %+v", rej)
	}
	_, err = s.DecideApproval(ctx, c.ID, mdmd.ApprovalDecision{State: mdmd.ApprovalApproved, By: "bob"})
	wantCode(t, err, mdmd.EConflict)
}

// Several admins (on several replicas) approve one request at once:
// exactly one decision wins, so the action is carried out once.
func testApprovalConcurrentApprove(t *testing.T, s *storage.Store) {
	for round := 0; round < 3; round++ {
		a := newApproval("alice")
		must(t, s.CreateApproval(ctx, a))
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				state := mdmd.ApprovalApproved
				if i%4 == 3 {
					state = mdmd.ApprovalRejected
				}
				_, errs[i] = s.DecideApproval(ctx, a.ID, mdmd.ApprovalDecision{State: state, By: "admin-" + string(rune('a'+i)), Reason: "r"})
			}()
		}
		wg.Wait()
		won := 0
		for i, err := range errs {
			switch {
			case err == nil:
				won++
			case mdmd.IsCode(err, mdmd.EConflict):
			default:
				t.Fatalf("decision %d: %v", i, err)
			}
		}
		if won != 1 {
			t.Fatalf("round %d: %d concurrent decisions won, want exactly 1 (%v)", round, won, errs)
		}
		cur, err := s.GetApproval(ctx, a.ID)
		must(t, err)
		if cur.State == mdmd.ApprovalPending || cur.DecidedBy == "" {
			t.Fatalf("after the race: %+v", cur)
		}
	}
}

func testApprovalExpiry(t *testing.T, s *storage.Store) {
	now := s.Now()
	a := newApproval("alice")
	a.RequestedAt, a.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Hour)
	must(t, s.CreateApproval(ctx, a))
	fresh := newApproval("alice")
	must(t, s.CreateApproval(ctx, fresh))

	// Deciding an expired request is a conflict, and marks it expired.
	_, err := s.DecideApproval(ctx, a.ID, mdmd.ApprovalDecision{State: mdmd.ApprovalApproved, By: "bob", At: now})
	wantCode(t, err, mdmd.EConflict)
	cur, err := s.GetApproval(ctx, a.ID)
	must(t, err)
	if cur.State != mdmd.ApprovalExpired || cur.DecidedBy != "" {
		t.Fatalf("expired request = %+v", cur)
	}

	// ExpireApprovals marks what ran out, and only that.
	b := newApproval("alice")
	b.RequestedAt, b.ExpiresAt = now.Add(-2*time.Hour), now.Add(-time.Minute)
	must(t, s.CreateApproval(ctx, b))
	n, err := s.ExpireApprovals(ctx, now)
	must(t, err)
	if n != 1 {
		t.Fatalf("ExpireApprovals marked %d, want 1", n)
	}
	if cur, _ := s.GetApproval(ctx, fresh.ID); cur.State != mdmd.ApprovalPending {
		t.Fatalf("fresh request = %s", cur.State)
	}
	// A decision dated after its expiry is refused too.
	_, err = s.DecideApproval(ctx, fresh.ID, mdmd.ApprovalDecision{State: mdmd.ApprovalApproved, By: "bob", At: fresh.ExpiresAt.Add(time.Second)})
	wantCode(t, err, mdmd.EConflict)
	if cur, _ := s.GetApproval(ctx, fresh.ID); cur.State != mdmd.ApprovalExpired {
		t.Fatalf("late-decided request = %s", cur.State)
	}
}

func testApprovalListByState(t *testing.T, s *storage.Store) {
	var ids []string
	for i := 0; i < 5; i++ {
		a := newApproval("alice")
		a.RequestedAt = s.Now().Add(time.Duration(i) * time.Second)
		if i == 4 {
			a.Kind, a.TargetType, a.TargetID = mdmd.ApprovalGroupWipe, "group", "grp-1"
		}
		must(t, s.CreateApproval(ctx, a))
		ids = append(ids, a.ID)
	}
	_, err := s.DecideApproval(ctx, ids[0], mdmd.ApprovalDecision{State: mdmd.ApprovalApproved, By: "bob"})
	must(t, err)
	_, err = s.DecideApproval(ctx, ids[1], mdmd.ApprovalDecision{State: mdmd.ApprovalRejected, By: "bob", Reason: "no"})
	must(t, err)

	all, err := s.ListApprovals(ctx, "", 0)
	must(t, err)
	if len(all) != 5 || all[0].ID != ids[4] || all[4].ID != ids[0] {
		t.Fatalf("all approvals, newest first: %d %+v", len(all), all)
	}
	pending, err := s.ListApprovals(ctx, mdmd.ApprovalPending, 0)
	must(t, err)
	if len(pending) != 3 || pending[0].ID != ids[4] || pending[0].Kind != mdmd.ApprovalGroupWipe {
		t.Fatalf("pending = %+v", pending)
	}
	for state, want := range map[string]string{mdmd.ApprovalApproved: ids[0], mdmd.ApprovalRejected: ids[1]} {
		got, err := s.ListApprovals(ctx, state, 0)
		must(t, err)
		if len(got) != 1 || got[0].ID != want {
			t.Fatalf("%s = %+v", state, got)
		}
	}
	limited, err := s.ListApprovals(ctx, "", 2)
	must(t, err)
	if len(limited) != 2 {
		t.Fatalf("limit 2 gave %d", len(limited))
	}
	_, err = s.ListApprovals(ctx, "bogus", 0)
	wantCode(t, err, mdmd.EInvalid)
}
