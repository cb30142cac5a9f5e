package migrations

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"
	"time"

	gomysql "github.com/go-sql-driver/mysql"
	"github.com/golang-migrate/migrate/v4"
	mysqlmigrate "github.com/golang-migrate/migrate/v4/database/mysql"
	"github.com/golang-migrate/migrate/v4/source/iofs"
)

// The MySQL 8 / MariaDB 10.6+ schema lives in mysql/. It creates the same
// tasq_jobs table as the PostgreSQL schema, with the type differences listed
// at the top of mysql/000001_create_tasq_jobs.up.sql. MySQL runs DDL outside
// transactions: a migration that fails halfway leaves the schema dirty
// (VersionMySQL reports it), to be repaired by hand.
//
//go:embed mysql/*.sql
var mysqlFS embed.FS

// EnvMySQLURL names the environment variable TasQ's tests and tools read a
// MySQL DSN from.
const EnvMySQLURL = "TASQ_MYSQL_URL"

// UpMySQL applies every pending MySQL migration to the database named by dsn,
// a go-sql-driver/mysql DSN such as user:pass@tcp(127.0.0.1:3306)/app
// (optionally prefixed with mysql://). It is safe to call when the schema is
// already current.
func UpMySQL(ctx context.Context, dsn string) error {
	return runMySQL(ctx, dsn, "up", func(m *migrate.Migrate) error { return m.Up() })
}

// DownMySQL rolls back every MySQL migration, dropping tasq_jobs and its data.
func DownMySQL(ctx context.Context, dsn string) error {
	return runMySQL(ctx, dsn, "down", func(m *migrate.Migrate) error { return m.Down() })
}

// StepsMySQL applies n MySQL migrations forward (n > 0) or rolls back -n (n < 0).
func StepsMySQL(ctx context.Context, dsn string, n int) error {
	if n == 0 {
		return errors.New("tasq: migrate steps: n must not be zero")
	}
	return runMySQL(ctx, dsn, fmt.Sprintf("steps %d", n), func(m *migrate.Migrate) error { return m.Steps(n) })
}

// VersionMySQL reports the applied MySQL schema version and whether a failed
// migration left it dirty. It returns ErrNoVersion when nothing has been
// applied.
func VersionMySQL(ctx context.Context, dsn string) (version uint, dirty bool, err error) {
	err = runMySQL(ctx, dsn, "version", readVersion(&version, &dirty))
	return version, dirty, err
}

// mysqlConfig parses dsn for migrating: the database must be named, and a
// migration file may hold several statements.
func mysqlConfig(dsn string) (*gomysql.Config, error) {
	if dsn == "" {
		return nil, fmt.Errorf("empty MySQL DSN; set %s or pass --database-url, e.g. user:pass@tcp(127.0.0.1:3306)/app", EnvMySQLURL)
	}
	cfg, err := gomysql.ParseDSN(strings.TrimPrefix(dsn, "mysql://"))
	if err != nil {
		return nil, fmt.Errorf("parse the MySQL DSN: %w; use the go-sql-driver form user:pass@tcp(host:3306)/dbname", err)
	}
	if cfg.DBName == "" {
		return nil, fmt.Errorf("the MySQL DSN names no database; add it after the slash, e.g. user:pass@tcp(%s)/app", cfg.Addr)
	}
	cfg.MultiStatements = true
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return cfg, nil
}

func runMySQL(ctx context.Context, dsn, what string, fn func(*migrate.Migrate) error) error {
	cfg, err := mysqlConfig(dsn)
	if err != nil {
		return fmt.Errorf("tasq: migrate %s: %w", what, err)
	}
	conn, err := gomysql.NewConnector(cfg)
	if err != nil {
		return fmt.Errorf("tasq: migrate %s: %w", what, err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("tasq: migrate %s: cannot reach MySQL at %s (database %q): %w; check %s and that the server is running",
			what, cfg.Addr, cfg.DBName, err, EnvMySQLURL)
	}
	src, err := iofs.New(mysqlFS, "mysql")
	if err != nil {
		return fmt.Errorf("tasq: migrate %s: read embedded migrations: %w", what, err)
	}
	drv, err := mysqlmigrate.WithInstance(db, &mysqlmigrate.Config{MigrationsTable: MigrationsTable, DatabaseName: cfg.DBName})
	if err != nil {
		return fmt.Errorf("tasq: migrate %s: MySQL database %q at %s: %w", what, cfg.DBName, cfg.Addr, err)
	}
	m, err := migrate.NewWithInstance("iofs", src, "mysql", drv)
	if err != nil {
		return fmt.Errorf("tasq: migrate %s: %w", what, err)
	}
	defer m.Close()
	return execute(ctx, m, what, fn)
}
