package ui

import (
	"net/http"

	"github.com/tasqhq/tasq/queue"
)

// The workers page lists the live workers (queue.WorkerRegistry) and the
// kinds of available jobs that none of them serves (queue.UnservedReader):
// jobs that wait for a worker that knows their kind, usually after a deploy
// renamed a task or a worker was started without it.

type workersData struct {
	Workers              []queue.WorkerInfo
	Unserved             []queue.UnservedKind
	WorkersErr, UnsErr   string
	NoRegistry, NoUnserv bool
}

func (h *Handler) workers(w http.ResponseWriter, r *http.Request) {
	if !h.refreshOK(w, r) {
		return
	}
	var d workersData
	wr, okW := h.ad.(queue.WorkerRegistry)
	ur, okU := h.ad.(queue.UnservedReader)
	if !okW && !okU {
		h.unsupported(w, r, "queue.WorkerRegistry", "keeps no list of workers")
		return
	}
	if okW {
		ws, err := wr.Workers(r.Context())
		if err != nil {
			d.WorkersErr = err.Error()
		}
		d.Workers = ws
	} else {
		d.NoRegistry = true
	}
	if okU {
		us, err := ur.Unserved(r.Context())
		if err != nil {
			d.UnsErr = err.Error()
		}
		d.Unserved = us
	} else {
		d.NoUnserv = true
	}
	h.render(w, r, http.StatusOK, "workers", "Workers", d)
}
