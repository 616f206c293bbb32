package app

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
)

// TestConsoleAdminBrowser drives the admin's setup pages in Chromium: an
// enrollment link made on the enrollment page enrolls a simulated iPhone,
// which then shows in the device list under its owner; the push
// certificate page shows the topic; a user added on the users page (after
// a refused short password) is disabled and can no longer sign in; the
// settings index links the settings pages; the dashboard fits a phone.
func TestConsoleAdminBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	eachBackend(t, func(t *testing.T, dbURL string) {
		dir := artifactDir(t)
		env := newAppleEnv(t, dbURL)
		alice := newBrowser(t, chromium, env.URL, dir)
		alice.login("alice", createUser(t, env.testServer, "alice", mdmd.RoleAdmin))

		// An enrollment link, used by a simulated iPhone.
		alice.open("/enrollment")
		alice.run(chromedp.SendKeys(chromedp.ID("#l-owner"), "dana@example.com"), chromedp.Submit(chromedp.ID("#l-owner")),
			chromedp.WaitVisible(chromedp.ID("#new-link")))
		link := browserValue(alice, chromedp.Value(chromedp.ID("#new-link")))
		if !strings.HasPrefix(link, env.URL+"/enroll/") {
			t.Fatalf("the enrollment page gave %q", link)
		}
		alice.screenshot("enrollment-link")
		_, dev := env.enroll(t, link, "00008110-0000000000AD0001", applesim.DefaultPosture)
		alice.open("/devices?owner=dana%40example.com")
		if rows := alice.text("table.devices tbody"); !strings.Contains(rows, dev.Name) || !strings.Contains(rows, "enrolled") {
			t.Fatalf("the enrolled iPhone is not listed under its owner:\n%s", rows)
		}

		// The push certificate in use.
		alice.open("/settings/push-certificate")
		if info := alice.text("#push-info"); !strings.Contains(info, env.topic) {
			t.Fatalf("push certificate page: %q", info)
		}
		alice.screenshot("push-certificate")

		// Users: a short password is refused beside the form; a new
		// helpdesk user, once disabled, cannot sign in.
		alice.open("/settings/users")
		// (The browser would check the length itself; the server must too.)
		browserValue(alice, chromedp.Evaluate[any](`document.getElementById('u-password').removeAttribute('minlength')`))
		alice.run(chromedp.SendKeys(chromedp.ID("#u-name"), "carol"), chromedp.SendKeys(chromedp.ID("#u-password"), "short"),
			chromedp.SetValue(chromedp.ID("#u-role"), "helpdesk"),
			chromedp.Submit(chromedp.ID("#u-name")), chromedp.WaitVisible(chromedp.ID("#user-error")))
		if msg := alice.text("#user-error"); !strings.Contains(msg, "12") {
			t.Fatalf("short password: %q", msg)
		}
		const carolPW = "carol's long enough password"
		alice.run(chromedp.SetValue(chromedp.ID("#u-password"), carolPW), chromedp.SetValue(chromedp.ID("#u-role"), "helpdesk"),
			chromedp.Submit(chromedp.ID("#u-name")), chromedp.WaitVisible(chromedp.CSS(".flash")))
		if rows := alice.text("#users"); !strings.Contains(rows, "carol") || !strings.Contains(rows, "helpdesk") {
			t.Fatalf("users list:\n%s", rows)
		}
		alice.screenshot("users")
		alice.run(chromedp.Click(chromedp.CSS(`button[aria-label="Disable carol"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
		carol := newBrowser(t, chromium, env.URL, dir)
		carol.open("/login")
		carol.run(chromedp.WaitVisible(chromedp.ID("#username")), chromedp.SendKeys(chromedp.ID("#username"), "carol"),
			chromedp.SendKeys(chromedp.ID("#password"), carolPW), chromedp.Submit(chromedp.ID("#password")),
			chromedp.WaitVisible(chromedp.CSS(".alert")))
		if carol.count("nav[aria-label=Main]") != 0 {
			t.Fatal("a disabled user signed in")
		}

		// The settings index links every settings page.
		alice.open("/settings")
		for _, href := range []string{"/settings/push-certificate", "/settings/android", "/settings/webhooks", "/settings/ssf",
			"/settings/mtd", "/settings/tokens", "/settings/users"} {
			if alice.count(`ul.settings-index a[href="`+href+`"]`) != 1 {
				t.Errorf("the settings index does not link %s", href)
			}
		}
		alice.screenshot("settings")

		// A phone-sized screen: the dashboard and the device list fit.
		alice.run(chromedp.EmulateViewport(390, 844))
		for _, page := range []string{"/", "/devices", "/settings"} {
			alice.open(page)
			if w := browserValue(alice, chromedp.Evaluate[int](`document.documentElement.scrollWidth`)); w > 390 {
				t.Errorf("%s is %dpx wide at a 390px viewport", page, w)
			}
		}
		alice.open("/")
		alice.screenshot("dashboard-phone")
	})
}
