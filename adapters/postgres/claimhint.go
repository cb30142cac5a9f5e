package postgres

import (
	"bytes"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// A claim leaves a dead entry in tasq_jobs_claim_idx for every job it takes
// (the claimed row's new version is not available, so the index gets no
// entry for it, and the old one stays until VACUUM). Those entries sit at
// the head of the queue's range, where every claim's index scan starts, and
// the scan reads past all of them before it meets a live one: one more page
// of the index for about 140 jobs claimed since the last VACUUM, 1-2 µs a
// page. Autovacuum looks at a table at most once a minute, so under load the
// walk grows for a minute at a time: 15 s into a continuous run at 60k
// jobs/s every claim read 6,400 pages of dead entries, 6-14 ms of its 20.
//
// So while a queue has a backlog (the last claim got as many jobs as it
// asked for), the next claims of the same queue and kinds start where the
// last one ended, past the dead entries: the hint. A job that sorts before
// the hint cannot be seen by a hinted claim: one of higher priority, one
// whose run time is older (a retry or a scheduled job that came due, a
// dispatch whose transaction committed after later ones). So a claim that
// starts at the head of the queue, as without hints, runs at least every
// claimRescan, and whenever a hinted claim finds fewer jobs than it asked
// for; such a job waits at most claimRescan longer than it would have. A
// queue without a backlog is claimed from the head every time.

// claimRescan is the longest a queue with a backlog is claimed from the
// hint before a claim starts at the head of the queue again.
const claimRescan = 100 * time.Millisecond

// claimKey is a job's position in tasq_jobs_claim_idx within its queue:
// priority descending, then run_at, then id.
type claimKey struct {
	priority int16
	runAt    time.Time
	id       uuid.UUID
}

// before reports whether k comes before o in the claim order.
func (k claimKey) before(o claimKey) bool {
	if k.priority != o.priority {
		return k.priority > o.priority
	}
	if c := k.runAt.Compare(o.runAt); c != 0 {
		return c < 0
	}
	return bytes.Compare(k.id[:], o.id[:]) < 0
}

// claimHints holds, per queue and set of kinds, where the last claim from a
// backlog ended.
type claimHints struct {
	mu     sync.Mutex
	m      map[string]claimHint
	rescan time.Duration // claimRescan; tests change it
}

type claimHint struct {
	last   claimKey  // the last job, in claim order, that the claims took
	headAt time.Time // when the last claim from the head of the queue started
}

// hintKey names a queue and the kinds its claim takes (nil: any).
func hintKey(queue string, kinds []string) string {
	if kinds == nil {
		return queue
	}
	return queue + "\x00" + strings.Join(kinds, "\x00")
}

// get returns the hint of key if there is one and the last claim from the
// head started less than the rescan period before now.
func (h *claimHints) get(key string, now time.Time) (claimKey, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.m[key]
	if !ok || now.Sub(c.headAt) >= h.rescan || now.Before(c.headAt) {
		return claimKey{}, false
	}
	return c.last, true
}

// advance moves key's hint to last after a hinted claim that filled its
// limit; it does nothing if the hint is gone.
func (h *claimHints) advance(key string, last claimKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c, ok := h.m[key]; ok && c.last.before(last) {
		c.last = last
		h.m[key] = c
	}
}

// set records a hint after a claim from the head, started at headAt, that
// filled its limit.
func (h *claimHints) set(key string, last claimKey, headAt time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]claimHint{}
	}
	h.m[key] = claimHint{last: last, headAt: headAt}
}

// drop forgets key's hint: its queue has no backlog.
func (h *claimHints) drop(key string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.m, key)
}
