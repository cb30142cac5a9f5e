package postgres_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/adapters/adaptertest"
	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/adapters/postgres/pgschema"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
)

// schemaDatabase returns an empty database in which TasQ is migrated into
// each of schemas and nowhere else: public holds no TasQ table, so any
// statement that does not name its schema fails.
func schemaDatabase(t *testing.T, schemas ...string) string {
	t.Helper()
	dsn := testpg.NewEmptyDatabase(t)
	for _, s := range schemas {
		if err := migrations.Up(context.Background(), dsn, migrations.WithSchema(s)); err != nil {
			t.Fatalf("migrate schema %s: %v", s, err)
		}
	}
	return dsn
}

// withParam returns dsn with the URL parameter k=v added.
func withParam(t *testing.T, dsn, k, v string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set(k, v)
	u.RawQuery = q.Encode()
	return u.String()
}

// TestSchemaConformance runs the whole conformance suite on an adapter
// whose tables live in a schema of their own, in a database whose public
// schema has none, with connections whose search_path is the default: every
// statement the adapter sends, InsertTx in the caller's transaction
// included, must name the schema.
func TestSchemaConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		New: func(t *testing.T) queue.Adapter {
			dsn := schemaDatabase(t, "app_conf")
			a, err := postgres.New(context.Background(), dsn, postgres.WithSchema("app_conf"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Close)
			return a
		},
		Tx: func(t *testing.T, a queue.Adapter) (any, func() error, func() error) {
			ctx := context.Background()
			tx, err := a.(*postgres.Adapter).Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return tx, func() error { return tx.Commit(ctx) }, func() error { return tx.Rollback(ctx) }
		},
	})
}

