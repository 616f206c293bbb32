package demo

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mdmd/mdmd"
	"github.com/mdmd/mdmd/app"
	"github.com/mdmd/mdmd/auth"
)

// screenshot signs in to the console as a viewer in headless Chromium
// (Debian's /usr/bin/chromium) and saves the dashboard as a PNG (quality
// 100 makes chromedp capture PNG rather than JPEG).
func screenshot(ctx context.Context, srv *app.Server, base, path string) error {
	name := fmt.Sprintf("screenshot-%d", time.Now().Unix())
	pw := "demo screenshot password " + name
	hash, err := auth.HashPassword(pw)
	if err != nil {
		return err
	}
	if err := srv.Store().CreateAdminUser(ctx, &mdmd.AdminUser{Username: name, PasswordHash: hash, Role: mdmd.RoleViewer}); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mdmd-demo-chromium-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath("/usr/bin/chromium"), chromedp.NoSandbox,
		chromedp.Headless, chromedp.DisableGPU, chromedp.WindowSize(1280, 900), chromedp.UserDataDir(dir))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, time.Minute)
	defer cancelT()
	err = chromedp.Do(bctx,
		chromedp.Navigate(base+"/login"),
		chromedp.WaitVisible(chromedp.ID("#username")),
		chromedp.SendKeys(chromedp.ID("#username"), name), chromedp.SendKeys(chromedp.ID("#password"), pw),
		chromedp.Submit(chromedp.ID("#password")),
		chromedp.WaitVisible(chromedp.CSS("nav[aria-label=Main]")),
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("nav[aria-label=Main]")))
	if err != nil {
		return fmt.Errorf("signing in to the console: %w", err)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		return fmt.Errorf("taking the screenshot: %w", err)
	}
	return os.WriteFile(path, png, 0o644)
}
