package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/migrations"
)

// ErrNoSchema is returned by `tasq migrate down` on a backend without a
// schema (redis, sqs): there is nothing to roll back.
var ErrNoSchema = errors.New("the backend has no schema to roll back")

// schema is how migrate manages one SQL backend's schema.
type schema struct {
	up      func(ctx context.Context, dsn string) error
	down    func(ctx context.Context, dsn string) error
	version func(ctx context.Context, dsn string) (uint, bool, error)
	latest  uint // the newest version this build ships for the dialect
}

// schemaFor returns the schema of a backend that has one (postgres, mysql).
func schemaFor(driver string) (schema, bool) {
	switch driver {
	case driverPostgres:
		// The URL's tasq_schema parameter, if any, picks the PostgreSQL schema.
		return schema{
			up:      func(ctx context.Context, dsn string) error { return migrations.Up(ctx, dsn) },
			down:    func(ctx context.Context, dsn string) error { return migrations.Down(ctx, dsn) },
			version: func(ctx context.Context, dsn string) (uint, bool, error) { return migrations.Version(ctx, dsn) },
			latest:  migrations.Latest,
		}, true
	case driverMySQL:
		return schema{up: migrations.UpMySQL, down: migrations.DownMySQL, version: migrations.VersionMySQL, latest: migrations.LatestMySQL}, true
	}
	return schema{}, false
}

// noSchema says, for a backend without a schema (redis, sqs), where TasQ
// keeps its data and how to remove it by hand. ok is false for other drivers.
func noSchema(driver string) (creates, remove string, ok bool) {
	switch driver {
	case driverRedis:
		return "TasQ creates its keys as jobs are dispatched",
			"to delete TasQ's jobs, delete the keys under the adapter's prefix (the URL's ?key_prefix=, default tasq:), " +
				"e.g. redis-cli --scan --pattern 'tasq:*' | xargs redis-cli unlink", true
	case driverSQS:
		return "TasQ creates its SQS queues on first use (or, with ?require_queues=true, uses queues made by your infrastructure code)",
			"to delete TasQ's jobs, delete the SQS queues whose names start with the adapter's prefix " +
				"(the URL's ?prefix=, default tasq-), the failed-job queues (*_failed) included", true
	}
	return "", "", false
}

// migrateBackend resolves the backend and its schema. hasSchema is false
// for redis and sqs; other drivers without a known schema are an error.
func (a *app) migrateBackend() (b backend, s schema, hasSchema bool, err error) {
	b, err = a.backend()
	if err != nil {
		return b, s, false, err
	}
	if s, ok := schemaFor(b.driver); ok {
		return b, s, true, nil
	}
	if _, _, ok := noSchema(b.driver); ok {
		return b, s, false, nil
	}
	return b, s, false, fmt.Errorf("tasq migrate knows the schemas of postgres and mysql (redis and sqs need none), not of the %s driver; "+
		"apply its schema as its documentation says", b.driver)
}

// checkReachable opens the backend and closes it again, to show that the
// URL works even when there is nothing to migrate.
func checkReachable(ctx context.Context, b backend) error {
	ad, err := b.open(ctx)
	if err != nil {
		return err
	}
	ad.Close()
	return nil
}

func (a *app) migrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply, roll back or show the TasQ database schema",
		Long: `migrate manages the tasq_jobs table and its indexes on the SQL backends:
postgres (with its enum type) and mysql (MySQL 8 / MariaDB 10.6+). The applied
version is recorded in the ` + migrations.MigrationsTable + ` table, apart from the
application's own migrations.

On postgres the tables go into the schema "public", or into the one the URL's
tasq_schema parameter names (e.g. ...?tasq_schema=billing), which is created
when missing: two apps can share a database, each in a schema of its own. Give
every tasq command (and the app's adapter) the same parameter.

redis and sqs have no schema: TasQ creates their keys and queues as it uses
them. On them, migrate up and migrate version check that the server answers,
say that no migrations are needed, and succeed, so that a deployment can run
"tasq migrate up" whatever the backend. migrate down fails on them, because
there is nothing to roll back; it says how to remove TasQ's data by hand.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(a.migrateUpCommand(), a.migrateDownCommand(), a.migrateVersionCommand())
	return cmd
}

func (a *app) migrateUpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration (redis and sqs: check the server; nothing to apply)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			b, s, hasSchema, err := a.migrateBackend()
			if err != nil {
				return err
			}
			if !hasSchema {
				if err := checkReachable(cmd.Context(), b); err != nil {
					return err
				}
				creates, _, _ := noSchema(b.driver)
				fmt.Fprintf(cmd.OutOrStdout(), "%s needs no migrations: %s; the server answers, nothing to do\n", b.driver, creates)
				return nil
			}
			if err := s.up(cmd.Context(), b.url); err != nil {
				return err
			}
			v, dirty, err := s.version(cmd.Context(), b.url)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "schema is at version %d (dirty=%t)\n", v, dirty)
			return nil
		},
	}
}

func (a *app) migrateDownCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Roll back every migration, dropping tasq_jobs and all its jobs (fails on redis and sqs: no schema)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, s, hasSchema, err := a.migrateBackend()
			if err != nil {
				silenceUsage(cmd)
				return err
			}
			if !hasSchema {
				silenceUsage(cmd)
				_, remove, _ := noSchema(b.driver)
				return fmt.Errorf("%w: %s needs no migrations, so migrate down has nothing to do; %s", ErrNoSchema, b.driver, remove)
			}
			if !yes {
				return errors.New("migrate down drops the tasq_jobs table and every job in it; pass --yes to confirm")
			}
			silenceUsage(cmd)
			if err := s.down(cmd.Context(), b.url); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "rolled back every migration: tasq_jobs is gone")
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm that the jobs may be dropped")
	return cmd
}

func (a *app) migrateVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the applied schema version (redis and sqs: check the server; no schema)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			b, s, hasSchema, err := a.migrateBackend()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if !hasSchema {
				if err := checkReachable(cmd.Context(), b); err != nil {
					return err
				}
				creates, _, _ := noSchema(b.driver)
				fmt.Fprintf(out, "%s needs no migrations, so it has no schema version: %s; the server answers\n", b.driver, creates)
				return nil
			}
			v, dirty, err := s.version(cmd.Context(), b.url)
			if errors.Is(err, migrations.ErrNoVersion) {
				fmt.Fprintf(out, "no migration applied yet (this build ships version %d); run `tasq migrate up`\n", s.latest)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "version %d (dirty=%t)\n", v, dirty)
			if dirty {
				return fmt.Errorf("the schema is dirty: a migration to version %d failed halfway; fix the database by hand, then record the version in %s", v, migrations.MigrationsTable)
			}
			if v < s.latest {
				fmt.Fprintf(out, "this build ships version %d; run `tasq migrate up`\n", s.latest)
			}
			return nil
		},
	}
}
