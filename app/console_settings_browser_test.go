package app

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/ssf"
)

// TestConsoleSettingsBrowser drives the webhook, SSF and MTD settings
// pages in Chromium: an endpoint made there shows its secret once, a test
// event sent from its page reaches a local receiver signed with that
// secret and shows as delivered in the log; the SSF and MTD pages list a
// receiver's stream and a partner's verdict, at desktop and phone width.
func TestConsoleSettingsBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	eachBackend(t, func(t *testing.T, dbURL string) {
		dir := artifactDir(t)
		f := newFixture(t, dbURL)
		rc := &hookReceiver{}
		rcSrv := newHookServer(t, rc)
		rcv := f.tokenFor(t, mdmd.RoleSSFReceiver)
		f.mustDo(201, "POST", "/api/v1"+ssf.StreamsPath, rcv, map[string]any{"delivery": map[string]any{"method": mdmd.SSFDeliveryPoll},
			"description": "Okta device signals"})
		partner := f.tokenFor(t, mdmd.RoleMTDPartner)
		f.mustDo(200, "PUT", "/api/v1/mtd/devices/"+f.ios.ID+"/threat", partner, map[string]any{"level": "medium", "source": "Acme MTD"})

		pw := createUser(t, f.testServer, "alice", mdmd.RoleAdmin)
		b := newBrowser(t, chromium, f.URL, dir)
		b.login("alice", pw)

		// Create an endpoint: the secret is shown once.
		b.open("/settings/webhooks")
		b.run(chromedp.WaitVisible(chromedp.ID("#w-url")), chromedp.SendKeys(chromedp.ID("#w-name"), "SIEM"),
			chromedp.SendKeys(chromedp.ID("#w-url"), rcSrv.URL+"/hook"), chromedp.Submit(chromedp.ID("#w-url")),
			chromedp.WaitVisible(chromedp.ID("#webhook-secret")))
		secret := browserValue(b, chromedp.Value(chromedp.ID("#new-secret")))
		if !strings.HasPrefix(secret, "whsec_") {
			t.Fatalf("the shown secret: %q", secret)
		}
		rc.secret = secret
		b.screenshot("webhook-created")
		b.open("/settings/webhooks")
		if b.count("#new-secret") != 0 || strings.Contains(b.text("main"), secret) {
			t.Fatal("the secret is shown again")
		}

		// Send a test event from the endpoint's page; it is delivered.
		b.run(chromedp.Click(chromedp.Search(`//a[text()="SIEM"]`)), chromedp.WaitVisible(chromedp.ID("#h-deliveries")))
		b.run(chromedp.Click(chromedp.Search(`//button[text()="Send test event"]`)))
		b.waitURL("done=test")
		eventually(t, 20*time.Second, "the test event in the delivery log", func() bool {
			b.open(strings.TrimPrefix(b.location(), f.URL))
			return strings.Contains(b.text("#deliveries"), "webhook.test") && b.count("#deliveries .badge.delivered") > 0
		})
		if got := rc.received(); !containsString(got, mdmd.EventWebhookTest) || containsString(got, "bad") {
			t.Fatalf("the receiver got %v", got)
		}
		b.screenshot("webhook-deliveries")

		b.open("/settings/ssf")
		if !strings.Contains(b.text("#streams"), "Okta device signals") {
			t.Fatal("the SSF page does not list the stream")
		}
		b.screenshot("ssf")
		b.open("/settings/mtd")
		if !strings.Contains(b.text("#verdicts"), "Acme MTD") {
			t.Fatal("the MTD page does not list the verdict")
		}
		b.screenshot("mtd")

		// Phone width: the pages' content still fits (tables scroll in
		// their own box). The header's navigation is the layout's.
		b.run(chromedp.EmulateViewport(390, 844))
		for _, p := range []string{"/settings/webhooks", "/settings/ssf", "/settings/mtd"} {
			b.open(p)
			if w := browserValue(b, chromedp.Evaluate[int](`document.querySelector("main").scrollWidth`)); w > 400 {
				t.Errorf("%s is %d px wide at phone width", p, w)
			}
			b.screenshot("phone-" + strings.ReplaceAll(strings.TrimPrefix(p, "/settings/"), "/", "-"))
		}
		if os.Getenv("MDMD_ARTIFACTS") == "" {
			t.Logf("screenshots in %s (set MDMD_ARTIFACTS to keep them)", dir)
		}
	})
}
