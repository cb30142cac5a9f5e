package mysql

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/queue"
)

// topPrioritySQL finds the highest priority among a queue's available jobs
// from tasq_jobs_claim_idx alone. claimLevelSQL then locks that priority's
// oldest jobs in index order, so the locking read stops after the rows it
// takes and skips those other workers hold. Going priority by priority needs
// no descending index, which MariaDB before 10.8 ignores. A claim restricted
// to some kinds filters within each priority: the top priority is found
// without the filter, from the index alone.
const (
	topPrioritySQL      = `SELECT MAX(priority) FROM tasq_jobs WHERE queue = ? AND state = 'available'`
	topPriorityBelowSQL = topPrioritySQL + ` AND priority < ?`

	// claimColumns are read defensively (see readClaimed): dispatched_at
	// as text, so that an impossible date stored by hand fails that row,
	// not the whole claim, whatever the pool's parseTime.
	claimColumns = `id, kind, queue, payload, priority, attempt, max_retries, retry_delay_ms, timeout_ms,
    CAST(dispatched_at AS CHAR), claim_token`
	claimLevelHead = `SELECT ` + claimColumns + `
FROM tasq_jobs
WHERE queue = ? AND state = 'available' AND priority = ?`
	claimLevelTail = `
ORDER BY run_at, id
LIMIT ?
FOR UPDATE SKIP LOCKED`
)

// The largest values the attempt (INT) and claim_token (BIGINT) columns
// hold. A claim caps both before counting, so a row at the limit does not
// make the claim's UPDATE overflow: it comes back with Job.Invalid instead.
const (
	maxAttempt = math.MaxInt32
	maxToken   = math.MaxInt64
)

// claimSQL marks the locked rows running under a new claim token; claim_token
// is never reset, so every claim of a job gets a larger one (except at the
// BIGINT limit, where the row is handed out Invalid).
const claimSQL = `
UPDATE tasq_jobs
SET state = 'running',
    attempt = LEAST(attempt, 2147483646) + 1,
    claim_token = LEAST(claim_token, 9223372036854775806) + 1,
    attempted_at = ` + nowSQL + `, attempted_by = ?,
    lease_expires_at = ` + nowSQL + ` + INTERVAL ? MICROSECOND
WHERE state = 'available' AND id IN ({ids})`

// failUnreadableSQL fails an available row whose id is not a canonical UUID:
// no worker could ever address it (see readClaimed).
const failUnreadableSQL = `
UPDATE tasq_jobs
SET ` + omitErrorSQL + `,
    errors = ` + appendErrorSQL + `,
    claim_token = LEAST(claim_token, 9223372036854775806) + 1,
    finished_at = ` + nowSQL + `, lease_expires_at = NULL,
    state = 'failed'
WHERE state = 'available' AND id = ?`

