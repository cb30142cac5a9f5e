package ui_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/ui"
)

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func TestPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	if err := f.ad.AddSchedule(f.ctx, queue.Schedule{Name: "hourly-report", Every: time.Hour, Kind: "report", Queue: "default"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path  string
		wants []string
	}{
		{"/", []string{`id="queues"`, `data-queue="mail"`, `data-queue="reports"`, `id="throughput"`, `id="pause-mail"`}},
		{"/jobs", []string{f.failed.String(), f.completed.String(), f.available.String(), `id="filter"`}},
		{"/jobs/" + f.completed.String(), []string{`id="payload"`, `&#34;rows&#34;: 42`, "test-worker-1", `id="no-errors"`}},
		{"/jobs/" + f.failed.String(), []string{`id="errors"`, `id="retry"`, `id="delete"`}},
		{"/cron", []string{`data-schedule="hourly-report"`, `id="trigger-hourly-report"`, "every 1h0m0s"}},
	} {
		status, body := f.get(t, tc.path)
		if status != http.StatusOK {
			t.Errorf("GET %s: status %d", tc.path, status)
		}
		mustContain(t, "GET "+tc.path, body, tc.wants...)
	}
	resp, err := f.client.Get(f.srv.URL + "/static/style.css")
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") {
		t.Errorf("style.css: %v %v", resp, err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("CSP = %q", csp)
	}
}

// TestEscaping: a payload, error text and kind that hold HTML and terminal
// escapes are shown as text, and the control characters as visible escapes.
func TestEscaping(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	for _, path := range []string{"/jobs", "/jobs/" + f.failed.String(), "/jobs?state=failed"} {
		_, body := f.get(t, path)
		for _, raw := range []string{"<script>window.pwned", "<img src=x", "<i onmouseover", "\x1b", "\x07", "\u202e"} {
			if strings.Contains(body, raw) {
				t.Errorf("%s holds %q unescaped", path, raw)
			}
		}
		mustContain(t, path, body, `&lt;i onmouseover=`)
	}
	_, body := f.get(t, "/jobs/"+f.failed.String())
	mustContain(t, "job page", body, `&lt;script&gt;window.pwned=1&lt;/script&gt;`, `&lt;img src=x onerror=&#34;window.pwned=3&#34;&gt;`,
		`\x1b]0;owned\x07`, `\u202eright-to-left`)
}

func TestJobsFilterAndPaging(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	var want []uuid.UUID
	for range 5 {
		want = append(want, f.insert(t, queue.NewJob{Kind: "page_kind", Queue: "paged", Payload: []byte(`{}`)}))
	}
	_, body := f.get(t, "/jobs?state=failed")
	mustContain(t, "state filter", body, f.failed.String())
	if strings.Contains(body, f.completed.String()) || strings.Contains(body, f.available.String()) {
		t.Error("state=failed lists jobs in other states")
	}
	_, body = f.get(t, "/jobs?tag=nightly")
	if !strings.Contains(body, f.available.String()) || strings.Contains(body, f.failed.String()) {
		t.Error("tag filter is wrong")
	}
	_, body = f.get(t, "/jobs?kind=report&queue=default")
	if !strings.Contains(body, f.completed.String()) || strings.Contains(body, f.available.String()) {
		t.Error("kind+queue filter is wrong")
	}
	_, body = f.get(t, "/jobs?kind=nothing-of-this-kind")
	mustContain(t, "empty listing", body, `id="no-jobs"`)

	// Page through queue "paged" two at a time: every job once, newest first.
	idRE := regexp.MustCompile(`data-id="([0-9a-f-]{36})"`)
	nextRE := regexp.MustCompile(`href="([^"]+)" id="next"`)
	path := "/jobs?queue=paged&limit=2"
	var got []string
	for pages := 0; path != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		status, body := f.get(t, path)
		if status != 200 {
			t.Fatalf("GET %s: %d", path, status)
		}
		for _, m := range idRE.FindAllStringSubmatch(body, -1) {
			got = append(got, m[1])
		}
		path = ""
		if m := nextRE.FindStringSubmatch(body); m != nil {
			path = strings.ReplaceAll(m[1], "&amp;", "&")
		}
	}
	if len(got) != len(want) {
		t.Fatalf("paged through %d jobs, want %d: %v", len(got), len(want), got)
	}
	for i, id := range got {
		if id != want[len(want)-1-i].String() {
			t.Errorf("job %d is %s, want %s (newest first)", i, id, want[len(want)-1-i])
		}
	}
	for _, bad := range []string{"/jobs?state=nope", "/jobs?limit=0", "/jobs?limit=9999", "/jobs?after=xyz", "/jobs?id=not-a-uuid"} {
		if status, _ := f.get(t, bad); status != http.StatusBadRequest {
			t.Errorf("GET %s: status %d, want 400", bad, status)
		}
	}
}

