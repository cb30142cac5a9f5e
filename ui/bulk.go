package ui

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/tasqhq/tasq/queue"
)

// Bulk actions apply retry, cancel or delete to every job that matches the
// jobs page's filter, after a confirmation page that shows how many that
// is. The filter must name a state, and the action must suit it (retry
// failed jobs, not completed ones).
//
// With queue.BulkEditor (postgres has it) the count is exact, and the
// action changes the jobs in batches, one statement each, up to
// bulkEditorMax per request: a job that left the state since the count
// (a worker claimed it) is not touched. Without it the handler lists the
// matching IDs (at most bulkMax, newest first) and changes them one by one
// with queue.JobEditor; a job that changed state in between is skipped and
// counted.

// bulkMax is the most jobs one bulk action changes one by one.
const bulkMax = 1000

// bulkEditorMax is the most jobs one bulk action changes with a
// queue.BulkEditor, and the most the confirmation counts exactly: on
// postgres a million jobs take some tens of seconds.
const bulkEditorMax = 1_000_000

// bulkStates are the states each bulk action takes jobs from.
var bulkStates = map[string][]queue.JobState{
	"retry":  {queue.StateFailed, queue.StateCancelled, queue.StateRetryable, queue.StateScheduled},
	"cancel": {queue.StateScheduled, queue.StateAvailable, queue.StateRetryable},
	"delete": {queue.StateScheduled, queue.StateAvailable, queue.StateRetryable, queue.StateCompleted, queue.StateFailed, queue.StateCancelled},
}

// bulkActions returns the bulk actions that suit a filter on state.
func bulkActions(state string) []string {
	var out []string
	for _, act := range []string{"retry", "cancel", "delete"} {
		for _, st := range bulkStates[act] {
			if string(st) == state {
				out = append(out, act)
			}
		}
	}
	return out
}

type bulkData struct {
	Form   listForm
	Action string
	Count  int
	More   bool // more than the cap match
	Filter string
	Done   *bulkResult
	Back   string
	Exact  bool // counted and changed with a queue.BulkEditor
}

type bulkResult struct {
	Changed, Skipped int
	Errors           []string
}

// bulkReq is a checked bulk request.
type bulkReq struct {
	form listForm
	act  string
	bf   queue.BulkFilter
}

// bulkRequest reads and checks a bulk action's filter and action from the
// request's form (the query for the confirmation, the body for the POST).
func (h *Handler) bulkRequest(w http.ResponseWriter, r *http.Request) (bulkReq, bool) {
	_, okB := h.ad.(queue.BulkEditor)
	_, okR := h.ad.(queue.JobReader)
	_, okE := h.ad.(queue.JobEditor)
	if !okB && (!okR || !okE) {
		h.unsupported(w, r, "queue.BulkEditor, nor queue.JobReader and queue.JobEditor", "cannot change jobs in bulk, nor list and change single jobs")
		return bulkReq{}, false
	}
	f := listForm{State: r.FormValue("state"), Queue: strings.TrimSpace(r.FormValue("queue")), Kind: strings.TrimSpace(r.FormValue("kind")), Tag: strings.TrimSpace(r.FormValue("tag")), Limit: defaultPage}
	act := r.FormValue("action")
	if len(bulkStates[act]) == 0 {
		h.message(w, r, http.StatusBadRequest, "Unknown bulk action", "Bulk actions are retry, cancel and delete.")
		return bulkReq{}, false
	}
	st, err := queue.ParseJobState(f.State)
	if err != nil || !containsState(bulkStates[act], st) {
		h.message(w, r, http.StatusBadRequest, "Choose a state first",
			fmt.Sprintf("A bulk %s needs a filter on one of the states %v.", act, bulkStates[act]))
		return bulkReq{}, false
	}
	return bulkReq{form: f, act: act, bf: queue.BulkFilter{State: st, Queue: f.Queue, Kind: f.Kind, Tag: f.Tag}}, true
}

func containsState(ss []queue.JobState, s queue.JobState) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func (f listForm) describe() string {
	var parts []string
	for _, kv := range [][2]string{{"state", f.State}, {"queue", f.Queue}, {"kind", f.Kind}, {"tag", f.Tag}} {
		if kv[1] != "" {
			parts = append(parts, kv[0]+"="+oneLine(kv[1]))
		}
	}
	return strings.Join(parts, ", ")
}

func (b bulkReq) listFilter(limit int) queue.ListFilter {
	return queue.ListFilter{State: b.bf.State, Queue: b.bf.Queue, Kind: b.bf.Kind, Tag: b.bf.Tag, Limit: limit}
}

