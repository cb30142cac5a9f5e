// Package cli is the tasq command line: migrations, workers, job inspection,
// statistics and the demo, as a cobra command tree.
//
// The stock binary (cmd/tasq) mounts NewRoot. A worker can only run task
// types compiled into it, so an application builds its own binary that
// registers its tasks and mounts NewWorkerCommand (or NewRoot) in its own
// cobra root:
//
//	reg := queue.NewRegistry()
//	queue.MustRegister(reg, &SendEmail{})
//	root := &cobra.Command{Use: "myapp"}
//	root.AddCommand(cli.NewWorkerCommand(cli.Options{Registry: reg}))
//	if err := root.Execute(); err != nil {
//		os.Exit(1)
//	}
//
// Every command that talks to a backend takes --database-url, or reads
// TASQ_DATABASE_URL when the flag is not given. The URL's scheme selects the
// backend (see DriverForURL): postgres://, mysql://, redis://, or sqs:// and
// http(s):// for SQS; --driver (or TASQ_DRIVER) overrides that choice. The
// backend is opened with queue.OpenAdapter, so its adapter package must be
// linked into the binary: the stock tasq binary imports all four, and an
// application's own binary imports the ones it uses:
//
//	import _ "github.com/tasqhq/tasq/adapters/redis" // registers "redis"
//
// migrate, worker, jobs and stats work on every backend, as far as the
// backend allows: Redis and SQS need no migrations, and SQS cannot look up,
// list or change single jobs (those commands then fail with an
// UnsupportedError). demo, outbox and most of bench run on PostgreSQL only
// (bench's burn-down, continuous and latency also run on Redis and MySQL).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
)

// EnvDatabaseURL names the environment variable read when --database-url is
// not given.
const EnvDatabaseURL = "TASQ_DATABASE_URL"

// ErrNoDatabaseURL is returned by commands that need a database when neither
// --database-url nor TASQ_DATABASE_URL gives one.
var ErrNoDatabaseURL = errors.New("no database URL: set " + EnvDatabaseURL +
	" or pass --database-url, e.g. postgres://user:pass@127.0.0.1:5432/app?sslmode=disable, " +
	"mysql://root@tcp(127.0.0.1:3306)/app, redis://127.0.0.1:6379/0 or sqs://us-east-1")

// openTimeout bounds connecting to the database and checking its schema.
const openTimeout = 30 * time.Second

// Options configures the command tree.
type Options struct {
	// Registry holds the application's task types. The worker command needs
	// it: a worker runs only the kinds registered here.
	Registry *queue.Registry
	// Logger receives the logs of the worker and the other commands.
	// Default: a text handler on the command's standard error.
	Logger *slog.Logger
}

// app is the state shared by one command tree: the options and the values
// of the --database-url and --driver flags.
type app struct {
	opts   Options
	dbURL  string
	driver string
}