func TestSearchByID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	resp, err := f.client.Get(f.srv.URL + "/jobs?id=" + url.QueryEscape(" "+f.failed.String()+" "))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/jobs/"+f.failed.String() {
		t.Errorf("search: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if status, _ := f.get(t, "/jobs/"+uuid.Must(uuid.NewV7()).String()); status != http.StatusNotFound {
		t.Errorf("unknown job: status %d, want 404", status)
	}
}

func TestJobActions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{Prefix: "/admin/tasq"})
	for path, want := range map[string]string{"/admin/tasq/": `href="/admin/tasq/jobs"`, "/admin/tasq/static/style.css": "TasQ dashboard", "/admin/tasq/cron": `href="/admin/tasq/static/style.css"`,
		"/admin/tasq/workers?refresh=5": `content="5; url=/admin/tasq/workers?refresh=5"`, "/admin/tasq/?refresh=30": `href="/admin/tasq/" id="refresh-off"`} {
		if status, body := f.get(t, path); status != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s under a prefix: %d, lacks %q", path, status, want)
		}
	}
	tok := f.token(t, "/admin/tasq/jobs/"+f.failed.String())
	form := url.Values{"csrf": {tok}}

	resp, _ := f.post(t, "/admin/tasq/jobs/"+f.failed.String()+"/retry", form, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/admin/tasq/jobs/"+f.failed.String()) {
		t.Errorf("retry: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if st := f.state(t, f.failed); st != queue.StateAvailable {
		t.Errorf("after retry the job is %s, want available", st)
	}
	_, body := f.get(t, resp.Header.Get("Location"))
	mustContain(t, "page after retry", body, `id="flash"`)

	resp, _ = f.post(t, "/admin/tasq/jobs/"+f.available.String()+"/cancel", form, nil)
	if resp.StatusCode != http.StatusSeeOther || f.state(t, f.available) != queue.StateCancelled {
		t.Errorf("cancel: %d, state %s", resp.StatusCode, f.state(t, f.available))
	}
	resp, _ = f.post(t, "/admin/tasq/jobs/"+f.completed.String()+"/delete", form, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("delete: %d", resp.StatusCode)
	}
	if _, err := f.ad.GetJob(f.ctx, f.completed); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("after delete GetJob = %v, want ErrJobNotFound", err)
	}
	// Cancelling a finished job is refused by the backend and says so.
	resp, body = f.post(t, "/admin/tasq/jobs/"+f.available.String()+"/cancel", form, nil)
	if resp.StatusCode < 400 || !strings.Contains(body, "Could not cancel job") {
		t.Errorf("cancel of a cancelled job: %d", resp.StatusCode)
	}
	resp, _ = f.post(t, "/admin/tasq/jobs/"+f.available.String()+"/explode", form, nil)
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown action: %d", resp.StatusCode)
	}
}

