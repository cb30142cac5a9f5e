package integration

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
)

func TestMigrationsUpDownVersion(t *testing.T) {
	ctx := context.Background()
	dsn := testpg.NewEmptyDatabase(t)
	if _, _, err := migrations.Version(ctx, dsn); !errors.Is(err, migrations.ErrNoVersion) {
		t.Fatalf("Version on an empty database: %v, want ErrNoVersion", err)
	}
	// An adapter on an unmigrated database says what to do.
	_, err := postgres.New(ctx, dsn)
	if !errors.Is(err, queue.ErrNotMigrated) || !strings.Contains(err.Error(), "tasq migrate up") {
		t.Fatalf("postgres.New before migrating: %v; want ErrNotMigrated naming `tasq migrate up`", err)
	}
	for range 2 { // Up is idempotent
		if err := migrations.Up(ctx, dsn); err != nil {
			t.Fatal(err)
		}
	}
	v, dirty, err := migrations.Version(ctx, dsn)
	if err != nil || v != migrations.Latest || dirty {
		t.Fatalf("Version = %d dirty=%v err=%v, want %d clean", v, dirty, err, migrations.Latest)
	}
	a, err := postgres.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := migrations.Down(ctx, dsn); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var exists bool
	_ = conn.QueryRow(ctx, `SELECT to_regclass('tasq_jobs') IS NOT NULL`).Scan(&exists)
	if exists {
		t.Error("tasq_jobs still exists after Down")
	}
	// A live adapter whose table vanished reports ErrNotMigrated, not a raw SQL error.
	c, _ := queue.NewClient(a)
	if _, err := c.Dispatch(ctx, &SendEmail{To: "x"}); !errors.Is(err, queue.ErrNotMigrated) {
		t.Errorf("dispatch after Down: %v, want ErrNotMigrated", err)
	}
	if err := migrations.Up(ctx, dsn); err != nil {
		t.Fatalf("Up after Down: %v", err)
	}
}

func TestUnreachableDatabaseSaysWhere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := postgres.New(ctx, "postgres://nobody@127.0.0.1:1/nowhere?connect_timeout=2")
	if err == nil || !strings.Contains(err.Error(), "cannot reach PostgreSQL at 127.0.0.1:1") || !strings.Contains(err.Error(), "TASQ_DATABASE_URL") {
		t.Errorf("err = %v; want it to name the address and TASQ_DATABASE_URL", err)
	}
	if _, err := postgres.New(ctx, ""); err == nil || !strings.Contains(err.Error(), "TASQ_DATABASE_URL") {
		t.Errorf("empty URL: %v", err)
	}
	if _, err := postgres.New(ctx, "postgres://%zz"); err == nil || !strings.Contains(err.Error(), "cannot parse") {
		t.Errorf("bad URL: %v", err)
	}
	if err := migrations.Up(ctx, "postgres://nobody@127.0.0.1:1/nowhere?connect_timeout=2"); err == nil || !strings.Contains(err.Error(), "cannot reach database") {
		t.Errorf("migrate against nothing: %v", err)
	}
	if _, err := queue.OpenAdapter(ctx, "nosuch", ""); !errors.Is(err, queue.ErrUnknownDriver) {
		t.Errorf("OpenAdapter(nosuch): %v", err)
	}
}

func TestOpenAdapterByName(t *testing.T) {
	e := newEnv(t)
	a, err := queue.OpenAdapter(e.ctx, "postgres", e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Name() != "postgres" {
		t.Errorf("name %q", a.Name())
	}
}

// A URL carrying pgxpool settings (pool_max_conns) works for migrations as it
// does for the adapter; the server would reject the setting as a parameter.
func TestMigrationsAcceptPoolSettingsInTheURL(t *testing.T) {
	ctx := context.Background()
	dsn := testpg.NewEmptyDatabase(t)
	if strings.Contains(dsn, "?") {
		dsn += "&pool_max_conns=7"
	} else { // a TASQ_DATABASE_URL without parameters
		dsn += "?pool_max_conns=7"
	}
	if err := migrations.Up(ctx, dsn); err != nil {
		t.Fatalf("Up with pool_max_conns: %v", err)
	}
	a, err := postgres.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := a.Pool().Config().MaxConns; got != 7 {
		t.Errorf("pool size %d, want 7", got)
	}
}
