package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// mountSnippet shows how an application builds a worker binary of its own.
const mountSnippet = `    reg := queue.NewRegistry()
    queue.MustRegister(reg, &SendEmail{}) // ...and every other task type
    root := &cobra.Command{Use: "myapp"}
    root.AddCommand(cli.NewWorkerCommand(cli.Options{Registry: reg}))
    if err := root.Execute(); err != nil { os.Exit(1) }`

// errNoTaskTypes explains why a worker without a registry cannot run.
var errNoTaskTypes = errors.New("this binary has no task types registered (cli.Options.Registry is nil or empty), " +
	"and a worker runs only the task types compiled into its binary. The stock tasq binary cannot run your " +
	"application's jobs: build your own main that registers your tasks and mounts the worker command " +
	"(import \"github.com/tasqhq/tasq/cmd/tasq/cli\"):\n\n" + mountSnippet)

// workerFlags are the worker command's flag values.
type workerFlags struct {
	queues              []string
	concurrency         int
	blockingConcurrency int
	maxTasks            int
	shutdownGrace       time.Duration
	pollInterval        time.Duration
	lease               time.Duration
	keepCompleted       time.Duration
	keepCancelled       time.Duration
	keepFailed          time.Duration
	archive             bool
	metricsAddr         string
	outboxTo            []string // relay the outbox to these backends (DRIVER=URL)
}

