package integration

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// Job dependencies (queue.After) end to end: the README's fan-out/fan-in,
// resizing images and then building the album, with a real worker.

const depsLogSQL = `CREATE TABLE deps_log (
    job     uuid PRIMARY KEY,
    kind    text NOT NULL,
    started timestamptz NOT NULL,
    ended   timestamptz)`

// logRun records a run of job id in deps_log: its start now, its end when
// done is called.
func logRun(ctx context.Context, db *pgxpool.Pool, id uuid.UUID, kind string) (done func() error, err error) {
	if _, err := db.Exec(ctx, `INSERT INTO deps_log (job, kind, started) VALUES ($1, $2, clock_timestamp())`, id, kind); err != nil {
		return nil, err
	}
	return func() error {
		_, err := db.Exec(ctx, `UPDATE deps_log SET ended = clock_timestamp() WHERE job = $1`, id)
		return err
	}, nil
}

// ResizeImage is one image of the fan-out; Fail makes it fail for good.
type ResizeImage struct {
	queue.TaskBase
	Image string
	Fail  bool

	db *pgxpool.Pool
}

func (*ResizeImage) Config() queue.Config {
	return queue.Config{Queue: "images", MaxRetries: queue.NoRetries}
}

func (t *ResizeImage) Handle(ctx context.Context) (string, error) {
	done, err := logRun(ctx, t.db, t.Metadata().ID, "resize")
	if err != nil {
		return "", err
	}
	time.Sleep(20 * time.Millisecond) // some work, so that runs overlap
	if t.Fail {
		return "", queue.Permanent(errors.New("corrupt image " + t.Image))
	}
	return "small-" + t.Image, done()
}

// BuildAlbum is the fan-in: it runs after every ResizeImage.
type BuildAlbum struct {
	queue.TaskBase
	Images int

	db *pgxpool.Pool
}

func (*BuildAlbum) Config() queue.Config { return queue.Config{Queue: "albums"} }

func (t *BuildAlbum) Handle(ctx context.Context) (string, error) {
	done, err := logRun(ctx, t.db, t.Metadata().ID, "album")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("album of %d", t.Images), done()
}

func depsEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	if _, err := e.pool.Exec(e.ctx, depsLogSQL); err != nil {
		t.Fatal(err)
	}
	reg := queue.NewRegistry()
	queue.MustRegisterFactory(reg, func() *ResizeImage { return &ResizeImage{db: e.pool} })
	queue.MustRegisterFactory(reg, func() *BuildAlbum { return &BuildAlbum{db: e.pool} })
	e.startWorker(reg, worker.Config{Queues: []string{"albums", "images"}, Concurrency: 8})
	return e
}

func TestDepsFanOutFanIn(t *testing.T) {
	t.Parallel()
	e := depsEnv(t)
	const n = 12
	tasks := make([]any, n)
	for i := range tasks {
		tasks[i] = &ResizeImage{Image: fmt.Sprintf("img%02d.jpg", i)}
	}
	// The album first waits for nothing yet dispatched: dispatch the
	// resizes, then the album after them.
	resizes, err := e.client.DispatchMany(e.ctx, tasks)
	if err != nil {
		t.Fatal(err)
	}
	album, err := e.client.Dispatch(e.ctx, &BuildAlbum{Images: n}, queue.After(resizes...))
	if err != nil {
		t.Fatal(err)
	}
	res, err := queue.WaitResult[string](e.ctx, e.client, album)
	if err != nil {
		t.Fatalf("Wait for the album: %v", err)
	}
	if res != "album of 12" {
		t.Fatalf("album result %q", res)
	}
	// In SQL: every resize ended before the album started, and all are
	// completed.
	var resized, early int
	err = e.pool.QueryRow(e.ctx, `
SELECT count(*) FILTER (WHERE r.kind = 'resize' AND r.ended IS NOT NULL),
       count(*) FILTER (WHERE r.kind = 'resize' AND (r.ended IS NULL OR r.ended > a.started))
FROM deps_log AS r, deps_log AS a WHERE a.job = $1`, album).Scan(&resized, &early)
	if err != nil {
		t.Fatal(err)
	}
	if resized != n || early != 0 {
		t.Fatalf("%d resizes ended, %d of them after the album started; want %d and 0", resized, early, n)
	}
	var states string
	if err := e.pool.QueryRow(e.ctx, `SELECT string_agg(DISTINCT state::text, ',') FROM tasq_jobs`).Scan(&states); err != nil || states != "completed" {
		t.Fatalf("job states %q, %v; want all completed", states, err)
	}
}

// A resize that fails for good cancels the album (DepCancel), or lets it
// run anyway (DepRun).
func TestDepsFanInFailure(t *testing.T) {
	t.Parallel()
	e := depsEnv(t)
	resizes, err := e.client.DispatchMany(e.ctx, []any{&ResizeImage{Image: "a.jpg"}, &ResizeImage{Image: "b.jpg", Fail: true}})
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := e.client.Dispatch(e.ctx, &BuildAlbum{Images: 2}, queue.After(resizes...))
	if err != nil {
		t.Fatal(err)
	}
	anyway, err := e.client.Dispatch(e.ctx, &BuildAlbum{Images: 1}, queue.After(resizes...), queue.AfterPolicy(queue.DepRun))
	if err != nil {
		t.Fatal(err)
	}
	var we *queue.WaitError
	if _, err := e.client.Wait(e.ctx, cancelled); !errors.As(err, &we) || we.State != queue.StateCancelled {
		t.Fatalf("Wait for the album under DepCancel: %v; want cancelled", err)
	}
	if res, err := queue.WaitResult[string](e.ctx, e.client, anyway); err != nil || res != "album of 1" {
		t.Fatalf("album under DepRun: %q, %v", res, err)
	}
	var ran int
	if err := e.pool.QueryRow(e.ctx, `SELECT count(*) FROM deps_log WHERE job = $1`, cancelled).Scan(&ran); err != nil || ran != 0 {
		t.Fatalf("the cancelled album ran %d times (%v)", ran, err)
	}
}