// Claim implements queue.Source: in one short transaction it locks up to
// req.Limit available jobs of req.Queue (of req.Kinds only, when given),
// highest priority and oldest first, skipping jobs other workers are
// claiming, and leases them to req.WorkerID, each with a new claim token.
//
// A row the adapter cannot fully read (a delay beyond time.Duration, an
// impossible date, an attempt or token counter at its column's limit) is
// claimed like the others and comes back with Job.Invalid saying why, so the
// worker fails it. A row whose id is not a canonical UUID cannot come back
// at all, since no outcome could name it: the claim fails it in place, with
// the reason in its error history.
func (a *Adapter) Claim(ctx context.Context, req queue.ClaimRequest) ([]*queue.Job, error) {
	if req.Limit <= 0 {
		return nil, nil
	}
	levelSQL, kindArgs := claimLevelHead, []any(nil)
	if len(req.Kinds) > 0 {
		levelSQL += ` AND kind IN (` + placeholders(len(req.Kinds)) + `)`
		for _, k := range req.Kinds {
			kindArgs = append(kindArgs, k)
		}
	}
	levelSQL += claimLevelTail
	var jobs []*queue.Job
	err := a.inTx(ctx, func(tx *sql.Tx) error {
		jobs = jobs[:0]
		var unreadable []unreadableRow
		var below sql.NullInt64
		for len(jobs)+len(unreadable) < req.Limit {
			var top sql.NullInt64
			var err error
			if below.Valid {
				err = tx.QueryRowContext(ctx, topPriorityBelowSQL, req.Queue, below.Int64).Scan(&top)
			} else {
				err = tx.QueryRowContext(ctx, topPrioritySQL, req.Queue).Scan(&top)
			}
			if err != nil {
				return err
			}
			if !top.Valid {
				break
			}
			args := append([]any{req.Queue, top.Int64}, kindArgs...)
			args = append(args, req.Limit-len(jobs)-len(unreadable))
			if jobs, unreadable, err = claimLevel(ctx, tx, levelSQL, args, jobs, unreadable); err != nil {
				return err
			}
			below = top
		}
		for _, u := range unreadable {
			if _, err := tx.ExecContext(ctx, failUnreadableSQL, u.reason, u.id); err != nil {
				return err
			}
		}
		if len(jobs) == 0 {
			return nil
		}
		args := make([]any, 0, len(jobs)+2)
		args = append(args, req.WorkerID, req.Lease.Microseconds())
		for _, j := range jobs {
			args = append(args, j.ID.String())
		}
		res, err := tx.ExecContext(ctx, strings.Replace(claimSQL, "{ids}", placeholders(len(jobs)), 1), args...)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err == nil && n != int64(len(jobs)) {
			return fmt.Errorf("locked %d jobs but could mark only %d running", len(jobs), n)
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr("claim jobs", err)
	}
	return jobs, nil
}

// unreadableRow is an available row whose id no outcome could name.
type unreadableRow struct {
	id     string // as stored
	reason string
}

// claimLevel locks and reads the rows of one priority level.
func claimLevel(ctx context.Context, tx *sql.Tx, query string, args []any, jobs []*queue.Job, unreadable []unreadableRow) ([]*queue.Job, []unreadableRow, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return jobs, unreadable, err
	}
	defer rows.Close()
	var vals [11]any
	dest := make([]any, len(vals))
	for i := range vals {
		dest[i] = &vals[i]
	}
	for rows.Next() {
		// Scanning into *any cannot fail on a value: readClaimed checks them.
		if err := rows.Scan(dest...); err != nil {
			return jobs, unreadable, err
		}
		j, bad := readClaimed(vals[:])
		if j == nil {
			unreadable = append(unreadable, bad)
			continue
		}
		jobs = append(jobs, j)
	}
	return jobs, unreadable, rows.Err()
}

// readClaimed turns the claimColumns of a row about to be claimed into a Job
// as the claim leaves it: attempt and token counted. A value it cannot read
// or represent sets Job.Invalid; an id or token it cannot read makes the row
// unreadable (nil Job).
func readClaimed(v []any) (*queue.Job, unreadableRow) {
	rawID := asString(v[0])
	id, err := uuid.Parse(rawID)
	if err != nil || id.String() != rawID {
		return nil, unreadableRow{id: rawID, reason: queue.CleanErrorText(fmt.Sprintf(
			"tasq/mysql: the job's id %q is not a UUID in canonical lower-case form, so no worker can claim it; correct the id by hand and retry the job", rawID))}
	}
	token, err := asInt64(v[10])
	if err != nil {
		return nil, unreadableRow{id: rawID, reason: queue.CleanErrorText("tasq/mysql: cannot read the job's claim_token: " + err.Error())}
	}
	j := &queue.Job{ID: id, Kind: asString(v[1]), Queue: asString(v[2]), Payload: asBytes(v[3])}
	var problems []string
	bad := func(what string, err error) { problems = append(problems, what+": "+err.Error()) }

	j.Token = min(token, maxToken-1) + 1 // as claimSQL counts it
	if token >= maxToken {
		bad("claim_token", fmt.Errorf("at its limit %d, so this claim cannot get a larger one", int64(maxToken)))
	}
	if attempt, err := asInt64(v[5]); err != nil {
		bad("attempt", err)
	} else {
		j.Attempt = int(min(attempt, maxAttempt-1) + 1) // as claimSQL counts it
		if attempt >= maxAttempt {
			bad("attempt", fmt.Errorf("at its limit %d, so this claim cannot be counted", maxAttempt))
		}
	}
	if p, err := asInt64(v[4]); err != nil {
		bad("priority", err)
	} else if p < math.MinInt16 || p > math.MaxInt16 {
		bad("priority", fmt.Errorf("%d is out of range", p))
	} else {
		j.Priority = int16(p)
	}
	if n, err := asInt64(v[6]); err != nil {
		bad("max_retries", err)
	} else {
		j.MaxRetries = int(n)
	}
	if j.RetryDelay, err = asMillis(v[7]); err != nil {
		bad("retry_delay_ms", err)
	}
	if j.Timeout, err = asMillis(v[8]); err != nil {
		bad("timeout_ms", err)
	}
	var dispatched utcTime
	if err := dispatched.Scan(v[9]); err != nil {
		bad("dispatched_at", err)
	} else {
		j.DispatchedAt = dispatched.Time
	}
	if len(problems) > 0 {
		j.Invalid = fmt.Errorf("tasq/mysql: cannot read job %s as stored: %s", id, strings.Join(problems, "; "))
	}
	return j, unreadableRow{}
}

// asString returns a text column's value.
func asString(v any) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

// asBytes returns a text or JSON column's value.
func asBytes(v any) []byte {
	switch x := v.(type) {
	case []byte:
		return x
	case string:
		return []byte(x)
	}
	return nil
}

// asInt64 returns an integer column's value, as the binary protocol (int64)
// or the text protocol ([]byte) delivers it.
func asInt64(v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case []byte, string:
		n, err := strconv.ParseInt(asString(x), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a 64-bit integer", asString(x))
		}
		return n, nil
	case nil:
		return 0, errors.New("NULL")
	}
	return 0, fmt.Errorf("unexpected %T", v)
}

