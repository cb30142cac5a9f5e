package ui

import (
	"cmp"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

func errorsIsNotFound(err error) bool {
	return errors.Is(err, queue.ErrJobNotFound) || errors.Is(err, queue.ErrScheduleNotFound)
}

func (h *Handler) funcs() template.FuncMap {
	return template.FuncMap{
		"text":  oneLine,
		"multi": multiLine,
		"json":  func(b []byte) string { return prettyJSON(b) },
		"time": func(t any) string {
			switch v := t.(type) {
			case time.Time:
				if v.IsZero() {
					return "—"
				}
				return v.UTC().Format("2006-01-02 15:04:05.000 UTC")
			case *time.Time:
				if v == nil || v.IsZero() {
					return "—"
				}
				return v.UTC().Format("2006-01-02 15:04:05.000 UTC")
			}
			return "—"
		},
		"ago": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			d := h.opts.Now().Sub(t)
			if d < 0 {
				return "in " + roundDur(-d).String()
			}
			return roundDur(d).String() + " ago"
		},
		"dur":    func(d time.Duration) string { return d.String() },
		"age":    func(d time.Duration) string { return roundAge(d).String() },
		"path":   url.PathEscape,
		"states": func() []queue.JobState { return queue.States },
		"dict": func(kv ...any) (map[string]any, error) {
			if len(kv)%2 != 0 {
				return nil, errors.New("dict: odd number of arguments")
			}
			m := make(map[string]any, len(kv)/2)
			for i := 0; i < len(kv); i += 2 {
				k, ok := kv[i].(string)
				if !ok {
					return nil, errors.New("dict: key is not a string")
				}
				m[k] = kv[i+1]
			}
			return m, nil
		},
	}
}

// roundAge rounds an age to what a person reads at a glance: whole
// seconds from ten seconds on, tenths below, milliseconds below a second.
func roundAge(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Millisecond)
	}
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Hour:
		return d.Round(time.Minute)
	case d >= time.Minute:
		return d.Round(time.Second)
	default:
		return d.Round(time.Millisecond)
	}
}

// --- overview ---

type queueRow struct {
	Name   string
	Counts map[queue.JobState]string
	Total  int64
	State  *queue.QueueState
	// Lag is the queue's lag (nil: nothing available, or no LagReader).
	Lag *queue.QueueLag
}

type overviewData struct {
	StatsErr, StatesErr, LagErr   string
	NoStats, NoController, HasLag bool
	Queues                        []queueRow
	Chart                         *chart
	ChartNote                     string
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	if !h.refreshOK(w, r) {
		return
	}
	ctx := r.Context()
	d := overviewData{}
	rows := map[string]*queueRow{}
	row := func(name string) *queueRow {
		if rows[name] == nil {
			rows[name] = &queueRow{Name: name, Counts: map[queue.JobState]string{}}
		}
		return rows[name]
	}
	if sr, ok := h.ad.(queue.StatsReader); ok {
		stats, err := sr.Stats(ctx)
		if err != nil {
			d.StatsErr = err.Error()
		}
		for _, s := range stats {
			qr := row(s.Queue)
			n := strconv.FormatInt(s.Count, 10)
			if s.Estimated {
				n = "~" + n
			}
			qr.Counts[s.State] = n
			qr.Total += s.Count
		}
	} else {
		d.NoStats = true
	}
	if lr, ok := h.ad.(queue.LagReader); ok {
		d.HasLag = true
		lags, err := lr.Lag(ctx)
		if err != nil {
			d.LagErr = err.Error()
		}
		for i := range lags {
			row(lags[i].Queue).Lag = &lags[i]
		}
	}
	if qc, ok := h.ad.(queue.QueueController); ok {
		states, err := qc.QueueStates(ctx)
		if err != nil {
			d.StatesErr = err.Error()
		}
		for i := range states {
			row(states[i].Name).State = &states[i]
		}
	} else {
		d.NoController = true
	}
	for _, qr := range rows {
		d.Queues = append(d.Queues, *qr)
	}
	slices.SortFunc(d.Queues, func(a, b queueRow) int { return cmp.Compare(a.Name, b.Name) })
	d.Chart, d.ChartNote = h.throughput(r)
	h.render(w, r, http.StatusOK, "overview", "Overview", d)
}

// --- jobs list ---

// listForm is the jobs page's filter as the query string carries it.
type listForm struct {
	State, Queue, Kind, Tag, After, ID string
	Limit                              int
}

