package ui_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/ui"
)

func TestMain(m *testing.M) {
	code := testpg.Main(m)
	closeBrowser()
	os.Exit(code)
}

// The hostile values the fixture stores: a payload that would set
// window.pwned if it ran, an error text with HTML and a terminal escape.
const (
	evilPayload = `{"html":"<script>window.pwned=1</script>","img":"<img src=x onerror=\"window.pwned=2\">"}`
	evilError   = "boom <img src=x onerror=\"window.pwned=3\"> \x1b]0;owned\x07 and \u202eright-to-left"
	evilKind    = `<i onmouseover="window.pwned=4">evil_kind</i>`
)

// fixture is a migrated database with a known set of jobs and a dashboard
// served over it.
type fixture struct {
	ctx       context.Context
	ad        *postgres.Adapter
	srv       *httptest.Server
	failed    uuid.UUID // failed, queue mail, hostile payload and error
	completed uuid.UUID // completed, queue default, with a result
	available uuid.UUID // available, queue reports, tag nightly
	client    *http.Client
}

func newFixture(t *testing.T, opts ui.Options) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	ad, err := postgres.New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(ad.Close)
	f := &fixture{ctx: ctx, ad: ad}
	f.failed = f.insert(t, queue.NewJob{Kind: evilKind, Queue: "mail", Payload: []byte(evilPayload)})
	f.finish(t, "mail", func(j *queue.Job) queue.Outcome { return queue.Failed(j, errors.New(evilError)) })
	f.completed = f.insert(t, queue.NewJob{Kind: "report", Queue: "default", Payload: []byte(`{"n":1}`)})
	f.finish(t, "default", func(j *queue.Job) queue.Outcome { return queue.Completed(j, json.RawMessage(`{"rows":42}`)) })
	f.available = f.insert(t, queue.NewJob{Kind: "nightly_report", Queue: "reports", Payload: []byte(`{}`), Tags: []string{"nightly"}})

	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h, err := ui.New(ad, opts)
	if err != nil {
		t.Fatalf("ui.New: %v", err)
	}
	var handler http.Handler = h
	if opts.Prefix != "" {
		mux := http.NewServeMux()
		mux.Handle(opts.Prefix+"/", http.StripPrefix(opts.Prefix, h))
		handler = mux
	}
	f.srv = httptest.NewServer(handler)
	t.Cleanup(f.srv.Close)
	f.client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return f
}

func (f *fixture) insert(t *testing.T, j queue.NewJob) uuid.UUID {
	t.Helper()
	j.ID = uuid.Must(uuid.NewV7())
	if err := f.ad.Insert(f.ctx, []queue.NewJob{j}); err != nil {
		t.Fatalf("insert: %v", err)
	}
	return j.ID
}

// finish claims the one available job of q and writes the outcome out makes.
func (f *fixture) finish(t *testing.T, q string, out func(*queue.Job) queue.Outcome) {
	t.Helper()
	jobs, err := f.ad.Claim(f.ctx, queue.ClaimRequest{Queue: q, WorkerID: "test-worker-1", Limit: 1, Lease: time.Minute})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("claim %s: %d jobs, %v", q, len(jobs), err)
	}
	if n, err := f.ad.Finish(f.ctx, "test-worker-1", []queue.Outcome{out(jobs[0])}); err != nil || n != 1 {
		t.Fatalf("finish: %d, %v", n, err)
	}
}

func (f *fixture) state(t *testing.T, id uuid.UUID) queue.JobState {
	t.Helper()
	j, err := f.ad.GetJob(f.ctx, id)
	if err != nil {
		t.Fatalf("GetJob %s: %v", id, err)
	}
	return j.State
}

// get fetches path and returns the status and body.
func (f *fixture) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := f.client.Get(f.srv.URL + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

var tokenRE = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// token reads the CSRF token from a page's forms.
func (f *fixture) token(t *testing.T, path string) string {
	t.Helper()
	_, body := f.get(t, path)
	m := tokenRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in %s", path)
	}
	return m[1]
}

// post submits a form to path and returns the response (body read and closed).
func (f *fixture) post(t *testing.T, path string, form url.Values, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodPost, f.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }
