package ui

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/tasqhq/tasq/queue"
)

// Bulk actions apply retry, cancel or delete to every job that matches the
// jobs page's filter, after a confirmation page that shows how many that
// is. The filter must name a state, and the action must suit it (retry
// failed jobs, not completed ones). No capability changes jobs by filter
// yet, so the handler lists the matching IDs (at most bulkMax, newest first)
// and changes them one by one with queue.JobEditor; a job that changed state
// in between is skipped and counted.

// bulkMax is the most jobs one bulk action changes.
const bulkMax = 1000

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
	More   bool // more than bulkMax match
	Filter string
	Done   *bulkResult
	Back   string
}

type bulkResult struct {
	Changed, Skipped int
	Errors           []string
}

// bulkRequest reads and checks a bulk action's filter and action from the
// request's form (the query for the confirmation, the body for the POST).
func (h *Handler) bulkRequest(w http.ResponseWriter, r *http.Request) (queue.JobReader, queue.JobEditor, listForm, string, queue.ListFilter, bool) {
	jr, okR := h.ad.(queue.JobReader)
	je, okE := h.ad.(queue.JobEditor)
	if !okR || !okE {
		h.unsupported(w, r, "queue.JobReader and queue.JobEditor", "cannot list and change single jobs")
		return nil, nil, listForm{}, "", queue.ListFilter{}, false
	}
	f := listForm{State: r.FormValue("state"), Queue: strings.TrimSpace(r.FormValue("queue")), Kind: strings.TrimSpace(r.FormValue("kind")), Tag: strings.TrimSpace(r.FormValue("tag")), Limit: defaultPage}
	act := r.FormValue("action")
	if len(bulkStates[act]) == 0 {
		h.message(w, r, http.StatusBadRequest, "Unknown bulk action", "Bulk actions are retry, cancel and delete.")
		return nil, nil, f, "", queue.ListFilter{}, false
	}
	st, err := queue.ParseJobState(f.State)
	if err != nil || !containsState(bulkStates[act], st) {
		h.message(w, r, http.StatusBadRequest, "Choose a state first",
			fmt.Sprintf("A bulk %s needs a filter on one of the states %v.", act, bulkStates[act]))
		return nil, nil, f, "", queue.ListFilter{}, false
	}
	return jr, je, f, act, queue.ListFilter{State: st, Queue: f.Queue, Kind: f.Kind, Tag: f.Tag, Limit: bulkMax + 1}, true
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

// bulkConfirm shows how many jobs a bulk action would change.
func (h *Handler) bulkConfirm(w http.ResponseWriter, r *http.Request) {
	if h.opts.ReadOnly {
		h.message(w, r, http.StatusForbidden, "Read-only", "This dashboard is read-only; nothing was changed.")
		return
	}
	jr, _, f, act, lf, ok := h.bulkRequest(w, r)
	if !ok {
		return
	}
	jobs, err := jr.ListJobs(r.Context(), lf)
	if err != nil {
		h.fail(w, r, "count the matching jobs", err)
		return
	}
	d := bulkData{Form: f, Action: act, Count: min(len(jobs), bulkMax), More: len(jobs) > bulkMax, Filter: f.describe(), Back: h.opts.Prefix + "/jobs?" + f.query()}
	h.render(w, r, http.StatusOK, "bulk", "Confirm bulk "+act, d)
}

// bulkApply applies a confirmed bulk action.
func (h *Handler) bulkApply(w http.ResponseWriter, r *http.Request) {
	jr, je, f, act, lf, ok := h.bulkRequest(w, r)
	if !ok {
		return
	}
	lf.Limit = bulkMax
	jobs, err := jr.ListJobs(r.Context(), lf)
	if err != nil {
		h.fail(w, r, "list the matching jobs", err)
		return
	}
	res := &bulkResult{}
	for _, j := range jobs {
		var err error
		switch act {
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
			h.fail(w, r, "finish the bulk "+act, fmt.Errorf("stopped after %d jobs: %w", res.Changed, r.Context().Err()))
			return
		default:
			res.Skipped++
			if len(res.Errors) < 5 {
				res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", j.ID, err))
			}
		}
	}
	h.log.InfoContext(r.Context(), "tasq ui: bulk "+act, "filter", f.describe(), "changed", res.Changed, "skipped", res.Skipped)
	d := bulkData{Form: f, Action: act, Filter: f.describe(), Done: res, Back: h.opts.Prefix + "/jobs?" + f.query()}
	h.render(w, r, http.StatusOK, "bulk", "Bulk "+act, d)
}
