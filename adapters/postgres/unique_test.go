package postgres_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

// Tests of migration 9: unique jobs (queue.WithUnique, tasq_jobs_unique_idx)
// and tags and metadata.

// syncOrder is a unique task: one job per order while it waits or runs.
type syncOrder struct {
	OrderID int    `json:"order_id"`
	Note    string `json:"note"`
}

func (*syncOrder) Kind() string { return "syncOrder" }

func (*syncOrder) Unique() queue.UniqueOpts { return queue.UniqueOpts{Fields: []string{"order_id"}} }

func (*syncOrder) Handle(context.Context) (string, error) { return "ok", nil }

// plainTask has no Unique method; dispatches make it unique with WithUnique.
type plainTask struct {
	N int `json:"n"`
}

func (*plainTask) Kind() string                           { return "plainTask" }
func (*plainTask) Handle(context.Context) (string, error) { return "ok", nil }

type uniqueEnv struct {
	a      *postgres.Adapter
	c      *queue.Client
	pool   *pgxpool.Pool
	ctx    context.Context
	now    atomic.Pointer[time.Time]
	dsn    string
	schema string
}

func newUniqueEnv(t *testing.T, schema string) *uniqueEnv {
	t.Helper()
	e := &uniqueEnv{ctx: context.Background(), schema: schema}
	if schema == "" {
		e.a, e.dsn = newAdapter(t)
	} else {
		e.dsn = schemaDatabase(t, schema)
		a, err := postgres.New(e.ctx, e.dsn, postgres.WithSchema(schema))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		e.a = a
	}
	e.pool = e.a.Pool()
	start := time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)
	e.now.Store(&start)
	c, err := queue.NewClient(e.a, queue.WithClock(func() time.Time { return *e.now.Load() }))
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	return e
}

// table is the qualified name of tasq_jobs in the env's schema.
func (e *uniqueEnv) table() string {
	if e.schema == "" {
		return "tasq_jobs"
	}
	return pgx.Identifier{e.schema, "tasq_jobs"}.Sanitize()
}

func (e *uniqueEnv) count(t *testing.T, where string, args ...any) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM `+e.table()+` WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *uniqueEnv) dispatch(t *testing.T, task any, opts ...queue.DispatchOption) queue.Dispatched {
	t.Helper()
	d, err := e.c.DispatchResult(e.ctx, task, opts...)
	if err != nil {
		t.Fatalf("DispatchResult: %v", err)
	}
	return d
}

