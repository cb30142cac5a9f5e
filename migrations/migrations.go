// Package migrations holds TasQ's database schema as golang-migrate SQL files,
// embedded in the binary, with helpers to apply and roll them back.
//
// The PostgreSQL schema lives in postgres/. Applying it creates the tasq_jobs
// table documented in the README; golang-migrate records the applied version in
// the tasq_schema_migrations table, so TasQ's migrations never collide with the
// application's own.
//
// The tables go into the PostgreSQL schema "public" unless WithSchema, or the
// URL parameter tasq_schema, names another: two apps can share a database,
// each with TasQ in a schema of its own, migrated separately (the adapter
// takes the same setting; see postgres.WithSchema).
package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	pgxmigrate "github.com/golang-migrate/migrate/v4/database/pgx/v5"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/tasqhq/tasq/adapters/postgres/pgschema"
)

//go:embed postgres/*.sql
var postgresFS embed.FS

// MigrationsTable is the table in which golang-migrate records the applied version.
const MigrationsTable = "tasq_schema_migrations"

// Latest is the newest PostgreSQL schema version shipped in this build.
const Latest uint = 12

// LatestMySQL is the newest MySQL/MariaDB schema version shipped in this build.
const LatestMySQL uint = 2

// ErrNoVersion is returned by Version when no migration has been applied yet.
var ErrNoVersion = errors.New("tasq: no migration applied yet; run `tasq migrate up`")

// Option changes how the PostgreSQL migrations run.
type Option func(*options)

type options struct {
	schema string
}

// WithSchema applies the migrations in PostgreSQL schema name (created when
// missing) instead of "public", or of the URL parameter tasq_schema. The
// name follows pgschema.Check. Down drops TasQ's objects from the
// schema but not the schema itself.
func WithSchema(name string) Option { return func(o *options) { o.schema = name } }

// Up applies every pending PostgreSQL migration to the database at dsn.
// It is safe to call when the schema is already current.
func Up(ctx context.Context, dsn string, opts ...Option) error {
	return run(ctx, dsn, "up", true, opts, func(m *migrate.Migrate) error { return m.Up() })
}

// Down rolls back every PostgreSQL migration, dropping tasq_jobs and its data.
func Down(ctx context.Context, dsn string, opts ...Option) error {
	return run(ctx, dsn, "down", false, opts, func(m *migrate.Migrate) error { return m.Down() })
}

// Steps applies n migrations forward (n > 0) or rolls back -n (n < 0).
func Steps(ctx context.Context, dsn string, n int, opts ...Option) error {
	if n == 0 {
		return errors.New("tasq: migrate steps: n must not be zero")
	}
	return run(ctx, dsn, fmt.Sprintf("steps %d", n), n > 0, opts, func(m *migrate.Migrate) error { return m.Steps(n) })
}

// Version reports the applied schema version and whether a failed migration left
// the schema dirty. It returns ErrNoVersion when nothing has been applied.
func Version(ctx context.Context, dsn string, opts ...Option) (version uint, dirty bool, err error) {
	err = run(ctx, dsn, "version", false, opts, readVersion(&version, &dirty))
	return version, dirty, err
}

// run opens the database at dsn with search_path set to the TasQ schema and
// runs fn on a migrator there. create says whether the schema is created
// when missing (migrating up); otherwise a missing schema has nothing
// applied.
func run(ctx context.Context, dsn, what string, create bool, opts []Option, fn func(*migrate.Migrate) error) error {
	if dsn == "" {
		return errors.New("tasq: migrate " + what + ": empty database URL; set TASQ_DATABASE_URL or pass --database-url")
	}
	// pgxpool's parser understands (and removes) pool settings such as
	// pool_max_conns, which the server itself would reject.
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("tasq: migrate %s: cannot parse database URL: %w", what, err)
	}
	var o options
	takeParams(cfg.ConnConfig.RuntimeParams, &o)
	for _, opt := range opts {
		opt(&o)
	}
	if o.schema == "" {
		o.schema = pgschema.Default
	}
	if err := pgschema.Check(o.schema); err != nil {
		return fmt.Errorf("tasq: migrate %s: %w", what, err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = o.schema
	db := stdlib.OpenDB(*cfg.ConnConfig)
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("tasq: migrate %s: cannot reach database: %w", what, err)
	}
	var exists bool
	if err := db.QueryRowContext(ctx, `SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)`, o.schema).Scan(&exists); err != nil {
		return fmt.Errorf("tasq: migrate %s: look for schema %q: %w", what, o.schema, err)
	}
	switch {
	case !exists && !create:
		if what == "version" {
			return ErrNoVersion
		}
		return nil // nothing was ever applied there
	case !exists:
		if _, err := db.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{o.schema}.Sanitize()); err != nil {
			return fmt.Errorf("tasq: migrate %s: create schema %q: %w", what, o.schema, err)
		}
	}
	src, err := iofs.New(postgresFS, "postgres")
	if err != nil {
		return fmt.Errorf("tasq: migrate %s: read embedded migrations: %w", what, err)
	}
	drv, err := pgxmigrate.WithInstance(db, &pgxmigrate.Config{MigrationsTable: MigrationsTable})
	if err != nil {
		return fmt.Errorf("tasq: migrate %s: %w", what, err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "pgx5", drv)
	if err != nil {
		return fmt.Errorf("tasq: migrate %s: %w", what, err)
	}
	defer m.Close()
	return execute(ctx, m, what, fn)
}

// takeParams removes TasQ's own URL parameters from params (a pgx config's
// RuntimeParams, which would otherwise be sent to the server as settings):
// the schema goes into o; the adapter's others (tasq_pooler, ...) mean
// nothing to a migration, so one URL serves both.
func takeParams(params map[string]string, o *options) {
	for k, v := range params {
		if !strings.HasPrefix(strings.ToLower(k), "tasq_") {
			continue
		}
		delete(params, k)
		if k == pgschema.Param {
			o.schema = v
		}
	}
}

// execute runs fn on m, stopping it when ctx is done (golang-migrate takes no
// context), and counts "no change" as success.
func execute(ctx context.Context, m *migrate.Migrate, what string, fn func(*migrate.Migrate) error) error {
	stop := context.AfterFunc(ctx, func() {
		select {
		case m.GracefulStop <- true:
		default:
		}
	})
	defer stop()
	if err := fn(m); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		if errors.Is(err, ErrNoVersion) {
			return err
		}
		return fmt.Errorf("tasq: migrate %s: %w", what, err)
	}
	return nil
}

// readVersion returns an fn for execute that stores m's version in version
// and dirty, reporting ErrNoVersion when nothing has been applied.
func readVersion(version *uint, dirty *bool) func(*migrate.Migrate) error {
	return func(m *migrate.Migrate) error {
		var err error
		*version, *dirty, err = m.Version()
		if errors.Is(err, migrate.ErrNilVersion) {
			return ErrNoVersion
		}
		return err
	}
}
