package app

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/apple/applesim"
	"github.com/mdmd/mdmd/auth"
	"github.com/mdmd/mdmd/web/console"
)

// chromiumPath finds Debian's Chromium. Under CI a missing browser fails
// the test; elsewhere the browser tests are skipped.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("MDMD_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("Chromium is required under CI (apt-get install chromium): the console's browser tests cannot run")
	}
	t.Skip("Chromium not installed (apt-get install chromium); skipping the console's browser tests")
	return ""
}

// artifactDir is where screenshots go: $MDMD_ARTIFACTS, or a temp dir.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("MDMD_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// browser is one Chromium with its own profile (its own cookies).
type browser struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
}

func newBrowser(t *testing.T, execPath, base, dir string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(execPath), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	b := &browser{t: t, ctx: ctx, base: base, dir: dir}
	// The first run starts the browser, without a timeout (see chromedp.Run).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return b
}

func (b *browser) fatal(err error) {
	b.t.Helper()
	loc, _ := chromedp.Run(b.ctx, chromedp.Location())
	body, _ := chromedp.Run(b.ctx, chromedp.Text(chromedp.CSS("body")))
	b.t.Fatalf("browser: %v\nat %s:\n%s", err, loc, body)
}

func (b *browser) run(steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.fatal(err)
	}
}

func browserValue[T any](b *browser, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.fatal(err)
	}
	return v
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return browserValue(b, chromedp.Text(chromedp.CSS(sel)))
}

func (b *browser) count(sel string) int {
	b.t.Helper()
	return browserValue(b, chromedp.Evaluate[int](`document.querySelectorAll(`+strconv.Quote(sel)+`).length`))
}

func (b *browser) location() string { b.t.Helper(); return browserValue(b, chromedp.Location()) }

// waitURL waits until the browser's location contains s (after a form
// submission, which does not wait for the next page).
func (b *browser) waitURL(s string) {
	b.t.Helper()
	eventually(b.t, 10*time.Second, "the browser to reach "+s, func() bool {
		loc, err := chromedp.Run(b.ctx, chromedp.Location())
		return err == nil && strings.Contains(loc, s)
	})
	b.run(chromedp.WaitReady(chromedp.CSS("body")))
}

func (b *browser) open(path string) { b.t.Helper(); b.run(chromedp.Navigate(b.base + path)) }

func (b *browser) screenshot(name string) {
	b.t.Helper()
	png := browserValue(b, chromedp.FullScreenshot(100))
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.t.Logf("screenshot: %s", p)
}

// login signs in; a user who must use TOTP enrolls (reading the key off
// the page) and gives a code. It returns the TOTP secret, if any.
func (b *browser) login(user, password string) string {
	b.t.Helper()
	b.open("/login")
	b.run(chromedp.WaitVisible(chromedp.ID("#username")),
		chromedp.SendKeys(chromedp.ID("#username"), user), chromedp.SendKeys(chromedp.ID("#password"), password),
		chromedp.Submit(chromedp.ID("#password")), chromedp.WaitVisible(chromedp.CSS("#code, nav[aria-label=Main], .alert")))
	if !strings.Contains(b.location(), "/login/totp") {
		if b.count(".alert") > 0 {
			b.t.Fatalf("sign-in as %s failed: %s", user, b.text(".alert"))
		}
		return ""
	}
	if b.count(`img.qr[src^="data:image/png;base64,"]`) != 1 {
		b.t.Fatal("the TOTP enrollment page shows no QR code")
	}
	secret := strings.TrimSpace(b.text("#totp-secret"))
	code, err := console.TOTPCodeAt(secret, time.Now())
	if err != nil {
		b.t.Fatal(err)
	}
	b.run(chromedp.SendKeys(chromedp.ID("#code"), code), chromedp.Submit(chromedp.ID("#code")),
		chromedp.WaitVisible(chromedp.CSS("nav[aria-label=Main]")))
	return secret
}

func createUser(t *testing.T, ts *testServer, name string, role mdmd.Role) string {
	t.Helper()
	pw := "correct horse battery " + name
	hash, err := auth.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.srv.Store().CreateAdminUser(context.Background(), &mdmd.AdminUser{Username: name, PasswordHash: hash, Role: role}); err != nil {
		t.Fatal(err)
	}
	return pw
}