// finish claims the jobs of queue q and writes outcome for each, as a worker
// does: the states move by the adapter's own statements.
func (e *uniqueEnv) finish(t *testing.T, q string, outcome func(*queue.Job) queue.Outcome) {
	t.Helper()
	jobs, err := e.a.Claim(e.ctx, queue.ClaimRequest{Queue: q, WorkerID: "w", Limit: 100, Lease: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) == 0 {
		t.Fatal("claim found no job")
	}
	var outs []queue.Outcome
	for _, j := range jobs {
		outs = append(outs, outcome(j))
	}
	if n, err := e.a.Finish(e.ctx, "w", outs); err != nil || n != len(outs) {
		t.Fatalf("Finish = %d, %v; want %d", n, err, len(outs))
	}
}

func completed(j *queue.Job) queue.Outcome { return queue.Completed(j, json.RawMessage(`"ok"`)) }

func TestUniqueSkip(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	first := e.dispatch(t, &syncOrder{OrderID: 1, Note: "a"})
	if first.Duplicate || first.Replaced {
		t.Fatalf("first dispatch = %+v; want a new job", first)
	}
	// Same order, another note (not in the key): the same job.
	second := e.dispatch(t, &syncOrder{OrderID: 1, Note: "b"})
	if !second.Duplicate || second.Replaced || second.ID != first.ID {
		t.Fatalf("second dispatch = %+v; want a duplicate of %s", second, first.ID)
	}
	// Plain Dispatch returns the existing job's ID and no error.
	id, err := e.c.Dispatch(e.ctx, &syncOrder{OrderID: 1})
	if err != nil || id != first.ID {
		t.Fatalf("Dispatch = %s, %v; want %s, nil", id, err, first.ID)
	}
	// Another order is another job.
	other := e.dispatch(t, &syncOrder{OrderID: 2})
	if other.Duplicate || other.ID == first.ID {
		t.Fatalf("order 2 = %+v; want a new job", other)
	}
	if n := e.count(t, `kind = 'syncOrder'`); n != 2 {
		t.Fatalf("%d jobs stored; want 2", n)
	}
	j, err := e.a.GetJob(e.ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(j.Payload) != `{"note": "a", "order_id": 1}` {
		t.Errorf("payload %s; the skipped dispatch must not change it", j.Payload)
	}
	// The key is visible in SQL, a 32-byte hash, with the default states
	// (scheduled, available, running, retryable = 1|2|4|16).
	var keyLen, states int
	if err := e.pool.QueryRow(e.ctx, `SELECT octet_length(unique_key), unique_states FROM tasq_jobs WHERE id = $1`, first.ID).Scan(&keyLen, &states); err != nil {
		t.Fatal(err)
	}
	if keyLen != 32 || states != 23 {
		t.Errorf("unique_key %d bytes, unique_states %d; want 32, 23", keyLen, states)
	}
	// A plain job of the same kind (WithUnique is not the only way in:
	// plainTask has no key) is never a duplicate.
	p1 := e.dispatch(t, &plainTask{N: 1})
	p2 := e.dispatch(t, &plainTask{N: 1})
	if p1.Duplicate || p2.Duplicate || p1.ID == p2.ID {
		t.Fatalf("plain dispatches = %+v, %+v; want two jobs", p1, p2)
	}
}

// Many dispatchers of one key at once: exactly one job, and every other
// dispatcher is told it is a duplicate of that job.
func TestUniqueConcurrentDispatchers(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	const n = 32
	for _, inTx := range []bool{false, true} {
		t.Run(fmt.Sprintf("tx=%v", inTx), func(t *testing.T) {
			order := 100
			if inTx {
				order = 200
			}
			results := make([]queue.Dispatched, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					task := &syncOrder{OrderID: order, Note: fmt.Sprint(i)}
					if !inTx {
						results[i], errs[i] = e.c.DispatchResult(e.ctx, task)
						return
					}
					errs[i] = pgx.BeginFunc(e.ctx, e.pool, func(tx pgx.Tx) error {
						var err error
						results[i], err = e.c.DispatchResultTx(e.ctx, tx, task)
						return err
					})
				}()
			}
			close(start)
			wg.Wait()
			stored := 0
			var id uuid.UUID
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("dispatcher %d: %v", i, errs[i])
				}
				if !results[i].Duplicate {
					stored++
					id = results[i].ID
				}
			}
			if stored != 1 {
				t.Fatalf("%d dispatchers stored a job; want exactly 1", stored)
			}
			for i := range n {
				if results[i].ID != id {
					t.Errorf("dispatcher %d got job %s; want %s", i, results[i].ID, id)
				}
			}
			j, err := e.a.GetJob(e.ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			var got syncOrder
			if err := json.Unmarshal(j.Payload, &got); err != nil || got.OrderID != order {
				t.Fatalf("job payload %s", j.Payload)
			}
			if c := e.count(t, `kind = 'syncOrder' AND payload->>'order_id' = $1`, fmt.Sprint(order)); c != 1 {
				t.Fatalf("%d jobs of order %d stored; want 1", c, order)
			}
		})
	}
}

