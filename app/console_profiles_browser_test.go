package app

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/mdmd/mdmd"
)

// In Chromium: an admin creates a Wi-Fi profile from its form on the
// profiles page (a refused password first), assigns it to a group, sees
// it in the list, and opens the Android Enterprise settings page; the
// pages are screenshotted, the profile page also at phone width.
func TestConsoleProfilesBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	eachBackend(t, func(t *testing.T, dbURL string) {
		dir := artifactDir(t)
		env := newAndroidEnv(t, dbURL)
		ctx, st := context.Background(), env.srv.Store()
		g := &mdmd.Group{Name: "warehouse"}
		if err := st.CreateGroup(ctx, g); err != nil {
			t.Fatal(err)
		}
		pw := createUser(t, env.testServer, "paula", mdmd.RoleAdmin)
		b := newBrowser(t, chromium, env.URL, dir)
		if secret := b.login("paula", pw); secret == "" {
			t.Fatal("an admin signed in without a second factor")
		}

		b.open("/profiles")
		b.run(chromedp.Click(chromedp.CSS("#create-wifi summary")), chromedp.WaitVisible(chromedp.ID("#new-wifi-ssid")),
			chromedp.SendKeys(chromedp.ID("#new-wifi-name"), "Warehouse Wi-Fi"), chromedp.SendKeys(chromedp.ID("#new-wifi-ssid"), "Acme-WH"),
			chromedp.SendKeys(chromedp.ID("#new-wifi-password"), "short"), chromedp.Submit(chromedp.ID("#new-wifi-ssid")),
			chromedp.WaitVisible(chromedp.ID("#new-wifi-password-error")))
		if !strings.Contains(b.text("#new-wifi-password-error"), "8 to 63 characters") {
			t.Errorf("the refused password's error: %q", b.text("#new-wifi-password-error"))
		}
		b.screenshot("profile-refused")
		b.run(chromedp.SendKeys(chromedp.ID("#new-wifi-password"), "correct horse"), chromedp.Submit(chromedp.ID("#new-wifi-ssid")))
		b.waitURL("done=create")
		if h := b.text("h1"); h != "Warehouse Wi-Fi" {
			t.Fatalf("after creating: %q", h)
		}
		b.run(chromedp.SetValue(chromedp.ID("#assign-group"), g.ID), chromedp.Submit(chromedp.ID("#assign-group")))
		b.waitURL("done=assign")
		if got := b.text("#assignments"); !strings.Contains(got, "warehouse") {
			t.Fatalf("assignments: %q", got)
		}
		b.screenshot("profile")
		b.run(chromedp.EmulateViewport(390, 844))
		b.screenshot("profile-phone")
		b.run(chromedp.EmulateViewport(1280, 900))

		b.open("/profiles")
		if got := b.text("#profiles tbody"); !strings.Contains(got, "Warehouse Wi-Fi") || !strings.Contains(got, "warehouse") {
			t.Fatalf("the list: %q", got)
		}
		b.screenshot("profiles")

		b.open("/settings/android")
		if got := b.text("#android-enterprise"); !strings.Contains(got, "enterprises/") || !strings.Contains(got, "projects/mdmd-test/topics/amapi") {
			t.Fatalf("the Android page: %q", got)
		}
		b.screenshot("android")
		ps, err := st.ListProfiles(ctx)
		if err != nil || len(ps) != 1 || ps[0].Kind != mdmd.ProfileWiFi {
			t.Fatalf("stored: %+v, %v", ps, err)
		}
	})
}
