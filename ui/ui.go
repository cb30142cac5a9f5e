// Package ui is TasQ's web dashboard: an http.Handler that an application
// mounts (behind its own authentication) to see queues (depth, lag,
// throughput), list and inspect jobs, retry, cancel or delete them one by
// one or in bulk, see the live workers and the kinds no worker serves,
// pause and limit queues, and run, pause or remove schedules.
//
// The pages are rendered on the server with html/template from templates
// embedded in the binary, with one small stylesheet and no script. The
// handler works with any queue.Adapter and uses only the capabilities the
// adapter has (queue.StatsReader, queue.LagReader, queue.ThroughputReader,
// queue.JobReader, queue.JobEditor, queue.BulkEditor, queue.QueueController,
// queue.Scheduler, queue.WorkerRegistry, queue.UnservedReader): a page whose
// capability the backend lacks says so, an action it lacks is not offered,
// and a faster capability is used when the adapter has it (the exact
// throughput chart, bulk actions in batches of one statement each) with a
// slower fallback when it has not.
//
// The overview, jobs and workers pages reload themselves every N seconds
// with ?refresh=N (2 to 300), through a <meta http-equiv="refresh"> tag:
// no script is needed for that either.
//
// Safety:
//
//   - Options.ReadOnly hides every action and refuses every POST.
//   - Every POST is checked twice against cross-site request forgery: by
//     net/http.CrossOriginProtection (Sec-Fetch-Site and Origin headers) and
//     by a token in each form, random per Handler.
//   - Every value is escaped by html/template, and control characters (the
//     terminal escapes and bidi overrides an error text may hold) are shown
//     as visible escapes such as \x1b. A Content-Security-Policy that allows
//     no script at all backs this up.
//   - The handler has no authentication of its own: mount it behind yours.
//     The `tasq ui` command refuses to serve actions beyond loopback.
package ui

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tasqhq/tasq/queue"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Options configures a Handler.
type Options struct {
	// Prefix is the path the handler is mounted under, without a trailing
	// slash (e.g. "/admin/tasq"); links and form actions start with it.
	// Mount the handler with http.StripPrefix(Prefix, h). Default "".
	Prefix string
	// ReadOnly hides every action and answers every POST with 403.
	ReadOnly bool
	// Logger receives errors the pages meet. Default slog.Default().
	Logger *slog.Logger
	// Now returns the current time, for ages and the throughput chart.
	// Default time.Now.
	Now func() time.Time
}

// Handler serves the dashboard. Build it with New.
type Handler struct {
	ad    queue.Adapter
	opts  Options
	token string
	pages map[string]*template.Template
	mux   *http.ServeMux
	h     http.Handler
	log   *slog.Logger
}

// New returns the dashboard for ad. The handler does not close ad.
func New(ad queue.Adapter, opts Options) (*Handler, error) {
	if ad == nil {
		return nil, fmt.Errorf("ui: nil adapter")
	}
	opts.Prefix = strings.TrimRight(opts.Prefix, "/")
	if opts.Prefix != "" && !strings.HasPrefix(opts.Prefix, "/") {
		return nil, fmt.Errorf("ui: Prefix %q must start with /", opts.Prefix)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("ui: make the CSRF token: %w", err)
	}
	h := &Handler{ad: ad, opts: opts, token: hex.EncodeToString(secret[:]), pages: map[string]*template.Template{}, log: opts.Logger}
	for _, p := range []string{"overview", "jobs", "job", "cron", "message", "bulk", "workers", "limits", "unschedule"} {
		t, err := template.New(p).Funcs(h.funcs()).ParseFS(assets, "templates/layout.html", "templates/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("ui: parse template %s: %w", p, err)
		}
		h.pages[p] = t
	}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		return nil, err
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", h.overview)
	m.HandleFunc("GET /jobs", h.jobs)
	m.HandleFunc("GET /jobs/{id}", h.job)
	m.HandleFunc("POST /jobs/{id}/{action}", h.action(h.jobAction))
	m.HandleFunc("GET /queues/{name}/limits", h.limitsForm)
	m.HandleFunc("POST /queues/{name}/limits", h.action(h.limitsApply))
	m.HandleFunc("POST /queues/{name}/{action}", h.action(h.queueAction))
	m.HandleFunc("GET /workers", h.workers)
	m.HandleFunc("GET /bulk", h.bulkConfirm)
	m.HandleFunc("POST /bulk", h.action(h.bulkApply))
	m.HandleFunc("GET /cron", h.cron)
	m.HandleFunc("GET /cron/{name}/remove", h.unscheduleConfirm)
	m.HandleFunc("POST /cron/{name}/{action}", h.action(h.cronAction))
	m.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	h.mux = m
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.message(w, r, http.StatusForbidden, "Cross-origin request refused", "This action came from another site, or without the headers a browser sends; nothing was changed.")
	}))
	h.h = securityHeaders(cop.Handler(m))
	return h, nil
}

