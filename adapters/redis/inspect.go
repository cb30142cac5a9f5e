package redis

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/queue"
)

// storedError is one entry of the errors field as the scripts write it.
type storedError struct {
	Attempt int    `json:"attempt"`
	AtUS    int64  `json:"at_us"`
	Error   string `json:"error"`
}

// parseJob turns a job hash into a JobInfo; a field that does not parse
// gives an error wrapping ErrMalformedJob.
func parseJob(h map[string]string) (*queue.JobInfo, error) {
	var p parser
	j := &queue.JobInfo{
		ID:          p.uuid("id", h["id"]),
		Kind:        h["kind"],
		Queue:       h["queue"],
		State:       queue.JobState(h["state"]),
		Priority:    int16(p.int("priority", h["priority"], 16)),
		Payload:     json.RawMessage(h["payload"]),
		Attempt:     int(p.int("attempt", h["attempt"], 32)),
		MaxRetries:  int(p.int("max_retries", h["max_retries"], 32)),
		RetryDelay:  p.millis("retry_delay_ms", h["retry_delay_ms"]),
		Timeout:     p.millis("timeout_ms", h["timeout_ms"]),
		RunAt:       time.UnixMicro(p.int("run_at_us", h["run_at_us"], 64)),
		AttemptedBy: h["attempted_by"],
	}
	j.DispatchedAt = time.UnixMicro(p.int("dispatched_at_us", h["dispatched_at_us"], 64))
	optTime := func(field string) *time.Time {
		s, ok := h[field]
		if !ok || s == "" {
			return nil
		}
		t := time.UnixMicro(p.int(field, s, 64))
		return &t
	}
	j.AttemptedAt = optTime("attempted_at_us")
	j.LeaseExpiresAt = optTime("lease_expires_at_us")
	j.FinishedAt = optTime("finished_at_us")
	if r, ok := h["result"]; ok && r != "" {
		j.Result = json.RawMessage(r)
	}
	// Absent (a job never claimed, or none of its errors dropped): 0.
	optInt := func(field string, bits int) int64 {
		s, ok := h[field]
		if !ok {
			return 0
		}
		return p.int(field, s, bits)
	}
	j.Token = optInt("token", 64)
	j.ErrorsOmitted = int(optInt("errors_omitted", 32))
	if err := p.err(h["id"]); err != nil {
		return nil, err
	}
	if e := h["errors"]; e != "" {
		var stored []storedError
		if err := json.Unmarshal([]byte(e), &stored); err != nil {
			// A hand-edited errors field should not hide the rest of the job.
			j.Errors = []queue.JobError{{Error: "unreadable errors field: " + e}}
		} else if len(stored) > 0 {
			j.Errors = make([]queue.JobError, len(stored))
			for i, s := range stored {
				j.Errors[i] = queue.JobError{Attempt: s.Attempt, At: time.UnixMicro(s.AtUS), Error: s.Error}
			}
		}
	}
	return j, nil
}

// GetJob implements queue.JobReader.
func (a *Adapter) GetJob(ctx context.Context, id uuid.UUID) (*queue.JobInfo, error) {
	h, err := a.client.HGetAll(ctx, a.keys.job(id.String())).Result()
	if err != nil {
		return nil, a.wrap("get job", err)
	}
	if len(h) == 0 {
		return nil, fmt.Errorf("%w: %s", queue.ErrJobNotFound, id)
	}
	j, err := parseJob(h)
	if err != nil {
		return nil, err
	}
	return j, nil
}