// A batch holding one key several times stores one job for it: the first
// for skip, the last for replace; the others are its duplicates.
func TestUniqueDispatchManyBatch(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	existing := e.dispatch(t, &syncOrder{OrderID: 3, Note: "before"})
	res, err := e.c.DispatchManyResults(e.ctx, []any{
		&syncOrder{OrderID: 1, Note: "first"},
		&syncOrder{OrderID: 1, Note: "second"},
		&plainTask{N: 1},
		&syncOrder{OrderID: 2},
		&syncOrder{OrderID: 3, Note: "again"},
		&syncOrder{OrderID: 1, Note: "third"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ dup bool }{{false}, {true}, {false}, {false}, {true}, {true}}
	for i, w := range want {
		if res[i].Duplicate != w.dup || res[i].Replaced {
			t.Errorf("task %d: %+v; want duplicate %v", i, res[i], w.dup)
		}
	}
	if res[1].ID != res[0].ID || res[5].ID != res[0].ID {
		t.Errorf("the duplicates of order 1 got %s and %s; want %s", res[1].ID, res[5].ID, res[0].ID)
	}
	if res[4].ID != existing.ID {
		t.Errorf("order 3 got %s; want the existing job %s", res[4].ID, existing.ID)
	}
	if j, _ := e.a.GetJob(e.ctx, res[0].ID); j == nil || string(j.Payload) != `{"note": "first", "order_id": 1}` {
		t.Errorf("order 1's job: %+v; want the first task's payload", j)
	}
	if n := e.count(t, `true`); n != 4 {
		t.Errorf("%d jobs stored; want 4 (orders 1, 2, 3 and the plain task)", n)
	}
	// The IDs of DispatchMany are the same.
	ids, err := e.c.DispatchMany(e.ctx, []any{&syncOrder{OrderID: 2}, &syncOrder{OrderID: 9}})
	if err != nil {
		t.Fatal(err)
	}
	if ids[0] != res[3].ID {
		t.Errorf("DispatchMany gave order 2 job %s; want %s", ids[0], res[3].ID)
	}

	// Replace: the last task of a key wins, also inside a transaction.
	replace := queue.WithUnique(queue.UniqueOpts{Mode: queue.UniqueReplace, ByQueue: true})
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err = e.c.DispatchManyResultsTx(e.ctx, tx, []any{&plainTask{N: 1}, &plainTask{N: 2}, &plainTask{N: 3}}, replace, queue.OnQueue("rq"))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	if res[2].Duplicate || !res[0].Duplicate || !res[1].Duplicate || res[0].ID != res[2].ID || res[1].ID != res[2].ID {
		t.Errorf("replace batch = %+v; want the last stored, the others its duplicates", res)
	}
	if j, _ := e.a.GetJob(e.ctx, res[2].ID); j == nil || string(j.Payload) != `{"n": 3}` {
		t.Errorf("replace batch job: %+v; want the last payload", j)
	}
	if n := e.count(t, `queue = 'rq'`); n != 1 {
		t.Errorf("%d jobs in rq; want 1", n)
	}
}

// A dispatch in a transaction that rolls back leaves the key free, and a
// second transaction with the same key waits for the first: it is a
// duplicate if the first commits, and stores its own job if it rolls back.
func TestUniqueTransactions(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")

	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.c.DispatchResultTx(e.ctx, tx, &syncOrder{OrderID: 1})
	if err != nil || d.Duplicate {
		t.Fatalf("DispatchResultTx = %+v, %v", d, err)
	}
	if err := tx.Rollback(e.ctx); err != nil {
		t.Fatal(err)
	}
	after := e.dispatch(t, &syncOrder{OrderID: 1})
	if after.Duplicate || after.ID == d.ID {
		t.Fatalf("after the rollback: %+v; want a new job", after)
	}

	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit=%v", commit), func(t *testing.T) {
			order := 10
			if !commit {
				order = 11
			}
			tx1, err := e.pool.Begin(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx1.Rollback(e.ctx)
			d1, err := e.c.DispatchResultTx(e.ctx, tx1, &syncOrder{OrderID: order, Note: "tx1"})
			if err != nil || d1.Duplicate {
				t.Fatalf("tx1: %+v, %v", d1, err)
			}
			// tx2 on a database/sql connection: the other transaction type.
			db, err := sql.Open("pgx", e.dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			tx2, err := db.BeginTx(e.ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx2.Rollback()
			var pid int
			if err := tx2.QueryRowContext(e.ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
				t.Fatal(err)
			}
			type result struct {
				d   queue.Dispatched
				err error
			}
			done := make(chan result, 1)
			go func() {
				d, err := e.c.DispatchResultTx(e.ctx, tx2, &syncOrder{OrderID: order, Note: "tx2"})
				done <- result{d, err}
			}()
			// tx2 waits for tx1's lock on the key.
			waitFor(t, 10*time.Second, "tx2 to wait for tx1", func() (bool, error) {
				select {
				case r := <-done:
					t.Fatalf("tx2 returned before tx1 ended: %+v, %v", r.d, r.err)
				default:
				}
				var waiting bool
				err := e.pool.QueryRow(e.ctx, `SELECT coalesce(bool_or(wait_event_type = 'Lock'), false) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&waiting)
				return waiting, err
			})
			if commit {
				err = tx1.Commit(e.ctx)
			} else {
				err = tx1.Rollback(e.ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			r := <-done
			if r.err != nil {
				t.Fatal(r.err)
			}
			if commit && (!r.d.Duplicate || r.d.ID != d1.ID) {
				t.Fatalf("tx2 after tx1 committed: %+v; want a duplicate of %s", r.d, d1.ID)
			}
			if !commit && (r.d.Duplicate || r.d.ID == d1.ID) {
				t.Fatalf("tx2 after tx1 rolled back: %+v; want its own job", r.d)
			}
			if err := tx2.Commit(); err != nil {
				t.Fatal(err)
			}
			if n := e.count(t, `payload->>'order_id' = $1`, fmt.Sprint(order)); n != 1 {
				t.Fatalf("%d jobs of order %d; want 1", n, order)
			}
		})
	}
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s after %v", what, d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A finished job holds its key only if its state is in the key's states;
// jobs move through the worker's states (claim, retry, snooze, finish)
// without ever meeting the index.
func TestUniqueStates(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	q := queue.OnQueue("states")

	// Default states: a completed job no longer blocks.
	d1 := e.dispatch(t, &syncOrder{OrderID: 1}, q)
	if dup := e.dispatch(t, &syncOrder{OrderID: 1}, q); !dup.Duplicate {
		t.Fatal("a waiting job did not block its key")
	}
	e.finish(t, "states", func(j *queue.Job) queue.Outcome { return queue.RetryIn(j, errors.New("boom"), 0) })
	if dup := e.dispatch(t, &syncOrder{OrderID: 1}, q); !dup.Duplicate || dup.ID != d1.ID {
		t.Fatalf("a retryable job did not block its key: %+v", dup)
	}
	if _, _, err := e.a.Maintain(e.ctx); err != nil { // retryable -> available
		t.Fatal(err)
	}
	e.finish(t, "states", completed)
	d2 := e.dispatch(t, &syncOrder{OrderID: 1}, q)
	if d2.Duplicate || d2.ID == d1.ID {
		t.Fatalf("after the job completed: %+v; want a new job", d2)
	}

	// Completed among the states: the completed job still blocks.
	withCompleted := queue.WithUnique(queue.UniqueOpts{Fields: []string{"order_id"},
		States: append(append([]queue.JobState{}, queue.DefaultUniqueStates...), queue.StateCompleted)})
	e.finish(t, "states", completed) // d2
	d3 := e.dispatch(t, &syncOrder{OrderID: 2}, q, withCompleted)
	e.finish(t, "states", completed)
	if dup := e.dispatch(t, &syncOrder{OrderID: 2}, q, withCompleted); !dup.Duplicate || dup.ID != d3.ID {
		t.Fatalf("completed job with completed among its states: %+v; want a duplicate of %s", dup, d3.ID)
	}
	// The holder's states decide: it was dispatched to keep its key when
	// completed, so a dispatch with the default states meets it too.
	if d := e.dispatch(t, &syncOrder{OrderID: 2}, q); !d.Duplicate || d.ID != d3.ID {
		t.Fatalf("a dispatch with the default states: %+v; want a duplicate of the completed holder %s", d, d3.ID)
	}

	// An operator's retry of a finished job whose key another job holds
	// now is refused with ErrJobState, and changes nothing.
	err := e.a.RetryJob(e.ctx, d1.ID)
	if !errors.Is(err, queue.ErrJobState) {
		t.Fatalf("RetryJob of a completed job whose key is held = %v; want ErrJobState", err)
	}
}

// Throttle: at most one job per key and period, whatever became of it; the
// next period has a key of its own. The client's clock is set, not waited
// for.
func TestUniqueThrottle(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	throttle := queue.WithUnique(queue.UniqueOpts{Mode: queue.UniqueThrottle, Period: time.Hour})
	at := func(s string) {
		ts, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		e.now.Store(&ts)
	}
	at("2030-01-01T10:00:00Z")
	d1 := e.dispatch(t, &plainTask{N: 1}, throttle, queue.OnQueue("th"))
	if d1.Duplicate {
		t.Fatal("first dispatch of the period was a duplicate")
	}
	e.finish(t, "th", completed)
	at("2030-01-01T10:59:59.999Z")
	if d := e.dispatch(t, &plainTask{N: 2}, throttle, queue.OnQueue("th")); !d.Duplicate || d.ID != d1.ID {
		t.Fatalf("second dispatch in the period, after the first completed: %+v; want a duplicate of %s", d, d1.ID)
	}
	at("2030-01-01T11:00:00Z")
	d2 := e.dispatch(t, &plainTask{N: 3}, throttle, queue.OnQueue("th"))
	if d2.Duplicate {
		t.Fatal("first dispatch of the next period was a duplicate")
	}
	e.finish(t, "th", func(j *queue.Job) queue.Outcome { return queue.Failed(j, errors.New("no")) })
	if d := e.dispatch(t, &plainTask{N: 4}, throttle, queue.OnQueue("th")); !d.Duplicate || d.ID != d2.ID {
		t.Fatalf("dispatch after a failed job of the period: %+v; want a duplicate of %s", d, d2.ID)
	}
	if n := e.count(t, `queue = 'th'`); n != 2 {
		t.Fatalf("%d jobs; want one per period", n)
	}
	// Throttle holds in every state.
	var states int
	if err := e.pool.QueryRow(e.ctx, `SELECT unique_states FROM tasq_jobs WHERE id = $1`, d1.ID).Scan(&states); err != nil || states != 127 {
		t.Fatalf("unique_states %d, %v; want 127", states, err)
	}
}

// Replace moves a job that has not started (payload, run time, tags,
// metadata), and leaves a running one alone.
func TestUniqueReplace(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	debounce := queue.WithUnique(queue.UniqueOpts{Mode: queue.UniqueReplace})
	first := e.dispatch(t, &plainTask{N: 1}, debounce, queue.Delay(time.Hour), queue.OnQueue("rp"), queue.WithTags("v1"))
	var runAt1 time.Time
	if err := e.pool.QueryRow(e.ctx, `SELECT run_at FROM tasq_jobs WHERE id = $1`, first.ID).Scan(&runAt1); err != nil {
		t.Fatal(err)
	}
	second := e.dispatch(t, &plainTask{N: 2}, debounce, queue.Delay(2*time.Hour), queue.OnQueue("rp"), queue.WithTags("v2"), queue.WithMeta(map[string]any{"by": "second"}))
	if !second.Duplicate || !second.Replaced || second.ID != first.ID {
		t.Fatalf("second dispatch = %+v; want %s replaced", second, first.ID)
	}
	j, err := e.a.GetJob(e.ctx, first.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(j.Payload) != `{"n": 2}` || j.State != queue.StateScheduled || !j.RunAt.After(runAt1.Add(59*time.Minute)) {
		t.Fatalf("after the replace: payload %s, state %s, run_at %v (was %v); want {\"n\": 2}, scheduled, an hour later", j.Payload, j.State, j.RunAt, runAt1)
	}
	if fmt.Sprint(j.Tags) != "[v2]" || string(j.Meta) != `{"by": "second"}` {
		t.Fatalf("after the replace: tags %v, meta %s", j.Tags, j.Meta)
	}
	// Without a delay: available now, and a worker can claim it.
	third := e.dispatch(t, &plainTask{N: 3}, debounce, queue.OnQueue("rp"))
	if !third.Replaced || third.ID != first.ID {
		t.Fatalf("third dispatch = %+v", third)
	}
	claimed, err := e.a.Claim(e.ctx, queue.ClaimRequest{Queue: "rp", WorkerID: "w", Limit: 10, Lease: time.Minute})
	if err != nil || len(claimed) != 1 || string(claimed[0].Payload) != `{"n": 3}` {
		t.Fatalf("claim = %v, %v; want the job with the third payload", claimed, err)
	}
	// Running: a replace reports the duplicate and changes nothing.
	fourth := e.dispatch(t, &plainTask{N: 4}, debounce, queue.OnQueue("rp"))
	if !fourth.Duplicate || fourth.Replaced || fourth.ID != first.ID {
		t.Fatalf("replace of a running job = %+v; want a plain duplicate", fourth)
	}
	if j, _ := e.a.GetJob(e.ctx, first.ID); string(j.Payload) != `{"n": 3}` || j.State != queue.StateRunning {
		t.Fatalf("running job changed: payload %s state %s", j.Payload, j.State)
	}
	// The running job finishes as usual; the key is then free.
	if n, err := e.a.Finish(e.ctx, "w", []queue.Outcome{completed(claimed[0])}); err != nil || n != 1 {
		t.Fatalf("Finish = %d, %v", n, err)
	}
	if d := e.dispatch(t, &plainTask{N: 5}, debounce, queue.OnQueue("rp")); d.Duplicate {
		t.Fatalf("after the holder completed: %+v; want a new job", d)
	}
}

// Everything above works on a schema other than public, where every
// statement must name the schema (the index's predicate function too).
func TestUniqueAndTagsInASchema(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "app_uniq")
	d1 := e.dispatch(t, &syncOrder{OrderID: 1}, queue.WithTags("tenant:1"), queue.WithMeta(json.RawMessage(`{"req": "r1"}`)))
	d2 := e.dispatch(t, &syncOrder{OrderID: 1})
	if d1.Duplicate || !d2.Duplicate || d2.ID != d1.ID {
		t.Fatalf("dispatches = %+v, %+v", d1, d2)
	}
	replace := queue.WithUnique(queue.UniqueOpts{Mode: queue.UniqueReplace, Fields: []string{"order_id"}})
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	d3, err := e.c.DispatchResultTx(e.ctx, tx, &syncOrder{OrderID: 1, Note: "new"}, replace)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.DispatchTx(e.ctx, tx, &plainTask{N: 1}, queue.WithTags("tenant:1")); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	if !d3.Replaced || d3.ID != d1.ID {
		t.Fatalf("replace in a transaction = %+v", d3)
	}
	jobs, err := e.a.ListJobs(e.ctx, queue.ListFilter{Tag: "tenant:1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 || jobs[0].Kind != "plainTask" {
		t.Fatalf("jobs tagged tenant:1: %d (the replace dropped order 1's tags); want the plain task", len(jobs))
	}
	if n := e.count(t, `unique_key IS NOT NULL`); n != 1 {
		t.Fatalf("%d unique jobs in the schema; want 1", n)
	}
}

// Tags and metadata go in with Insert, InsertTx and the unique insert, come
// back from GetJob and ListJobs, and are plain columns in SQL.
func TestTagsAndMeta(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	tagged := e.dispatch(t, &plainTask{N: 1}, queue.WithTags("tenant:42", "env=prod"), queue.WithMeta(map[string]any{"request_id": "abc", "n": 7}))
	plain := e.dispatch(t, &plainTask{N: 2})
	ids, err := e.c.DispatchMany(e.ctx, []any{&plainTask{N: 3}, &plainTask{N: 4}}, queue.WithTags("tenant:42", "batch"))
	if err != nil {
		t.Fatal(err)
	}
	tx, err := e.pool.Begin(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	inTx, err := e.c.DispatchTx(e.ctx, tx, &plainTask{N: 5}, queue.WithTags("tenant:7"), queue.WithMeta(json.RawMessage(`{"tx": true}`)))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(e.ctx); err != nil {
		t.Fatal(err)
	}
	uniq := e.dispatch(t, &syncOrder{OrderID: 1}, queue.WithTags("tenant:42"))

	j, err := e.a.GetJob(e.ctx, tagged.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(j.Tags) != "[tenant:42 env=prod]" || string(j.Meta) != `{"n": 7, "request_id": "abc"}` {
		t.Fatalf("GetJob: tags %v meta %s", j.Tags, j.Meta)
	}
	if j, _ := e.a.GetJob(e.ctx, plain.ID); j.Tags != nil || j.Meta != nil {
		t.Fatalf("a job without tags: tags %#v meta %s; want nil", j.Tags, j.Meta)
	}
	if j, _ := e.a.GetJob(e.ctx, inTx); fmt.Sprint(j.Tags) != "[tenant:7]" || string(j.Meta) != `{"tx": true}` {
		t.Fatalf("InsertTx: tags %v meta %s", j.Tags, j.Meta)
	}
	list, err := e.a.ListJobs(e.ctx, queue.ListFilter{Tag: "tenant:42"})
	if err != nil {
		t.Fatal(err)
	}
	want := []uuid.UUID{uniq.ID, ids[1], ids[0], tagged.ID} // newest first
	if len(list) != len(want) {
		t.Fatalf("ListJobs(tag tenant:42) = %d jobs; want %d", len(list), len(want))
	}
	for i, id := range want {
		if list[i].ID != id {
			t.Errorf("ListJobs(tag tenant:42)[%d] = %s; want %s", i, list[i].ID, id)
		}
	}
	if list, err := e.a.ListJobs(e.ctx, queue.ListFilter{Tag: "batch", Kind: "plainTask"}); err != nil || len(list) != 2 {
		t.Fatalf("ListJobs(tag batch) = %d, %v; want 2", len(list), err)
	}
	if _, err := e.a.ListJobs(e.ctx, queue.ListFilter{Tag: "a b"}); !errors.Is(err, queue.ErrInvalidConfig) {
		t.Fatalf("ListJobs with a bad tag = %v; want ErrInvalidConfig", err)
	}
	// Plain SQL.
	var n int
	var req string
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) OVER (), meta->>'request_id' FROM tasq_jobs WHERE tags @> '{env=prod}'`).Scan(&n, &req); err != nil {
		t.Fatal(err)
	}
	if n != 1 || req != "abc" {
		t.Fatalf("SQL: %d rows, request_id %q", n, req)
	}
	if c := e.count(t, `'tenant:42' = ANY(tags)`); c != 4 {
		t.Fatalf("SQL: %d jobs tagged tenant:42; want 4", c)
	}
	// The schema refuses what the client would: metadata that is not an
	// object, a NULL tag.
	for _, bad := range []string{`UPDATE tasq_jobs SET meta = '[1]'`, `UPDATE tasq_jobs SET tags = '{NULL}'`} {
		if _, err := e.pool.Exec(e.ctx, bad); err == nil {
			t.Errorf("%s succeeded", bad)
		}
	}
	// Retention's archive keeps them.
	e.finish(t, "default", completed)
	if _, err := e.pool.Exec(e.ctx, `UPDATE tasq_jobs SET finished_at = now() - interval '2 days' WHERE state = 'completed'`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.Purge(e.ctx, queue.PurgeFilter{State: queue.StateCompleted, OlderThan: 24 * time.Hour, Archive: true}); err != nil {
		t.Fatal(err)
	}
	var archived []string
	if err := e.pool.QueryRow(e.ctx, `SELECT tags FROM tasq_jobs_archive WHERE id = $1`, tagged.ID).Scan(&archived); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(archived) != "[tenant:42 env=prod]" {
		t.Fatalf("archived tags %v", archived)
	}
}

// Bad input reaches no table: an adapter's own checks refuse a unique job
// without states, states that leave a live state out, a bad tag, and
// metadata that is not an object.
func TestUniqueAndTagsBadInput(t *testing.T) {
	t.Parallel()
	e := newUniqueEnv(t, "")
	base := func() queue.NewJob {
		return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: "q", Payload: []byte(`{}`)}
	}
	for name, mutate := range map[string]func(*queue.NewJob){
		"key without states": func(j *queue.NewJob) { j.UniqueKey = []byte("k") },
		"states without key": func(j *queue.NewJob) { j.UniqueStates = queue.States },
		"states without run": func(j *queue.NewJob) {
			j.UniqueKey, j.UniqueStates = []byte("k"), []queue.JobState{queue.StateAvailable}
		},
		"empty key":            func(j *queue.NewJob) { j.UniqueKey, j.UniqueStates = []byte{}, queue.States },
		"long key":             func(j *queue.NewJob) { j.UniqueKey, j.UniqueStates = make([]byte, 257), queue.States },
		"bad tag":              func(j *queue.NewJob) { j.Tags = []string{"a,b"} },
		"twice the same tag":   func(j *queue.NewJob) { j.Tags = []string{"a", "a"} },
		"meta not an object":   func(j *queue.NewJob) { j.Meta = []byte(`[1]`) },
		"meta with a NUL":      func(j *queue.NewJob) { j.Meta = []byte(`{"a": "\u0000"}`) },
		"meta not JSON at all": func(j *queue.NewJob) { j.Meta = []byte(`{`) },
	} {
		j := base()
		mutate(&j)
		for _, insert := range []func() error{
			func() error { return e.a.Insert(e.ctx, []queue.NewJob{j}) },
			func() error { _, err := e.a.InsertUnique(e.ctx, []queue.NewJob{j}); return err },
		} {
			if err := insert(); !errors.Is(err, queue.ErrInvalidConfig) {
				t.Errorf("%s: %v; want ErrInvalidConfig", name, err)
			}
		}
	}
	if n := e.count(t, `true`); n != 0 {
		t.Fatalf("%d jobs stored from bad input", n)
	}
	// A key the client made goes in through plain Insert too.
	j := base()
	j.UniqueKey, j.UniqueStates = []byte("key"), queue.DefaultUniqueStates
	j2 := base()
	j2.UniqueKey, j2.UniqueStates = []byte("key"), queue.DefaultUniqueStates
	if err := e.a.Insert(e.ctx, []queue.NewJob{j}); err != nil {
		t.Fatal(err)
	}
	if err := e.a.Insert(e.ctx, []queue.NewJob{j2}); err != nil {
		t.Fatal(err)
	}
	if n := e.count(t, `true`); n != 1 {
		t.Fatalf("%d jobs with one key; want 1", n)
	}
}

// BenchmarkDispatchManyKinds compares batches of 1000 plain, tagged and
// unique (skip, all new keys) jobs, one DispatchMany each:
//
//	go test -run '^$' -bench DispatchManyKinds ./adapters/postgres/
func BenchmarkDispatchManyKinds(b *testing.B) {
	ctx := context.Background()
	for _, kind := range []string{"plain", "tagged", "unique"} {
		b.Run(kind, func(b *testing.B) {
			a, err := postgres.New(ctx, testpg.NewDatabase(b))
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			c, err := queue.NewClient(a)
			if err != nil {
				b.Fatal(err)
			}
			var opts []queue.DispatchOption
			switch kind {
			case "tagged":
				opts = append(opts, queue.WithTags("tenant:42", "bench"), queue.WithMeta(map[string]string{"request_id": "r"}))
			case "unique":
				opts = append(opts, queue.WithUnique(queue.UniqueOpts{ByPayload: true}))
			}
			tasks := make([]any, 1000)
			n := 0
			b.ResetTimer()
			for range b.N {
				for i := range tasks {
					n++
					tasks[i] = &plainTask{N: n}
				}
				if _, err := c.DispatchMany(ctx, tasks, opts...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(tasks))/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}
