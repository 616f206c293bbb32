package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
)

// TestConsoleBulkBrowser drives bulk actions in Chromium: from a filtered
// device list, lock every device of a group and watch the progress page
// count the simulated iPhones' acknowledgements; request a bulk wipe (a
// wrong count is refused beside the form); a second admin rejects it on
// the approvals page and it is cancelled with nothing sent; requested
// again and approved, it removes the devices' management.
func TestConsoleBulkBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	eachBackend(t, func(t *testing.T, dbURL string) {
		dir := artifactDir(t)
		env := newAppleEnv(t, dbURL)
		ctx, st := context.Background(), env.srv.Store()
		link, _ := env.link(t, map[string]any{"one_time": false})
		var sims []*applesim.Device
		var ids []string
		for _, udid := range []string{"00008110-0000000000B0C001", "00008110-0000000000B0C002"} {
			sim, dev := env.enroll(t, link, udid, applesim.DefaultPosture)
			sims, ids = append(sims, sim), append(ids, dev.ID)
		}
		var g mdmd.Group
		env.mustDo(201, "POST", "/api/v1/groups", env.Token, map[string]any{"name": "couriers"}).json(t, &g)
		env.mustDo(204, "POST", "/api/v1/groups/"+g.ID+"/members", env.Token, map[string]any{"device_ids": ids})
		removes := func() int {
			n := 0
			for _, id := range ids {
				n += countRequestType(deviceCommands(t, env.testServer, id), "RemoveProfile")
			}
			return n
		}

		alice := newBrowser(t, chromium, env.URL, dir)
		alice.login("alice", createUser(t, env.testServer, "alice", mdmd.RoleAdmin))
		bob := newBrowser(t, chromium, env.URL, dir)
		bob.login("bob", createUser(t, env.testServer, "bob", mdmd.RoleAdmin))

		// From the group's device list to a bulk lock.
		alice.open("/devices?group=" + g.ID)
		alice.run(chromedp.Click(chromedp.ID("#bulk-new")), chromedp.WaitVisible(chromedp.ID("#bl-message")))
		if h := alice.text("h1"); h != "Act on 2 devices" || !strings.Contains(alice.text("main"), "in group couriers") {
			t.Fatalf("bulk page heading %q:\n%s", h, alice.text("main"))
		}
		alice.screenshot("bulk-new")
		alice.run(chromedp.SendKeys(chromedp.ID("#bl-message"), "Bring the phone to IT"), chromedp.Submit(chromedp.ID("#bl-message")))
		alice.waitURL("done=create")
		eventually(t, 20*time.Second, "both devices to acknowledge the lock on the progress page", func() bool {
			alice.open(strings.TrimPrefix(strings.SplitN(alice.location(), "?", 2)[0], env.URL))
			return alice.text("#c-ack") == "2" && alice.text("#bulk-state") == "done"
		})
		if txt := alice.text("#bulk-handled"); !strings.Contains(txt, "2 of 2 handled (100%)") {
			t.Fatalf("progress: %q", txt)
		}
		alice.screenshot("bulk-progress")
		for _, sim := range sims {
			if s := sim.State(); !s.Locked || s.LockMessage != "Bring the phone to IT" {
				t.Fatalf("%s after the bulk lock: %+v", sim.Name, s)
			}
		}

		// A bulk wipe: the count typed back must match.
		requestWipe := func(reason string) {
			alice.open("/bulk/new?group=" + g.ID)
			alice.run(chromedp.SendKeys(chromedp.ID("#bw-reason"), reason), chromedp.SendKeys(chromedp.ID("#bw-confirm"), "3"),
				chromedp.Submit(chromedp.ID("#bw-confirm")), chromedp.WaitVisible(chromedp.CSS("form[action='/bulk/wipe'] .field-error")))
			if msg := alice.text("form[action='/bulk/wipe'] .field-error"); !strings.Contains(msg, "(2)") {
				t.Fatalf("wrong count: %q", msg)
			}
			alice.run(chromedp.SetValue(chromedp.ID("#bw-confirm"), "2"), chromedp.Submit(chromedp.ID("#bw-confirm")))
			alice.waitURL("done=create")
			if st := alice.text("#bulk-state"); st != "awaiting approval" {
				t.Fatalf("bulk wipe state %q", st)
			}
		}
		requestWipe("couriers contract ended")
		wipePage := strings.TrimPrefix(strings.SplitN(alice.location(), "?", 2)[0], env.URL)
		alice.screenshot("bulk-awaiting-approval")

		// Bob rejects it: cancelled, nothing sent.
		bob.open("/approvals")
		if txt := bob.text("ul.approvals"); !strings.Contains(txt, "Bulk selective wipe of 2 devices") {
			t.Fatalf("approvals page:\n%s", txt)
		}
		bob.screenshot("approvals-bulk")
		bob.run(chromedp.SendKeys(chromedp.CSS(`form[action$="/reject"] input[name=reason]`), "not before HR signs off"),
			chromedp.Submit(chromedp.CSS(`form[action$="/reject"] input[name=reason]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
		if msg := bob.text(".flash"); !strings.Contains(msg, "Rejected") {
			t.Fatalf("after rejecting: %q", msg)
		}
		alice.open(wipePage)
		if st := alice.text("#bulk-state"); st != "cancelled" || !strings.Contains(alice.text("main"), "not before HR signs off") {
			t.Fatalf("rejected bulk wipe: %q\n%s", st, alice.text("main"))
		}
		time.Sleep(300 * time.Millisecond)
		if n := removes(); n != 0 {
			t.Fatalf("a rejected bulk wipe sent %d RemoveProfile commands", n)
		}

		// Requested again and approved: the devices leave management.
		requestWipe("couriers contract ended, HR signed off")
		bob.open("/approvals")
		bob.run(chromedp.Click(chromedp.CSS(`form[action$="/approve"] button`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
		eventually(t, 20*time.Second, "the approved bulk wipe to finish", func() bool {
			alice.open(strings.TrimPrefix(strings.SplitN(alice.location(), "?", 2)[0], env.URL))
			return alice.text("#bulk-state") == "done" && alice.text("#c-ack") == "2"
		})
		eventually(t, 10*time.Second, "the devices to check out", func() bool {
			for _, id := range ids {
				if d, _ := st.GetDevice(ctx, id); d.EnrollmentState != mdmd.EnrollmentUnenrolled {
					return false
				}
			}
			return true
		})
		if n := removes(); n != 2 {
			t.Fatalf("%d RemoveProfile commands, want 2", n)
		}
		alice.open("/bulk")
		if rows := alice.text("#bulk-list tbody"); strings.Count(rows, "selective wipe") != 2 || !strings.Contains(rows, "lock") {
			t.Fatalf("bulk list:\n%s", rows)
		}
	})
}