func TestQueueAndCronActions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	if err := f.ad.AddSchedule(f.ctx, queue.Schedule{Name: "nightly", Cron: "0 3 * * *", Kind: "report", Queue: "default"}); err != nil {
		t.Fatal(err)
	}
	form := url.Values{"csrf": {f.token(t, "/")}}
	paused := func() bool {
		states, err := f.ad.QueueStates(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range states {
			if s.Name == "mail" {
				return s.Paused
			}
		}
		return false
	}
	if resp, _ := f.post(t, "/queues/mail/pause", form, nil); resp.StatusCode != http.StatusSeeOther || !paused() {
		t.Fatalf("pause: %d, paused %v", resp.StatusCode, paused())
	}
	_, body := f.get(t, "/")
	mustContain(t, "overview of a paused queue", body, `id="resume-mail"`, "paused")
	if resp, _ := f.post(t, "/queues/mail/resume", form, nil); resp.StatusCode != http.StatusSeeOther || paused() {
		t.Fatalf("resume: %d, paused %v", resp.StatusCode, paused())
	}

	schedPaused := func() bool {
		s, err := f.ad.GetSchedule(f.ctx, "nightly")
		if err != nil {
			t.Fatal(err)
		}
		return s.Paused
	}
	if resp, _ := f.post(t, "/cron/nightly/pause", form, nil); resp.StatusCode != http.StatusSeeOther || !schedPaused() {
		t.Fatalf("cron pause: %d", resp.StatusCode)
	}
	if resp, _ := f.post(t, "/cron/nightly/resume", form, nil); resp.StatusCode != http.StatusSeeOther || schedPaused() {
		t.Fatalf("cron resume: %d", resp.StatusCode)
	}
	resp, _ := f.post(t, "/cron/nightly/trigger", form, nil)
	loc := resp.Header.Get("Location")
	id, err := uuid.Parse(strings.TrimPrefix(strings.Split(loc, "?")[0], "/jobs/"))
	if resp.StatusCode != http.StatusSeeOther || err != nil {
		t.Fatalf("trigger: %d to %q", resp.StatusCode, loc)
	}
	if j, err := f.ad.GetJob(f.ctx, id); err != nil || j.Kind != "report" {
		t.Errorf("triggered job: %v, %v", j, err)
	}
	if resp, _ := f.post(t, "/cron/missing/pause", form, nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("pause of a missing schedule: %d, want 404", resp.StatusCode)
	}
}

// TestCSRF: an action without the form token, with a wrong one, or from
// another site is refused and changes nothing.
func TestCSRF(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	tok := f.token(t, "/")
	path := "/jobs/" + f.failed.String() + "/retry"
	for name, tc := range map[string]struct {
		form   url.Values
		header http.Header
	}{
		"no token":     {url.Values{}, nil},
		"wrong token":  {url.Values{"csrf": {strings.Repeat("0", len(tok))}}, nil},
		"cross-site":   {url.Values{"csrf": {tok}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		"other origin": {url.Values{"csrf": {tok}}, http.Header{"Origin": {"https://evil.example"}}},
	} {
		resp, _ := f.post(t, path, tc.form, tc.header)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: status %d, want 403", name, resp.StatusCode)
		}
	}
	if resp, _ := f.post(t, "/queues/mail/pause", url.Values{}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("queue pause without token: %d", resp.StatusCode)
	}
	if st := f.state(t, f.failed); st != queue.StateFailed {
		t.Errorf("job is %s after refused actions, want failed", st)
	}
}

func TestReadOnly(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{ReadOnly: true})
	for _, path := range []string{"/", "/jobs/" + f.failed.String(), "/cron"} {
		status, body := f.get(t, path)
		if status != 200 || strings.Contains(body, `method="post"`) {
			t.Errorf("read-only %s: status %d, has a form: %v", path, status, strings.Contains(body, `method="post"`))
		}
		mustContain(t, path, body, `id="read-only"`)
	}
	if status, _ := f.get(t, "/bulk?state=failed&action=retry"); status != http.StatusForbidden {
		t.Errorf("read-only bulk confirmation: %d", status)
	}
	resp, _ := f.post(t, "/jobs/"+f.failed.String()+"/retry", url.Values{"csrf": {"x"}}, nil)
	if resp.StatusCode != http.StatusForbidden || f.state(t, f.failed) != queue.StateFailed {
		t.Errorf("read-only retry: %d, state %s", resp.StatusCode, f.state(t, f.failed))
	}
}