func (f listForm) query() string {
	v := url.Values{}
	for k, s := range map[string]string{"state": f.State, "queue": f.Queue, "kind": f.Kind, "tag": f.Tag, "after": f.After} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if f.Limit != 0 && f.Limit != defaultPage {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	return v.Encode()
}

const (
	defaultPage = 50
	maxPage     = 500
)

type jobsData struct {
	Form    listForm
	Refresh int // carried by the filter form
	Jobs    []*queue.JobInfo
	Next    string
	First   string
	Err     string
	CanEdit bool
	Bulk    []bulkLink
}

type bulkLink struct{ Action, URL string }

func (h *Handler) jobs(w http.ResponseWriter, r *http.Request) {
	jr, ok := h.ad.(queue.JobReader)
	if !ok {
		h.unsupported(w, r, "queue.JobReader", "cannot look up or list single jobs")
		return
	}
	if !h.refreshOK(w, r) {
		return
	}
	q := r.URL.Query()
	f := listForm{State: q.Get("state"), Queue: strings.TrimSpace(q.Get("queue")), Kind: strings.TrimSpace(q.Get("kind")),
		Tag: strings.TrimSpace(q.Get("tag")), After: strings.TrimSpace(q.Get("after")), ID: strings.TrimSpace(q.Get("id")), Limit: defaultPage}
	if f.ID != "" {
		id, err := uuid.Parse(f.ID)
		if err != nil {
			h.message(w, r, http.StatusBadRequest, "Not a job ID", fmt.Sprintf("%q is not a job ID (a UUID such as 0190c3e2-7b1a-7cde-8f00-1234567890ab).", oneLine(f.ID)))
			return
		}
		http.Redirect(w, r, h.opts.Prefix+"/jobs/"+id.String(), http.StatusSeeOther)
		return
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPage {
			h.message(w, r, http.StatusBadRequest, "Bad page size", fmt.Sprintf("limit must be 1 to %d.", maxPage))
			return
		}
		f.Limit = n
	}
	lf := queue.ListFilter{Queue: f.Queue, Kind: f.Kind, Tag: f.Tag, Limit: f.Limit + 1}
	if f.State != "" {
		st, err := queue.ParseJobState(f.State)
		if err != nil {
			h.message(w, r, http.StatusBadRequest, "Unknown state", err.Error())
			return
		}
		lf.State = st
	}
	if f.After != "" {
		id, err := uuid.Parse(f.After)
		if err != nil {
			h.message(w, r, http.StatusBadRequest, "Bad cursor", "after must be a job ID.")
			return
		}
		lf.After = id
	}
	d := jobsData{Form: f}
	d.Refresh, _ = refreshPeriod(r)
	_, d.CanEdit = h.ad.(queue.JobEditor)
	if _, ok := h.ad.(queue.BulkEditor); ok {
		d.CanEdit = true
	}
	jobs, err := jr.ListJobs(r.Context(), lf)
	if err != nil {
		d.Err = err.Error()
	}
	// One more row than the page shows tells whether a next page exists.
	if len(jobs) > f.Limit {
		jobs = jobs[:f.Limit]
		nf := f
		nf.After = jobs[len(jobs)-1].ID.String()
		d.Next = h.opts.Prefix + "/jobs?" + nf.query()
	}
	if f.After != "" {
		ff := f
		ff.After = ""
		d.First = h.opts.Prefix + "/jobs?" + ff.query()
	}
	d.Jobs = jobs
	if d.Refresh > 0 {
		// The pages after this one refresh as this one does.
		for _, u := range []*string{&d.Next, &d.First} {
			if *u != "" && !strings.HasSuffix(*u, "?") {
				*u += "&"
			}
			if *u != "" {
				*u += "refresh=" + strconv.Itoa(d.Refresh)
			}
		}
	}
	if d.CanEdit && !h.opts.ReadOnly && len(jobs) > 0 {
		for _, act := range bulkActions(f.State) {
			bf := f
			bf.After = ""
			d.Bulk = append(d.Bulk, bulkLink{Action: act, URL: h.opts.Prefix + "/bulk?" + bf.query() + "&action=" + act})
		}
	}
	h.render(w, r, http.StatusOK, "jobs", "Jobs", d)
}

// --- job detail ---

type jobData struct {
	Job                            *queue.JobInfo
	CanRetry, CanCancel, CanDelete bool
	Runtime, Wait                  string
}

func (h *Handler) job(w http.ResponseWriter, r *http.Request) {
	jr, ok := h.ad.(queue.JobReader)
	if !ok {
		h.unsupported(w, r, "queue.JobReader", "cannot look up or list single jobs")
		return
	}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		h.message(w, r, http.StatusBadRequest, "Not a job ID", "The address does not hold a job ID.")
		return
	}
	j, err := jr.GetJob(r.Context(), id)
	if err != nil {
		h.fail(w, r, "load job "+id.String(), err)
		return
	}
	d := jobData{Job: j}
	if _, ok := h.ad.(queue.JobEditor); ok && !h.opts.ReadOnly {
		switch j.State {
		case queue.StateFailed, queue.StateCancelled, queue.StateRetryable, queue.StateScheduled:
			d.CanRetry = true
		}
		switch j.State {
		case queue.StateScheduled, queue.StateAvailable, queue.StateRunning, queue.StateRetryable:
			d.CanCancel = true
		}
		d.CanDelete = j.State != queue.StateRunning
	}
	if j.AttemptedAt != nil {
		if j.FinishedAt != nil {
			d.Runtime = roundDur(j.FinishedAt.Sub(*j.AttemptedAt)).String()
		}
		d.Wait = roundDur(j.AttemptedAt.Sub(j.RunAt)).String()
	}
	h.render(w, r, http.StatusOK, "job", "Job "+id.String(), d)
}

