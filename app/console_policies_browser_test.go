package app

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/mdmd/mdmd"
)

// TestConsolePoliciesBrowser drives the policy and group pages in
// Chromium: an admin creates a policy with a rule, assigns it to a group,
// adds a device to the group by its serial number and sees it listed on
// the group's page; the pages are screenshotted at desktop and phone
// widths.
func TestConsolePoliciesBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	eachBackend(t, func(t *testing.T, dbURL string) {
		dir := artifactDir(t)
		ts := start(t, "--data-dir", t.TempDir(), "--database-url", dbURL)
		ctx, st := context.Background(), ts.srv.Store()
		g := &mdmd.Group{Name: "Field sales", Description: "phones in the field"}
		if err := st.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		udid := "00008110-00000000000B0A51"
		d := &mdmd.Device{Platform: mdmd.PlatformIOS, UDID: &udid, Name: "Rosa's iPhone", SerialNumber: "C02BROWSER01", Model: "iPhone15,2",
			OSVersion: "17.4", OwnerUser: "rosa@example.com", Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled}
		if err := st.CreateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		pw := createUser(t, ts, "alice", mdmd.RoleAdmin)
		b := newBrowser(t, chromium, ts.URL, dir)
		b.login("alice", pw)

		// A policy with a rule, from the list's "New policy" link.
		b.open("/policies")
		b.run(chromedp.Click(chromedp.CSS(`a[href="/policies/new"]`)), chromedp.WaitVisible(chromedp.ID("#p-name")))
		b.run(chromedp.SendKeys(chromedp.ID("#p-name"), "Field baseline"), chromedp.SetValue(chromedp.ID("#p-platform"), "ios"),
			chromedp.SendKeys(chromedp.ID("#r-min_os_version"), "17.2"), chromedp.Click(chromedp.ID("#r-require_passcode")),
			chromedp.Click(chromedp.ID("#r-action_notify")),
			chromedp.Click(chromedp.CSS(`#policy-form button[type=submit]`)))
		b.waitURL("done=create")
		ps, err := st.ListCompliancePolicies(ctx)
		if err != nil || len(ps) != 1 || !strings.Contains(string(ps[0].Rules), `"min_os_version":"17.2"`) ||
			!strings.Contains(string(ps[0].Rules), `"require_passcode":true`) {
			t.Fatalf("stored policies: %+v, %v", ps, err)
		}

		// Assigned to the group with a priority.
		b.run(chromedp.SetValue(chromedp.ID("#a-group"), g.ID), chromedp.SetValue(chromedp.ID("#a-priority"), "20"),
			chromedp.Click(chromedp.CSS(`form[action$="/groups"] button[type=submit]`)))
		b.waitURL("done=assign")
		if got := b.text("#assignments"); !strings.Contains(got, "Field sales") || !strings.Contains(got, "20") {
			t.Fatalf("the assignments: %q", got)
		}
		b.screenshot("policy")

		// The group's page, from the link beside the assignment: add the
		// device by serial number.
		b.run(chromedp.Click(chromedp.CSS(`#assignments a[href="/groups/`+g.ID+`"]`)), chromedp.WaitVisible(chromedp.ID("#m-devices")))
		b.run(chromedp.SendKeys(chromedp.ID("#m-devices"), "c02browser01"), chromedp.Click(chromedp.CSS(`form[action$="/members"] button`)))
		b.waitURL("done=add")
		if got := b.text("#members"); !strings.Contains(got, "Rosa's iPhone") || !strings.Contains(got, "C02BROWSER01") {
			t.Fatalf("the members: %q", got)
		}
		if b.count(`#members a[href="/devices/`+d.ID+`"]`) != 1 {
			t.Error("the member does not link to its device")
		}
		b.screenshot("group")
		b.open("/policies")
		if got := b.text("#policies"); !strings.Contains(got, "Field baseline") || !strings.Contains(got, "Field sales (20)") {
			t.Errorf("the policy list: %q", got)
		}
		b.screenshot("policies")

		// At phone width the forms still fit.
		b.run(chromedp.EmulateViewport(390, 844))
		b.open("/policies/" + ps[0].ID)
		if w := browserValue(b, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
			t.Errorf("the policy page is %dpx wide at a 390px viewport", w)
		}
		b.screenshot("policy-phone")
		b.open("/groups/" + g.ID)
		b.screenshot("group-phone")
	})
}
