package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
		// COPY's text format must carry what it would take as its own
		// syntax: backslashes (a JSON escape, a "\." end marker, "\N"),
		// tabs, newlines and carriage returns between JSON tokens and in
		// a kind, and multibyte UTF-8.
		kinds := []string{"k0", "k\\1\t.\n", "k2\r\\N"}
		payloads := []string{`{"n": %d, "s": "é\u00e9"}`, "{\"n\":\t%d,\r\n \"s\": \"a\\\\b\\\"\\n\\t\"}", "[%d,\n\"\\\\.\", \"\\\\N\", \"\\u2028\"]"}
		payload := fmt.Sprintf(payloads[i%3], i)
		if i == 7 {
			// Longer than the 64 KB COPY encodes at a time.
			payload = `{"big": "` + strings.Repeat(`\\x\t`, 30_000) + `"}`
		}
		return queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: kinds[i%3], Queue: fmt.Sprintf("q%d", i%4),
			Priority: int16(i%5 - 2), Payload: []byte(payload), MaxRetries: i % 7,
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
// its jobs is stored; a poison payload is refused before the COPY.
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
	// A payload that is valid JSON to Go but not to jsonb (a NUL escape) is
	// a poison value: the batch is refused whole, before anything is sent.
	for i := range batch {
		batch[i] = job("copy-dup")
	}
	batch[42].Payload = []byte(`{"s": "\u0000"}`)
	err := a.Insert(ctx, batch)
	if !errors.Is(err, queue.ErrInvalidPayload) || !strings.Contains(err.Error(), "job 42") {
		t.Fatalf("a COPY batch with a NUL escape in a payload: err %v; want ErrInvalidPayload naming job 42", err)
	}
	if err := a.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the poison batch the table holds %d jobs (err %v); want only the first", n, err)
	}
	// Bytes no text column holds, in a kind (the adapter does not check
	// them; the Client does): the server refuses the row, and the batch.
	for _, kind := range []string{"nul\x00kind", "bad\xffutf8"} {
		for i := range batch {
			batch[i] = job("copy-dup")
		}
		batch[63].Kind = kind
		if err := a.Insert(ctx, batch); err == nil {
			t.Fatalf("a COPY batch with kind %q was stored", kind)
		}
		if err := a.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("after the batch with kind %q the table holds %d jobs (err %v); want only the first", kind, n, err)
		}
	}
}

// A COPY cut short — the caller's context cancelled, or the server
// connection killed mid-stream — stores the whole batch or none of it, and
// reports an error whenever it stored none.
func TestInsertByCopyCutShortStoresAllOrNone(t *testing.T) {
	t.Parallel()
	a, _ := newAdapter(t)
	ctx := context.Background()
	const n = 50_000
	count := func() int {
		t.Helper()
		var c int
		if err := a.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	batch := func() []queue.NewJob {
		js := make([]queue.NewJob, n)
		for i := range js {
			js[i] = job("copy-cut")
			js[i].Payload = []byte(fmt.Sprintf(`{"n": %d, "pad": "%s"}`, i, strings.Repeat("x", 200)))
		}
		return js
	}
	check := func(how string, err error, before int) {
		t.Helper()
		switch got := count() - before; {
		case got == 0 && err == nil:
			t.Fatalf("%s: no error, yet nothing was stored", how)
		case got != 0 && got != n:
			t.Fatalf("%s: %d of %d jobs stored (err %v): a COPY must store all or none", how, got, n, err)
		default:
			t.Logf("%s: stored %d, err %v", how, got, err)
		}
	}
	// Cancelled by the caller.
	cctx, cancel := context.WithTimeout(ctx, 15*time.Millisecond)
	err := a.Insert(cctx, batch())
	cancel()
	check("cancelled", err, 0)
	// The server connection killed while the rows stream.
	before := count()
	done := make(chan error, 1)
	go func() { done <- a.Insert(ctx, batch()) }()
	killer, err := a.Pool().Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer killer.Release()
	deadline := time.Now().Add(10 * time.Second)
	for killed := false; !killed && time.Now().Before(deadline); {
		if err := killer.QueryRow(ctx, `SELECT count(*) > 0 FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND query ILIKE 'copy%') AS k`).Scan(&killed); err != nil {
			t.Fatal(err)
		}
	}
	check("connection killed", <-done, before)
}
