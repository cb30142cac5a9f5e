package ui_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/ui"
)

// The browser tests drive headless Chromium with chromedp: one browser for
// the whole test binary, a tab per test. They skip when no Chromium is
// installed (Debian: apt-get install chromium); TASQ_CHROMIUM names the
// binary explicitly.

var browserState struct {
	once   sync.Once
	ctx    context.Context
	cancel []context.CancelFunc
	err    error
	path   string
}

func findChromium() string {
	if p := os.Getenv("TASQ_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// tab returns a new browser tab, closed when the test ends.
func tab(t *testing.T) context.Context {
	t.Helper()
	s := &browserState
	s.once.Do(func() {
		s.path = findChromium()
		if s.path == "" {
			return
		}
		opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(s.path), chromedp.Flag("no-sandbox", true), chromedp.WindowSize(1280, 900))
		actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
		bctx, cancelB := chromedp.NewContext(actx)
		s.cancel = []context.CancelFunc{cancelB, cancelA}
		s.ctx = bctx
		s.err = chromedp.Do(bctx) // starts the browser
	})
	if s.path == "" {
		t.Skip("no Chromium found (looked for chromium, chromium-browser, google-chrome, headless-shell on PATH and $TASQ_CHROMIUM); " +
			"install it (Debian: apt-get install chromium) to run the browser tests")
	}
	if s.err != nil {
		t.Fatalf("start %s: %v", s.path, s.err)
	}
	ctx, cancel := chromedp.NewContext(s.ctx)
	t.Cleanup(cancel)
	ctx, cancelT := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(cancelT)
	return ctx
}

func closeBrowser() {
	for _, c := range browserState.cancel {
		c()
	}
}

// run runs steps in the tab, and fails the test on an error.
func run(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	start := time.Now()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
}

// value runs an action that reads a value in the tab.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// evaluate returns the value of a JavaScript expression in the tab.
func evaluate[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	return value(t, ctx, chromedp.Evaluate[T](expr))
}

// screenshot saves the whole page as /tmp/ui-name.png.
func screenshot(name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		buf, err := chromedp.FullScreenshot(100)(ctx, t)
		if err != nil {
			return err
		}
		return os.WriteFile("/tmp/ui-"+name+".png", buf, 0o644)
	})
}

