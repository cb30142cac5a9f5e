package ui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// The limits page edits a queue's global limits (queue.QueueLimits) with
// queue.QueueController.SetQueueLimits. The form holds the values as text,
// so that a value that does not parse is shown again as it was typed, with
// the error beside the form; queue.QueueLimits.Check has the last word, as
// it has for every other way to set limits.

// limitsForm is the form's fields, as typed.
type limitsFields struct {
	TotalRunning, TotalStarts, TotalPer string
	KeyField                            string
	KeyRunning, KeyStarts, KeyPer       string
}

type limitsData struct {
	Queue  string
	Action string // the form's address
	F      limitsFields
	Err    string
	Paused bool
}

func fieldsOf(l queue.QueueLimits) limitsFields {
	num := func(n int) string {
		if n == 0 {
			return ""
		}
		return strconv.Itoa(n)
	}
	per := func(d time.Duration) string {
		if d == 0 {
			return ""
		}
		return d.String()
	}
	return limitsFields{
		TotalRunning: num(l.Total.MaxRunning), TotalStarts: num(l.Total.MaxStarts), TotalPer: per(l.Total.Per),
		KeyField:   l.KeyField,
		KeyRunning: num(l.PerKey.MaxRunning), KeyStarts: num(l.PerKey.MaxStarts), KeyPer: per(l.PerKey.Per),
	}
}

// parse reads the fields into limits, or says which field is wrong and why.
func (f limitsFields) parse() (queue.QueueLimits, error) {
	var errs []error
	num := func(label, s string) int {
		s = strings.TrimSpace(s)
		if s == "" {
			return 0
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a whole number (0 or empty for no limit)", label, s))
		}
		return n
	}
	per := func(label, s string) time.Duration {
		s = strings.TrimSpace(s)
		if s == "" {
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a duration such as 1s, 1m or 1h30m", label, s))
		}
		return d
	}
	l := queue.QueueLimits{
		Total: queue.Limit{MaxRunning: num("Queue: max running", f.TotalRunning), MaxStarts: num("Queue: max starts", f.TotalStarts),
			Per: per("Queue: per", f.TotalPer)},
		KeyField: strings.TrimSpace(f.KeyField),
		PerKey: queue.Limit{MaxRunning: num("Per key: max running", f.KeyRunning), MaxStarts: num("Per key: max starts", f.KeyStarts),
			Per: per("Per key: per", f.KeyPer)},
	}
	if len(errs) > 0 {
		return l, errors.Join(errs...)
	}
	if err := l.Check(); err != nil {
		return l, err
	}
	return l, nil
}

func (h *Handler) limitsController(w http.ResponseWriter, r *http.Request) (queue.QueueController, bool) {
	qc, ok := h.ad.(queue.QueueController)
	if !ok {
		h.unsupported(w, r, "queue.QueueController", "cannot pause or limit queues")
	}
	return qc, ok
}

// limitsForm shows a queue's limits in a form.
func (h *Handler) limitsForm(w http.ResponseWriter, r *http.Request) {
	if h.opts.ReadOnly {
		h.message(w, r, http.StatusForbidden, "Read-only", "This dashboard is read-only; nothing was changed.")
		return
	}
	qc, ok := h.limitsController(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	states, err := qc.QueueStates(r.Context())
	if err != nil {
		h.fail(w, r, "read the limits of queue "+oneLine(name), err)
		return
	}
	d := limitsData{Queue: name, Action: h.limitsAction(name)}
	for _, s := range states {
		if s.Name == name {
			d.F = fieldsOf(s.Limits)
			d.Paused = s.Paused
		}
	}
	h.render(w, r, http.StatusOK, "limits", "Limits of "+name, d)
}

func (h *Handler) limitsAction(name string) string {
	return h.opts.Prefix + "/queues/" + url.PathEscape(name) + "/limits"
}

// limitsApply saves the limits the form holds, or shows the form again
// with what is wrong.
func (h *Handler) limitsApply(w http.ResponseWriter, r *http.Request) {
	qc, ok := h.limitsController(w, r)
	if !ok {
		return
	}
	name := r.PathValue("name")
	f := limitsFields{
		TotalRunning: r.PostFormValue("total_running"), TotalStarts: r.PostFormValue("total_starts"), TotalPer: r.PostFormValue("total_per"),
		KeyField:   r.PostFormValue("key_field"),
		KeyRunning: r.PostFormValue("key_running"), KeyStarts: r.PostFormValue("key_starts"), KeyPer: r.PostFormValue("key_per"),
	}
	var l queue.QueueLimits
	if r.PostFormValue("clear") == "" {
		var err error
		if l, err = f.parse(); err != nil {
			h.render(w, r, http.StatusBadRequest, "limits", "Limits of "+name, limitsData{Queue: name, Action: h.limitsAction(name), F: f,
				Err: strings.TrimPrefix(err.Error(), queue.ErrInvalidConfig.Error()+": ")})
			return
		}
	}
	if err := qc.SetQueueLimits(r.Context(), name, l); err != nil {
		if errors.Is(err, queue.ErrInvalidConfig) {
			h.render(w, r, http.StatusBadRequest, "limits", "Limits of "+name, limitsData{Queue: name, Action: h.limitsAction(name), F: f, Err: err.Error()})
			return
		}
		h.fail(w, r, "set the limits of queue "+oneLine(name), err)
		return
	}
	h.log.InfoContext(r.Context(), "tasq ui: queue limits", "queue", name, "limits", fmt.Sprintf("%+v", l))
	h.redirect(w, r, "/", "limits")
}
