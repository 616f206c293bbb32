package app

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/web"
)

var secondAdmins atomic.Int64

// secondAdmin is a second person: another admin user, with an API token
// of their own, who may approve what the first requested.
func secondAdmin(t *testing.T, ts *testServer) string {
	t.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("second-admin-%d", secondAdmins.Add(1))
	u := &mdmd.AdminUser{Username: name, PasswordHash: "unused", Role: mdmd.RoleAdmin}
	if err := ts.srv.Store().CreateAdminUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	secret, hash := auth.NewToken()
	if err := ts.srv.Store().CreateAPIToken(ctx, &mdmd.APIToken{Name: name, Role: mdmd.RoleAdmin, OwnerUserID: u.ID, Hash: hash,
		Prefix: auth.DisplayPrefix(secret), CreatedBy: name, ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	return secret
}

// sameAdminAgain mints, with the first admin's token, another admin token:
// the same person with a second credential.
func sameAdminAgain(t *testing.T, ts *testServer) string {
	t.Helper()
	var out struct{ Secret string }
	ts.mustDo(201, "POST", "/api/v1/tokens", ts.Token, map[string]any{"name": fmt.Sprintf("again-%d", secondAdmins.Add(1)), "role": "admin"}).json(t, &out)
	return out.Secret
}

// requestApproval posts a wipe that needs approval and returns the pending request.
func requestApproval(t *testing.T, ts *testServer, token, path string, body map[string]any) mdmd.Approval {
	t.Helper()
	var out struct {
		Approval *mdmd.Approval  `json:"approval"`
		Commands json.RawMessage `json:"commands"`
	}
	ts.mustDo(202, "POST", path, token, body).json(t, &out)
	if out.Approval == nil || out.Approval.State != mdmd.ApprovalPending || out.Commands != nil {
		t.Fatalf("%s answered %+v, want a pending approval and no commands", path, out)
	}
	return *out.Approval
}

// approve has the token approve an approval and returns it decided.
func approve(t *testing.T, ts *testServer, token, id string) mdmd.Approval {
	t.Helper()
	var out struct {
		Approval mdmd.Approval `json:"approval"`
	}
	ts.mustDo(200, "POST", "/api/v1/approvals/"+id+"/approve", token, nil).json(t, &out)
	return out.Approval
}

// approvedCommands returns the commands an approved device wipe queued.
func approvedCommands(t *testing.T, ts *testServer, a mdmd.Approval) []mdmd.Command {
	t.Helper()
	var res struct {
		CommandIDs []string `json:"command_ids"`
	}
	if a.State != mdmd.ApprovalApproved || json.Unmarshal(a.Result, &res) != nil || len(res.CommandIDs) == 0 {
		t.Fatalf("approval = %s, result %s", a.State, a.Result)
	}
	var out []mdmd.Command
	for _, id := range res.CommandIDs {
		c, err := ts.srv.Store().GetCommand(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *c)
	}
	return out
}

// fullWipeApproved requests a full wipe as the bootstrap admin, checks
// that nothing was queued, has a second admin approve it and returns the
// commands that then were.
func fullWipeApproved(t *testing.T, ts *testServer, deviceID string, body map[string]any) []mdmd.Command {
	t.Helper()
	before := deviceCommands(t, ts, deviceID)
	a := requestApproval(t, ts, ts.Token, "/api/v1/devices/"+deviceID+"/actions/wipe", body)
	if a.Kind != mdmd.ApprovalDeviceWipeFull || a.TargetID != deviceID {
		t.Fatalf("approval = %+v", a)
	}
	if after := deviceCommands(t, ts, deviceID); len(after) != len(before) {
		t.Fatalf("a full wipe request queued commands before its approval: %+v", after)
	}
	return approvedCommands(t, ts, approve(t, ts, secondAdmin(t, ts), a.ID))
}

func deviceCommands(t *testing.T, ts *testServer, deviceID string) []mdmd.Command {
	t.Helper()
	cmds, _, err := ts.srv.Store().ListCommands(context.Background(), mdmd.CommandFilter{DeviceID: deviceID, Limit: mdmd.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	return cmds
}

func countRequestType(cmds []mdmd.Command, rt string) int {
	n := 0
	for _, c := range cmds {
		if c.RequestType == rt {
			n++
		}
	}
	return n
}

func TestTwoPersonWipeApproval(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			env := newAppleEnv(t, b.URL)
			ctx := context.Background()
			url, _ := env.link(t, map[string]any{"one_time": false})
			sim, dev := env.enroll(t, url, "00008110-000A1C2E3F4DA001", applesim.DefaultPosture)
			fx := &fixture{testServer: env.testServer}
			helpdesk := fx.tokenFor(t, mdmd.RoleHelpdesk)
			second := secondAdmin(t, env.testServer)
			wipePath := "/api/v1/devices/" + dev.ID + "/actions/wipe"
			body := map[string]any{"mode": "full", "reason": "stolen", "confirm": sim.Name}

			// Helpdesk may neither request nor see nor decide.
			env.mustDo(403, "POST", wipePath, helpdesk, body)
			env.mustDo(403, "GET", "/api/v1/approvals", helpdesk, nil)

			// The request sends nothing.
			a := requestApproval(t, env.testServer, env.Token, wipePath, body)
			if a.Kind != mdmd.ApprovalDeviceWipeFull || a.TargetType != "device" || a.TargetID != dev.ID || a.Reason != "stolen" ||
				a.RequestedByName == "" || a.ExpiresAt.Sub(a.RequestedAt) != mdmd.DefaultApprovalTTL {
				t.Fatalf("approval = %+v", a)
			}
			env.mustDo(403, "POST", "/api/v1/approvals/"+a.ID+"/approve", helpdesk, nil)
			time.Sleep(300 * time.Millisecond) // anything queued would have been pushed and fetched
			if n := countRequestType(deviceCommands(t, env.testServer, dev.ID), "EraseDevice"); n != 0 || sim.State().Erased {
				t.Fatalf("a pending full wipe sent %d EraseDevice commands (erased %v)", n, sim.State().Erased)
			}

			// The requester cannot approve their own request, not even with
			// another admin token they minted themselves.
			if r := env.do("POST", "/api/v1/approvals/"+a.ID+"/approve", env.Token, nil); r.Status != 403 || r.errCode(t) != mdmd.EForbidden {
				t.Fatalf("self-approval = %d %s", r.Status, r.Body)
			}
			if r := env.do("POST", "/api/v1/approvals/"+a.ID+"/approve", sameAdminAgain(t, env.testServer), nil); r.Status != 403 || r.errCode(t) != mdmd.EForbidden {
				t.Fatalf("self-approval through a second token = %d %s", r.Status, r.Body)
			}
			var got mdmd.Approval
			env.mustDo(200, "GET", "/api/v1/approvals/"+a.ID, second, nil).json(t, &got)
			if got.State != mdmd.ApprovalPending || countRequestType(deviceCommands(t, env.testServer, dev.ID), "EraseDevice") != 0 {
				t.Fatalf("after a refused self-approval: %+v", got)
			}
			var pending web.Page[mdmd.Approval]
			env.mustDo(200, "GET", "/api/v1/approvals?state=pending", second, nil).json(t, &pending)
			if len(pending.Items) != 1 || pending.Items[0].ID != a.ID {
				t.Fatalf("pending approvals = %+v", pending.Items)
			}
			env.mustDo(400, "GET", "/api/v1/approvals?state=maybe", second, nil)
			env.mustDo(400, "POST", "/api/v1/approvals/"+a.ID+"/reject", second, map[string]any{"reason": ""})

			// A second admin approves: EraseDevice reaches the device, once.
			done := approve(t, env.testServer, second, a.ID)
			if done.DecidedByName == "" || done.DecidedAt == nil {
				t.Fatalf("approved = %+v", done)
			}
			erase := env.waitFinal(t, approvedCommands(t, env.testServer, done))
			if len(erase) != 1 || erase[0].RequestType != "EraseDevice" || erase[0].Status != mdmd.CommandAcknowledged || !sim.State().Erased {
				t.Fatalf("approved full wipe = %+v, device %+v", erase, sim.State())
			}
			third := secondAdmin(t, env.testServer)
			if r := env.do("POST", "/api/v1/approvals/"+a.ID+"/approve", third, nil); r.Status != 409 {
				t.Fatalf("second approval = %d %s", r.Status, r.Body)
			}
			if n := countRequestType(deviceCommands(t, env.testServer, dev.ID), "EraseDevice"); n != 1 {
				t.Fatalf("%d EraseDevice commands, want 1", n)
			}
			eventually(t, 5*time.Second, "wiped state", func() bool {
				d, _ := env.srv.Store().GetDevice(ctx, dev.ID)
				return d.EnrollmentState == mdmd.EnrollmentWiped
			})

			// Every step is in the audit log, with the reason and outcome.
			var audit web.Page[mdmd.AuditEvent]
			env.mustDo(200, "GET", "/api/v1/audit?target="+dev.ID+"&limit=1000", env.Token, nil).json(t, &audit)
			seen := map[string]string{}
			for _, e := range audit.Items {
				if e.Reason == "stolen" {
					seen[e.Action+"/"+e.Outcome] = e.Actor
				}
			}
			for _, k := range []string{"approval.request/success", "approval.approve/denied", "approval.approve/success", "device.wipe/success"} {
				if _, ok := seen[k]; !ok {
					t.Errorf("audit lacks %s: %v", k, seen)
				}
			}

			// An expired request cannot be approved.
			sim2, dev2 := env.enroll(t, url, "00008110-000A1C2E3F4DA002", applesim.DefaultPosture)
			old := requestApproval(t, env.testServer, env.Token, "/api/v1/devices/"+dev2.ID+"/actions/wipe",
				map[string]any{"mode": "full", "reason": "lost", "confirm": sim2.Serial})
			if _, err := env.srv.Store().DB().Exec("UPDATE approvals SET expires_at = requested_at WHERE id = '" + old.ID + "'"); err != nil {
				t.Fatal(err)
			}
			env.mustDo(409, "POST", "/api/v1/approvals/"+old.ID+"/approve", second, nil)
			env.mustDo(200, "GET", "/api/v1/approvals/"+old.ID, second, nil).json(t, &got)
			if got.State != mdmd.ApprovalExpired || countRequestType(deviceCommands(t, env.testServer, dev2.ID), "EraseDevice") != 0 {
				t.Fatalf("expired approval = %+v", got)
			}

			// A group wipe needs the group's name and an approval; a
			// rejected one sends nothing.
			var g mdmd.Group
			env.mustDo(201, "POST", "/api/v1/groups", env.Token, map[string]any{"name": "loaners"}).json(t, &g)
			env.mustDo(204, "POST", "/api/v1/groups/"+g.ID+"/members", env.Token, map[string]any{"device_ids": []string{dev2.ID}})
			groupPath := "/api/v1/groups/" + g.ID + "/actions/wipe"
			env.mustDo(400, "POST", groupPath, env.Token, map[string]any{"mode": "selective", "reason": "returned", "confirm": "wrong"})
			env.mustDo(403, "POST", groupPath, helpdesk, map[string]any{"mode": "selective", "reason": "returned", "confirm": "loaners"})
			rej := requestApproval(t, env.testServer, env.Token, groupPath, map[string]any{"mode": "selective", "reason": "returned", "confirm": "loaners"})
			var rejected struct {
				Approval mdmd.Approval `json:"approval"`
			}
			env.mustDo(200, "POST", "/api/v1/approvals/"+rej.ID+"/reject", second, map[string]any{"reason": "not yet"}).json(t, &rejected)
			if rejected.Approval.State != mdmd.ApprovalRejected || rejected.Approval.DecisionReason != "not yet" {
				t.Fatalf("rejected = %+v", rejected.Approval)
			}
			env.mustDo(409, "POST", "/api/v1/approvals/"+rej.ID+"/approve", third, nil)
			if n := countRequestType(deviceCommands(t, env.testServer, dev2.ID), "RemoveProfile"); n != 0 {
				t.Fatalf("a rejected group wipe queued %d commands", n)
			}
			ok := requestApproval(t, env.testServer, env.Token, groupPath, map[string]any{"mode": "selective", "reason": "returned", "confirm": "loaners"})
			if ok.Kind != mdmd.ApprovalGroupWipe || ok.TargetID != g.ID {
				t.Fatalf("group approval = %+v", ok)
			}
			doneGroup := approve(t, env.testServer, second, ok.ID)
			var res struct {
				Devices    int `json:"devices"`
				IOSDevices int `json:"ios_devices"`
			}
			if doneGroup.State != mdmd.ApprovalApproved || json.Unmarshal(doneGroup.Result, &res) != nil || res.Devices != 1 || res.IOSDevices != 1 {
				t.Fatalf("approved group wipe = %s %s", doneGroup.State, doneGroup.Result)
			}
			eventually(t, 10*time.Second, "the group's device checks out", func() bool {
				d, _ := env.srv.Store().GetDevice(ctx, dev2.ID)
				return d.EnrollmentState == mdmd.EnrollmentUnenrolled
			})
			if env.auditCount(t, "group.wipe") != 1 || env.auditCount(t, "approval.reject") != 1 {
				t.Fatal("group wipe or rejection not audited")
			}
		})
	}
}

func (ts *testServer) auditCount(t *testing.T, action string) int {
	return (&fixture{testServer: ts}).auditCount(t, action)
}