// bulkConfirm shows how many jobs a bulk action would change.
func (h *Handler) bulkConfirm(w http.ResponseWriter, r *http.Request) {
	if h.opts.ReadOnly {
		h.message(w, r, http.StatusForbidden, "Read-only", "This dashboard is read-only; nothing was changed.")
		return
	}
	b, ok := h.bulkRequest(w, r)
	if !ok {
		return
	}
	d := bulkData{Form: b.form, Action: b.act, Filter: b.form.describe(), Back: h.opts.Prefix + "/jobs?" + b.form.query()}
	if be, ok := h.ad.(queue.BulkEditor); ok {
		f := b.bf
		f.Limit = bulkEditorMax + 1
		n, err := be.CountJobs(r.Context(), f)
		if err != nil {
			h.fail(w, r, "count the matching jobs", err)
			return
		}
		d.Count, d.More, d.Exact = min(n, bulkEditorMax), n > bulkEditorMax, true
	} else {
		jobs, err := h.ad.(queue.JobReader).ListJobs(r.Context(), b.listFilter(bulkMax+1))
		if err != nil {
			h.fail(w, r, "count the matching jobs", err)
			return
		}
		d.Count, d.More = min(len(jobs), bulkMax), len(jobs) > bulkMax
	}
	h.render(w, r, http.StatusOK, "bulk", "Confirm bulk "+b.act, d)
}

// bulkApply applies a confirmed bulk action.
func (h *Handler) bulkApply(w http.ResponseWriter, r *http.Request) {
	b, ok := h.bulkRequest(w, r)
	if !ok {
		return
	}
	expected, _ := strconv.Atoi(r.PostFormValue("expect"))
	var res *bulkResult
	if be, ok := h.ad.(queue.BulkEditor); ok {
		res, ok = h.bulkApplyEditor(w, r, be, b, expected)
		if !ok {
			return
		}
	} else {
		res, ok = h.bulkApplyOneByOne(w, r, b)
		if !ok {
			return
		}
	}
	h.log.InfoContext(r.Context(), "tasq ui: bulk "+b.act, "filter", b.form.describe(), "changed", res.Changed, "skipped", res.Skipped)
	d := bulkData{Form: b.form, Action: b.act, Filter: b.form.describe(), Done: res, Back: h.opts.Prefix + "/jobs?" + b.form.query()}
	h.render(w, r, http.StatusOK, "bulk", "Bulk "+b.act, d)
}

// bulkApplyEditor changes the jobs with the backend's bulk statements. The
// jobs the confirmation counted that were not changed (expected minus
// changed) left the state in between, and are reported skipped.
func (h *Handler) bulkApplyEditor(w http.ResponseWriter, r *http.Request, be queue.BulkEditor, b bulkReq, expected int) (*bulkResult, bool) {
	f := b.bf
	f.Limit = bulkEditorMax
	var n int
	var err error
	switch b.act {
	case "retry":
		n, err = be.RetryJobs(r.Context(), f)
	case "cancel":
		n, err = be.CancelJobs(r.Context(), f)
	case "delete":
		n, err = be.DeleteJobs(r.Context(), f)
	}
	if err != nil {
		h.fail(w, r, "finish the bulk "+b.act, fmt.Errorf("stopped after %d jobs: %w", n, err))
		return nil, false
	}
	return &bulkResult{Changed: n, Skipped: max(0, expected-n)}, true
}

// bulkApplyOneByOne lists the matching jobs and changes them one by one.
func (h *Handler) bulkApplyOneByOne(w http.ResponseWriter, r *http.Request, b bulkReq) (*bulkResult, bool) {
	je := h.ad.(queue.JobEditor)
	jobs, err := h.ad.(queue.JobReader).ListJobs(r.Context(), b.listFilter(bulkMax))
	if err != nil {
		h.fail(w, r, "list the matching jobs", err)
		return nil, false
	}
	res := &bulkResult{}
	for _, j := range jobs {
		var err error
		switch b.act {
		case "retry":
			err = je.RetryJob(r.Context(), j.ID)
		case "cancel":
			err = je.CancelJob(r.Context(), j.ID)
		case "delete":
			err = je.DeleteJob(r.Context(), j.ID)
		}
		switch {
		case err == nil:
			res.Changed++
		case r.Context().Err() != nil:
			h.fail(w, r, "finish the bulk "+b.act, fmt.Errorf("stopped after %d jobs: %w", res.Changed, r.Context().Err()))
			return nil, false
		default:
			res.Skipped++
			if len(res.Errors) < 5 {
				res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", j.ID, err))
			}
		}
	}
	return res, true
}
