package mysql_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the zone in TestTimesAreUTC, wherever the tests run

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/mysql"
	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/queue"
)

func job(q string, prio int16) queue.NewJob {
	return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "mysql.test", Queue: q, Payload: []byte(`{"x":1}`),
		Priority: prio, MaxRetries: 1, RetryDelay: time.Second}
}

// claim claims up to n jobs of q for worker w with a one-minute lease.
func claim(t *testing.T, c context.Context, a *mysql.Adapter, q, w string, n int, kinds ...string) []*queue.Job {
	t.Helper()
	got, err := a.Claim(c, queue.ClaimRequest{Queue: q, WorkerID: w, Limit: n, Lease: time.Minute, Kinds: kinds})
	if err != nil {
		t.Fatalf("Claim(%s, %s, %d): %v", q, w, n, err)
	}
	return got
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return c
}

// Concurrent claimers each get distinct jobs, none is lost, and the batch
// writes of claims, renewals and outcomes do not deadlock one another.
func TestConcurrentClaimers(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	const total, workers = 400, 4
	jobs := make([]queue.NewJob, total)
	for i := range jobs {
		jobs[i] = job("busy", int16(i%3))
	}
	if err := a.Insert(c, jobs); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[uuid.UUID]string{}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			id := fmt.Sprintf("w%d", w)
			for {
				got, err := a.Claim(c, queue.ClaimRequest{Queue: "busy", WorkerID: id, Limit: 7, Lease: time.Minute})
				if err != nil {
					errs <- err
					return
				}
				if len(got) == 0 {
					return
				}
				leases := make([]queue.Lease, len(got))
				outs := make([]queue.Outcome, len(got))
				for i, j := range got {
					leases[i] = j.Lease()
					outs[i] = queue.Completed(j, []byte(`1`))
					mu.Lock()
					if prev, dup := seen[j.ID]; dup {
						errs <- fmt.Errorf("job %s claimed by %s and %s", j.ID, prev, id)
					}
					seen[j.ID] = id
					mu.Unlock()
				}
				if lost, err := a.ExtendLeases(c, id, leases, time.Minute); err != nil || len(lost) != 0 {
					errs <- fmt.Errorf("ExtendLeases by %s: lost %v, %v", id, lost, err)
					return
				}
				if n, err := a.Finish(c, id, outs); err != nil || n != len(outs) {
					errs <- fmt.Errorf("Finish by %s applied %d of %d: %v", id, n, len(outs), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(seen) != total {
		t.Fatalf("claimed %d distinct jobs of %d", len(seen), total)
	}
	stats, err := a.Stats(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) != 1 || stats[0].State != queue.StateCompleted || stats[0].Count != total {
		t.Errorf("Stats = %+v, want %d completed", stats, total)
	}
}

// A claim takes the highest priorities first, oldest first within one, and
// goes on to lower priorities; rows another transaction holds are skipped,
// not waited for.
func TestClaimAcrossPrioritiesSkipsLocked(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	var order []queue.NewJob
	for _, p := range []int16{5, 5, 0, 0, -3, -3} {
		j := job("prio", p)
		order = append(order, j)
		if err := a.Insert(c, []queue.NewJob{j}); err != nil { // one by one: distinct run_at
			t.Fatal(err)
		}
	}
	// Another transaction holds the first priority-5 job.
	tx, err := a.DB().BeginTx(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var locked string
	if err := tx.QueryRowContext(c, `SELECT id FROM tasq_jobs WHERE id = ? FOR UPDATE`, order[0].ID.String()).Scan(&locked); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	got, err := a.Claim(c, queue.ClaimRequest{Queue: "prio", WorkerID: "w", Limit: 4, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(began); el > 5*time.Second {
		t.Errorf("Claim took %v: it waited for the locked row", el)
	}
	want := []uuid.UUID{order[1].ID, order[2].ID, order[3].ID, order[4].ID}
	if len(got) != len(want) {
		t.Fatalf("claimed %d jobs, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ID != want[i] {
			t.Errorf("claim %d: got priority %d job %s, want %s", i, got[i].Priority, got[i].ID, want[i])
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	rest := claim(t, c, a, "prio", "w", 10)
	if len(rest) != 2 || rest[0].ID != order[0].ID || rest[1].ID != order[5].ID {
		t.Errorf("after the lock went: %d jobs, want the priority-5 job then the last -3 one", len(rest))
	}
}

// Batches beyond one statement's limits are several INSERTs in one
// transaction: all or nothing.
func TestLargeBatchIsAtomic(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	big := make([]queue.NewJob, 2500)
	for i := range big {
		big[i] = job("big", 0)
	}
	if err := a.Insert(c, big); err != nil {
		t.Fatal(err)
	}
	bad := make([]queue.NewJob, 1500)
	for i := range bad {
		bad[i] = job("big", 0)
	}
	bad[1400].ID = big[0].ID // duplicate key in the second statement
	if err := a.Insert(c, bad); err == nil {
		t.Fatal("a batch with a duplicate ID was accepted")
	}
	if _, err := a.GetJob(c, bad[0].ID); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("first job of a failed batch: %v, want ErrJobNotFound", err)
	}
	stats, err := a.Stats(c)
	if err != nil || len(stats) != 1 || stats[0].Count != 2500 {
		t.Errorf("Stats = %+v, %v; want the 2500 jobs of the good batch only", stats, err)
	}
	// A large batch also goes through InsertTx.
	tx, err := a.DB().BeginTx(c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.InsertTx(c, tx, bad[:1200]); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.GetJob(c, bad[0].ID); !errors.Is(err, queue.ErrJobNotFound) {
		t.Errorf("job of a rolled-back InsertTx: %v, want ErrJobNotFound", err)
	}
}

func TestInsertTxRefusesOtherTypes(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	conn, err := a.DB().Conn(c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var pgxLike struct{ Exec func(string) error }
	for _, tx := range []any{nil, (*sql.Tx)(nil), a.DB(), conn, (*sql.Conn)(nil), struct{}{}, &pgxLike, "tx"} {
		j := job("tx", 0)
		if err := a.InsertTx(c, tx, []queue.NewJob{j}); !errors.Is(err, queue.ErrTxUnsupported) {
			t.Errorf("InsertTx(%T) = %v, want ErrTxUnsupported", tx, err)
		}
		if _, err := a.GetJob(c, j.ID); !errors.Is(err, queue.ErrJobNotFound) {
			t.Errorf("InsertTx(%T) was refused but stored the job: GetJob = %v", tx, err)
		}
	}
	if stats, err := a.Stats(c); err != nil || len(stats) != 0 {
		t.Errorf("Stats after refused InsertTx calls = %+v, %v; want nothing stored", stats, err)
	}
	bad := job("tx", 0)
	bad.Payload = []byte(`{not json`)
	if err := a.Insert(c, []queue.NewJob{bad}); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Errorf("Insert with a payload that is not JSON = %v, want ErrInvalidConfig", err)
	}
}

// Times come from the database clock in UTC, whatever the session time zone
// and the pool's parseTime/loc; error history entries carry readable times.
func TestTimesAreUTC(t *testing.T) {
	c := ctx(t)
	dsn := testmysql.NewDatabase(t)
	q := url.Values{"parseTime": {"true"}, "loc": {"Etc/GMT+5"}, "time_zone": {"'+09:00'"}}
	db, err := sql.Open("mysql", dsn+"?"+q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, err := mysql.NewFromDB(c, db)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	j := job("time", 0)
	before := time.Now()
	if err := a.Insert(c, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	got, err := a.Claim(c, queue.ClaimRequest{Queue: "time", WorkerID: "w", Limit: 1, Lease: 10 * time.Minute})
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	if d := got[0].DispatchedAt.Sub(before).Abs(); d > 5*time.Second {
		t.Errorf("DispatchedAt %v is %v away from the insert at %v", got[0].DispatchedAt, d, before)
	}
	if _, err := a.Finish(c, "w", []queue.Outcome{{ID: j.ID, Token: got[0].Token, State: queue.StateRetryable, Error: "once", Delay: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	info, err := a.GetJob(c, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := info.RunAt.Sub(before.Add(time.Hour)).Abs(); d > 5*time.Second {
		t.Errorf("RunAt %v, want an hour after %v", info.RunAt, before)
	}
	if len(info.Errors) != 1 || info.Errors[0].Attempt != 1 || info.Errors[0].At.Sub(before).Abs() > 5*time.Second {
		t.Errorf("error history %+v, want one entry of attempt 1 at about %v", info.Errors, before)
	}
	if info.AttemptedAt == nil || info.AttemptedAt.Sub(before).Abs() > 5*time.Second || info.AttemptedBy != "w" {
		t.Errorf("attempted at %v by %q", info.AttemptedAt, info.AttemptedBy)
	}
	list, err := a.ListJobs(c, queue.ListFilter{Since: before.Add(-5 * time.Second)})
	if err != nil || len(list) != 1 {
		t.Errorf("ListJobs(Since just before) = %d jobs, %v; want 1", len(list), err)
	}
	list, err = a.ListJobs(c, queue.ListFilter{Since: before.Add(time.Minute)})
	if err != nil || len(list) != 0 {
		t.Errorf("ListJobs(Since a minute later) = %d jobs, %v; want 0", len(list), err)
	}
}

// One Finish call writes several outcomes in one statement; stale ones
// (another token, another worker, no such job) are left out of the count, and
// a second outcome for the same execution in the batch finds it finished.
func TestFinishBatch(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	jobs := []queue.NewJob{job("fin", 0), job("fin", 0), job("fin", 0), job("fin", 0), job("fin", 0)}
	if err := a.Insert(c, jobs); err != nil {
		t.Fatal(err)
	}
	got := claim(t, c, a, "fin", "w", 5)
	if len(got) != 5 {
		t.Fatalf("claimed %d of 5", len(got))
	}
	tok := map[uuid.UUID]int64{}
	for _, j := range got {
		tok[j.ID] = j.Token
	}
	n, err := a.Finish(c, "w", []queue.Outcome{
		{ID: jobs[0].ID, Token: tok[jobs[0].ID], State: queue.StateCompleted, Result: []byte(`{"r":[1,2]}`)},
		{ID: jobs[1].ID, Token: tok[jobs[1].ID], State: queue.StateFailed, Error: `quote " and backslash \`},
		{ID: jobs[2].ID, Token: tok[jobs[2].ID], State: queue.StateScheduled, Delay: time.Hour},
		{ID: jobs[3].ID, Token: tok[jobs[3].ID] + 1, State: queue.StateCompleted}, // a token never handed out
		{ID: jobs[4].ID, Token: tok[jobs[4].ID], State: queue.StateRetryable, Error: "once", Delay: time.Hour},
		{ID: jobs[4].ID, Token: tok[jobs[4].ID], State: queue.StateCompleted}, // the same execution again
		{ID: uuid.New(), Token: 1, State: queue.StateCompleted},               // no such job
	})
	if err != nil || n != 4 {
		t.Fatalf("Finish = %d, %v; want 4 applied", n, err)
	}
	want := map[uuid.UUID]queue.JobState{jobs[0].ID: queue.StateCompleted, jobs[1].ID: queue.StateFailed,
		jobs[2].ID: queue.StateScheduled, jobs[3].ID: queue.StateRunning, jobs[4].ID: queue.StateRetryable}
	for id, st := range want {
		info, err := a.GetJob(c, id)
		if err != nil {
			t.Fatal(err)
		}
		if info.State != st {
			t.Errorf("job %s is %s, want %s", id, info.State, st)
		}
	}
	if info, _ := a.GetJob(c, jobs[0].ID); string(info.Result) != `{"r": [1, 2]}` && string(info.Result) != `{"r":[1,2]}` {
		t.Errorf("result = %s", info.Result)
	}
	if info, _ := a.GetJob(c, jobs[1].ID); info.LastError() != `quote " and backslash \` || info.FinishedAt == nil || info.Errors[0].Attempt != 1 {
		t.Errorf("failed job: errors %+v, finished %v", info.Errors, info.FinishedAt)
	}
	if info, _ := a.GetJob(c, jobs[2].ID); info.Attempt != 0 || time.Until(info.RunAt) < 50*time.Minute || info.FinishedAt != nil {
		t.Errorf("handed back as scheduled: attempt %d, run at %v, finished %v; want 0, an hour from now, nil", info.Attempt, info.RunAt, info.FinishedAt)
	}
	if info, _ := a.GetJob(c, jobs[4].ID); info.Attempt != 1 || len(info.Errors) != 1 || info.Result != nil || info.FinishedAt != nil {
		t.Errorf("retryable job = %+v; want attempt 1, one error, no result, not finished", info)
	}
	// Another worker cannot finish the job w holds, even with its token.
	if n, err := a.Finish(c, "other", []queue.Outcome{{ID: jobs[3].ID, Token: tok[jobs[3].ID], State: queue.StateCompleted}}); err != nil || n != 0 {
		t.Errorf("Finish by another worker = %d, %v; want 0", n, err)
	}
}

// An outcome the server cannot store fails its job alone, with the reason;
// the outcomes written with it apply as given. So does an outcome that is
// not valid at all (Outcome.Check), rather than failing the whole call,
// which the worker would retry forever. Runs on both pool setups.
func TestUnstorableOutcomesFailAlone(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) *mysql.Adapter{"New": newAdapter, "NewFromDB": newAdapterFromDB} {
		t.Run(name, func(t *testing.T) { testUnstorableOutcomes(t, open(t)) })
	}
}

func testUnstorableOutcomes(t *testing.T, a *mysql.Adapter) {
	c := ctx(t)
	var jobs []queue.NewJob
	for range 8 {
		jobs = append(jobs, job("poison", 0))
	}
	if err := a.Insert(c, jobs); err != nil {
		t.Fatal(err)
	}
	byID := map[uuid.UUID]*queue.Job{}
	for _, j := range claim(t, c, a, "poison", "w", len(jobs)) {
		byID[j.ID] = j
	}
	if len(byID) != len(jobs) {
		t.Fatalf("claimed %d of %d", len(byID), len(jobs))
	}
	tok := func(i int) int64 { return byID[jobs[i].ID].Token }
	nested := func(depth int) []byte {
		return []byte(strings.Repeat("[", depth) + strings.Repeat("]", depth))
	}
	outs := []queue.Outcome{
		queue.Completed(byID[jobs[0].ID], []byte(`{"ok":true}`)),
		{ID: jobs[1].ID, Token: tok(1), State: queue.StateRetryable, Error: "bad utf8 \xff\xfe here", Delay: time.Second},
		{ID: jobs[2].ID, Token: tok(2), State: queue.StateCompleted, Result: []byte(`{"not json`)},
		{ID: jobs[3].ID, Token: tok(3), State: queue.StateRunning}, // no execution ends running
		// Valid JSON nested deeper than either server stores (MariaDB's
		// JSON_VALID check stops at 32 levels, MySQL's JSON at 100): the
		// server refuses the statement, and the adapter finds this outcome.
		queue.Completed(byID[jobs[4].ID], nested(200)),
		{ID: jobs[5].ID, Token: tok(5), State: queue.StateCompleted, Result: []byte("\"\xff\"")}, // not UTF-8
		queue.Completed(byID[jobs[6].ID], nested(20)),
		queue.Retry(byID[jobs[7].ID], errors.New("try again")),
	}
	n, err := a.Finish(c, "w", outs)
	if err != nil || n != len(outs) {
		t.Fatalf("Finish = %d, %v; want all %d applied", n, err, len(outs))
	}
	// Job 1's error text is not UTF-8: it is cleaned (queue.Storable), as on
	// every backend, and the retry applies.
	for i, want := range []queue.JobState{queue.StateCompleted, queue.StateRetryable, queue.StateFailed, queue.StateFailed,
		queue.StateFailed, queue.StateFailed, queue.StateCompleted, queue.StateRetryable} {
		info, err := a.GetJob(c, jobs[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		if info.State != want {
			t.Errorf("job %d is %s, want %s (errors %+v)", i, info.State, want, info.Errors)
			continue
		}
		if want == queue.StateFailed && (!strings.Contains(info.LastError(), "could not be stored") || info.FinishedAt == nil || info.Result != nil) {
			t.Errorf("job %d failed with %q, finished %v, result %s; want the reason, a finish time, no result", i, info.LastError(), info.FinishedAt, info.Result)
		}
	}
	if info, _ := a.GetJob(c, jobs[1].ID); info.LastError() != "bad utf8 \uFFFD here" {
		t.Errorf("the error text was stored as %q, want it cleaned to valid UTF-8", info.LastError())
	}
	if info, _ := a.GetJob(c, jobs[4].ID); !strings.Contains(info.LastError(), "Error ") {
		t.Errorf("the reason does not quote the server's refusal: %q", info.LastError())
	}
	if info, _ := a.GetJob(c, jobs[6].ID); strings.ReplaceAll(string(info.Result), " ", "") != string(nested(20)) {
		t.Errorf("a result 20 levels deep was stored as %q", info.Result)
	}
	if info, _ := a.GetJob(c, jobs[7].ID); info.LastError() != "try again" || time.Until(info.RunAt) < 0 || info.FinishedAt != nil {
		t.Errorf("the retried neighbour = %+v; want its error, run_at ahead, not finished", info)
	}
}

// Rows written by hand that the adapter cannot read (a counter at its
// column's limit, a delay beyond time.Duration, an impossible date) do not
// stop the claim: they come back with Job.Invalid next to the good jobs, and
// the worker can fail them. A row whose id no outcome could name is failed
// in place. The test runs on both pool setups: parseTime with client-side
// interpolation, and the driver's defaults.
func TestUnreadableRowsComeBackInvalid(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) *mysql.Adapter{
		"New":       newAdapter,
		"NewFromDB": newAdapterFromDB,
	} {
		t.Run(name, func(t *testing.T) { testUnreadableRows(t, open(t)) })
	}
}

func testUnreadableRows(t *testing.T, a *mysql.Adapter) {
	c := ctx(t)
	good := []queue.NewJob{job("odd", 0), job("odd", 0)}
	if err := a.Insert(c, good); err != nil {
		t.Fatal(err)
	}
	conn, err := a.DB().Conn(c)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(c, `SET SESSION sql_mode = CONCAT(@@sql_mode, ',ALLOW_INVALID_DATES')`); err != nil {
		t.Fatal(err)
	}
	bad := map[string]string{ // id -> what the Invalid error names
		uuid.NewString(): "attempt",
		uuid.NewString(): "retry_delay_ms",
		uuid.NewString(): "timeout_ms",
		uuid.NewString(): "dispatched_at",
		uuid.NewString(): "claim_token",
	}
	cols := map[string]string{
		"attempt": "attempt", "retry_delay_ms": "retry_delay_ms", "timeout_ms": "timeout_ms",
		"dispatched_at": "dispatched_at", "claim_token": "claim_token",
	}
	vals := map[string]any{
		"attempt": int64(math.MaxInt32), "retry_delay_ms": int64(math.MaxInt64), "timeout_ms": int64(math.MaxInt64 / 1000),
		"dispatched_at": "2023-02-31 10:00:00", "claim_token": int64(math.MaxInt64),
	}
	for id, what := range bad {
		if _, err := conn.ExecContext(c, `INSERT INTO tasq_jobs (id, kind, queue, `+cols[what]+`) VALUES (?, 'mysql.test', 'odd', ?)`, id, vals[what]); err != nil {
			t.Fatalf("insert a row with %s = %v: %v", what, vals[what], err)
		}
	}
	upper := strings.ToUpper(uuid.NewString())
	if _, err := conn.ExecContext(c, `INSERT INTO tasq_jobs (id, kind, queue) VALUES (?, 'mysql.test', 'odd')`, upper); err != nil {
		t.Fatal(err)
	}

	got := claim(t, c, a, "odd", "w", 20)
	if len(got) != len(good)+len(bad) {
		t.Fatalf("claimed %d jobs, want the %d good and the %d unreadable ones", len(got), len(good), len(bad))
	}
	var outs []queue.Outcome
	for _, j := range got {
		what, isBad := bad[j.ID.String()]
		switch {
		case !isBad && j.Invalid != nil:
			t.Errorf("good job %s came back invalid: %v", j.ID, j.Invalid)
		case isBad && j.Invalid == nil:
			t.Errorf("job with an unreadable %s came back valid: %+v", what, j)
		case isBad && !strings.Contains(j.Invalid.Error(), what):
			t.Errorf("job with an unreadable %s: Invalid = %v, which does not name it", what, j.Invalid)
		}
		if j.Token <= 0 {
			t.Errorf("job %s has token %d", j.ID, j.Token)
		}
		if isBad {
			outs = append(outs, queue.Failed(j, j.Invalid))
		} else {
			outs = append(outs, queue.Completed(j, nil))
		}
	}
	if n, err := a.Finish(c, "w", outs); err != nil || n != len(outs) {
		t.Fatalf("Finish of the claimed jobs = %d, %v; want %d applied", n, err, len(outs))
	}
	for id, what := range bad {
		info, err := a.GetJob(c, uuid.MustParse(id))
		if err != nil {
			t.Errorf("GetJob of the job with an unreadable %s: %v", what, err)
			continue
		}
		if info.State != queue.StateFailed || !strings.Contains(info.LastError(), what) {
			t.Errorf("job with an unreadable %s is %s with %q, want failed naming it", what, info.State, info.LastError())
		}
	}
	var state, errs string
	if err := conn.QueryRowContext(c, `SELECT state, errors FROM tasq_jobs WHERE id = ?`, upper).Scan(&state, &errs); err != nil {
		t.Fatal(err)
	}
	if state != "failed" || !strings.Contains(errs, "canonical lower-case") {
		t.Errorf("the row with id %s is %s with errors %s; want failed, saying why", upper, state, errs)
	}
	var running int
	if err := conn.QueryRowContext(c, `SELECT COUNT(*) FROM tasq_jobs WHERE state <> 'completed' AND state <> 'failed'`).Scan(&running); err != nil || running != 0 {
		t.Errorf("%d jobs are neither completed nor failed (%v)", running, err)
	}
	if more := claim(t, c, a, "odd", "w", 20); len(more) != 0 {
		t.Errorf("a second claim found %d jobs", len(more))
	}
}

// The claim token outlives an operator's retry: an execution that was
// cancelled while it ran can neither renew its lease nor finish the retried
// attempt, even on the same worker, although the attempt number repeats.
func TestRetryJobFencesTheOldExecution(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	j := job("fence", 0)
	if err := a.Insert(c, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	first := claim(t, c, a, "fence", "w", 1)[0]
	if err := a.CancelJob(c, j.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.RetryJob(c, j.ID); err != nil {
		t.Fatal(err)
	}
	second := claim(t, c, a, "fence", "w", 1)[0]
	if second.Attempt != first.Attempt || second.Token != first.Token+1 {
		t.Fatalf("after retry: attempt %d token %d; want attempt %d again and token %d", second.Attempt, second.Token, first.Attempt, first.Token+1)
	}
	lost, err := a.ExtendLeases(c, "w", []queue.Lease{first.Lease(), second.Lease()}, time.Minute)
	if err != nil || len(lost) != 1 || lost[0] != first.Lease() {
		t.Errorf("ExtendLeases = %v, %v; want only the cancelled execution lost", lost, err)
	}
	if n, err := a.Finish(c, "w", []queue.Outcome{queue.Completed(first, []byte(`"old"`))}); err != nil || n != 0 {
		t.Errorf("the cancelled execution's outcome: applied %d, %v; want 0", n, err)
	}
	if n, err := a.Finish(c, "w", []queue.Outcome{queue.Completed(second, []byte(`"new"`))}); err != nil || n != 1 {
		t.Errorf("the retried execution's outcome: applied %d, %v; want 1", n, err)
	}
}

// A claim restricted to kinds goes past the top priority's jobs of other
// kinds, down to the priorities that have jobs it can run.
func TestClaimKindsAcrossPriorities(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	other, mine := job("kinds", 9), job("kinds", 1)
	other.Kind = "newer.kind"
	if err := a.Insert(c, []queue.NewJob{other, mine}); err != nil {
		t.Fatal(err)
	}
	got := claim(t, c, a, "kinds", "w", 10, "mysql.test", "another.kind")
	if len(got) != 1 || got[0].ID != mine.ID {
		t.Fatalf("claim for [mysql.test another.kind] = %d jobs; want only job %s", len(got), mine.ID)
	}
	if info, _ := a.GetJob(c, other.ID); info.State != queue.StateAvailable {
		t.Errorf("the job of another kind is %s, want available", info.State)
	}
}

// Jobs inserted through an Adapter wake the workers subscribed to it.
func TestInProcessWakeups(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	sub, cancel := context.WithCancel(c)
	ch, err := a.Subscribe(sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Insert(c, []queue.NewJob{job("wake", 0)}); err != nil {
		t.Fatal(err)
	}
	select {
	case q := <-ch:
		if q != "wake" {
			t.Errorf("woken for %q, want wake", q)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up after Insert")
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the channel stayed open after its context ended")
		}
	}
}

// The error history keeps its first entry and the newest ones, at most
// queue.MaxErrorHistory, and counts the entries dropped between them; the
// job's claim token is one per claim.
func TestErrorHistoryIsCapped(t *testing.T) {
	c, a := ctx(t), newAdapter(t)
	j := job("history", 0)
	j.MaxRetries = 1000
	if err := a.Insert(c, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	const attempts = 50
	for i := 1; i <= attempts; i++ {
		got := claim(t, c, a, "history", "w", 1)
		if len(got) != 1 {
			t.Fatalf("claim %d found nothing", i)
		}
		o := queue.Outcome{ID: j.ID, Token: got[0].Token, State: queue.StateAvailable, Error: fmt.Sprintf("failure %d %s", i, strings.Repeat("x", 4000))}
		if i == attempts {
			o = queue.Failed(got[0], fmt.Errorf("failure %d", i))
		}
		if n, err := a.Finish(c, "w", []queue.Outcome{o}); err != nil || n != 1 {
			t.Fatalf("finish %d: %d, %v", i, n, err)
		}
	}
	info, err := a.GetJob(c, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Errors) != queue.MaxErrorHistory || info.ErrorsOmitted != attempts-queue.MaxErrorHistory {
		t.Fatalf("history of %d entries, %d omitted; want %d and %d", len(info.Errors), info.ErrorsOmitted, queue.MaxErrorHistory, attempts-queue.MaxErrorHistory)
	}
	if !strings.HasPrefix(info.Errors[0].Error, "failure 1 ") || info.LastError() != fmt.Sprintf("failure %d", attempts) ||
		!strings.HasPrefix(info.Errors[1].Error, fmt.Sprintf("failure %d ", attempts-queue.MaxErrorHistory+2)) {
		t.Errorf("kept entries: first %.12q, second %.12q, last %.12q", info.Errors[0].Error, info.Errors[1].Error, info.LastError())
	}
	if info.Token != attempts || info.Attempt != 1 {
		t.Errorf("claim token %d, attempt %d after %d claims, all but the last handed back; want %d and 1", info.Token, info.Attempt, attempts, attempts)
	}
	// An operator's cancel appends under the same cap.
	if err := a.RetryJob(c, j.ID); err != nil {
		t.Fatal(err)
	}
	if err := a.CancelJob(c, j.ID); err != nil {
		t.Fatal(err)
	}
	if info, _ := a.GetJob(c, j.ID); len(info.Errors) != queue.MaxErrorHistory || info.ErrorsOmitted != attempts-queue.MaxErrorHistory+1 || info.LastError() != "cancelled by operator" {
		t.Errorf("after a cancel: %d entries, %d omitted, last %q", len(info.Errors), info.ErrorsOmitted, info.LastError())
	}
}