func TestThroughputChart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	for range 3 {
		f.insert(t, queue.NewJob{Kind: "tick", Queue: "chart", Payload: []byte(`{}`)})
		f.finish(t, "chart", func(j *queue.Job) queue.Outcome { return queue.Completed(j, nil) })
	}
	_, body := f.get(t, "/")
	// The fixture's completed job and these three, and its failed job,
	// counted exactly (queue.ThroughputReader).
	mustContain(t, "overview", body, `<b id="throughput-total">4</b>`, `<b id="throughput-failed">1</b>`, `id="throughput-exact"`)
	if n := strings.Count(body, "</title></g>"); n != 60 {
		t.Errorf("chart has %d bars, want 60", n)
	}

	// An adapter without queue.ThroughputReader: the sample of completed
	// jobs, and a note that says so.
	h, err := ui.New(readerOnly{f.ad, f.ad}, ui.Options{})
	if err != nil {
		t.Fatal(err)
	}
	body = serve(t, h, "/")
	mustContain(t, "overview without ThroughputReader", body, `<b id="throughput-total">4</b>`, `<b id="throughput-failed">0</b>`, "no queue.ThroughputReader")
	if strings.Contains(body, `id="throughput-exact"`) {
		t.Error("the sampled chart claims exact counts")
	}
}

// readerOnly is an adapter that can list and read jobs but has no other
// capability: no ThroughputReader, no BulkEditor, no LagReader.
type readerOnly struct {
	queue.Adapter
	queue.JobReader
}

// readerEditor can list and change single jobs, but not in bulk.
type readerEditor struct {
	queue.Adapter
	queue.JobReader
	queue.JobEditor
}

// serve runs one GET through h and returns the body.
func serve(t *testing.T, h http.Handler, path string) string {
	t.Helper()
	req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, path, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Body.String()
}

// bare is an adapter with no capability beyond the core.
type bare struct{ queue.Adapter }

func (bare) Name() string { return "bare" }

func TestMissingCapabilities(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	h, err := ui.New(bare{f.ad}, ui.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		"/":        "no queue.StatsReader",
		"/jobs":    "is no queue.JobReader",
		"/cron":    "is no queue.Scheduler",
		"/workers": "is no queue.WorkerRegistry",
	} {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, path, nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("%s on a bare adapter: %d, lacks %q", path, rec.Code, want)
		}
	}
}

func TestBulkActions(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	var ids []uuid.UUID
	for range 3 {
		id := f.insert(t, queue.NewJob{Kind: "bulk_kind", Queue: "bulkq", Payload: []byte(`{}`)})
		f.finish(t, "bulkq", func(j *queue.Job) queue.Outcome { return queue.Failed(j, errors.New("nope")) })
		ids = append(ids, id)
	}
	_, body := f.get(t, "/jobs?state=failed&queue=bulkq")
	mustContain(t, "failed listing", body, `id="bulk-retry"`, `id="bulk-delete"`)
	if strings.Contains(body, `id="bulk-cancel"`) {
		t.Error("failed jobs offer a bulk cancel")
	}
	status, body := f.get(t, "/bulk?state=failed&queue=bulkq&action=retry")
	if status != 200 {
		t.Fatalf("confirmation: %d", status)
	}
	mustContain(t, "confirmation", body, `<b id="bulk-count">3</b>`, `id="bulk-go"`)
	for _, id := range ids {
		if st := f.state(t, id); st != queue.StateFailed {
			t.Fatalf("the confirmation page changed job %s to %s", id, st)
		}
	}
	form := url.Values{"csrf": {tokenRE.FindStringSubmatch(body)[1]}, "action": {"retry"}, "state": {"failed"}, "queue": {"bulkq"}}
	resp, body := f.post(t, "/bulk", form, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("bulk retry: %d", resp.StatusCode)
	}
	mustContain(t, "bulk result", body, `<b id="bulk-changed">3</b>`)
	for _, id := range ids {
		if st := f.state(t, id); st != queue.StateAvailable {
			t.Errorf("job %s is %s after the bulk retry, want available", id, st)
		}
	}
	// The fixture's failed job in another queue was not touched.
	if st := f.state(t, f.failed); st != queue.StateFailed {
		t.Errorf("a job outside the filter is %s", st)
	}
	_, body = f.get(t, "/bulk?state=failed&queue=bulkq&action=retry")
	mustContain(t, "empty confirmation", body, `id="bulk-none"`)

	for _, bad := range []string{"/bulk?action=retry", "/bulk?state=completed&action=retry", "/bulk?state=failed&action=explode"} {
		if status, _ := f.get(t, bad); status != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, status)
		}
	}
	form.Del("csrf")
	if resp, _ := f.post(t, "/bulk", form, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("bulk without token: %d", resp.StatusCode)
	}
}