// --- cron ---

type cronData struct {
	Schedules []*queue.ScheduleInfo
	Err       string
}

// unscheduleData is the confirmation page of a schedule's removal.
type unscheduleData struct {
	Schedule *queue.ScheduleInfo
}

// unscheduleConfirm asks whether to remove a schedule, showing it.
func (h *Handler) unscheduleConfirm(w http.ResponseWriter, r *http.Request) {
	if h.opts.ReadOnly {
		h.message(w, r, http.StatusForbidden, "Read-only", "This dashboard is read-only; nothing was changed.")
		return
	}
	sc, ok := h.ad.(queue.Scheduler)
	if !ok {
		h.unsupported(w, r, "queue.Scheduler", "keeps no schedules (periodic jobs)")
		return
	}
	s, err := sc.GetSchedule(r.Context(), r.PathValue("name"))
	if err != nil {
		h.fail(w, r, "load schedule "+oneLine(r.PathValue("name")), err)
		return
	}
	h.render(w, r, http.StatusOK, "unschedule", "Remove schedule "+s.Name, unscheduleData{Schedule: s})
}

func (h *Handler) cron(w http.ResponseWriter, r *http.Request) {
	sc, ok := h.ad.(queue.Scheduler)
	if !ok {
		h.unsupported(w, r, "queue.Scheduler", "keeps no schedules (periodic jobs)")
		return
	}
	var d cronData
	ss, err := sc.ListSchedules(r.Context())
	if err != nil {
		d.Err = err.Error()
	}
	d.Schedules = ss
	h.render(w, r, http.StatusOK, "cron", "Cron", d)
}

// --- actions ---

func (h *Handler) jobAction(w http.ResponseWriter, r *http.Request) {
	je, ok := h.ad.(queue.JobEditor)
	if !ok {
		h.unsupported(w, r, "queue.JobEditor", "cannot retry, cancel or delete single jobs")
		return
	}
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		h.message(w, r, http.StatusBadRequest, "Not a job ID", "The address does not hold a job ID.")
		return
	}
	act := r.PathValue("action")
	switch act {
	case "retry":
		err = je.RetryJob(r.Context(), id)
	case "cancel":
		err = je.CancelJob(r.Context(), id)
	case "delete":
		err = je.DeleteJob(r.Context(), id)
	default:
		h.message(w, r, http.StatusNotFound, "Unknown action", "Jobs can be retried, cancelled or deleted.")
		return
	}
	if err != nil {
		h.fail(w, r, act+" job "+id.String(), err)
		return
	}
	h.log.InfoContext(r.Context(), "tasq ui: job "+act, "job", id)
	if act == "delete" {
		h.redirect(w, r, "/jobs", act)
		return
	}
	h.redirect(w, r, "/jobs/"+id.String(), act)
}

func (h *Handler) queueAction(w http.ResponseWriter, r *http.Request) {
	qc, ok := h.ad.(queue.QueueController)
	if !ok {
		h.unsupported(w, r, "queue.QueueController", "cannot pause queues")
		return
	}
	name, act := r.PathValue("name"), r.PathValue("action")
	var err error
	switch act {
	case "pause":
		err = qc.PauseQueue(r.Context(), name)
	case "resume":
		err = qc.ResumeQueue(r.Context(), name)
	default:
		h.message(w, r, http.StatusNotFound, "Unknown action", "Queues can be paused or resumed.")
		return
	}
	if err != nil {
		h.fail(w, r, act+" queue "+oneLine(name), err)
		return
	}
	h.log.InfoContext(r.Context(), "tasq ui: queue "+act, "queue", name)
	h.redirect(w, r, "/", act)
}

func (h *Handler) cronAction(w http.ResponseWriter, r *http.Request) {
	sc, ok := h.ad.(queue.Scheduler)
	if !ok {
		h.unsupported(w, r, "queue.Scheduler", "keeps no schedules (periodic jobs)")
		return
	}
	name, act := r.PathValue("name"), r.PathValue("action")
	var err error
	switch act {
	case "pause":
		err = sc.PauseSchedule(r.Context(), name)
	case "resume":
		err = sc.ResumeSchedule(r.Context(), name)
	case "remove":
		err = sc.RemoveSchedule(r.Context(), name)
	case "trigger":
		var id uuid.UUID
		if id, err = sc.TriggerSchedule(r.Context(), name); err == nil {
			h.log.InfoContext(r.Context(), "tasq ui: schedule triggered", "schedule", name, "job", id)
			h.redirect(w, r, "/jobs/"+id.String(), act)
			return
		}
	default:
		h.message(w, r, http.StatusNotFound, "Unknown action", "Schedules can be paused, resumed, triggered or removed.")
		return
	}
	if err != nil {
		h.fail(w, r, act+" schedule "+oneLine(name), err)
		return
	}
	h.log.InfoContext(r.Context(), "tasq ui: schedule "+act, "schedule", name)
	h.redirect(w, r, "/cron", act)
}