// NewRoot returns the full tasq command tree: migrate, worker, jobs, stats,
// demo and bench, with the global --database-url and --driver flags.
func NewRoot(opts Options) *cobra.Command {
	a := &app{opts: opts}
	root := &cobra.Command{
		Use:   "tasq",
		Short: "TasQ: a PostgreSQL-native transactional job queue",
		Long: `tasq manages a TasQ job queue: it applies the schema, runs workers, inspects
and changes jobs, and shows statistics.

Try it end to end with a throwaway PostgreSQL:

    tasq demo

The backend comes from --database-url or the ` + EnvDatabaseURL + ` environment variable;
the URL's scheme selects it:

` + urlForms + `

--driver (or ` + EnvDriver + `) overrides the choice. migrate, worker, jobs and stats
work on every backend as far as it allows: Redis and SQS need no migrations,
and SQS cannot look up, list or change single jobs (use stats there). demo and
outbox run on PostgreSQL only; bench runs burn-down, continuous and latency on
Redis and MySQL too, and everything else on PostgreSQL. On PostgreSQL and MySQL job state is plain SQL
too: SELECT state, count(*) FROM tasq_jobs GROUP BY 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	a.addDatabaseFlag(root)
	root.AddCommand(
		a.migrateCommand(),
		a.workerCommand(),
		a.jobsCommand(),
		a.cronCommand(),
		a.queuesCommand(),
		a.outboxCommand(),
		a.statsCommand(),
		a.topCommand(),
		a.uiCommand(),
		a.demoCommand(),
		a.benchCommand(),
	)
	return root
}

// NewWorkerCommand returns just the worker command, with its own
// --database-url and --driver flags, to mount in an application's cobra root.
func NewWorkerCommand(opts Options) *cobra.Command {
	a := &app{opts: opts}
	cmd := a.workerCommand()
	a.addDatabaseFlag(cmd)
	return cmd
}

// addDatabaseFlag adds the --database-url and --driver flags to cmd and
// its subcommands.
func (a *app) addDatabaseFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&a.dbURL, "database-url", "",
		"the backend's URL: postgres://, mysql://, redis://, sqs:// or an SQS endpoint http(s):// (default $"+EnvDatabaseURL+")")
	cmd.PersistentFlags().StringVar(&a.driver, "driver", "",
		"the backend's driver (postgres, mysql, redis or sqs), overriding the one the URL's scheme selects (default $"+EnvDriver+")")
}

// databaseURL returns --database-url, else TASQ_DATABASE_URL.
func (a *app) databaseURL() (string, error) {
	if a.dbURL != "" {
		return a.dbURL, nil
	}
	if u := os.Getenv(EnvDatabaseURL); u != "" {
		return u, nil
	}
	return "", ErrNoDatabaseURL
}

// openPostgresURL connects to the PostgreSQL database at url and checks that
// it is migrated, for the PostgreSQL-only commands (demo and bench).
func openPostgresURL(ctx context.Context, url string) (*postgres.Adapter, error) {
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	ad, err := postgres.New(octx, url)
	if err != nil {
		return nil, fmt.Errorf("open the job database: %w", err)
	}
	return ad, nil
}

// requirePostgres returns the database URL for a PostgreSQL-only command
// (demo, bench), or an error when the URL or --driver names another backend.
// Without a URL it returns ErrNoDatabaseURL, so the command may start a
// throwaway PostgreSQL.
func (a *app) requirePostgres(command, why string) (string, error) {
	b, err := a.backend()
	if err != nil {
		return "", err
	}
	if b.driver != driverPostgres {
		works := "`tasq worker`, `tasq jobs` and `tasq stats` work"
		if b.driver == driverSQS {
			works = "`tasq worker` and `tasq stats` work"
		}
		return "", fmt.Errorf("tasq %s runs on PostgreSQL only (%s), but the database URL (or --driver) selects %s; "+
			"give a postgres:// URL, or none to use a throwaway PostgreSQL. On %s, %s",
			command, why, b.driver, b.driver, works)
	}
	return b.url, nil
}

// logger returns Options.Logger, or a text logger on the command's stderr.
func (a *app) logger(cmd *cobra.Command) *slog.Logger {
	if a.opts.Logger != nil {
		return a.opts.Logger
	}
	return slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
}

// silenceUsage marks the start of a command's own work: errors from here on
// are not usage mistakes, so cobra should not print the usage with them.
func silenceUsage(cmd *cobra.Command) {
	cmd.SilenceUsage = true
}

// parseJobID parses a job ID given on the command line.
func parseJobID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%q is not a job ID: %w; job IDs are UUIDs such as 0190f0c4-8b3e-7c1a-9d2e-3f4a5b6c7d8e (list them with `tasq jobs list`)", s, err)
	}
	return id, nil
}

// JobNotFoundError is returned by the jobs commands for an ID no job has.
// It wraps queue.ErrJobNotFound.
type JobNotFoundError struct {
	ID uuid.UUID
}

// Error says which job was not found and how to list the others.
func (e *JobNotFoundError) Error() string {
	return fmt.Sprintf("job %s not found; it may have been deleted (list jobs with `tasq jobs list`)", e.ID)
}

// Unwrap returns queue.ErrJobNotFound.
func (e *JobNotFoundError) Unwrap() error { return queue.ErrJobNotFound }

// jobError turns the adapter's not-found error into a JobNotFoundError.
func jobError(id uuid.UUID, err error) error {
	if errors.Is(err, queue.ErrJobNotFound) {
		return &JobNotFoundError{ID: id}
	}
	return err
}

// isTerminal reports whether w is a terminal, for live progress lines.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	return os.Getenv("TERM") != "dumb"
}