// TestQueueNameInPath: a queue name with a slash and HTML pauses the queue
// of that exact name.
func TestQueueNameInPath(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	const name = `team/<b>mail</b>`
	f.insert(t, queue.NewJob{Kind: "k", Queue: name, Payload: []byte(`{}`)})
	_, body := f.get(t, "/")
	m := regexp.MustCompile(`action="([^"]*team[^"]*/pause)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no pause form for %q", name)
	}
	action := strings.ReplaceAll(m[1], "&amp;", "&")
	if resp, _ := f.post(t, action, url.Values{"csrf": {f.token(t, "/")}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST %s: %d", action, resp.StatusCode)
	}
	states, err := f.ad.QueueStates(f.ctx)
	if err != nil || len(states) != 1 || states[0].Name != name || !states[0].Paused {
		t.Errorf("queue states after pausing %q via %s: %+v, %v", name, action, states, err)
	}
}

// TestLag: the overview shows each queue's lag and available count beside
// its depth.
func TestLag(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	if _, err := f.ad.Pool().Exec(f.ctx, `UPDATE tasq_jobs SET run_at = now() - interval '90 seconds' WHERE id = $1`, f.available); err != nil {
		t.Fatal(err)
	}
	_, body := f.get(t, "/")
	row := regexp.MustCompile(`(?s)<tr data-queue="reports">.*?</tr>`).FindString(body)
	m := regexp.MustCompile(`data-lag="([0-9.]+)"`).FindStringSubmatch(row)
	if m == nil || !strings.Contains(row, "(1 available)") {
		t.Fatalf("reports row has no lag or available count:\n%s", row)
	}
	if secs, _ := strconv.ParseFloat(m[1], 64); secs < 90 || secs > 600 {
		t.Errorf("reports lag %s s, want about 90", m[1])
	}
	// A queue with nothing available has no lag.
	mail := regexp.MustCompile(`(?s)<tr data-queue="mail">.*?</tr>`).FindString(body)
	if strings.Contains(mail, "data-lag") {
		t.Errorf("mail (nothing available) shows a lag:\n%s", mail)
	}
}

// TestWorkersPage lists live workers (escaped) and the kinds no worker serves.
func TestWorkersPage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	for _, w := range []queue.WorkerInfo{
		{ID: "web-1:4242", Queues: []string{"reports", "mail"}, Kinds: []string{"nightly_report"}, Host: "web-1.example", PID: 4242},
		{ID: "evil", Queues: []string{"default"}, Kinds: []string{"report"}, Host: `<b onmouseover="x()">h</b>` + "\x1b[2J", PID: 7},
	} {
		if err := f.ad.RegisterWorker(f.ctx, w, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.ad.RegisterWorker(f.ctx, queue.WorkerInfo{ID: "gone", Queues: []string{"x"}, Kinds: []string{"y"}, Host: "gone-host"}, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	// A kind nobody serves.
	f.insert(t, queue.NewJob{Kind: "orphan_kind", Queue: "reports", Payload: []byte(`{}`)})

	status, body := f.get(t, "/workers")
	if status != 200 {
		t.Fatalf("workers: %d", status)
	}
	mustContain(t, "workers page", body, `data-worker="web-1:4242"`, "web-1.example", ">4242<", `data-worker="evil"`,
		`&lt;b onmouseover=&#34;x()&#34;&gt;h&lt;/b&gt;\x1b[2J`, `id="unserved"`, `data-kind="orphan_kind"`, `id="nav-workers"`)
	if strings.Contains(body, "<b onmouseover") || strings.Contains(body, "\x1b") {
		t.Error("a worker's host is not escaped")
	}
	waitFor(t, "the lapsed worker to leave the page", func() bool {
		_, body := f.get(t, "/workers")
		return !strings.Contains(body, "gone-host")
	})
	if strings.Contains(body, `data-kind="nightly_report"`) {
		t.Error("a served kind is listed as unserved")
	}
	_, body = f.get(t, "/")
	mustContain(t, "overview nav", body, `href="/workers"`)
}

// TestQueueLimitsForm sets, rejects and removes a queue's limits.
func TestQueueLimitsForm(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	limits := func() queue.QueueLimits {
		states, err := f.ad.QueueStates(f.ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range states {
			if s.Name == "mail" {
				return s.Limits
			}
		}
		return queue.QueueLimits{}
	}
	_, body := f.get(t, "/")
	mustContain(t, "overview", body, `id="limits-mail"`, `href="/queues/mail/limits"`)
	status, body := f.get(t, "/queues/mail/limits")
	if status != 200 {
		t.Fatalf("limits form: %d", status)
	}
	mustContain(t, "limits form", body, `id="limits-form"`, `name="total_running"`, `name="key_field"`)
	tok := tokenRE.FindStringSubmatch(body)[1]

	good := url.Values{"csrf": {tok}, "total_running": {"5"}, "total_starts": {"100"}, "total_per": {"1m"},
		"key_field": {"customer_id"}, "key_running": {"1"}}
	resp, _ := f.post(t, "/queues/mail/limits", good, nil)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("save limits: %d", resp.StatusCode)
	}
	want := queue.QueueLimits{Total: queue.Limit{MaxRunning: 5, MaxStarts: 100, Per: time.Minute}, KeyField: "customer_id", PerKey: queue.Limit{MaxRunning: 1}}
	if got := limits(); got != want {
		t.Fatalf("limits after save = %+v, want %+v", got, want)
	}
	_, body = f.get(t, "/queues/mail/limits")
	mustContain(t, "form after save", body, `value="5"`, `value="1m0s"`, `value="customer_id"`)
	_, body = f.get(t, "/")
	mustContain(t, "overview after save", body, "max 5 running", "100 starts / 1m0s")

	for name, form := range map[string]url.Values{
		"not a number":       {"total_running": {"many"}},
		"negative":           {"total_running": {"-3"}},
		"starts without per": {"total_starts": {"10"}},
		"bad duration":       {"total_starts": {"10"}, "total_per": {"soon"}},
		"per key no field":   {"key_running": {"2"}},
		"too many starts":    {"total_starts": {"20000"}, "total_per": {"1s"}},
		"html in the field":  {"key_field": {`<script>x</script>`}, "total_running": {"x<y"}},
	} {
		form.Set("csrf", tok)
		resp, body := f.post(t, "/queues/mail/limits", form, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="limits-error"`) {
			t.Errorf("%s: %d, no error shown", name, resp.StatusCode)
		}
		if strings.Contains(body, "<script>x") {
			t.Errorf("%s: the typed value is not escaped", name)
		}
		if got := limits(); got != want {
			t.Errorf("%s changed the limits to %+v", name, got)
		}
	}
	resp, body = f.post(t, "/queues/mail/limits", url.Values{"total_starts": {"10"}, "csrf": {tok}}, nil)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("max starts without per: %d", resp.StatusCode)
	}
	mustContain(t, "error text", body, "Per is 0s", `value="10"`)
	if resp, _ := f.post(t, "/queues/mail/limits", url.Values{"total_running": {"1"}}, nil); resp.StatusCode != http.StatusForbidden {
		t.Errorf("limits without token: %d", resp.StatusCode)
	}
	if resp, _ := f.post(t, "/queues/mail/limits", url.Values{"csrf": {tok}, "total_running": {"1"}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site limits: %d", resp.StatusCode)
	}
	if resp, _ := f.post(t, "/queues/mail/limits", url.Values{"csrf": {tok}, "clear": {"1"}, "total_running": {"oops"}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("remove limits: %d", resp.StatusCode)
	}
	if got := limits(); !got.IsZero() {
		t.Errorf("limits after remove = %+v", got)
	}
}

// TestRemoveSchedule asks first, then removes the schedule.
func TestRemoveSchedule(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	if err := f.ad.AddSchedule(f.ctx, queue.Schedule{Name: "old/<i>digest</i>", Every: time.Hour, Kind: "report", Queue: "default"}); err != nil {
		t.Fatal(err)
	}
	_, body := f.get(t, "/cron")
	m := regexp.MustCompile(`href="([^"]*/remove)" id="remove-`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no remove link on the cron page")
	}
	status, body := f.get(t, m[1])
	if status != 200 {
		t.Fatalf("GET %s: %d", m[1], status)
	}
	mustContain(t, "confirmation", body, `id="unschedule-confirm"`, `id="unschedule-go"`, "old/&lt;i&gt;digest&lt;/i&gt;")
	if _, err := f.ad.GetSchedule(f.ctx, "old/<i>digest</i>"); err != nil {
		t.Fatalf("the confirmation page removed the schedule: %v", err)
	}
	action := strings.ReplaceAll(regexp.MustCompile(`action="([^"]*/remove)"`).FindStringSubmatch(body)[1], "&amp;", "&")
	resp, _ := f.post(t, action, url.Values{"csrf": {tokenRE.FindStringSubmatch(body)[1]}}, nil)
	if resp.StatusCode != http.StatusSeeOther || !strings.HasSuffix(resp.Header.Get("Location"), "done=remove") {
		t.Fatalf("remove: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if _, err := f.ad.GetSchedule(f.ctx, "old/<i>digest</i>"); !errors.Is(err, queue.ErrScheduleNotFound) {
		t.Errorf("after remove GetSchedule = %v", err)
	}
	if status, _ := f.get(t, "/cron/nothing/remove"); status != http.StatusNotFound {
		t.Errorf("confirmation of a missing schedule: %d", status)
	}
}

