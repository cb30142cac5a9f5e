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
	"github.com/google/uuid"

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
	// Some failures in the hour, a waiting queue (lag), two workers, and a
	// kind none of them serves.
	var failing []queue.NewJob
	for i := range 6 {
		failing = append(failing, queue.NewJob{ID: newID(), Kind: "charge_card", Queue: "payments", Payload: []byte(fmt.Sprintf(`{"order":%d}`, i))})
	}
	if err := f.ad.Insert(f.ctx, failing); err != nil {
		t.Fatal(err)
	}
	claimed, err = f.ad.Claim(f.ctx, queue.ClaimRequest{Queue: "payments", WorkerID: "web-2.example:5151", Limit: 6, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	outs = outs[:0]
	for _, j := range claimed {
		outs = append(outs, queue.Failed(j, fmt.Errorf("card declined")))
	}
	if _, err := f.ad.Finish(f.ctx, "web-2.example:5151", outs); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ad.Pool().Exec(f.ctx, `UPDATE tasq_jobs SET finished_at = now() - (random() * interval '58 minutes') WHERE state = 'failed' AND queue = 'payments'`); err != nil {
		t.Fatal(err)
	}
	f.insert(t, queue.NewJob{Kind: "legacy_import", Queue: "reports", Payload: []byte(`{}`)})
	if _, err := f.ad.Pool().Exec(f.ctx, `UPDATE tasq_jobs SET run_at = now() - interval '4 minutes 12 seconds' WHERE queue = 'reports' AND state = 'available'`); err != nil {
		t.Fatal(err)
	}
	for _, w := range []queue.WorkerInfo{
		{ID: "web-1.example:4242", Queues: []string{"reports", "mail"}, Kinds: []string{"send_report", "send_digest", "nightly_report"}, Host: "web-1.example", PID: 4242},
		{ID: "web-2.example:5151", Queues: []string{"payments", "default"}, Kinds: []string{"charge_card", "report"}, Host: "web-2.example", PID: 5151},
	} {
		if err := f.ad.RegisterWorker(f.ctx, w, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBrowserWorkers opens the workers page from the nav: the live workers
// and the kinds none of them serves.
func TestBrowserWorkers(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	f := newFixture(t, ui.Options{})
	f.populate(t)
	run(t, ctx, "workers",
		chromedp.Navigate(f.srv.URL+"/"),
		chromedp.Click(chromedp.ID("nav-workers")),
		chromedp.WaitVisible(chromedp.ID("workers")),
		chromedp.WaitVisible(chromedp.ID("unserved")),
		screenshot("workers"))
	if n := evaluate[int](t, ctx, `document.querySelectorAll('#workers tbody tr').length`); n != 2 {
		t.Errorf("workers page lists %d workers, want 2", n)
	}
	host := value(t, ctx, chromedp.Text(chromedp.CSS(`tr[data-worker="web-1.example:4242"] td:nth-child(2)`)))
	if host != "web-1.example" {
		t.Errorf("worker host shown as %q", host)
	}
	if n := evaluate[int](t, ctx, `document.querySelectorAll('#unserved tr[data-kind="legacy_import"]').length`); n != 1 {
		t.Errorf("the unserved kind is listed %d times, want once", n)
	}
}

// TestBrowserEditLimits sets a queue's limits with the form, sees a wrong
// value refused with its reason, and finds the limit in the database.
func TestBrowserEditLimits(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	f := newFixture(t, ui.Options{})
	run(t, ctx, "open the form",
		chromedp.Navigate(f.srv.URL+"/"),
		chromedp.Click(chromedp.ID("limits-mail")),
		chromedp.WaitVisible(chromedp.ID("limits-form")))
	run(t, ctx, "a wrong value",
		chromedp.SendKeys(chromedp.ID("total_starts"), "10"),
		chromedp.Click(chromedp.ID("limits-save")),
		chromedp.WaitVisible(chromedp.ID("limits-error")))
	if msg := value(t, ctx, chromedp.Text(chromedp.ID("limits-error"))); !strings.Contains(msg, "Per") {
		t.Errorf("error shown: %q", msg)
	}
	run(t, ctx, "save",
		chromedp.SendKeys(chromedp.ID("total_per"), "1m"),
		chromedp.SendKeys(chromedp.ID("total_running"), "3"),
		chromedp.Click(chromedp.ID("limits-save")),
		chromedp.WaitVisible(chromedp.ID("flash")),
		chromedp.WaitVisible(chromedp.ID("queues")))
	states, err := f.ad.QueueStates(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := queue.Limit{MaxRunning: 3, MaxStarts: 10, Per: time.Minute}
	if len(states) != 1 || states[0].Name != "mail" || states[0].Limits.Total != want {
		t.Errorf("queue states after the form: %+v, want mail with %+v", states, want)
	}
	status := value(t, ctx, chromedp.Text(chromedp.CSS(`tr[data-queue="mail"] td.status`)))
	if !strings.Contains(status, "max 3 running") {
		t.Errorf("overview shows mail's status as %q", status)
	}
}

// TestBrowserBulkRetry retries every failed job of a queue from the jobs
// page, through the confirmation, and sees the states change in the
// database.
func TestBrowserBulkRetry(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	f := newFixture(t, ui.Options{})
	var ids []string
	for range 4 {
		ids = append(ids, f.insert(t, queue.NewJob{Kind: "bulk_kind", Queue: "bulkq", Payload: []byte(`{}`)}).String())
		f.finish(t, "bulkq", func(j *queue.Job) queue.Outcome { return queue.Failed(j, fmt.Errorf("nope")) })
	}
	run(t, ctx, "confirm",
		chromedp.Navigate(f.srv.URL+"/jobs?state=failed&queue=bulkq"),
		chromedp.Click(chromedp.ID("bulk-retry")),
		chromedp.WaitVisible(chromedp.ID("bulk-confirm")))
	if n := value(t, ctx, chromedp.Text(chromedp.ID("bulk-count"))); n != "4" {
		t.Fatalf("confirmation counts %s jobs, want 4", n)
	}
	run(t, ctx, "apply", chromedp.Click(chromedp.ID("bulk-go")), chromedp.WaitVisible(chromedp.ID("bulk-result")))
	if n := value(t, ctx, chromedp.Text(chromedp.ID("bulk-changed"))); n != "4" {
		t.Errorf("result says %s changed, want 4", n)
	}
	for _, id := range ids {
		j, err := f.ad.GetJob(f.ctx, uuid.MustParse(id))
		if err != nil || j.State != queue.StateAvailable || j.Attempt != 0 {
			t.Errorf("job %s after the bulk retry: %+v, %v; want available, attempt 0", id, j, err)
		}
	}
	if st := f.state(t, f.failed); st != queue.StateFailed {
		t.Errorf("the failed job of another queue is %s", st)
	}
}

// TestBrowserAutoRefresh: with ?refresh=2 the overview reloads itself, with
// no script, under the page's Content-Security-Policy.
func TestBrowserAutoRefresh(t *testing.T) {
	t.Parallel()
	ctx := tab(t)
	f := newFixture(t, ui.Options{})
	run(t, ctx, "overview", chromedp.Navigate(f.srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("refresh-5")))
	run(t, ctx, "turn it on", chromedp.Click(chromedp.ID("refresh-5")), chromedp.WaitVisible(chromedp.CSS(`b#refresh-5`)))
	run(t, ctx, "2 seconds", chromedp.Navigate(f.srv.URL+"/?refresh=2"), chromedp.WaitVisible(chromedp.ID("queues")))
	first := evaluate[float64](t, ctx, `performance.timeOrigin`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		v, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`performance.timeOrigin`))
		if err == nil && v != first {
			break // a new document: the page reloaded itself
		}
		if time.Now().After(deadline) {
			t.Fatal("the page did not reload itself within 10 s")
		}
		if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.ID("queues"))); err != nil {
			t.Fatal(err)
		}
	}
	if loc := value(t, ctx, chromedp.Location()); !strings.HasSuffix(loc, "/?refresh=2") {
		t.Errorf("reloaded %s", loc)
	}
	run(t, ctx, "turn it off", chromedp.Click(chromedp.ID("refresh-off")), chromedp.WaitVisible(chromedp.CSS(`b#refresh-off`)))
	if n := evaluate[int](t, ctx, `document.querySelectorAll('meta[http-equiv="refresh"]').length`); n != 0 {
		t.Errorf("auto-refresh still on after off: %d meta tags", n)
	}
}