// TestBrowserPages loads every page, applies a filter, and checks that the
// hostile payload, error and kind do not run: window.pwned stays undefined
// and no element of theirs exists. It saves screenshots of the main pages.
func TestBrowserPages(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	f := newFixture(t, ui.Options{})
	f.populate(t)
	u := f.srv.URL

	run(t, ctx, "overview", chromedp.Navigate(u+"/"), chromedp.WaitVisible(chromedp.ID("queues")), screenshot("overview"))
	if queues := evaluate[int](t, ctx, `document.querySelectorAll('#queues tbody tr').length`); queues < 3 {
		t.Errorf("overview shows %d queues, want at least 3", queues)
	}
	run(t, ctx, "cron", chromedp.Navigate(u+"/cron"), chromedp.WaitVisible(chromedp.ID("schedules")), screenshot("cron"))
	run(t, ctx, "jobs", chromedp.Navigate(u+"/jobs"), chromedp.WaitVisible(chromedp.ID("jobs")), screenshot("jobs"))

	// Filter by state in the form, as a person would.
	run(t, ctx, "filter",
		chromedp.SetValue(chromedp.ID("f-state"), "failed"),
		chromedp.Click(chromedp.ID("f-apply")),
		// The server marks the chosen option selected in the new page.
		chromedp.WaitReady(chromedp.CSS(`#f-state option[value="failed"][selected]`)))
	other := evaluate[int](t, ctx, `document.querySelectorAll('#jobs tbody tr:not([data-state="failed"])').length`)
	failed := evaluate[int](t, ctx, `document.querySelectorAll('#jobs tbody tr[data-state="failed"]').length`)
	if other != 0 || failed < 1 {
		t.Errorf("state=failed shows %d failed and %d other jobs", failed, other)
	}

	// Open the hostile job from the filtered list.
	run(t, ctx, "job detail",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-id="%s"] a`, f.failed))),
		chromedp.WaitVisible(chromedp.ID("payload")),
		screenshot("job"))
	pwned := evaluate[string](t, ctx, `typeof window.pwned`)
	injected := evaluate[int](t, ctx, `document.querySelectorAll('script, img, main i, [onerror], [onmouseover]').length`)
	payload := value(t, ctx, chromedp.Text(chromedp.ID("payload")))
	errText := value(t, ctx, chromedp.Text(chromedp.CSS("#errors pre")))
	if pwned != "undefined" || injected != 0 {
		t.Errorf("hostile values ran: typeof window.pwned = %s, %d injected elements", pwned, injected)
	}
	if !strings.Contains(payload, `<script>window.pwned=1</script>`) || !strings.Contains(errText, `<img src=x onerror="window.pwned=3">`) || !strings.Contains(errText, `\x1b]0;owned\x07`) {
		t.Errorf("hostile values are not shown as text:\npayload %q\nerror %q", payload, errText)
	}
}

// TestBrowserRetry retries a failed job with its button and sees the state
// change on the page and in the database.
func TestBrowserRetry(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	f := newFixture(t, ui.Options{})
	run(t, ctx, "retry",
		chromedp.Navigate(f.srv.URL+"/jobs/"+f.failed.String()),
		chromedp.Click(chromedp.ID("retry")),
		chromedp.WaitVisible(chromedp.ID("flash")))
	state := value(t, ctx, chromedp.Text(chromedp.ID("job-state")))
	if state != "available" {
		t.Errorf("page shows the job %q after retry, want available", state)
	}
	if st := f.state(t, f.failed); st != queue.StateAvailable {
		t.Errorf("database has the job %s after retry, want available", st)
	}
}

// TestBrowserPauseQueue pauses a queue from the overview.
func TestBrowserPauseQueue(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	f := newFixture(t, ui.Options{})
	run(t, ctx, "pause",
		chromedp.Navigate(f.srv.URL+"/"),
		chromedp.Click(chromedp.ID("pause-mail")),
		chromedp.WaitVisible(chromedp.ID("resume-mail")))
	states, err := f.ad.QueueStates(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(states) != 1 || states[0].Name != "mail" || !states[0].Paused {
		t.Errorf("queue states after pause: %+v", states)
	}
}

// populate adds jobs for the screenshots: completed ones spread over the
// last hour, a retryable one, a paused queue and a schedule.
func (f *fixture) populate(t *testing.T) {
	t.Helper()
	var jobs []queue.NewJob
	for i := range 120 {
		jobs = append(jobs, queue.NewJob{Kind: "send_report", Queue: "reports", Payload: []byte(fmt.Sprintf(`{"customer_id":%d}`, i)), MaxRetries: 3})
	}
	for i := range jobs {
		jobs[i].ID = newID()
	}
	if err := f.ad.Insert(f.ctx, jobs); err != nil {
		t.Fatal(err)
	}
	claimed, err := f.ad.Claim(f.ctx, queue.ClaimRequest{Queue: "reports", WorkerID: "web-1.example:4242", Limit: 100, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var outs []queue.Outcome
	for _, j := range claimed {
		outs = append(outs, queue.Completed(j, nil))
	}
	if _, err := f.ad.Finish(f.ctx, "web-1.example:4242", outs); err != nil {
		t.Fatal(err)
	}
	// Spread the finish times over the hour, as a steady stream would.
	if _, err := f.ad.Pool().Exec(f.ctx, `UPDATE tasq_jobs SET finished_at = now() - (random() * interval '58 minutes'),
		dispatched_at = now() - interval '59 minutes' WHERE state = 'completed' AND queue = 'reports'`); err != nil {
		t.Fatal(err)
	}
	if err := f.ad.PauseQueue(f.ctx, "reports"); err != nil {
		t.Fatal(err)
	}
	if err := f.ad.AddSchedule(f.ctx, queue.Schedule{Name: "nightly-digest", Cron: "0 3 * * *", TimeZone: "Europe/Berlin", Kind: "send_digest", Queue: "mail"}); err != nil {
		t.Fatal(err)
	}
}