// TestAutoRefresh: ?refresh=N adds a meta refresh tag on the pages that
// offer it, bounded, keeping the filter and dropping an action's flash.
func TestAutoRefresh(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	metaRE := regexp.MustCompile(`<meta http-equiv="refresh" content="([^"]*)">`)
	for path, want := range map[string]string{
		"/?refresh=5":                   "5; url=/?refresh=5",
		"/workers?refresh=30":           "30; url=/workers?refresh=30",
		"/jobs?state=failed&refresh=10": "10; url=/jobs?refresh=10&amp;state=failed",
		"/?done=pause&refresh=2":        "2; url=/?refresh=2",
	} {
		resp, err := f.client.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := metaRE.FindStringSubmatch(string(b))
		if m == nil || m[1] != want {
			t.Errorf("GET %s: meta refresh %q, want %q", path, m, want)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		mustContain(t, path, string(b), `id="refresh-off"`)
	}
	_, body := f.get(t, "/jobs?limit=1&refresh=5")
	mustContain(t, "paged jobs", body, `refresh=5" id="next"`)
	_, body = f.get(t, "/jobs?state=failed&refresh=10")
	mustContain(t, "jobs filter", body, `name="refresh" value="10"`, `<b id="refresh-10">10s</b>`, `href="/jobs?state=failed" id="refresh-off"`)
	for _, path := range []string{"/", "/jobs", "/workers", "/cron?refresh=5", "/jobs/" + f.failed.String() + "?refresh=5"} {
		if _, body := f.get(t, path); strings.Contains(body, `http-equiv="refresh"`) {
			t.Errorf("GET %s refreshes itself", path)
		}
	}
	_, body = f.get(t, "/")
	mustContain(t, "overview without refresh", body, `<b id="refresh-off">off</b>`, `href="/?refresh=5" id="refresh-5"`)
	for _, bad := range []string{"/?refresh=1", "/?refresh=301", "/jobs?refresh=abc", "/workers?refresh=-5"} {
		if status, _ := f.get(t, bad); status != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, status)
		}
	}
}