// asMillis reads a duration stored in milliseconds.
func asMillis(v any) (time.Duration, error) {
	ms, err := asInt64(v)
	if err != nil {
		return 0, err
	}
	if ms < 0 || ms > math.MaxInt64/int64(time.Millisecond) {
		return 0, fmt.Errorf("%d ms is beyond what a time.Duration holds", ms)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// Limits of one Finish statement: outcomes, and bytes of results and error
// text, well below max_allowed_packet.
const (
	finishMaxRows  = 500
	finishMaxBytes = 4 << 20
)

// Finish implements queue.Source. Outcomes are written in one statement per
// 500, each guarded: it applies only while its job is running under the
// outcome's claim token for workerID. It returns how many applied.
//
// An outcome MySQL cannot store fails alone: when a statement is refused
// for a value (a result nested deeper than the server's JSON allows,
// anything out of range), its outcomes are written one by one, and the one
// refused is replaced by queue.FailedUnstorable. An outcome that is not
// valid at all (queue.Outcome.Check), or holds text that is not UTF-8 or a
// result that is not JSON (see storable), is replaced the same way without
// being tried.
func (a *Adapter) Finish(ctx context.Context, workerID string, outcomes []queue.Outcome) (int, error) {
	if len(outcomes) == 0 {
		return 0, nil
	}
	outs := make([]queue.Outcome, len(outcomes))
	for i, o := range outcomes {
		outs[i] = queue.Storable(o)
	}
	// Lock rows in id order, as ExtendLeases does, so the two cannot deadlock.
	// (Byte order of UUIDs is the order of their canonical text.)
	slices.SortStableFunc(outs, func(x, y queue.Outcome) int { return bytes.Compare(x.ID[:], y.ID[:]) })
	applied, handedBack := 0, false
	var refused []error
	for _, batch := range finishBatches(outs) {
		n, err := a.finishStatement(ctx, workerID, batch)
		if err != nil && isDataError(err) {
			// The statement was rolled back as a whole: find the outcome the
			// server refuses by writing each one alone.
			var refusal error
			if len(batch) == 1 {
				refusal = err
			}
			n, err = 0, nil
			for _, o := range batch {
				m, oerr := a.finishAlone(ctx, workerID, o, refusal)
				if oerr != nil && !isDataError(oerr) {
					return applied + n, wrapErr("finish jobs", oerr)
				}
				if oerr != nil {
					refused = append(refused, oerr)
				}
				n += m
			}
		}
		if err != nil {
			return applied, wrapErr("finish jobs", err)
		}
		applied += n
		for _, o := range batch {
			handedBack = handedBack || (n > 0 && o.State == queue.StateAvailable)
		}
	}
	if handedBack {
		a.notify(map[string]bool{"": true}) // "": any queue may have work
	}
	if len(refused) > 0 {
		return applied, wrapErr("finish jobs", fmt.Errorf("%d outcomes could be stored neither as given nor as failed: %w", len(refused), errors.Join(refused...)))
	}
	return applied, nil
}

// finishAlone writes one outcome, or queue.FailedUnstorable in its place
// when the server refuses one of its values. refusal, when not nil, is the
// server's refusal of o alone (a batch of one), so only its replacement is
// tried.
func (a *Adapter) finishAlone(ctx context.Context, workerID string, o queue.Outcome, refusal error) (int, error) {
	if refusal == nil {
		n, err := a.finishStatement(ctx, workerID, []queue.Outcome{o})
		if err == nil || !isDataError(err) {
			return n, err
		}
		refusal = err
	}
	return a.finishStatement(ctx, workerID, []queue.Outcome{queue.FailedUnstorable(o, refusal)})
}

// finishBatches splits outcomes sorted by ID into statements: at most
// finishMaxRows and about finishMaxBytes each, and no ID twice in one (a
// second outcome for the same job goes to a later statement, where the
// guard decides whether it applies).
func finishBatches(outs []queue.Outcome) [][]queue.Outcome {
	var rounds [][]queue.Outcome
	for i, o := range outs {
		r := 0
		for k := i - 1; k >= 0 && outs[k].ID == o.ID; k-- {
			r++
		}
		for len(rounds) <= r {
			rounds = append(rounds, nil)
		}
		rounds[r] = append(rounds[r], o)
	}
	var batches [][]queue.Outcome
	for _, round := range rounds {
		start, size := 0, 0
		for i, o := range round {
			n := len(o.Result) + len(o.Error) + 100
			if i > start && (i-start == finishMaxRows || size+n > finishMaxBytes) {
				batches = append(batches, round[start:i])
				start, size = i, 0
			}
			size += n
		}
		batches = append(batches, round[start:])
	}
	return batches
}

// finishStatement applies outcomes (each ID once) in one single-table UPDATE.
// The assignments read only the column they set or columns set after them
// (errors_omitted reads errors, errors reads attempt, before they change),
// so the result is the same whether the server assigns left to right
// (MySQL, MariaDB's default) or simultaneously (MariaDB's
// SIMULTANEOUS_ASSIGNMENT mode); a multi-table UPDATE would promise no
// order at all. What each outcome does comes from its methods: Error
// appends to the history at the current attempt, Result is set on
// completion, RunsAgain sets run_at, Finishes sets finished_at, and an
// attempt that does not Count is taken back.
func (a *Adapter) finishStatement(ctx context.Context, workerID string, outs []queue.Outcome) (int, error) {
	var (
		b                    strings.Builder
		args                 []any
		errorsSet, resultSet []any // id, value pairs
		runAtSet             []any // id, delay pairs
		finishes, uncounted  []any // ids
		byState              = map[queue.JobState][]any{}
		ids, guard           []any
		resultExpr           = `JSON_EXTRACT(?, '$')` // a JSON value on MySQL, not a JSON string
	)
	if a.mariaDB {
		resultExpr = `?` // the column is LONGTEXT with a JSON_VALID check
	}
	for _, o := range outs {
		id := o.ID.String()
		ids = append(ids, id)
		guard = append(guard, leaseKey(o.ID, o.Token))
		if o.Error != "" {
			errorsSet = append(errorsSet, id, o.Error)
		}
		if o.State == queue.StateCompleted {
			if len(o.Result) > 0 {
				resultSet = append(resultSet, id, string(o.Result)) // a string: binary cannot become JSON
			} else {
				resultSet = append(resultSet, id, nil)
			}
		}
		if o.RunsAgain() {
			runAtSet = append(runAtSet, id, o.Delay.Microseconds())
		}
		if o.Finishes() {
			finishes = append(finishes, id)
		}
		if !o.Counts() {
			uncounted = append(uncounted, id)
		}
		byState[o.State] = append(byState[o.State], id)
	}
	caseWhen := func(col, then string, pairs []any) {
		fmt.Fprintf(&b, "\n    %s = CASE id", col)
		for range len(pairs) / 2 {
			b.WriteString(" WHEN ? THEN " + then)
		}
		fmt.Fprintf(&b, " ELSE %s END,", col)
		args = append(args, pairs...)
	}
	b.WriteString(`UPDATE tasq_jobs SET`)
	if len(errorsSet) > 0 {
		withErrors := make([]any, 0, len(errorsSet)/2)
		for i := 0; i < len(errorsSet); i += 2 {
			withErrors = append(withErrors, errorsSet[i])
		}
		b.WriteString("\n    errors_omitted = IF(id IN (" + placeholders(len(withErrors)) + ") AND " + historyFullSQL + ", " + countOmittedSQL + ", errors_omitted),")
		args = append(args, withErrors...)
		caseWhen("errors", appendErrorSQL, errorsSet)
	}
	if len(resultSet) > 0 {
		caseWhen("result", resultExpr, resultSet)
	}
	if len(runAtSet) > 0 {
		caseWhen("run_at", nowSQL+` + INTERVAL ? MICROSECOND`, runAtSet)
	}
	if len(finishes) > 0 {
		b.WriteString("\n    finished_at = IF(id IN (" + placeholders(len(finishes)) + "), " + nowSQL + ", NULL),")
		args = append(args, finishes...)
	} else {
		b.WriteString("\n    finished_at = NULL,")
	}
	b.WriteString("\n    lease_expires_at = NULL,")
	if len(uncounted) > 0 {
		b.WriteString("\n    attempt = IF(id IN (" + placeholders(len(uncounted)) + "), GREATEST(attempt - 1, 0), attempt),")
		args = append(args, uncounted...)
	}
	b.WriteString("\n    state = CASE")
	for _, st := range queue.States {
		if sts := byState[st]; len(sts) > 0 {
			b.WriteString(" WHEN id IN (" + placeholders(len(sts)) + ") THEN ?")
			args = append(args, sts...)
			args = append(args, string(st))
		}
	}
	b.WriteString(" END")
	b.WriteString("\nWHERE state = 'running' AND attempted_by = ? AND id IN (" + placeholders(len(ids)) + ")")
	args = append(args, workerID)
	args = append(args, ids...)
	b.WriteString("\n    AND " + leaseKeySQL + " IN (" + placeholders(len(guard)) + ")")
	args = append(args, guard...)

	var n int64
	err := retryDeadlock(ctx, func() error {
		res, err := a.db.ExecContext(ctx, b.String(), args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return int(n), err
}

// leaseKeySQL is a row's (id, claim_token) as one string, "<id>:<token>",
// which leaseKey writes. Statements guard on leaseKeySQL IN (...) (next to
// id IN (...), for the primary key): a list of constant strings is sorted
// and searched, where a list of (id, claim_token) rows is compared one by
// one.
const leaseKeySQL = `CONCAT(id, ':', claim_token)`

// leaseKey returns the leaseKeySQL of the execution (id, token).
func leaseKey(id uuid.UUID, token int64) string {
	return id.String() + ":" + strconv.FormatInt(token, 10)
}

// leaseChunk caps the leases of one ExtendLeases statement.
const leaseChunk = 1000

// ExtendLeases implements queue.Source: it renews the leases that workerID
// still holds under their claim tokens and returns the others (finished,
// rescued, claimed again with a newer token, cancelled).
func (a *Adapter) ExtendLeases(ctx context.Context, workerID string, leases []queue.Lease, d time.Duration) ([]queue.Lease, error) {
	if len(leases) == 0 {
		return nil, nil
	}
	// Lock rows in id order, as Finish does, so the two cannot deadlock.
	sorted := slices.Clone(leases)
	slices.SortFunc(sorted, func(x, y queue.Lease) int {
		if c := bytes.Compare(x.ID[:], y.ID[:]); c != 0 {
			return c
		}
		return cmp.Compare(x.Token, y.Token)
	})
	sorted = slices.Compact(sorted)
	var lost []queue.Lease
	for chunk := range slices.Chunk(sorted, leaseChunk) {
		ids := make([]any, 0, len(chunk))
		guard := make([]any, 0, len(chunk))
		for i, l := range chunk {
			if i == 0 || l.ID != chunk[i-1].ID {
				ids = append(ids, l.ID.String())
			}
			guard = append(guard, leaseKey(l.ID, l.Token))
		}
		args := append([]any{d.Microseconds(), workerID}, ids...)
		args = append(args, guard...)
		var n int64
		err := retryDeadlock(ctx, func() error {
			res, err := a.db.ExecContext(ctx, `
UPDATE tasq_jobs SET lease_expires_at = `+nowSQL+` + INTERVAL ? MICROSECOND
WHERE state = 'running' AND attempted_by = ? AND id IN (`+placeholders(len(ids))+`)
    AND `+leaseKeySQL+` IN (`+placeholders(len(guard))+`)`, args...)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return nil, wrapErr("extend leases", err)
		}
		if n == int64(len(chunk)) {
			continue // every lease renewed
		}
		// Some were not renewed (or renewed to the same microsecond): ask
		// which the worker still holds.
		held, err := a.heldLeases(ctx, workerID, ids)
		if err != nil {
			return nil, wrapErr("extend leases", err)
		}
		for _, l := range chunk {
			if !held[l] {
				lost = append(lost, l)
			}
		}
	}
	return lost, nil
}

// heldLeases returns the claims workerID holds on the jobs ids.
func (a *Adapter) heldLeases(ctx context.Context, workerID string, ids []any) (map[queue.Lease]bool, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT id, claim_token FROM tasq_jobs
WHERE state = 'running' AND attempted_by = ? AND id IN (`+placeholders(len(ids))+`)`, append([]any{workerID}, ids...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	held := map[queue.Lease]bool{}
	for rows.Next() {
		var l queue.Lease
		if err := rows.Scan(&l.ID, &l.Token); err != nil {
			return nil, err
		}
		held[l] = true
	}
	return held, rows.Err()
}

// maintainBatch bounds the rows one maintenance transaction moves, so a huge
// backlog is worked off in short transactions.
const maintainBatch = 5000

const (
	dueSQL = `SELECT id, queue FROM tasq_jobs
WHERE state IN ('scheduled', 'retryable') AND run_at <= ` + nowSQL + `
LIMIT ? FOR UPDATE SKIP LOCKED`
	promoteSQL = `UPDATE tasq_jobs SET state = 'available'
WHERE state IN ('scheduled', 'retryable') AND id IN ({ids})`

	expiredSQL = `SELECT id, queue, COALESCE(attempted_by, '') FROM tasq_jobs
WHERE state = 'running' AND lease_expires_at < ` + nowSQL + `
LIMIT ? FOR UPDATE SKIP LOCKED`
)

// rescueSQL hands expired jobs of one worker back with
// queue.LeaseExpiredText; the attempt they used still counts, and their
// claim token stays, so the next claim fences the lost execution out.
const rescueSQL = `UPDATE tasq_jobs SET
    ` + omitErrorSQL + `,
    errors = ` + appendErrorSQL + `,
    state = 'available', lease_expires_at = NULL
WHERE state = 'running' AND id IN ({ids})`

// Maintain implements queue.Maintainer: due scheduled/retryable jobs become
// available, and running jobs whose lease expired are handed back with a
// "lease expired" entry in their error history. Each step locks its rows
// with SKIP LOCKED, so several workers can maintain at once.
func (a *Adapter) Maintain(ctx context.Context) (promoted, rescued int, err error) {
	if promoted, err = a.promote(ctx); err != nil {
		return 0, 0, wrapErr("promote due jobs", err)
	}
	if rescued, err = a.rescue(ctx); err != nil {
		return promoted, 0, wrapErr("rescue expired jobs", err)
	}
	return promoted, rescued, nil
}

// promote makes due scheduled and retryable jobs available, in one
// transaction; it wakes local subscribers.
func (a *Adapter) promote(ctx context.Context) (int, error) {
	var ids []any
	var queues map[string]bool
	err := a.inTx(ctx, func(tx *sql.Tx) error {
		ids, queues = ids[:0], map[string]bool{}
		rows, err := tx.QueryContext(ctx, dueSQL, maintainBatch)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, q string
			if err := rows.Scan(&id, &q); err != nil {
				return err
			}
			ids = append(ids, id)
			queues[q] = true
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		if len(ids) == 0 {
			return nil
		}
		_, err = tx.ExecContext(ctx, strings.Replace(promoteSQL, "{ids}", placeholders(len(ids)), 1), ids...)
		return err
	})
	if err != nil {
		return 0, err
	}
	a.notify(queues)
	return len(ids), nil
}

// rescue hands running jobs whose lease expired back, in one transaction,
// with one statement per worker that held them (the error text names it);
// it wakes local subscribers.
func (a *Adapter) rescue(ctx context.Context) (int, error) {
	var count int
	var queues map[string]bool
	err := a.inTx(ctx, func(tx *sql.Tx) error {
		count, queues = 0, map[string]bool{}
		byWorker := map[string][]any{}
		rows, err := tx.QueryContext(ctx, expiredSQL, maintainBatch)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, q, by string
			if err := rows.Scan(&id, &q, &by); err != nil {
				return err
			}
			byWorker[by] = append(byWorker[by], id)
			queues[q] = true
			count++
		}
		if err := rows.Err(); err != nil {
			return err
		}
		rows.Close()
		for by, ids := range byWorker {
			args := append([]any{queue.LeaseExpiredText(by)}, ids...)
			if _, err := tx.ExecContext(ctx, strings.Replace(rescueSQL, "{ids}", placeholders(len(ids)), 1), args...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	a.notify(queues)
	return count, nil
}