func (a *app) workerCommand() *cobra.Command {
	var f workerFlags
	long := `worker claims and runs jobs until it receives SIGINT or SIGTERM. Then it stops
claiming, lets running jobs finish for up to --shutdown-grace, and hands back
the ones still running; a second signal exits at once.

It runs on every backend (postgres, mysql, redis, sqs; the database URL's
scheme selects it). postgres and redis wake it as soon as a job is dispatched;
mysql only for jobs dispatched in the same process, and sqs never, so there it
also looks for jobs every --poll-interval.

A worker runs only the task types compiled into its binary. An application
builds its own binary that registers its tasks and mounts this command:

` + mountSnippet
	if kinds := a.kinds(); len(kinds) > 0 {
		long += "\n\nThis binary runs these task kinds: " + strings.Join(kinds, ", ") + ".\n" +
			"It claims only jobs of these kinds: a job of any other kind on the queues it\n" +
			"serves waits, available, for a worker that knows it (a newer build in a\n" +
			"rolling deploy, say). Check for such jobs with tasq jobs list --state available."
	}
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Run a worker that claims and runs jobs",
		Long:  long,
		Example: `  tasq worker --queues payments,emails --concurrency 50
  tasq worker --queues reports --max-tasks 100   # a batch run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			return a.runWorker(cmd, &f)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.queues, "queues", nil,
		"queues to serve, comma-separated, highest priority first (default: every queue the registered task types use)")
	fl.IntVar(&f.concurrency, "concurrency", 20, "jobs run at once")
	fl.IntVar(&f.blockingConcurrency, "blocking-concurrency", 0,
		"Blocking (SyncTask-style) jobs run at once, within --concurrency (0: GOMAXPROCS)")
	fl.IntVar(&f.maxTasks, "max-tasks", 0, "exit after running this many jobs (0: run until stopped)")
	fl.DurationVar(&f.shutdownGrace, "shutdown-grace", 10*time.Second,
		"how long running jobs may finish after a stop signal before they are cancelled and handed back")
	fl.DurationVar(&f.pollInterval, "poll-interval", time.Second,
		"how often to look for jobs without a wake-up (postgres LISTEN/NOTIFY, redis pub/sub)")
	fl.DurationVar(&f.lease, "lease", 30*time.Second,
		"how long a claimed job stays leased without a heartbeat; a crashed worker's jobs run again after this")
	f.keepCompleted, f.keepCancelled, f.keepFailed = worker.DefaultKeepCompleted, worker.DefaultKeepCancelled, worker.DefaultKeepFailed
	fl.Var((*retentionAge)(&f.keepCompleted), "keep-completed",
		"retention: the maintenance leader deletes completed jobs this long after they finished; \"forever\" keeps them")
	fl.Var((*retentionAge)(&f.keepCancelled), "keep-cancelled", "retention for cancelled jobs (or \"forever\")")
	fl.Var((*retentionAge)(&f.keepFailed), "keep-failed", "retention for failed jobs, the dead letters (or \"forever\")")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9090)")
	fl.BoolVar(&f.archive, "archive", false, "retention moves expired jobs to tasq_jobs_archive instead of deleting them")
	fl.StringArrayVar(&f.outboxTo, "outbox-to", nil,
		"also relay the transactional outbox to a backend, DRIVER=URL (repeatable; postgres only): what `tasq outbox relay --to` does, in this process")
	return cmd
}

// kinds returns the registered task kinds, or nil.
func (a *app) kinds() []string {
	if a.opts.Registry == nil {
		return nil
	}
	return a.opts.Registry.Kinds()
}

// registryQueues returns the queues the registered task types are configured
// for, sorted.
func registryQueues(reg *queue.Registry) []string {
	var qs []string
	for _, k := range reg.Kinds() {
		if c, ok := reg.Config(k); ok && !slices.Contains(qs, c.Queue) {
			qs = append(qs, c.Queue)
		}
	}
	slices.Sort(qs)
	return qs
}

// config checks the flags and turns them into a worker.Config.
func (f *workerFlags) config(cmd *cobra.Command, reg *queue.Registry) (worker.Config, error) {
	var cfg worker.Config
	if cmd.Flags().Changed("queues") {
		if len(f.queues) == 0 {
			return cfg, errors.New("--queues is empty; list the queues to serve, e.g. --queues high,default,low")
		}
		for i, q := range f.queues {
			q = strings.TrimSpace(q)
			if q == "" {
				return cfg, fmt.Errorf("--queues %q: queue name %d is empty; separate names with single commas, e.g. --queues high,default,low",
					strings.Join(f.queues, ","), i+1)
			}
			if err := queue.ValidateQueueName(q); err != nil {
				return cfg, fmt.Errorf("--queues: %w", err)
			}
			if slices.Contains(cfg.Queues, q) {
				return cfg, fmt.Errorf("--queues: %q is listed twice; list each queue once", q)
			}
			cfg.Queues = append(cfg.Queues, q)
		}
	} else {
		cfg.Queues = registryQueues(reg)
	}
	for _, n := range []struct {
		flag string
		v    int
	}{{"--concurrency", f.concurrency}, {"--blocking-concurrency", f.blockingConcurrency}, {"--max-tasks", f.maxTasks}} {
		if n.v < 0 {
			return cfg, fmt.Errorf("%s is %d; it must not be negative", n.flag, n.v)
		}
	}
	if f.concurrency == 0 {
		return cfg, errors.New("--concurrency is 0; a worker needs at least one slot (default 20)")
	}
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{{"--shutdown-grace", f.shutdownGrace}, {"--poll-interval", f.pollInterval}, {"--lease", f.lease}} {
		if d.v <= 0 {
			return cfg, fmt.Errorf("%s is %v; give a positive duration such as 10s", d.flag, d.v)
		}
	}
	if f.lease < 100*time.Millisecond {
		return cfg, fmt.Errorf("--lease %v is too short; use at least 100ms (default 30s)", f.lease)
	}
	cfg.Concurrency = f.concurrency
	cfg.BlockingConcurrency = f.blockingConcurrency
	cfg.MaxTasks = f.maxTasks
	cfg.ShutdownGrace = f.shutdownGrace
	cfg.PollInterval = f.pollInterval
	cfg.LeaseDuration = f.lease
	for _, d := range []struct {
		flag string
		v    *time.Duration
		dst  *time.Duration
	}{{"--keep-completed", &f.keepCompleted, &cfg.Retention.Completed}, {"--keep-cancelled", &f.keepCancelled, &cfg.Retention.Cancelled},
		{"--keep-failed", &f.keepFailed, &cfg.Retention.Failed}} {
		switch {
		case *d.v == queue.KeepForever:
			*d.dst = queue.KeepForever
		case *d.v <= 0:
			return cfg, fmt.Errorf("%s is %v; give a positive age such as 24h, or \"forever\"", d.flag, *d.v)
		default:
			*d.dst = *d.v
		}
	}
	cfg.Retention.Archive = f.archive
	return cfg, nil
}

func (a *app) runWorker(cmd *cobra.Command, f *workerFlags) error {
	reg := a.opts.Registry
	if reg == nil || len(reg.Kinds()) == 0 {
		return errNoTaskTypes
	}
	cfg, err := f.config(cmd, reg)
	if err != nil {
		return err
	}
	log := a.logger(cmd)
	cfg.Logger = log
	ad, err := a.openAdapter(cmd.Context())
	if err != nil {
		return err
	}
	defer ad.Close()
	var metrics *metricsServer
	if f.metricsAddr != "" {
		if metrics, err = listenMetrics(f.metricsAddr, &cfg); err != nil {
			return err
		}
	}
	w, err := worker.New(ad, reg, cfg)
	if err != nil {
		if metrics != nil {
			_ = metrics.ln.Close()
		}
		return fmt.Errorf("start the worker: %w", err)
	}
	if metrics != nil {
		defer metrics.serve(w, ad, log)()
	}
	ctx, stop := withSignals(cmd.Context(), func() {
		log.InfoContext(cmd.Context(), "stop signal received; finishing running jobs (send it again to exit at once)",
			"shutdown_grace", cfg.ShutdownGrace)
	})
	defer stop()
	if len(f.outboxTo) > 0 {
		stopRelay, err := startRelay(ctx, ad, f.outboxTo, log)
		if err != nil {
			return err
		}
		defer stopRelay()
	}
	log.InfoContext(ctx, "serving", "queues", strings.Join(cfg.Queues, ","), "kinds", strings.Join(reg.Kinds(), ","))
	if err := w.Run(ctx); err != nil {
		// Run stops by itself only when it cannot go on, e.g. when the
		// schema is gone (queue.ErrNotMigrated).
		return fmt.Errorf("the worker stopped: %w", err)
	}
	return nil
}

// startRelay runs an outbox relay from ad (which must be postgres) to the
// --outbox-to backends until ctx ends or stop is called; stop stops it,
// waits for it and closes the backends.
func startRelay(ctx context.Context, ad queue.Adapter, to []string, log *slog.Logger) (stop func(), err error) {
	pg, ok := ad.(*postgres.Adapter)
	if !ok {
		return nil, &UnsupportedError{Backend: ad.Name(), Command: "worker --outbox-to", Capability: capabilityName[queue.Outbox]()}
	}
	targets, closeTargets, err := openRelayTargets(ctx, "--outbox-to", to)
	if err != nil {
		return nil, err
	}
	relay, err := pg.NewRelay(targets, postgres.RelayOptions{Logger: log})
	if err != nil {
		closeTargets()
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = relay.Run(ctx)
	}()
	log.InfoContext(ctx, "relaying the outbox", "to", strings.Join(sortedKeys(targets), ","))
	return func() { cancel(); <-done; closeTargets() }, nil
}

// retentionAge is a --keep-* flag: a duration, or "forever".
type retentionAge time.Duration

func (r *retentionAge) String() string {
	if time.Duration(*r) == queue.KeepForever {
		return "forever"
	}
	return time.Duration(*r).String()
}

func (r *retentionAge) Set(s string) error {
	if s == "forever" {
		*r = retentionAge(queue.KeepForever)
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("give a duration such as 24h or 720h, or \"forever\"")
	}
	*r = retentionAge(d)
	return nil
}

func (r *retentionAge) Type() string { return "age" }
