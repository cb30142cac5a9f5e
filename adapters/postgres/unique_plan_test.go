package postgres

import (
	"context"
	"crypto/sha256"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

// The unique insert finds holders through tasq_jobs_unique_idx, never by
// scanning the table, also when the statistics say the table is empty (it
// was at the last ANALYZE) and it holds many jobs, unique and not. Its
// work then stays bounded by the batch, whatever the table holds.
func TestUniqueStatementUsesTheIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, err := New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, q := range []string{
		`ANALYZE tasq_jobs`, // while empty: the statistics now mislead
		`INSERT INTO tasq_jobs (id, kind, state, unique_key, unique_states)
		 SELECT gen_random_uuid(), 'k', (CASE WHEN i % 3 = 0 THEN 'completed' ELSE 'available' END)::tasq_job_state,
		        CASE WHEN i % 2 = 0 THEN sha256(i::text::bytea) END, CASE WHEN i % 2 = 0 THEN 23 END
		 FROM generate_series(1, 30000) AS i`,
	} {
		if _, err := a.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// Half the keys are new, half are those of stored jobs (held by the
	// available ones, free where the job completed).
	jobs := make([]queue.NewJob, 50)
	for i := range jobs {
		key := []byte{byte(i)}
		if i%2 == 0 {
			sum := sha256.Sum256([]byte(strconv.Itoa(i + 2)))
			key = sum[:]
		}
		jobs[i] = queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: "default", Payload: []byte(`{}`),
			UniqueKey: key, UniqueStates: queue.DefaultUniqueStates, UniqueReplace: i%4 == 0, RetryDelay: time.Second}
	}
	for name, stmt := range map[string]string{"pool": uniqueSQL, "tx": uniqueTxSQL} {
		args := a.uniqueArgs(jobs)
		if name == "tx" {
			args = append(args, a.sql.channel)
		}
		var plan strings.Builder
		err := pgx.BeginFunc(ctx, a.pool, func(tx pgx.Tx) error { // EXPLAIN ANALYZE runs it: roll it back
			rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF) "+a.sql.q(stmt), args...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var line string
				if err := rows.Scan(&line); err != nil {
					return err
				}
				plan.WriteString(line + "\n")
			}
			if err := rows.Err(); err != nil {
				return err
			}
			return pgx.ErrTxClosed // any error: roll back
		})
		if err != pgx.ErrTxClosed {
			t.Fatal(err)
		}
		p := plan.String()
		if !strings.Contains(p, "Conflicting Tuples: 17") {
			t.Errorf("%s: want 17 conflicts (the even keys of available jobs):\n%s", name, p)
		}
		if strings.Count(p, "tasq_jobs_unique_idx") < 3 {
			t.Errorf("%s: the plan does not look holders up in tasq_jobs_unique_idx (rep and held):\n%s", name, p)
		}
		for _, bad := range []string{"Seq Scan on tasq_jobs", "Bitmap Heap Scan on tasq_jobs"} {
			if strings.Contains(p, bad) {
				t.Errorf("%s: the plan has %q:\n%s", name, bad, p)
			}
		}
	}
}
