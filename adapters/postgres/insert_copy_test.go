package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
)

// storedJob is what a test reads back of a stored job.
type storedJob struct {
	kind, queue, state, payload string
	priority                    int16
	retries                     int32
	retryMS, timeoutMS          int64
	runAtIsDispatch, runAtNow   bool
}

func readStored(t *testing.T, a *postgres.Adapter, table string, ids []uuid.UUID) map[uuid.UUID]storedJob {
	t.Helper()
	rows, err := a.Pool().Query(context.Background(), `
SELECT id, kind, queue, state::text, payload::text, priority, max_retries, retry_delay_ms, timeout_ms,
       run_at = dispatched_at, run_at BETWEEN now() - interval '1 minute' AND now()
FROM `+table+` WHERE id = ANY($1)`, ids)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	got := map[uuid.UUID]storedJob{}
	for rows.Next() {
		var id uuid.UUID
		var s storedJob
		if err := rows.Scan(&id, &s.kind, &s.queue, &s.state, &s.payload, &s.priority, &s.retries, &s.retryMS, &s.timeoutMS,
			&s.runAtIsDispatch, &s.runAtNow); err != nil {
			t.Fatal(err)
		}
		got[id] = s
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return got
}

// A large batch of undelayed, untagged jobs goes by COPY; it must store
// exactly what the INSERT stores for the same jobs (a small batch), in any
// schema, and wake the batch's queues.
func TestInsertByCopyStoresWhatInsertStores(t *testing.T) {
	t.Parallel()
	dsn := schemaDatabase(t, "copy_s")
	a, err := postgres.New(context.Background(), dsn, postgres.WithSchema("copy_s"))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx := context.Background()
	mk := func(i int) queue.NewJob {
		return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: fmt.Sprintf("k%d", i%3), Queue: fmt.Sprintf("q%d", i%4),
			Priority: int16(i%5 - 2), Payload: []byte(fmt.Sprintf(`{"n": %d, "s": "é\u00e9"}`, i)), MaxRetries: i % 7,
			RetryDelay: time.Duration(i) * time.Millisecond / 3, Timeout: time.Duration(i%2) * 1500 * time.Microsecond}
	}
	big := make([]queue.NewJob, 200) // COPY
	small := make([]queue.NewJob, 20)
	for i := range big {
		big[i] = mk(i)
	}
	for i := range small {
		small[i] = mk(i) // the same jobs as big[:20], other IDs
	}
	if err := a.Insert(ctx, big); err != nil {
		t.Fatalf("insert by COPY: %v", err)
	}
	if err := a.Insert(ctx, small); err != nil {
		t.Fatalf("insert: %v", err)
	}
	ids := func(js []queue.NewJob) []uuid.UUID {
		out := make([]uuid.UUID, len(js))
		for i := range js {
			out[i] = js[i].ID
		}
		return out
	}
	gotBig, gotSmall := readStored(t, a, "copy_s.tasq_jobs", ids(big)), readStored(t, a, "copy_s.tasq_jobs", ids(small))
	if len(gotBig) != len(big) || len(gotSmall) != len(small) {
		t.Fatalf("stored %d of %d (COPY) and %d of %d (INSERT)", len(gotBig), len(big), len(gotSmall), len(small))
	}
	for i := range small {
		b, s := gotBig[big[i].ID], gotSmall[small[i].ID]
		if b != s {
			t.Errorf("job %d: COPY stored %+v, INSERT stored %+v", i, b, s)
		}
		if b.state != "available" || !b.runAtIsDispatch || !b.runAtNow {
			t.Errorf("job %d by COPY: %+v; want available, run_at = dispatched_at = the database's now", i, b)
		}
	}
	// Workers of every queue of the batch can claim its jobs at once.
	for q := range 4 {
		jobs, err := a.Claim(ctx, queue.ClaimRequest{Queue: fmt.Sprintf("q%d", q), WorkerID: "w", Limit: 100, Lease: time.Minute})
		if err != nil || len(jobs) != 55 {
			t.Errorf("claim q%d: %d jobs, err %v; want 50 by COPY + 5 by INSERT", q, len(jobs), err)
		}
	}
}

// A COPY batch is all or nothing: an ID that exists fails it, and none of
// its jobs is stored; so does a payload PostgreSQL refuses.
func TestInsertByCopyIsAllOrNothing(t *testing.T) {
	t.Parallel()
	a, _ := newAdapter(t)
	ctx := context.Background()
	first := job("copy-dup")
	if err := a.Insert(ctx, []queue.NewJob{first}); err != nil {
		t.Fatal(err)
	}
	batch := make([]queue.NewJob, 100)
	for i := range batch {
		batch[i] = job("copy-dup")
	}
	batch[70] = first
	if err := a.Insert(ctx, batch); err == nil {
		t.Fatal("a COPY batch holding an existing ID was stored")
	}
	var n int
	if err := a.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the refused batch the table holds %d jobs (err %v); want only the first", n, err)
	}
}