// TestBulkRace: a job a worker claims between the confirmation's count and
// the action is not touched, and the result says it was skipped.
func TestBulkRace(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	var ids []uuid.UUID
	for range 3 {
		ids = append(ids, f.insert(t, queue.NewJob{Kind: "race_kind", Queue: "raceq", Payload: []byte(`{}`)}))
	}
	_, body := f.get(t, "/bulk?state=available&queue=raceq&action=cancel")
	mustContain(t, "confirmation", body, `<b id="bulk-count">3</b>`, `name="expect" value="3"`)
	claimed, err := f.ad.Claim(f.ctx, queue.ClaimRequest{Queue: "raceq", WorkerID: "w", Limit: 1, Lease: time.Minute})
	if err != nil || len(claimed) != 1 {
		t.Fatalf("claim: %v %v", claimed, err)
	}
	form := url.Values{"csrf": {tokenRE.FindStringSubmatch(body)[1]}, "action": {"cancel"}, "state": {"available"}, "queue": {"raceq"}, "expect": {"3"}}
	resp, body := f.post(t, "/bulk", form, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("bulk cancel: %d", resp.StatusCode)
	}
	mustContain(t, "result", body, `<b id="bulk-changed">2</b>`, `<b id="bulk-skipped">1</b>`)
	for _, id := range ids {
		want := queue.StateCancelled
		if id == claimed[0].ID {
			want = queue.StateRunning
		}
		if st := f.state(t, id); st != want {
			t.Errorf("job %s is %s, want %s", id, st, want)
		}
	}
	j, err := f.ad.GetJob(f.ctx, claimed[0].ID)
	if err != nil || j.Token != claimed[0].Token || len(j.Errors) != 0 {
		t.Errorf("the claimed job was touched: %+v, %v", j, err)
	}
}