// TestConsoleBrowser drives the console in real Chromium: TOTP sign-in,
// the device list's filters, a device's failed rules, a lock the simulated
// iPhone acknowledges, a full wipe that waits for a second admin, a form
// without its CSRF token, and a viewer who sees no wipe (and whom the API
// refuses).
func TestConsoleBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	eachBackend(t, func(t *testing.T, dbURL string) {
		dir := artifactDir(t)
		env := newAppleEnv(t, dbURL)
		ctx, st := context.Background(), env.srv.Store()

		// A fleet: an iPhone below the policy's minimum OS, and a compliant Android phone.
		env.mustDo(201, "POST", "/api/v1/compliance/policies", env.Token, map[string]any{"name": "baseline", "is_default": true,
			"rules": map[string]any{"min_os_version": "19", "require_passcode": true}})
		link, _ := env.link(t, map[string]any{"owner_user": "ana@example.com"})
		_, phone := env.enroll(t, link, "00008110-0000000000C0FFEE", applesim.DefaultPosture)
		env.action(t, env.Token, phone.ID, "query", map[string]any{})
		if _, err := st.UpdateDevice(ctx, phone.ID, mdmd.DeviceUpdate{Name: ptrTo("Ana's iPhone")}); err != nil {
			t.Fatal(err)
		}
		if _, err := env.srv.Compliance().EvaluateDevice(ctx, phone.ID, "test"); err != nil {
			t.Fatal(err)
		}
		amapi := "enterprises/LC0/devices/ok1"
		pixel := &mdmd.Device{Platform: mdmd.PlatformAndroid, AMAPIName: &amapi, Name: "Ben's Pixel", Model: "Pixel 8",
			Ownership: mdmd.OwnershipCorporate, EnrollmentState: mdmd.EnrollmentEnrolled, OwnerUser: "ben@example.com"}
		if err := st.CreateDevice(ctx, pixel); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.RecordCompliance(ctx, &mdmd.DeviceCompliance{DeviceID: pixel.ID, State: "compliant",
			Rules: mdmd.RawJSON(`[]`), EvaluatedAt: time.Now()}, "test"); err != nil {
			t.Fatal(err)
		}

		alicePW := createUser(t, env.testServer, "alice", mdmd.RoleAdmin)
		bobPW := createUser(t, env.testServer, "bob", mdmd.RoleAdmin)
		veraPW := createUser(t, env.testServer, "vera", mdmd.RoleViewer)

		// Sign in with TOTP (an admin enrolls at the first sign-in).
		alice := newBrowser(t, chromium, env.URL, dir)
		alice.open("/")
		alice.run(chromedp.WaitVisible(chromedp.ID("#username")))
		alice.screenshot("login")
		if secret := alice.login("alice", alicePW); secret == "" {
			t.Fatal("an admin signed in without a second factor")
		}
		if h := alice.text("h1"); h != "Dashboard" {
			t.Fatalf("after sign-in: %q", h)
		}
		alice.screenshot("dashboard")

		// Filter the device list.
		alice.open("/devices")
		alice.run(chromedp.SetValue(chromedp.ID("#f-compliance"), "noncompliant"), chromedp.SetValue(chromedp.ID("#f-platform"), "ios"),
			chromedp.Submit(chromedp.ID("#f-q")))
		alice.waitURL("compliance=noncompliant")
		rows := alice.text("table.devices tbody")
		if !strings.Contains(rows, "Ana's iPhone") || strings.Contains(rows, "Ben's Pixel") {
			t.Fatalf("filtered list:\n%s", rows)
		}
		alice.screenshot("devices")
		// (The Pixel's compliance is re-evaluated in the background, so it
		// is told apart by platform and ownership, not by state.)
		alice.open("/devices?platform=android&ownership=corporate&owner=ben%40example.com")
		if rows := alice.text("table.devices tbody"); !strings.Contains(rows, "Ben's Pixel") || strings.Contains(rows, "Ana's iPhone") {
			t.Fatalf("android list:\n%s", rows)
		}
		alice.open("/devices?sort=bogus")
		if msg := alice.text(".alert"); !strings.Contains(msg, "sort") {
			t.Fatalf("bad filter message: %q", msg)
		}

		// Open the device and read its failed rules.
		alice.open("/devices?q=ana")
		alice.run(chromedp.Click(chromedp.Search(`//a[text()="Ana's iPhone"]`)), chromedp.WaitVisible(chromedp.ID("#h-compliance")))
		failed := alice.text("table.rules tbody tr.rule-failed")
		if !strings.Contains(failed, "min_os_version") || !strings.Contains(failed, "18.1") || !strings.Contains(failed, "19") {
			t.Fatalf("failed rules:\n%s", failed)
		}
		alice.screenshot("device")

		// A form whose CSRF token was removed is refused, and nothing is sent.
		before, _, _ := st.ListCommands(ctx, mdmd.CommandFilter{DeviceID: phone.ID, Limit: 1000})
		browserValue(alice, chromedp.Evaluate[any](`document.querySelector('form[action$="/actions/lock"] input[name=csrf]').remove()`))
		alice.run(
			chromedp.Submit(chromedp.ID("#lock-message")), chromedp.WaitVisible(chromedp.CSS(".alert")))
		if msg := alice.text(".alert"); !strings.Contains(msg, "security token") {
			t.Fatalf("CSRF-less post: %q", msg)
		}
		if after, _, _ := st.ListCommands(ctx, mdmd.CommandFilter{DeviceID: phone.ID, Limit: 1000}); len(after) != len(before) {
			t.Fatalf("a CSRF-less form queued %d commands", len(after)-len(before))
		}
		if env.auditCountAction(t, "access.denied") == 0 {
			t.Fatal("the refused form was not audited")
		}

		// A wrong lock PIN is an error beside the form; then lock, and see the device acknowledge.
		alice.open("/devices/" + phone.ID)
		alice.run(chromedp.SendKeys(chromedp.ID("#lock-pin"), "12"), chromedp.Submit(chromedp.ID("#lock-pin")),
			chromedp.WaitVisible(chromedp.ID("#lock-error")))
		if msg := alice.text("#lock-error"); !strings.Contains(msg, "6 digits") {
			t.Fatalf("lock PIN error: %q", msg)
		}
		alice.run(chromedp.Clear(chromedp.ID("#lock-pin")), chromedp.SendKeys(chromedp.ID("#lock-message"), "Lost phone: call IT"),
			chromedp.Submit(chromedp.ID("#lock-message")), chromedp.WaitVisible(chromedp.CSS(".flash")))
		eventually(t, 15*time.Second, "the lock to be acknowledged on the page", func() bool {
			alice.open("/devices/" + phone.ID)
			cmds := alice.text("table.commands tbody")
			return strings.Contains(cmds, "DeviceLock") && strings.Contains(strings.SplitN(cmds[strings.Index(cmds, "DeviceLock"):], "\n", 2)[0], "acknowledged")
		})

		// A full wipe needs the name typed back and a reason ...
		alice.run(chromedp.SendKeys(chromedp.ID("#wf-confirm"), "wrong name"), chromedp.SendKeys(chromedp.ID("#wf-reason"), "stolen"),
			chromedp.Submit(chromedp.ID("#wf-reason")), chromedp.WaitVisible(chromedp.ID("#wf-error")))
		if msg := alice.text("#wf-error"); !strings.Contains(msg, "type the device's name") {
			t.Fatalf("wipe confirm error: %q", msg)
		}
		alice.run(chromedp.SetValue(chromedp.ID("#wf-confirm"), "Ana's iPhone"), chromedp.Submit(chromedp.ID("#wf-reason")),
			chromedp.WaitVisible(chromedp.CSS(".alert.warn")))
		// ... and waits for a second admin: nothing is sent yet.
		erase := func() int {
			cmds, _, _ := st.ListCommands(ctx, mdmd.CommandFilter{DeviceID: phone.ID, Limit: 1000})
			n := 0
			for _, c := range cmds {
				if c.RequestType == "EraseDevice" {
					n++
				}
			}
			return n
		}
		if n := erase(); n != 0 {
			t.Fatalf("the full wipe was sent before approval (%d commands)", n)
		}
		alice.open("/approvals")
		if txt := alice.text("ul.approvals"); !strings.Contains(txt, "Waiting for another administrator") {
			t.Fatalf("requester's approvals page:\n%s", txt)
		}
		if alice.count(`form[action$="/approve"]`) != 0 {
			t.Fatal("the requester is offered to approve their own request")
		}

		bob := newBrowser(t, chromium, env.URL, dir)
		bob.login("bob", bobPW)
		bob.open("/approvals")
		bob.screenshot("approvals")
		time.Sleep(200 * time.Millisecond)
		if n := erase(); n != 0 {
			t.Fatalf("the full wipe was sent before approval (%d commands)", n)
		}
		bob.run(chromedp.Click(chromedp.CSS(`form[action$="/approve"] button`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
		eventually(t, 10*time.Second, "the approved wipe to be queued", func() bool { return erase() == 1 })

		// A viewer sees no actions, and the API refuses the wipe.
		vera := newBrowser(t, chromium, env.URL, dir)
		if vera.login("vera", veraPW) != "" {
			t.Fatal("a viewer was asked for TOTP")
		}
		vera.open("/devices/" + pixel.ID)
		if forms := vera.count(`form[action*="/actions/"]`); forms != 0 || strings.Contains(vera.text("main"), "wipe") {
			t.Fatalf("a viewer sees %d action forms", forms)
		}
		if vera.count(`a[href="/approvals"]`) != 0 {
			t.Fatal("a viewer sees the approvals page in the navigation")
		}
		vera.open("/approvals")
		if msg := vera.text(".alert"); !strings.Contains(msg, "lacks the permission commands:wipe") {
			t.Fatalf("viewer on approvals: %q", msg)
		}
		viewer := (&fixture{testServer: env.testServer}).tokenFor(t, mdmd.RoleViewer)
		r := env.do("POST", "/api/v1/devices/"+pixel.ID+"/actions/wipe", viewer,
			map[string]any{"mode": "selective", "reason": "x", "confirm": "Ben's Pixel"})
		if r.Status != 403 {
			t.Fatalf("viewer wipe through the API = %d %s", r.Status, r.Body)
		}

		// Settings: a token minted in the browser shows its secret once,
		// and the audit log lists it; both pages are screenshotted.
		alice.open("/settings/tokens")
		alice.run(chromedp.SendKeys(chromedp.ID("#t-name"), "browser-token"), chromedp.SetValue(chromedp.ID("#t-role"), "viewer"),
			chromedp.Submit(chromedp.ID("#t-name")), chromedp.WaitVisible(chromedp.ID("#new-secret")))
		secret := browserValue(alice, chromedp.Value(chromedp.ID("#new-secret")))
		if r := env.do("GET", "/api/v1/devices", secret, nil); r.Status != 200 {
			t.Fatalf("the token made in the browser: %d", r.Status)
		}
		alice.screenshot("tokens")
		alice.open("/settings/tokens")
		if strings.Contains(alice.text("main"), secret) {
			t.Fatal("the token list shows the secret again")
		}
		alice.open("/audit?action=token.create")
		if txt := alice.text("#audit"); !strings.Contains(txt, "token.create") || !strings.Contains(txt, "alice") {
			t.Fatalf("audit viewer: %q", txt)
		}
		alice.screenshot("audit")
		alice.open("/enrollment")
		alice.screenshot("enrollment")
		vera.open("/settings/users")
		if !strings.Contains(vera.text(".alert"), "lacks the permission users:manage") {
			t.Fatal("a viewer reached the users page")
		}

		// Five wrong passwords lock the account: then even the right one
		// is refused, with the reason on the page.
		malloryPW := createUser(t, env.testServer, "mallory", mdmd.RoleViewer)
		mallory := newBrowser(t, chromium, env.URL, dir)
		for i := range 6 {
			pw := "wrong password " + strconv.Itoa(i)
			if i == 5 {
				pw = malloryPW
			}
			mallory.open("/login")
			mallory.run(chromedp.WaitVisible(chromedp.ID("#username")),
				chromedp.SendKeys(chromedp.ID("#username"), "mallory"), chromedp.SendKeys(chromedp.ID("#password"), pw),
				chromedp.Submit(chromedp.ID("#password")), chromedp.WaitVisible(chromedp.CSS(".alert")))
		}
		if msg := mallory.text(".alert"); !strings.Contains(msg, "locked") {
			t.Fatalf("after five failures and the right password: %q", msg)
		}

		// A phone-sized screen.
		alice.run(chromedp.EmulateViewport(390, 844))
		alice.open("/devices")
		alice.screenshot("devices-phone")
		alice.open("/devices/" + phone.ID)
		alice.screenshot("device-phone")

		// Signing out ends the session on the server.
		alice.run(chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.ID("#username")))
		alice.open("/devices")
		if loc := alice.location(); !strings.Contains(loc, "/login") {
			t.Fatalf("after sign-out /devices is at %s", loc)
		}
	})
}

func ptrTo[T any](v T) *T { return &v }

func (env *appleEnv) auditCountAction(t *testing.T, action string) int {
	return (&fixture{testServer: env.testServer}).auditCount(t, action)
}