// ServeHTTP serves the dashboard's pages and actions.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.h.ServeHTTP(w, r) }

// securityHeaders sets the headers every response carries: no script may
// run, no other site may frame the pages or receive their URLs.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// action wraps a POST handler with the read-only and CSRF token checks.
func (h *Handler) action(fn http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.opts.ReadOnly {
			h.message(w, r, http.StatusForbidden, "Read-only", "This dashboard is read-only; nothing was changed.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			h.message(w, r, http.StatusBadRequest, "Bad request", err.Error())
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostFormValue("csrf")), []byte(h.token)) != 1 {
			h.message(w, r, http.StatusForbidden, "Invalid form token", "The form's token is missing or stale (the dashboard restarted?). Reload the page and try again; nothing was changed.")
			return
		}
		fn(w, r)
	}
}

// page is what every template gets.
type page struct {
	Title    string
	Prefix   string
	Token    string
	ReadOnly bool
	Backend  string
	Nav      string
	Flash    string
	// Refresh is the page's auto-refresh period in seconds (0: off), and
	// RefreshURL the address it reloads; Refreshes are the links that turn
	// it on, change or turn it off, on the pages that offer it.
	Refresh    int
	RefreshURL string
	Refreshes  []refreshLink
	Data       any
}

func (h *Handler) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) {
	p := page{Title: title, Prefix: h.opts.Prefix, Token: h.token, ReadOnly: h.opts.ReadOnly, Backend: h.ad.Name(), Nav: name, Flash: flashes[r.URL.Query().Get("done")], Data: data}
	if refreshable[name] && status == http.StatusOK {
		p.Refresh, _ = refreshPeriod(r)
		p.RefreshURL, p.Refreshes = h.refreshLinks(r, p.Refresh)
	}
	var buf bytes.Buffer
	if err := h.pages[name].ExecuteTemplate(&buf, "layout", p); err != nil {
		h.log.ErrorContext(r.Context(), "tasq ui: render", "page", name, "err", err)
		http.Error(w, "tasq ui: could not render the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type messageData struct {
	Heading, Text string
}

func (h *Handler) message(w http.ResponseWriter, r *http.Request, status int, heading, text string) {
	h.render(w, r, status, "message", heading, messageData{Heading: heading, Text: text})
}

// fail shows an error a backend call returned.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, what string, err error) {
	status := http.StatusInternalServerError
	if errorsIsNotFound(err) {
		status = http.StatusNotFound
	} else if context.Cause(r.Context()) != nil {
		status = http.StatusServiceUnavailable
	}
	h.log.WarnContext(r.Context(), "tasq ui: "+what, "err", err)
	h.message(w, r, status, "Could not "+what, err.Error())
}

// unsupported renders the page that says the backend lacks capability.
func (h *Handler) unsupported(w http.ResponseWriter, r *http.Request, capability, what string) {
	h.render(w, r, http.StatusNotImplemented, "message", "Not supported", messageData{
		Heading: "Not supported on " + h.ad.Name(),
		Text:    fmt.Sprintf("The %s backend %s (its adapter is no %s).", h.ad.Name(), what, capability),
	})
}

// flashes are the messages a page shows after an action redirected to it
// with ?done=: fixed texts, so that a link cannot make the dashboard say
// what its author wants.
var flashes = map[string]string{
	"retry":   "The job was made available to run again.",
	"cancel":  "The job was cancelled.",
	"delete":  "The job was deleted.",
	"pause":   "Paused.",
	"resume":  "Resumed.",
	"trigger": "The schedule's job was dispatched.",
	"limits":  "The queue's limits were saved.",
	"remove":  "The schedule was removed. The jobs it dispatched stay.",
}

// redirect sends the browser to path after an action, which done names.
func (h *Handler) redirect(w http.ResponseWriter, r *http.Request, path, done string) {
	to := h.opts.Prefix + path
	sep := "?"
	if strings.Contains(to, "?") {
		sep = "&"
	}
	http.Redirect(w, r, to+sep+"done="+url.QueryEscape(done), http.StatusSeeOther)
}
