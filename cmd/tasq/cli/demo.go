package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/internal/localpg"
	"github.com/tasqhq/tasq/migrations"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// DemoCountsSQL is the query whose result ends the demo.
const DemoCountsSQL = `SELECT queue, state, count(*) FROM tasq_jobs GROUP BY 1, 2 ORDER BY 1, 2`

// demoQueues are the queues the demo's worker serves, highest priority first.
var demoQueues = []string{"payments", "emails", "reports", "default"}

// demoDatabase is the database the demo creates on a throwaway server.
const demoDatabase = "tasq_demo"

// demoOrdersTable holds the orders the demo writes in the same transaction as
// their payment jobs. Its name keeps it clear of an application's own tables.
const demoOrdersTable = "tasq_demo_orders"

func (a *app) demoCommand() *cobra.Command {
	var (
		deadline time.Duration
		keep     bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Dispatch the guide's example tasks and watch a worker run them",
		Long: `demo shows TasQ end to end: it applies the schema, dispatches the guide's
example tasks in every way TasQ offers (direct, delayed, chained, in a batch,
and inside a database transaction), runs a worker in this process until every
job has finished, and prints the job table's state counts straight from SQL.

Without --database-url or ` + EnvDatabaseURL + ` it starts a throwaway PostgreSQL
from the local server binaries (installing the Debian package when it is
missing and tasq runs as root), and removes it at the end.

demo runs on PostgreSQL only: it shows transactional dispatch and reads the
job table with SQL. On mysql, redis and sqs use migrate, worker and stats.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if deadline <= 0 {
				return fmt.Errorf("--deadline is %v; give a positive duration such as 60s", deadline)
			}
			silenceUsage(cmd)
			return a.runDemo(cmd, deadline, keep)
		},
	}
	cmd.Flags().DurationVar(&deadline, "deadline", 60*time.Second, "fail when the demo's jobs have not all finished within this long")
	cmd.Flags().BoolVar(&keep, "keep", false,
		"with a throwaway PostgreSQL: keep it running after the demo, until Ctrl-C, to look around with tasq jobs and psql")
	return cmd
}

// expectation is how a demo job must end.
type expectation struct {
	what  string
	state queue.JobState
}

// demoRun is one run of the demo.
type demoRun struct {
	con    *console
	out    io.Writer
	ad     *postgres.Adapter
	pool   *pgxpool.Pool
	client *queue.Client
	ids    []uuid.UUID
	expect map[uuid.UUID]expectation
	step   int
}

func (a *app) runDemo(cmd *cobra.Command, deadline time.Duration, keep bool) (err error) {
	con := newConsole(cmd.OutOrStdout(), cmd.ErrOrStderr())
	out := con.Out()
	ctx, stop := withSignals(cmd.Context(), func() {
		fmt.Fprintln(con.Err(), "\ninterrupted: stopping the demo (press Ctrl-C again to exit at once)")
	})
	defer stop()
	defer func() {
		if err != nil && errors.Is(context.Cause(ctx), errInterrupted) {
			err = fmt.Errorf("demo %w before it finished (%w)", errInterrupted, err)
		}
	}()
	began := time.Now()
	url, err := a.requirePostgres("demo", "it dispatches inside a PostgreSQL transaction and reads tasq_jobs with SQL")
	if err != nil && !errors.Is(err, ErrNoDatabaseURL) {
		return err
	}
	fmt.Fprintln(out, "=== TasQ demo: the guide's complete working example, on PostgreSQL ===")

	var srv *localpg.Server
	if errors.Is(err, ErrNoDatabaseURL) {
		fmt.Fprintf(out, "\n==> Starting a throwaway PostgreSQL (no --database-url or %s given)\n", EnvDatabaseURL)
		srv, err = localpg.Start(ctx, localpg.Options{
			Install: true,
			Logf:    func(format string, args ...any) { fmt.Fprintf(con.Err(), "    "+format+"\n", args...) },
		})
		if err != nil {
			return fmt.Errorf("no database URL was given, so the demo tried to start a throwaway PostgreSQL and could not: %w\n"+
				"Set %s or pass --database-url to use a running server instead", err, EnvDatabaseURL)
		}
		defer func() {
			if serr := srv.Stop(); serr != nil {
				err = errors.Join(err, fmt.Errorf("stop the throwaway PostgreSQL: %w", serr))
			}
		}()
		if url, err = srv.CreateDatabase(ctx, demoDatabase, ""); err != nil {
			return err
		}
		fmt.Fprintf(out, "    database %s on 127.0.0.1:%s\n", demoDatabase, portOf(url))
	} else if err != nil {
		return err
	}

	fmt.Fprintln(out, "\n==> Applying migrations")
	if err := migrations.Up(ctx, url); err != nil {
		return err
	}
	v, _, err := migrations.Version(ctx, url)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "    schema version %d: table tasq_jobs ready\n", v)

	ad, err := openPostgresURL(ctx, url)
	if err != nil {
		return err
	}
	defer ad.Close()
	client, err := queue.NewClient(ad)
	if err != nil {
		return err
	}
	var before int64
	if err := ad.Pool().QueryRow(ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&before); err != nil {
		return fmt.Errorf("count existing jobs: %w", err)
	}
	if before > 0 {
		fmt.Fprintf(out, "    note: tasq_jobs already holds %d jobs from earlier runs; the final counts include them\n", before)
	}

	r := &demoRun{con: con, out: out, ad: ad, pool: ad.Pool(), client: client, expect: map[uuid.UUID]expectation{}}
	fmt.Fprintln(out, "\n==> Dispatching")
	if err := r.dispatch(ctx); err != nil {
		return err
	}

	fmt.Fprintf(out, "\n==> Running a worker on queues %s until all %d jobs have finished\n", strings.Join(demoQueues, ","), len(r.ids))
	if err := r.work(ctx, a.demoLogger(con), deadline); err != nil {
		return err
	}
	if err := r.report(ctx, began); err != nil {
		return err
	}

	fmt.Fprintln(out, "\n==> Look around")
	failedID := r.failedJob()
	hints := fmt.Sprintf(`    tasq jobs list --state failed      # the dead letter: the invalid payment
    tasq jobs show %s   # its payload and error history
    tasq stats
    psql "$%s" -c "SELECT kind, state, attempt, errors FROM tasq_jobs WHERE state = 'failed'"
`, failedID, EnvDatabaseURL)
	switch {
	case srv == nil:
		if keep {
			fmt.Fprintln(out, "    (--keep applies only to a throwaway PostgreSQL; yours keeps running anyway)")
		}
		fmt.Fprintf(out, "    The jobs stay in your database (%s or --database-url):\n%s", EnvDatabaseURL, hints)
	case keep:
		fmt.Fprintf(out, "    The throwaway PostgreSQL keeps running until you press Ctrl-C. In another shell:\n    export %s='%s'\n%s",
			EnvDatabaseURL, url, hints)
		<-ctx.Done()
		fmt.Fprintln(out, "    stopping the throwaway PostgreSQL")
		return nil
	default:
		fmt.Fprintf(out, "    The throwaway PostgreSQL is stopped and removed now. To look at the jobs, run\n"+
			"    `tasq demo --keep` (the server stays up until Ctrl-C), or run the demo on your own\n"+
			"    database with %s=postgres://USER:PASS@HOST:5432/DB; then:\n%s", EnvDatabaseURL, hints)
	}
	return nil
}

// portOf returns the port of a postgres:// URL, for messages.
func portOf(url string) string {
	c, err := pgx.ParseConfig(url)
	if err != nil {
		return "?"
	}
	return fmt.Sprint(c.Port)
}

// demoLogger is Options.Logger, or a compact logger on the console's stderr
// that shows retries and failures and leaves out what the demo does not need.
func (a *app) demoLogger(con *console) *slog.Logger {
	if a.opts.Logger != nil {
		return a.opts.Logger
	}
	return slog.New(slog.NewTextHandler(con.Err(), &slog.HandlerOptions{
		Level: slog.LevelWarn,
		ReplaceAttr: func(groups []string, attr slog.Attr) slog.Attr {
			switch attr.Key {
			case slog.TimeKey, "worker", "job_id":
				if len(groups) == 0 {
					return slog.Attr{}
				}
			}
			return attr
		},
	}))
}

// announce prints a numbered step and the IDs of the jobs it dispatched.
func (r *demoRun) announce(title string, ids ...uuid.UUID) {
	r.step++
	fmt.Fprintf(r.out, "%2d. %s\n", r.step, title)
	switch len(ids) {
	case 0:
	case 1:
		fmt.Fprintf(r.out, "    Task ID: %s\n", ids[0])
	default:
		fmt.Fprintf(r.out, "    Task IDs: %s ... %s (%d jobs)\n", ids[0], ids[len(ids)-1], len(ids))
	}
}

// track records jobs the demo waits for.
func (r *demoRun) track(what string, state queue.JobState, ids ...uuid.UUID) {
	for _, id := range ids {
		r.ids = append(r.ids, id)
		r.expect[id] = expectation{what: what, state: state}
	}
}

// dispatch dispatches the demo's jobs in every way the client offers.
func (r *demoRun) dispatch(ctx context.Context) error {
	c := r.client
	id, err := c.Dispatch(ctx, &demo.SendEmail{To: "user@example.com", Subject: "Welcome", Body: "Welcome!"})
	if err != nil {
		return fmt.Errorf("dispatch the welcome email: %w", err)
	}
	r.track("welcome email", queue.StateCompleted, id)
	r.announce("Direct dispatch: SendEmail", id)

	id, err = c.Dispatch(ctx, &demo.SendEmail{To: "user@example.com", Subject: "Reminder", Body: "Don't forget!"},
		queue.Delay(3*time.Second))
	if err != nil {
		return fmt.Errorf("dispatch the reminder email: %w", err)
	}
	r.track("delayed reminder email", queue.StateCompleted, id)
	r.announce("Dispatch with a delay: SendEmail, runs in 3s", id)

	id, err = c.Task(&demo.SendEmail{To: "user@example.com", Subject: "Chained", Body: "Message"}).
		OnQueue("emails").RetryAfter(time.Second).Dispatch(ctx)
	if err != nil {
		return fmt.Errorf("dispatch the chained email: %w", err)
	}
	r.track("chained email", queue.StateCompleted, id)
	r.announce(`Method chaining: client.Task(email).OnQueue("emails").RetryAfter(time.Second).Dispatch(ctx)`, id)

	id, err = c.Dispatch(ctx, &demo.ProcessPayment{UserID: 123, AmountCents: 9999, GatewayTimeouts: 2},
		queue.RetryAfter(500*time.Millisecond))
	if err != nil {
		return fmt.Errorf("dispatch the payment: %w", err)
	}
	r.track("payment of $99.99", queue.StateCompleted, id)
	r.announce("Payment processing: $99.99; the gateway times out twice, retried after 500ms", id)

	id, err = c.Dispatch(ctx, &demo.ProcessPayment{UserID: 7, AmountCents: -500})
	if err != nil {
		return fmt.Errorf("dispatch the invalid payment: %w", err)
	}
	r.track("payment of -$5.00", queue.StateFailed, id)
	r.announce("Invalid payment: -$5.00; ShouldRetry says no, so it fails at once and Failed runs", id)

	id, err = c.Dispatch(ctx, &demo.GenerateReport{ReportID: 1})
	if err != nil {
		return fmt.Errorf("dispatch the report: %w", err)
	}
	r.track("report", queue.StateCompleted, id)
	r.announce("Blocking task (the guide's SyncTask): GenerateReport", id)

	batch := make([]any, 20)
	for i := range batch {
		batch[i] = &demo.SendEmail{To: fmt.Sprintf("subscriber%02d@example.com", i+1), Subject: "Newsletter #1", Body: "News!"}
	}
	ids, err := c.DispatchMany(ctx, batch)
	if err != nil {
		return fmt.Errorf("dispatch the newsletter batch: %w", err)
	}
	r.track("newsletter email", queue.StateCompleted, ids...)
	r.announce("Batch: 20 newsletter emails in one round trip (DispatchMany)", ids...)

	return r.dispatchInTransaction(ctx)
}

// dispatchInTransaction writes an order row and its payment job in one
// transaction, then shows that a rolled-back transaction leaves no job.
func (r *demoRun) dispatchInTransaction(ctx context.Context) error {
	if _, err := r.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+demoOrdersTable+` (
    id           bigserial   PRIMARY KEY,
    user_id      bigint      NOT NULL,
    amount_cents bigint      NOT NULL,
    payment_job  uuid        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return fmt.Errorf("create the demo's %s table: %w", demoOrdersTable, err)
	}
	order := func(commit bool) (orderID int64, jobID uuid.UUID, err error) {
		tx, err := r.pool.Begin(ctx)
		if err != nil {
			return 0, uuid.Nil, fmt.Errorf("begin a transaction: %w", err)
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }() // no-op after Commit
		jobID, err = r.client.DispatchTx(ctx, tx, &demo.ProcessPayment{UserID: 42, AmountCents: 2500})
		if err != nil {
			return 0, uuid.Nil, fmt.Errorf("dispatch the order's payment in the transaction: %w", err)
		}
		err = tx.QueryRow(ctx, `INSERT INTO `+demoOrdersTable+` (user_id, amount_cents, payment_job) VALUES ($1, $2, $3) RETURNING id`,
			42, 2500, jobID).Scan(&orderID)
		if err != nil {
			return 0, uuid.Nil, fmt.Errorf("insert the order: %w", err)
		}
		if !commit {
			return orderID, jobID, tx.Rollback(ctx)
		}
		return orderID, jobID, tx.Commit(ctx)
	}

	orderID, id, err := order(true)
	if err != nil {
		return err
	}
	r.track("order payment", queue.StateCompleted, id)
	r.announce(fmt.Sprintf("Transactional dispatch (DispatchTx): order #%d and its $25.00 payment job, committed together", orderID), id)

	orderID, id, err = order(false)
	if err != nil {
		return err
	}
	var n int
	if err := r.pool.QueryRow(ctx, `SELECT count(*) FROM tasq_jobs WHERE id = $1`, id).Scan(&n); err != nil {
		return fmt.Errorf("look for the rolled-back job: %w", err)
	}
	if n != 0 {
		return fmt.Errorf("job %s was dispatched in a transaction that rolled back, yet it exists; this is a TasQ bug, please report it", id)
	}
	r.announce(fmt.Sprintf("The same in a transaction that rolls back: order #%d and job %s never existed", orderID, id))
	fmt.Fprintf(r.out, "    SELECT count(*) FROM tasq_jobs WHERE id = '%s' -> %d\n", id, n)
	return nil
}

// work runs a worker until every tracked job is finished, showing progress.
func (r *demoRun) work(ctx context.Context, log *slog.Logger, deadline time.Duration) error {
	reg := queue.NewRegistry()
	if err := demo.Register(reg); err != nil {
		return fmt.Errorf("register the demo tasks: %w", err)
	}
	w, err := worker.New(r.ad, reg, worker.Config{
		Queues:              demoQueues,
		PollInterval:        200 * time.Millisecond,
		MaintenanceInterval: 100 * time.Millisecond,
		ShutdownGrace:       5 * time.Second,
		Logger:              log,
	})
	if err != nil {
		return fmt.Errorf("start the worker: %w", err)
	}
	wctx, stopWorker := context.WithCancel(demo.WithOutput(ctx, r.out))
	defer stopWorker()
	done := make(chan error, 1)
	go func() { done <- w.Run(wctx) }()

	waitErr := r.wait(ctx, deadline)
	stopWorker()
	runErr := <-done
	r.con.EndStatus()
	if waitErr != nil {
		return waitErr
	}
	if runErr != nil {
		return fmt.Errorf("worker: %w", runErr)
	}
	return nil
}

// stateCounts counts the tracked jobs per state.
func (r *demoRun) stateCounts(ctx context.Context) (map[queue.JobState]int, error) {
	rows, err := r.pool.Query(ctx, `SELECT state::text, count(*) FROM tasq_jobs WHERE id = ANY($1) GROUP BY 1`, r.ids)
	if err != nil {
		return nil, fmt.Errorf("count the demo's jobs: %w", err)
	}
	counts := map[queue.JobState]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("count the demo's jobs: %w", err)
		}
		counts[queue.JobState(st)] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count the demo's jobs: %w", err)
	}
	return counts, nil
}