// ListJobs implements queue.JobReader: newest dispatched first. It walks
// the sorted set that fits the filter (one state in one queue; one state in
// every queue; every state of one queue; or all jobs) from the newest end;
// a Kind filter is applied to the jobs read, so listing by kind alone
// reads jobs until it has Limit of that kind or runs out.
func (a *Adapter) ListJobs(ctx context.Context, f queue.ListFilter) ([]*queue.JobInfo, error) {
	if f.Tag != "" {
		return nil, nil // this adapter stores no tags (queue.CheckPlainJobs)
	}
	if f.State != "" {
		if _, err := queue.ParseJobState(string(f.State)); err != nil {
			return nil, err
		}
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	var sets []string
	switch {
	case f.State != "" && f.Queue != "":
		sets = []string{a.keys.idx(f.State, f.Queue)}
	case f.State != "":
		queues, err := a.client.SMembers(ctx, a.keys.queues()).Result()
		if err != nil {
			return nil, a.wrap("list jobs", err)
		}
		for _, q := range queues {
			sets = append(sets, a.keys.idx(f.State, q))
		}
	case f.Queue != "":
		for _, st := range queue.States {
			sets = append(sets, a.keys.idx(st, f.Queue))
		}
	default:
		sets = []string{a.keys.all()}
	}
	min := "-inf"
	if !f.Since.IsZero() {
		us := f.Since.UnixMicro()
		if f.Since.After(time.UnixMicro(us)) {
			us++ // stored times are whole microseconds
		}
		min = strconv.FormatInt(us, 10)
	}
	w := newWalk(sets, min)
	seen := map[string]bool{}
	var out []*queue.JobInfo
	for len(out) < limit {
		want := limit - len(out)
		if f.Kind != "" {
			want = max(want, listPage)
		}
		var ids []string
		for len(ids) < want {
			id, ok, err := w.next(ctx, a.client)
			if err != nil {
				return nil, a.wrap("list jobs", err)
			}
			if !ok {
				break
			}
			if !seen[id] { // a job that changed state mid-walk may show up twice
				seen[id] = true
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			break
		}
		pipe := a.client.Pipeline()
		cmds := make([]*goredis.MapStringStringCmd, len(ids))
		for i, id := range ids {
			cmds[i] = pipe.HGetAll(ctx, a.keys.job(id))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, a.wrap("list jobs", err)
		}
		for _, c := range cmds {
			h := c.Val()
			if len(h) == 0 {
				continue // deleted meanwhile
			}
			j, err := parseJob(h)
			if err != nil {
				return nil, err
			}
			if (f.State != "" && j.State != f.State) || (f.Queue != "" && j.Queue != f.Queue) || (f.Kind != "" && j.Kind != f.Kind) {
				continue
			}
			if out = append(out, j); len(out) == limit {
				break
			}
		}
	}
	return out, nil
}

// listPage is how many entries a walk reads from one sorted set at a time.
const listPage = 100

// walk merges sorted sets of job IDs scored by dispatch time, newest first
// (ties: greater ID first, as in PostgreSQL's ORDER BY dispatched_at DESC,
// id DESC). It pages by score, not offset, so jobs entering or leaving a set
// during the walk do not shift the pages.
type walk struct {
	min     string
	cursors []*cursor
}

type cursor struct {
	key  string
	max  string          // upper score bound of the next page
	last float64         // score of the last entry taken
	tied map[string]bool // entries taken whose score is last
	buf  []goredis.Z
	done bool // nothing left below buf
}

func newWalk(keys []string, min string) *walk {
	w := &walk{min: min}
	for _, k := range keys {
		w.cursors = append(w.cursors, &cursor{key: k, max: "+inf", tied: map[string]bool{}})
	}
	return w
}

// next returns the newest remaining ID, or ok false when all sets are done.
func (w *walk) next(ctx context.Context, c goredis.UniversalClient) (id string, ok bool, err error) {
	var empty []*cursor
	for _, cur := range w.cursors {
		if len(cur.buf) == 0 && !cur.done {
			empty = append(empty, cur)
		}
	}
	if len(empty) > 0 {
		pipe := c.Pipeline()
		cmds := make([]*goredis.ZSliceCmd, len(empty))
		for i, cur := range empty {
			cmds[i] = pipe.ZRevRangeByScoreWithScores(ctx, cur.key, &goredis.ZRangeBy{
				Max: cur.max, Min: w.min, Count: int64(listPage + len(cur.tied))})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return "", false, err
		}
		for i, cur := range empty {
			res := cmds[i].Val()
			cur.done = len(res) < listPage+len(cur.tied)
			for _, z := range res {
				if m, _ := z.Member.(string); z.Score != cur.last || !cur.tied[m] {
					cur.buf = append(cur.buf, z)
				}
			}
		}
	}
	var best *cursor
	for _, cur := range w.cursors {
		if len(cur.buf) > 0 && (best == nil || newer(cur.buf[0], best.buf[0])) {
			best = cur
		}
	}
	if best == nil {
		return "", false, nil
	}
	z := best.buf[0]
	best.buf = best.buf[1:]
	id, _ = z.Member.(string)
	if z.Score != best.last {
		best.last, best.tied = z.Score, map[string]bool{}
		best.max = strconv.FormatFloat(z.Score, 'f', -1, 64)
	}
	best.tied[id] = true
	return id, true, nil
}

func newer(a, b goredis.Z) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	am, _ := a.Member.(string)
	bm, _ := b.Member.(string)
	return am > bm
}

// runOp runs an operator script on job id, with extra as its arguments
// after the ID; refused explains why the job's current state does not allow
// the operation.
func (a *Adapter) runOp(ctx context.Context, op string, id uuid.UUID, script *goredis.Script, refused func(state string) error, extra ...any) error {
	args := append([]any{a.keys.prefix, id.String()}, extra...)
	res, err := script.Run(ctx, a.client, nil, args...).StringSlice()
	if err != nil {
		return a.wrap(op+" job", err)
	}
	switch {
	case len(res) == 1 && res[0] == "ok":
		return nil
	case len(res) == 1 && res[0] == "missing":
		return fmt.Errorf("%w: %s", queue.ErrJobNotFound, id)
	case len(res) == 2 && res[0] == "state":
		return refused(res[1])
	}
	return fmt.Errorf("tasq/redis: %s job %s: unexpected reply %v from the script", op, id, res)
}

// notAllowed is the refusal of op from a state outside allowed.
func notAllowed(op string, id uuid.UUID, allowed ...queue.JobState) func(string) error {
	return func(state string) error {
		return fmt.Errorf("%w: cannot %s job %s: it is %s (allowed from: %s)", queue.ErrJobState, op, id, state, joinStates(allowed))
	}
}

func joinStates(states []queue.JobState) string {
	s := make([]string, len(states))
	for i, st := range states {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

// RetryJob implements queue.JobEditor: a failed, cancelled, retryable or
// scheduled job becomes available now with its attempt count reset; its
// error history and claim token are kept, so the next claim gets a larger
// token and an execution of it still running cannot finish the new attempt.
func (a *Adapter) RetryJob(ctx context.Context, id uuid.UUID) error {
	return a.runOp(ctx, "retry", id, retryScript,
		notAllowed("retry", id, queue.StateFailed, queue.StateCancelled, queue.StateRetryable, queue.StateScheduled))
}

// CancelJob implements queue.JobEditor. A running job is marked cancelled at
// once and its worker told on <prefix>ctrl (see Listen), so that it cancels
// the Handle's context; its outcome is discarded by the completion guard.
func (a *Adapter) CancelJob(ctx context.Context, id uuid.UUID) error {
	return a.runOp(ctx, "cancel", id, cancelScript,
		notAllowed("cancel", id, queue.StateScheduled, queue.StateAvailable, queue.StateRunning, queue.StateRetryable),
		queue.MaxErrorHistory)
}

// DeleteJob implements queue.JobEditor: it removes a job that is not
// running, with its hash and index entries.
func (a *Adapter) DeleteJob(ctx context.Context, id uuid.UUID) error {
	return a.runOp(ctx, "delete", id, deleteScript, func(state string) error {
		return fmt.Errorf("%w: cannot delete job %s while it is %s; cancel it first", queue.ErrJobState, id, state)
	})
}

// Stats implements queue.StatsReader: job counts per queue and state, from
// the per-state index sets (ZCARD), sorted by queue and state name.
func (a *Adapter) Stats(ctx context.Context) ([]queue.QueueStat, error) {
	queues, err := a.client.SMembers(ctx, a.keys.queues()).Result()
	if err != nil {
		return nil, a.wrap("stats", err)
	}
	if len(queues) == 0 {
		return nil, nil
	}
	type entry struct {
		q   string
		st  queue.JobState
		cmd *goredis.IntCmd
	}
	pipe := a.client.Pipeline()
	var entries []entry
	for _, q := range queues {
		for _, st := range queue.States {
			entries = append(entries, entry{q, st, pipe.ZCard(ctx, a.keys.idx(st, q))})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, a.wrap("stats", err)
	}
	var out []queue.QueueStat
	for _, e := range entries {
		if n := e.cmd.Val(); n > 0 {
			out = append(out, queue.QueueStat{Queue: e.q, State: e.st, Count: n})
		}
	}
	slices.SortFunc(out, func(x, y queue.QueueStat) int {
		return cmp.Or(cmp.Compare(x.Queue, y.Queue), cmp.Compare(x.State, y.State))
	})
	return out, nil
}
