package storagetest

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/storage"
)

// bulkTests are the conformance tests of bulk actions: the device set is
// fixed at creation, claims never overlap, results are recorded once,
// progress counts targets and their commands.
func bulkTests() []struct {
	name string
	fn   func(t *testing.T, s *storage.Store)
} {
	return []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"BulkCreate", testBulkCreate},
		{"BulkClaimAndProgress", testBulkClaimAndProgress},
		{"BulkConcurrentClaims", testBulkConcurrentClaims},
	}
}

func testBulkCreate(t *testing.T, s *storage.Store) {
	g := &mdmd.Group{Name: "sales"}
	must(t, s.CreateGroup(ctx, g))
	var inGroup []string
	for i := range 6 {
		d := iosDevice(fmt.Sprintf("bulk-%d", i))
		if i == 5 {
			d.EnrollmentState = mdmd.EnrollmentUnenrolled
		}
		must(t, s.CreateDevice(ctx, d))
		if i%2 == 0 || i == 5 {
			inGroup = append(inGroup, d.ID)
		}
	}
	must(t, s.CreateDevice(ctx, androidDevice("bulk-a")))
	must(t, s.AddGroupMembers(ctx, g.ID, inGroup))

	for _, tc := range []struct {
		name   string
		filter mdmd.BulkFilter
		want   int
	}{
		{"everything enrolled", mdmd.BulkFilter{}, 6},
		{"a group, without its unenrolled member", mdmd.BulkFilter{GroupID: g.ID}, 3},
		{"a platform", mdmd.BulkFilter{Platform: mdmd.PlatformAndroid}, 1},
		{"a search", mdmd.BulkFilter{Query: "BULK-1"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &mdmd.BulkAction{Action: mdmd.BulkQuery, Filter: tc.filter, State: mdmd.BulkRunning, CreatedBy: "tok-1", CreatedByName: "alice"}
			must(t, s.CreateBulkAction(ctx, b, -1))
			if b.Total != tc.want || b.ID == "" || b.StartedAt == nil {
				t.Fatalf("created %+v, want %d devices", b, tc.want)
			}
			got, err := s.GetBulkAction(ctx, b.ID)
			must(t, err)
			if got.Total != tc.want || got.Filter != tc.filter || got.State != mdmd.BulkRunning {
				t.Fatalf("stored %+v", got)
			}
			p, err := s.BulkProgress(ctx, b.ID)
			must(t, err)
			if p.Total != tc.want || p.Pending != tc.want {
				t.Fatalf("progress %+v", p)
			}
		})
	}
	before, err := s.ListBulkActions(ctx, 100)
	must(t, err)
	// Refused: nothing is stored.
	for _, bad := range []*mdmd.BulkAction{
		{Action: mdmd.BulkQuery, Filter: mdmd.BulkFilter{Query: "no such device"}, State: mdmd.BulkRunning, CreatedBy: "x"},
		{Action: "explode", State: mdmd.BulkRunning, CreatedBy: "x"},
		{Action: mdmd.BulkWipeFull, State: mdmd.BulkAwaitingApproval, CreatedBy: "x"}, // no reason
		{Action: mdmd.BulkQuery, Filter: mdmd.BulkFilter{Platform: "windows"}, State: mdmd.BulkRunning, CreatedBy: "x"},
		{Action: mdmd.BulkQuery, Filter: mdmd.BulkFilter{ComplianceState: "great"}, State: mdmd.BulkRunning, CreatedBy: "x"},
		{Action: mdmd.BulkQuery, Params: mdmd.BulkParams{Message: "hi"}, State: mdmd.BulkRunning, CreatedBy: "x"},
		{Action: mdmd.BulkQuery, State: mdmd.BulkDone, CreatedBy: "x"},
	} {
		if err := s.CreateBulkAction(ctx, bad, -1); mdmd.ErrorCode(err) != mdmd.EInvalid {
			t.Errorf("%+v: %v, want invalid", bad, err)
		}
	}
	after, err := s.ListBulkActions(ctx, 100)
	must(t, err)
	if len(after) != len(before) || len(after) != 4 {
		t.Fatalf("%d bulk actions after refused ones, want %d", len(after), len(before))
	}
	if after[0].CreatedAt.Before(after[3].CreatedAt) {
		t.Error("bulk actions not listed newest first")
	}

	// An approval-gated action moves once.
	w := &mdmd.BulkAction{Action: mdmd.BulkWipeSelective, Reason: "stolen shipment", State: mdmd.BulkAwaitingApproval, CreatedBy: "x"}
	must(t, s.CreateBulkAction(ctx, w, -1))
	if w.StartedAt != nil {
		t.Error("an action awaiting approval has a start time")
	}
	must(t, s.SetBulkApproval(ctx, w.ID, "appr-1"))
	if _, err := s.MoveBulkAction(ctx, w.ID, mdmd.BulkAwaitingApproval, mdmd.BulkRunning); err != nil {
		t.Fatal(err)
	}
	_, err = s.MoveBulkAction(ctx, w.ID, mdmd.BulkAwaitingApproval, mdmd.BulkRunning)
	wantCode(t, err, mdmd.EConflict)
	wantCode(t, s.SetBulkApproval(ctx, w.ID, "appr-2"), mdmd.EConflict)
	// Not done while a device is pending.
	_, err = s.MoveBulkAction(ctx, w.ID, mdmd.BulkRunning, mdmd.BulkDone)
	wantCode(t, err, mdmd.EConflict)
	got, err := s.GetBulkAction(ctx, w.ID)
	must(t, err)
	if got.State != mdmd.BulkRunning || got.ApprovalID != "appr-1" || got.StartedAt == nil {
		t.Fatalf("after the moves: %+v", got)
	}
	running, err := s.RunningBulkActions(ctx)
	must(t, err)
	if len(running) != 5 {
		t.Errorf("%d running bulk actions, want 5", len(running))
	}

	// The count typed back is checked in the same transaction.
	n := len(mustList(t, s))
	err = s.CreateBulkAction(ctx, &mdmd.BulkAction{Action: mdmd.BulkWipeFull, Reason: "r", Filter: mdmd.BulkFilter{GroupID: g.ID},
		State: mdmd.BulkAwaitingApproval, CreatedBy: "x"}, 4)
	if e, ok := err.(*mdmd.Error); !ok || e.Field != "confirm" || !strings.Contains(e.Message, "(3)") {
		t.Fatalf("a wrong count: %v", err)
	}
	must(t, s.CreateBulkAction(ctx, &mdmd.BulkAction{Action: mdmd.BulkWipeFull, Reason: "r", Filter: mdmd.BulkFilter{GroupID: g.ID},
		State: mdmd.BulkAwaitingApproval, CreatedBy: "x"}, 3))
	if got := len(mustList(t, s)); got != n+1 {
		t.Fatalf("%d bulk actions after a refused and an accepted count, want %d", got, n+1)
	}

	// A cancelled action sends nothing more; finished ones are pruned
	// with their devices.
	if _, err := s.MoveBulkAction(ctx, w.ID, mdmd.BulkRunning, mdmd.BulkCancelled); err != nil {
		t.Fatal(err)
	}
	if ids, err := s.ClaimBulkTargets(ctx, w.ID, 10, time.Minute); err != nil || len(ids) != 0 {
		t.Fatalf("claimed %v of a cancelled action (%v)", ids, err)
	}
	if pruned, err := s.PruneBulkActions(ctx, time.Now().Add(-time.Hour)); err != nil || pruned != 0 {
		t.Fatalf("pruned %d recent actions (%v)", pruned, err)
	}
	pruned, err := s.PruneBulkActions(ctx, time.Now().Add(time.Hour))
	must(t, err)
	if pruned != 1 {
		t.Fatalf("pruned %d, want the cancelled one", pruned)
	}
	_, err = s.GetBulkAction(ctx, w.ID)
	wantCode(t, err, mdmd.ENotFound)
	if _, _, err := s.ListBulkTargets(ctx, w.ID, "", "", 10); err != nil {
		t.Fatal(err)
	}
	var left int64
	must(t, s.DB().QueryRow("SELECT count(*) FROM bulk_action_targets WHERE bulk_id = '"+w.ID+"'").Scan(&left))
	if left != 0 {
		t.Fatalf("%d devices of a pruned action left", left)
	}
}