// wait polls the job table until every tracked job is completed, failed or
// cancelled, drawing a progress line, or until the deadline passes.
func (r *demoRun) wait(ctx context.Context, deadline time.Duration) error {
	const poll = 200 * time.Millisecond
	every := 2 * time.Second // between progress lines when stderr is not a terminal
	if r.con.TTY() {
		every = poll
	}
	start := time.Now()
	var shown time.Time
	for {
		counts, err := r.stateCounts(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		elapsed := time.Since(start)
		finished := counts[queue.StateCompleted] + counts[queue.StateFailed] + counts[queue.StateCancelled]
		// Short enough for an 80-column terminal, where \r cannot redraw a wrapped line.
		line := fmt.Sprintf("  [%4.1fs] %d completed, %d retrying, %d failed, %d running, %d scheduled, %d queued",
			elapsed.Seconds(), counts[queue.StateCompleted], counts[queue.StateRetryable],
			counts[queue.StateFailed], counts[queue.StateRunning], counts[queue.StateScheduled], counts[queue.StateAvailable])
		if counts[queue.StateCancelled] > 0 {
			line += fmt.Sprintf(", %d cancelled", counts[queue.StateCancelled])
		}
		done := finished == len(r.ids)
		if done || shown.IsZero() || time.Since(shown) >= every {
			r.con.SetStatus(line)
			shown = time.Now()
		}
		if done {
			return nil
		}
		if elapsed > deadline {
			r.con.EndStatus()
			return fmt.Errorf("the demo's jobs did not all finish within %v (%d of %d did); is the database overloaded, "+
				"or another worker holding them? Look with `tasq jobs list`, or raise --deadline", deadline, finished, len(r.ids))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
	}
}

// failedJob returns the ID of the job the demo expects to fail.
func (r *demoRun) failedJob() uuid.UUID {
	for _, id := range r.ids {
		if r.expect[id].state == queue.StateFailed {
			return id
		}
	}
	return uuid.Nil
}

// report prints the state counts straight from SQL and checks that every
// demo job ended as intended.
func (r *demoRun) report(ctx context.Context, began time.Time) error {
	rows, err := r.pool.Query(ctx, `SELECT id, state::text FROM tasq_jobs WHERE id = ANY($1)`, r.ids)
	if err != nil {
		return fmt.Errorf("read the demo's jobs: %w", err)
	}
	got := map[uuid.UUID]queue.JobState{}
	for rows.Next() {
		var id uuid.UUID
		var st string
		if err := rows.Scan(&id, &st); err != nil {
			rows.Close()
			return fmt.Errorf("read the demo's jobs: %w", err)
		}
		got[id] = queue.JobState(st)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read the demo's jobs: %w", err)
	}
	var wrong []string
	completed := 0
	for _, id := range r.ids {
		e := r.expect[id]
		if got[id] != e.state {
			wrong = append(wrong, fmt.Sprintf("  job %s (%s) is %q, want %q", id, e.what, got[id], e.state))
		}
		if got[id] == queue.StateCompleted {
			completed++
		}
	}

	verdict := "the invalid payment failed, as it should"
	if len(wrong) > 0 {
		verdict = fmt.Sprintf("%d jobs ended differently than they should", len(wrong))
	}
	fmt.Fprintf(r.out, "\n==> Done in %.1fs: %d of %d jobs completed; %s\n",
		time.Since(began).Seconds(), completed, len(r.ids), verdict)
	fmt.Fprintln(r.out, "\n==> Job counts, straight from SQL:")
	fmt.Fprintf(r.out, "    %s;\n\n", DemoCountsSQL)
	if err := r.printQuery(ctx, DemoCountsSQL); err != nil {
		return err
	}
	if len(wrong) > 0 {
		return fmt.Errorf("the demo ended differently than it should:\n%s", strings.Join(wrong, "\n"))
	}
	return nil
}

// printQuery runs sql and prints its result the way psql does.
func (r *demoRun) printQuery(ctx context.Context, sql string) error {
	rows, err := r.pool.Query(ctx, sql)
	if err != nil {
		return fmt.Errorf("run %s: %w", sql, err)
	}
	var header []string
	for _, f := range rows.FieldDescriptions() {
		header = append(header, f.Name)
	}
	var table [][]string
	numeric := make([]bool, len(header))
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return fmt.Errorf("run %s: %w", sql, err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = fmt.Sprint(v)
			switch v.(type) {
			case int64, int32, int16:
				numeric[i] = true
			}
		}
		table = append(table, row)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("run %s: %w", sql, err)
	}
	fmt.Fprint(r.out, formatPsql(header, table, numeric))
	return nil
}

// formatPsql lays out a result like psql's aligned format, indented by four
// spaces, with a row count at the end.
func formatPsql(header []string, rows [][]string, numeric []bool) string {
	width := make([]int, len(header))
	for i, h := range header {
		width[i] = len(h)
	}
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], len(c))
		}
	}
	var b strings.Builder
	line := func(cells []string, center bool) {
		var l strings.Builder
		for i, c := range cells {
			if i > 0 {
				l.WriteString("|")
			}
			pad := width[i] - len(c)
			switch {
			case center:
				fmt.Fprintf(&l, " %s%s%s ", strings.Repeat(" ", pad/2), c, strings.Repeat(" ", pad-pad/2))
			case numeric[i]:
				fmt.Fprintf(&l, " %s%s ", strings.Repeat(" ", pad), c)
			default:
				fmt.Fprintf(&l, " %s%s ", c, strings.Repeat(" ", pad))
			}
		}
		b.WriteString("    " + strings.TrimRight(l.String(), " ") + "\n")
	}
	line(header, true)
	rule := make([]string, len(width))
	for i, w := range width {
		rule[i] = strings.Repeat("-", w+2)
	}
	b.WriteString("    " + strings.Join(rule, "+") + "\n")
	for _, row := range rows {
		line(row, false)
	}
	noun := "rows"
	if len(rows) == 1 {
		noun = "row"
	}
	fmt.Fprintf(&b, "    (%d %s)\n", len(rows), noun)
	return b.String()
}
