// Package headless starts Debian's Chromium headless, with a fresh profile, for the tests and
// benchmarks that open localcloud's pages in a real browser.
package headless

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/chromedp/chromedp"
)

// ErrNotInstalled says that no Chromium was found on PATH.
var ErrNotInstalled = errors.New("chromium is not installed: run scripts/install-deps.sh")

// Path finds Chromium on PATH under its usual names.
func Path() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNotInstalled
}

// Start launches headless Chromium with a new, empty profile and returns a chromedp context on
// its first tab. The browser is running when Start returns, so callers time only their own
// work. stop closes the browser and removes the profile.
func Start(ctx context.Context) (browser context.Context, stop func(), err error) {
	path, err := Path()
	if err != nil {
		return nil, nil, err
	}
	profile, err := os.MkdirTemp("", "edgecam-chromium-")
	if err != nil {
		return nil, nil, fmt.Errorf("chromium profile: %w", err)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		// Pages autoplay video without a click.
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.UserDataDir(profile))
	browser, cancelBrowser := chromedp.NewContext(allocCtx)
	stop = func() {
		cancelBrowser()
		cancelAlloc()
		_ = os.RemoveAll(profile)
	}
	if err := chromedp.Run(browser); err != nil {
		stop()
		return nil, nil, fmt.Errorf("starting chromium %s: %w", path, err)
	}
	return browser, stop, nil
}