func mustList(t *testing.T, s *storage.Store) []mdmd.BulkAction {
	t.Helper()
	bs, err := s.ListBulkActions(ctx, 1000)
	must(t, err)
	return bs
}

func testBulkClaimAndProgress(t *testing.T, s *storage.Store) {
	var devs []*mdmd.Device
	for i := range 5 {
		d := iosDevice(fmt.Sprintf("claim-%d", i))
		must(t, s.CreateDevice(ctx, d))
		devs = append(devs, d)
	}
	b := &mdmd.BulkAction{Action: mdmd.BulkLock, Params: mdmd.BulkParams{Message: "call IT"}, State: mdmd.BulkRunning, CreatedBy: "x"}
	must(t, s.CreateBulkAction(ctx, b, -1))

	first, err := s.ClaimBulkTargets(ctx, b.ID, 3, time.Minute)
	must(t, err)
	// A claim whose lease ran out (its replica died) is taken over.
	expired, err := s.ClaimBulkTargets(ctx, b.ID, 3, -time.Second)
	must(t, err)
	second, err := s.ClaimBulkTargets(ctx, b.ID, 3, time.Minute)
	must(t, err)
	if len(first) != 3 || len(expired) != 2 || fmt.Sprint(second) != fmt.Sprint(expired) {
		t.Fatalf("claims %v, %v, then %v: want 3, 2, and the same 2 again", first, expired, second)
	}
	if none, err := s.ClaimBulkTargets(ctx, b.ID, 3, time.Minute); err != nil || len(none) != 0 {
		t.Fatalf("a third claim took %v (%v)", none, err)
	}
	// Commands: one acknowledged, one cancelled, one still queued.
	cmds := map[string]*mdmd.Command{}
	for _, id := range first {
		c := &mdmd.Command{ID: "cmd-" + id, DeviceID: id, RequestType: "DeviceLock", Payload: []byte("x"), CreatedBy: "x"}
		must(t, s.EnqueueCommand(ctx, c))
		cmds[id] = c
	}
	sent, err := s.NextCommand(ctx, first[0], nil)
	must(t, err)
	if _, err := s.RecordCommandResult(ctx, first[0], sent.ID, mdmd.CommandResult{Status: mdmd.CommandAcknowledged}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CancelCommand(ctx, cmds[first[1]].ID); err != nil {
		t.Fatal(err)
	}
	results := []mdmd.BulkResult{
		{DeviceID: first[0], State: mdmd.TargetSent, CommandID: cmds[first[0]].ID},
		{DeviceID: first[1], State: mdmd.TargetSent, CommandID: cmds[first[1]].ID},
		{DeviceID: first[2], State: mdmd.TargetSent, CommandID: cmds[first[2]].ID},
		{DeviceID: second[0], State: mdmd.TargetFailed, Error: "device is unenrolled"},
	}
	must(t, s.FinishBulkTargets(ctx, b.ID, results))
	// A second result for a finished device changes nothing.
	must(t, s.FinishBulkTargets(ctx, b.ID, []mdmd.BulkResult{{DeviceID: second[0], State: mdmd.TargetSent, CommandID: "other"}}))
	wantCode(t, s.FinishBulkTargets(ctx, b.ID, []mdmd.BulkResult{{DeviceID: second[1], State: "pending"}}), mdmd.EInvalid)

	p, err := s.BulkProgress(ctx, b.ID)
	must(t, err)
	want := mdmd.BulkProgress{Total: 5, Pending: 1, Sent: 3, Failed: 1, Acknowledged: 1, Errors: 1, InFlight: 1}
	if *p != want {
		t.Fatalf("progress %+v, want %+v", *p, want)
	}
	// A sent device whose command is no longer kept is untracked.
	if _, err := s.DB().Exec("DELETE FROM commands WHERE id = '" + cmds[first[2]].ID + "'"); err != nil {
		t.Fatal(err)
	}
	p, err = s.BulkProgress(ctx, b.ID)
	must(t, err)
	if p.InFlight != 0 || p.Untracked != 1 || p.Sent != 3 {
		t.Fatalf("progress after a pruned command %+v", *p)
	}
	if p.Percent() != 80 {
		t.Errorf("percent %d, want 80", p.Percent())
	}
	failed, next, err := s.ListBulkTargets(ctx, b.ID, mdmd.TargetFailed, "", 10)
	must(t, err)
	if len(failed) != 1 || next != "" || failed[0].DeviceID != second[0] || failed[0].Error != "device is unenrolled" ||
		failed[0].DeviceName == "" {
		t.Fatalf("failed targets %+v", failed)
	}
	page, next, err := s.ListBulkTargets(ctx, b.ID, "", "", 2)
	must(t, err)
	rest, last, err := s.ListBulkTargets(ctx, b.ID, "", next, 10)
	must(t, err)
	if len(page) != 2 || len(rest) != 3 || last != "" || page[0].CommandStatus != string(mdmd.CommandAcknowledged) {
		t.Fatalf("pages %+v / %+v", page, rest)
	}
	_, _, err = s.ListBulkTargets(ctx, b.ID, "lost", "", 10)
	wantCode(t, err, mdmd.EInvalid)

	must(t, s.FinishBulkTargets(ctx, b.ID, []mdmd.BulkResult{{DeviceID: second[1], State: mdmd.TargetSkipped, Error: "n/a"}}))
	done, err := s.MoveBulkAction(ctx, b.ID, mdmd.BulkRunning, mdmd.BulkDone)
	must(t, err)
	if done.State != mdmd.BulkDone || done.FinishedAt == nil {
		t.Fatalf("done: %+v", done)
	}
}

// Replicas claiming the same action at once each get different devices,
// and together all of them.
func testBulkConcurrentClaims(t *testing.T, s *storage.Store) {
	for i := range 60 {
		must(t, s.CreateDevice(ctx, iosDevice(fmt.Sprintf("cc-%02d", i))))
	}
	b := &mdmd.BulkAction{Action: mdmd.BulkQuery, State: mdmd.BulkRunning, CreatedBy: "x"}
	must(t, s.CreateBulkAction(ctx, b, -1))
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ids, err := s.ClaimBulkTargets(ctx, b.ID, 7, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if len(ids) == 0 {
					return
				}
				mu.Lock()
				for _, id := range ids {
					seen[id]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 60 {
		t.Fatalf("%d devices claimed, want 60", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("device %s claimed %d times", id, n)
		}
	}
}
