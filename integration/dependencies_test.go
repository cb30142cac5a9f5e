package integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/tasqtest"
	"github.com/tasqhq/tasq/worker"
)

// rendezvous holds every arriving execution until n are running at once.
type rendezvous struct {
	n       int
	mu      sync.Mutex
	arrived []*Deliver
	all     chan struct{} // closed when n arrived
}

func (r *rendezvous) arrive(ctx context.Context, d *Deliver) error {
	r.mu.Lock()
	r.arrived = append(r.arrived, d)
	if len(r.arrived) == r.n {
		close(r.all)
	}
	r.mu.Unlock()
	select {
	case <-r.all:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for %d executions at once: %w", r.n, ctx.Err())
	}
}

// Deliver is built by a factory: db and meet are its dependencies, the
// exported fields its payload.
type Deliver struct {
	queue.TaskBase
	To   string
	Body string

	db   *pgxpool.Pool
	meet *rendezvous
}

func (*Deliver) Config() queue.Config {
	return queue.Config{Queue: "deliveries", Timeout: 30 * time.Second, MaxRetries: queue.NoRetries}
}

func (t *Deliver) Handle(ctx context.Context) (string, error) {
	if t.meet != nil {
		if err := t.meet.arrive(ctx, t); err != nil {
			return "", err
		}
	}
	// The injected pool writes the payload and metadata this execution saw:
	// a value shared with another execution would show the other's fields.
	if _, err := t.db.Exec(ctx, `INSERT INTO deliveries (job_id, recipient, body) VALUES ($1, $2, $3)`, t.ID(), t.To, t.Body); err != nil {
		return "", err
	}
	return "delivered to " + t.To, nil
}

// A worker runs factory-built tasks against PostgreSQL: each execution has
// its own value with the injected pool, concurrent executions never share
// one, the payload stays the exported fields, and a factory that
// misbehaves fails its one job while the worker goes on.
func TestWorkerRunsFactoryBuiltTasks(t *testing.T) {
	e := newEnv(t)
	if _, err := e.pool.Exec(e.ctx, `CREATE TABLE deliveries (job_id uuid PRIMARY KEY, recipient text NOT NULL, body text NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	const n = 8
	meet := &rendezvous{n: n, all: make(chan struct{})}
	var mode atomic.Value // "meet", "plain" or "broken"
	mode.Store("meet")
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *Deliver {
		switch mode.Load() {
		case "broken":
			return nil
		case "meet":
			return &Deliver{db: e.pool, meet: meet}
		}
		return &Deliver{db: e.pool}
	})

	var ids []uuid.UUID
	for i := range n {
		id, err := e.client.Dispatch(e.ctx, &Deliver{To: fmt.Sprintf("user%d@example.com", i), Body: fmt.Sprintf("body %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	e.startWorker(reg, worker.Config{Queues: []string{"deliveries"}, Concurrency: n})
	for i, id := range ids {
		j := e.waitState(id, queue.StateCompleted, 60*time.Second)
		if want := fmt.Sprintf("%q", fmt.Sprintf("delivered to user%d@example.com", i)); string(j.Result) != want {
			t.Errorf("job %d result %s, want %s", i, j.Result, want)
		}
		var payload map[string]any
		mustJSON(t, j.Payload, &payload)
		if len(payload) != 2 || payload["To"] != fmt.Sprintf("user%d@example.com", i) {
			t.Errorf("job %d payload %s, want exactly the exported fields To and Body", i, j.Payload)
		}
	}
	meet.mu.Lock()
	distinct := map[*Deliver]bool{}
	for _, d := range meet.arrived {
		distinct[d] = true
	}
	meet.mu.Unlock()
	if len(distinct) != n {
		t.Errorf("%d executions running at once had %d distinct task values", n, len(distinct))
	}
	rows, err := e.pool.Query(e.ctx, `SELECT job_id, recipient, body FROM deliveries`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[uuid.UUID]string{}
	for rows.Next() {
		var id uuid.UUID
		var to, body string
		if err := rows.Scan(&id, &to, &body); err != nil {
			t.Fatal(err)
		}
		got[id] = to + "|" + body
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if want := fmt.Sprintf("user%d@example.com|body %d", i, i); got[id] != want {
			t.Errorf("job %d wrote %q, want %q: its execution saw another's fields or metadata", i, got[id], want)
		}
	}

	// A factory that misbehaves fails its job, with the reason; the next
	// job runs.
	mode.Store("broken")
	bad, err := e.client.Dispatch(e.ctx, &Deliver{To: "nobody@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	j := e.waitState(bad, queue.StateFailed, 60*time.Second)
	if !strings.Contains(j.LastError(), "tasq: task factory misbehaved: Deliver: the factory returned a nil *integration.Deliver") {
		t.Errorf("failed job's error %q, want the factory's fault", j.LastError())
	}
	mode.Store("plain")
	good, err := e.client.Dispatch(e.ctx, &Deliver{To: "after@example.com", Body: "still running"})
	if err != nil {
		t.Fatal(err)
	}
	e.waitState(good, queue.StateCompleted, 60*time.Second)

	// tasqtest's assertions read the same jobs back from PostgreSQL.
	tasqtest.AssertDispatchedCount[*Deliver](t, e.adapter, n+2, nil)
	tasqtest.AssertDispatched(t, e.adapter, func(d *Deliver) bool { return d.To == "after@example.com" && d.Body == "still running" })
	if res := tasqtest.Result[string](t, e.adapter, good); res != "delivered to after@example.com" {
		t.Errorf("Result from PostgreSQL = %q", res)
	}
}