// TestBulkOneByOne: without queue.BulkEditor the bulk action lists the
// jobs and changes them with queue.JobEditor.
func TestBulkOneByOne(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{})
	h, err := ui.New(readerEditor{f.ad, f.ad, f.ad}, ui.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	body := serve(t, h, "/bulk?state=failed&queue=mail&action=retry")
	mustContain(t, "confirmation", body, `<b id="bulk-count">1</b>`)
	form := url.Values{"csrf": {tokenRE.FindStringSubmatch(body)[1]}, "action": {"retry"}, "state": {"failed"}, "queue": {"mail"}}
	resp, err := srv.Client().PostForm(srv.URL+"/bulk", form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	mustContain(t, "result", string(b), `<b id="bulk-changed">1</b>`)
	if st := f.state(t, f.failed); st != queue.StateAvailable {
		t.Errorf("job is %s after the one-by-one bulk retry", st)
	}
}

// TestReadOnlyNewPages: the limits form, schedule removal and workers page
// offer and accept no action in read-only mode.
func TestReadOnlyNewPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, ui.Options{ReadOnly: true})
	if err := f.ad.AddSchedule(f.ctx, queue.Schedule{Name: "keep", Every: time.Hour, Kind: "report", Queue: "default"}); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/", "/workers", "/cron", "/?refresh=5"} {
		status, body := f.get(t, path)
		if status != 200 || strings.Contains(body, `method="post"`) || strings.Contains(body, "/limits") || strings.Contains(body, "/remove") {
			t.Errorf("read-only %s: %d, offers an action", path, status)
		}
	}
	for _, path := range []string{"/queues/mail/limits", "/cron/keep/remove"} {
		if status, _ := f.get(t, path); status != http.StatusForbidden {
			t.Errorf("read-only GET %s: %d", path, status)
		}
	}
	for _, path := range []string{"/queues/mail/limits", "/cron/keep/remove"} {
		if resp, _ := f.post(t, path, url.Values{"csrf": {"x"}, "total_running": {"1"}}, nil); resp.StatusCode != http.StatusForbidden {
			t.Errorf("read-only POST %s: %d", path, resp.StatusCode)
		}
	}
	if _, err := f.ad.GetSchedule(f.ctx, "keep"); err != nil {
		t.Errorf("read-only removed the schedule: %v", err)
	}
	if states, _ := f.ad.QueueStates(f.ctx); len(states) != 0 {
		t.Errorf("read-only set limits: %+v", states)
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