// TestSchemasShareADatabase: two apps in one database, each in its own
// schema, see only their own jobs and wake only their own workers.
func TestSchemasShareADatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := schemaDatabase(t, "app_a", "app_b")
	a, err := postgres.New(ctx, dsn, postgres.WithSchema("app_a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	// The URL parameter sets the schema as the option does.
	b, err := postgres.New(ctx, withParam(t, dsn, postgres.ParamSchema, "app_b"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if got := b.Setup(); got.Schema != "app_b" || got.Channel != "tasq_jobs.app_b" {
		t.Fatalf("b.Setup() schema %q channel %q; want app_b, tasq_jobs.app_b", got.Schema, got.Channel)
	}

	subCtx, stop := context.WithCancel(ctx)
	defer stop()
	wakeA, err := a.Subscribe(subCtx)
	if err != nil {
		t.Fatal(err)
	}
	wakeB, err := b.Subscribe(subCtx)
	if err != nil {
		t.Fatal(err)
	}

	idA, idB := uuid.New(), uuid.New()
	if err := a.Insert(ctx, []queue.NewJob{{ID: idA, Kind: "K", Queue: "only_a", Payload: []byte(`{}`), MaxRetries: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Insert(ctx, []queue.NewJob{{ID: idB, Kind: "K", Queue: "only_b", Payload: []byte(`{}`), MaxRetries: 1}}); err != nil {
		t.Fatal(err)
	}
	// Each subscriber hears its own queue; the other app's wake-up never
	// reaches it (a wrong one would arrive before the right one, since both
	// inserts committed before this point and a notifies first).
	expectWake(t, wakeA, "only_a")
	expectWake(t, wakeB, "only_b")

	for _, c := range []struct {
		name       string
		ad         *postgres.Adapter
		own, other uuid.UUID
		queue      string
	}{{"app_a", a, idA, idB, "only_a"}, {"app_b", b, idB, idA, "only_b"}} {
		if _, err := c.ad.GetJob(ctx, c.other); !errors.Is(err, queue.ErrJobNotFound) {
			t.Errorf("%s: GetJob of the other app's job: %v; want ErrJobNotFound", c.name, err)
		}
		jobs, err := c.ad.ListJobs(ctx, queue.ListFilter{})
		if err != nil || len(jobs) != 1 || jobs[0].ID != c.own {
			t.Errorf("%s: ListJobs = %d jobs, %v; want only its own", c.name, len(jobs), err)
		}
		stats, err := c.ad.Stats(ctx)
		if err != nil || len(stats) != 1 || stats[0].Queue != c.queue {
			t.Errorf("%s: Stats = %+v, %v; want only queue %s", c.name, stats, err, c.queue)
		}
		// The other app's queue has nothing for this one.
		other := "only_b"
		if c.queue == other {
			other = "only_a"
		}
		got, err := c.ad.Claim(ctx, queue.ClaimRequest{Queue: other, WorkerID: "w", Limit: 10, Lease: time.Minute})
		if err != nil || len(got) != 0 {
			t.Errorf("%s: claim from queue %s = %d jobs, %v; want none", c.name, other, len(got), err)
		}
		got, err = c.ad.Claim(ctx, queue.ClaimRequest{Queue: c.queue, WorkerID: "w", Limit: 10, Lease: time.Minute})
		if err != nil || len(got) != 1 || got[0].ID != c.own {
			t.Fatalf("%s: claim = %d jobs, %v; want its own job", c.name, len(got), err)
		}
		if n, err := c.ad.Finish(ctx, "w", []queue.Outcome{queue.Completed(got[0], nil)}); err != nil || n != 1 {
			t.Fatalf("%s: finish = %d, %v", c.name, n, err)
		}
	}

	// tasq_dispatch() in a schema notifies that schema's channel.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var channel string
	if err := conn.QueryRow(ctx, `SELECT app_b.tasq_channel()`).Scan(&channel); err != nil || channel != postgres.ChannelFor("app_b") {
		t.Fatalf("app_b.tasq_channel() = %q, %v; want %q", channel, err, postgres.ChannelFor("app_b"))
	}
	var id uuid.UUID
	if err := conn.QueryRow(ctx, `SELECT app_b.tasq_dispatch('K', queue => 'sql_b')`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	expectWake(t, wakeB, "sql_b")
	if _, err := b.GetJob(ctx, id); err != nil {
		t.Fatalf("b.GetJob(%s) after tasq_dispatch in app_b: %v", id, err)
	}
	if _, err := a.GetJob(ctx, id); !errors.Is(err, queue.ErrJobNotFound) {
		t.Fatalf("a.GetJob(%s) of app_b's SQL dispatch: %v; want ErrJobNotFound", id, err)
	}
	select {
	case q := <-wakeA:
		t.Fatalf("app_a's subscriber woke for %q: another schema's dispatch", q)
	default:
	}
}

// expectWake waits for the subscriber to deliver queue q.
//
// Wake-ups for the queues in ignore are skipped: a plain dispatch wakes its
// queue after its commit, from the adapter's waker goroutine, so under load
// that wake-up can arrive after a subscription the test made later.
func expectWake(t *testing.T, wake <-chan string, q string, ignore ...string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-wake:
			if got == q {
				return
			}
			if got != "" && !slices.Contains(ignore, got) { // "" is "look at every queue", sent after a reconnect
				t.Fatalf("woken for queue %q, want %q", got, q)
			}
		case <-timeout:
			t.Fatalf("no wake-up for queue %q within 10s", q)
		}
	}
}

// TestSchemaBadInput: a bad schema name, or a schema that was never
// migrated, is refused with a reason before anything runs.
func TestSchemaBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := schemaDatabase(t, "app_ok")
	for _, c := range []struct{ schema, want string }{
		{"Billing", "lower-case"},
		{"9lives", "not starting with a digit"},
		{"a-b", "lower-case"},
		{`x"; DROP TABLE y; --`, "lower-case"},
		{"pg_tasq", "belongs to PostgreSQL"},
		{strings.Repeat("s", pgschema.MaxLength+1), "the limit is"},
	} {
		_, err := postgres.New(ctx, dsn, postgres.WithSchema(c.schema))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New with schema %q: %v; want an error saying %q", c.schema, err, c.want)
		}
		err = migrations.Up(ctx, dsn, migrations.WithSchema(c.schema))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("migrations.Up with schema %q: %v; want an error saying %q", c.schema, err, c.want)
		}
	}
	if _, err := postgres.New(ctx, withParam(t, dsn, postgres.ParamSchema, "Bad")); err == nil || !strings.Contains(err.Error(), "lower-case") {
		t.Errorf("New with %s=Bad: %v; want the name refused", postgres.ParamSchema, err)
	}
	// The longest name accepted works end to end (its channel fits).
	long := strings.Repeat("s", pgschema.MaxLength)
	if err := migrations.Up(ctx, dsn, migrations.WithSchema(long)); err != nil {
		t.Fatalf("migrate a %d-byte schema name: %v", len(long), err)
	}
	if a, err := postgres.New(ctx, dsn, postgres.WithSchema(long)); err != nil {
		t.Errorf("New with a %d-byte schema name: %v", len(long), err)
	} else {
		a.Close()
	}
	// Public has no TasQ tables in this database, and app_none was never made.
	for _, s := range []string{"", "app_none"} {
		var opts []postgres.Option
		if s != "" {
			opts = append(opts, postgres.WithSchema(s))
		}
		_, err := postgres.New(ctx, dsn, opts...)
		if !errors.Is(err, queue.ErrNotMigrated) {
			t.Errorf("New on schema %q: %v; want ErrNotMigrated", s, err)
		}
	}
}

// TestSchemaMigrationsAreSeparate: each schema has its own version, and
// rolling one back leaves the others as they were.
func TestSchemaMigrationsAreSeparate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := schemaDatabase(t, "app_a", "app_b")
	if _, _, err := migrations.Version(ctx, dsn); !errors.Is(err, migrations.ErrNoVersion) {
		t.Fatalf("public's version: %v; want ErrNoVersion", err)
	}
	if _, _, err := migrations.Version(ctx, dsn, migrations.WithSchema("app_none")); !errors.Is(err, migrations.ErrNoVersion) {
		t.Fatalf("a missing schema's version: %v; want ErrNoVersion", err)
	}
	// Down to version 5, the last before schemas had channels of their own.
	if err := migrations.Steps(ctx, dsn, 5-int(migrations.Latest), migrations.WithSchema("app_a")); err != nil {
		t.Fatal(err)
	}
	if v, _, err := migrations.Version(ctx, withParam(t, dsn, postgres.ParamSchema, "app_a")); err != nil || v != 5 {
		t.Fatalf("app_a after stepping down: version %d, %v; want 5", v, err)
	}
	if v, _, err := migrations.Version(ctx, dsn, migrations.WithSchema("app_b")); err != nil || v != migrations.Latest {
		t.Fatalf("app_b: version %d, %v; want %d", v, err, migrations.Latest)
	}
	// Migration 6 down puts back the fixed channel in app_a's tasq_dispatch
	// only; up again restores the schema's own.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	notifies := func(schema string) string {
		var def string
		if err := conn.QueryRow(ctx, `SELECT pg_get_functiondef(to_regprocedure($1 || '.tasq_dispatch(text, jsonb, text, timestamptz, integer, integer, interval, interval, uuid)'))`, schema).Scan(&def); err != nil {
			t.Fatal(err)
		}
		i := strings.Index(def, "pg_notify(")
		if i < 0 {
			t.Fatalf("%s.tasq_dispatch has no pg_notify:\n%s", schema, def)
		}
		return def[i : i+strings.Index(def[i:], ")")+1]
	}
	if got := notifies("app_a"); got != "pg_notify('tasq_jobs', tasq_dispatch.queue)" {
		t.Errorf("app_a at version 5 notifies with %s", got)
	}
	if got := notifies("app_b"); got != "pg_notify(tasq_channel()" {
		t.Errorf("app_b notifies with %s", got)
	}
	if err := migrations.Up(ctx, dsn, migrations.WithSchema("app_a")); err != nil {
		t.Fatal(err)
	}
	if got := notifies("app_a"); got != "pg_notify(tasq_channel()" {
		t.Errorf("app_a back at version 6 notifies with %s", got)
	}
	if err := migrations.Down(ctx, dsn, migrations.WithSchema("app_a")); err != nil {
		t.Fatal(err)
	}
	var left int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = 'app_a' AND c.relname LIKE 'tasq%' AND c.relname NOT LIKE 'tasq_schema_migrations%'`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Errorf("app_a still has %d TasQ relations after migrate down", left)
	}
	b, err := postgres.New(ctx, dsn, postgres.WithSchema("app_b"))
	if err != nil {
		t.Fatalf("app_b after app_a was rolled back: %v", err)
	}
	b.Close()
}
