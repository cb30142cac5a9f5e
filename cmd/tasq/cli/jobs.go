package cli

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/queue"
)

// timeLayout is how the jobs commands print times, in the local zone.
const timeLayout = "2006-01-02 15:04:05"

func (a *app) jobsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "jobs",
		Short: "List, show, retry, cancel and delete jobs",
		Long: `jobs looks up and changes single jobs, on backends that can: list and show need
a backend that reads jobs by ID (queue.JobReader), retry, cancel and delete one
that changes them (queue.JobEditor). postgres, mysql and redis do both. SQS
cannot find a job by ID, so on sqs these commands fail and say so; use
` + "`tasq stats`" + ` there for counts per queue.

Stored strings (kinds, queues, payloads, results, error texts, worker IDs) are
printed with control characters escaped (\x1b, \n, \u009b), so that a stored
string cannot drive your terminal; --json output decodes to the stored text.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		a.jobsListCommand(),
		a.jobsShowCommand(),
		a.jobActionCommand("retry", "Make a failed, cancelled, retryable or scheduled job run again now, with a fresh retry budget",
			func(ed queue.JobEditor, cmd *cobra.Command, id uuid.UUID) (string, error) {
				return "job %s retried: it is available now", ed.RetryJob(cmd.Context(), id)
			}),
		a.jobActionCommand("cancel", "Cancel a job that has not finished (a running job's Handle is told at once)",
			func(ed queue.JobEditor, cmd *cobra.Command, id uuid.UUID) (string, error) {
				return "job %s cancelled", ed.CancelJob(cmd.Context(), id)
			}),
		a.jobActionCommand("delete", "Delete a job that is not running",
			func(ed queue.JobEditor, cmd *cobra.Command, id uuid.UUID) (string, error) {
				return "job %s deleted", ed.DeleteJob(cmd.Context(), id)
			}),
		a.jobsPurgeCommand(),
	)
	return cmd
}

func (a *app) jobsListCommand() *cobra.Command {
	var (
		state, queueName, kind string
		tag                    string
		after                  string
		since                  time.Duration
		limit                  int
		asJSON                 bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Long: `list shows jobs newest first, --limit at a time. When a page is full, the
command for the next one follows on stderr: the same filters and --after the
last job shown (with --json, take the last job's id). Pages follow the job
ID, which TasQ makes time-ordered, so on postgres page 1,000 of ten million
jobs comes as fast as page 1.

On postgres a filter most jobs pass (a common kind, a big queue) costs a few
pages; one almost no job passes (a rare kind or tag) may read every job before
it finds --limit of them: add --since to bound how far back it looks.`,
		Example: `  tasq jobs list --state failed
  tasq jobs list --queue payments --since 1h --json
  tasq jobs list --tag tenant:42
  tasq jobs list --state failed --after 0190f5c2-5d6e-7c3a-9b1e-2f4d6a8c0e13`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			var f queue.ListFilter
			if state != "" {
				st, err := queue.ParseJobState(state)
				if err != nil {
					return fmt.Errorf("--state: %w", err)
				}
				f.State = st
			}
			if since < 0 {
				return fmt.Errorf("--since is %v; give how far back to look as a positive duration, e.g. --since 1h", since)
			}
			if limit < 0 {
				return fmt.Errorf("--limit is %d; give a positive number of jobs, or 0 for the default (100)", limit)
			}
			if since > 0 {
				f.Since = time.Now().Add(-since)
			}
			if after != "" {
				id, err := uuid.Parse(after)
				if err != nil {
					return fmt.Errorf("--after %q is not a job ID: %w; give the ID of the last job of the previous page", after, err)
				}
				f.After = id
			}
			if tag != "" {
				if err := queue.CheckTag(tag); err != nil {
					return fmt.Errorf("--tag: %w", err)
				}
			}
			f.Queue, f.Kind, f.Tag, f.Limit = queueName, kind, tag, limit
			return withCapability(a, cmd, "jobs list", func(jr queue.JobReader) error {
				jobs, err := jr.ListJobs(cmd.Context(), f)
				if err != nil {
					return fmt.Errorf("list jobs: %w", err)
				}
				if err := checkAfter(jr, f.After, jobs); err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if asJSON {
					list := make([]jobJSON, len(jobs))
					for i, j := range jobs {
						list[i] = toJSON(j)
					}
					return writeJSON(out, list)
				}
				if len(jobs) == 0 {
					fmt.Fprintln(out, "no jobs match")
					return nil
				}
				writeJobTable(out, jobs)
				if pageSize := cmp.Or(limit, 100); len(jobs) >= pageSize {
					// On stderr: stdout stays the table, for grep and the like.
					fmt.Fprintf(cmd.ErrOrStderr(), "next page: %s\n", nextPageCommand(cmd, jobs[len(jobs)-1].ID))
				}
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&state, "state", "", "only jobs in this state: "+statesList())
	fl.StringVar(&queueName, "queue", "", "only jobs of this queue")
	fl.StringVar(&kind, "kind", "", "only jobs of this kind (task type), e.g. SendEmail")
	fl.StringVar(&tag, "tag", "", "only jobs with this tag (queue.WithTags), e.g. tenant:42")
	fl.DurationVar(&since, "since", 0, "only jobs dispatched within this long, e.g. 1h")
	fl.IntVar(&limit, "limit", 100, "show at most this many jobs")
	fl.StringVar(&after, "after", "", "continue a listing after this job ID (the last of the previous page)")
	fl.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

// checkAfter makes sure that a backend asked for the jobs after a cursor
// returned only jobs after it: one that does not know ListFilter.After would
// return the first page again, and a script following the next-page command
// would never end.
func checkAfter(jr queue.JobReader, after uuid.UUID, jobs []*queue.JobInfo) error {
	if after == uuid.Nil {
		return nil
	}
	for _, j := range jobs {
		if bytes.Compare(j.ID[:], after[:]) >= 0 {
			name := "this"
			if ad, ok := jr.(queue.Adapter); ok {
				name = "the " + ad.Name()
			}
			return fmt.Errorf("--after: %s backend does not page by job ID (it listed job %s, which is not after %s); list fewer jobs with --since, --state, --queue or --kind instead", name, j.ID, after)
		}
	}
	return nil
}

// nextPageCommand returns the jobs list command line that shows the page
// after last: the filters given, --after last. Flags that select the
// database (--database-url, --driver) are left out: they may hold a password.
func nextPageCommand(cmd *cobra.Command, last uuid.UUID) string {
	parts := []string{"tasq jobs list"}
	for _, name := range []string{"state", "queue", "kind", "tag", "since", "limit"} {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			parts = append(parts, "--"+name+" "+shellWord(fl.Value.String()))
		}
	}
	return strings.Join(append(parts, "--after "+last.String()), " ")
}

// shellWord quotes s for a POSIX shell when it needs it, and escapes what a
// terminal could obey (oneLine): a queue or kind name may hold anything.
func shellWord(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:@+=,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(oneLine(s), "'", `'\''`) + "'"
}

func statesList() string {
	s := make([]string, len(queue.States))
	for i, st := range queue.States {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

// writeJobTable prints one line per job. Every stored string is escaped
// (oneLine): it is what tasks and their callers wrote.
func writeJobTable(w io.Writer, jobs []*queue.JobInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tQUEUE\tSTATE\tATTEMPT\tDISPATCHED\tLAST ERROR")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", j.ID, oneLine(j.Kind), oneLine(j.Queue), oneLine(string(j.State)),
			j.Attempt, j.MaxRetries+1, j.DispatchedAt.Local().Format(timeLayout), truncate(oneLine(firstLine(j.LastError())), 60))
	}
	_ = tw.Flush()
}

// firstLine returns s up to its first newline (a panic's error carries its stack).
func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}

// truncate shortens s to at most n runes, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

func (a *app) jobsShowCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show every field of a job: payload, result and error history",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			id, err := parseJobID(args[0])
			if err != nil {
				return err
			}
			return withCapability(a, cmd, "jobs show", func(jr queue.JobReader) error {
				j, err := jr.GetJob(cmd.Context(), id)
				if err != nil {
					return jobError(id, err)
				}
				if asJSON {
					return writeJSON(cmd.OutOrStdout(), toJSON(j))
				}
				writeJob(cmd.OutOrStdout(), j)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// writeJob prints a job's fields, one per line, then its payload, result and
// error history. Every stored string is escaped: fields with oneLine, the
// payload, result and error texts with multiLine (they may span lines).
func writeJob(w io.Writer, j *queue.JobInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	optTime := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Local().Format(timeLayout)
	}
	orDash := func(s string) string {
		if s == "" {
			return "-"
		}
		return oneLine(s)
	}
	timeout := "none"
	if j.Timeout > 0 {
		timeout = j.Timeout.String()
	}
	fmt.Fprintf(tw, "id:\t%s\n", j.ID)
	fmt.Fprintf(tw, "kind:\t%s\n", oneLine(j.Kind))
	fmt.Fprintf(tw, "queue:\t%s\n", oneLine(j.Queue))
	fmt.Fprintf(tw, "state:\t%s\n", oneLine(string(j.State)))
	fmt.Fprintf(tw, "priority:\t%d\n", j.Priority)
	fmt.Fprintf(tw, "attempt:\t%d of %d (max retries %d)\n", j.Attempt, j.MaxRetries+1, j.MaxRetries)
	fmt.Fprintf(tw, "retry delay:\t%s\n", j.RetryDelay)
	fmt.Fprintf(tw, "timeout:\t%s\n", timeout)
	fmt.Fprintf(tw, "dispatched at:\t%s\n", j.DispatchedAt.Local().Format(timeLayout))
	fmt.Fprintf(tw, "run at:\t%s\n", j.RunAt.Local().Format(timeLayout))
	fmt.Fprintf(tw, "attempted at:\t%s\n", optTime(j.AttemptedAt))
	fmt.Fprintf(tw, "attempted by:\t%s\n", orDash(j.AttemptedBy))
	fmt.Fprintf(tw, "lease expires:\t%s\n", optTime(j.LeaseExpiresAt))
	fmt.Fprintf(tw, "finished at:\t%s\n", optTime(j.FinishedAt))
	fmt.Fprintf(tw, "claim token:\t%d\n", j.Token)
	fmt.Fprintf(tw, "tags:\t%s\n", orDash(strings.Join(j.Tags, " ")))
	if len(j.DependsOn) > 0 {
		fmt.Fprintf(tw, "depends on:\t%s (if one fails: %s; waiting for %d)\n", idList(j.DependsOn), j.DepPolicy, len(j.Waiting))
	}
	_ = tw.Flush()
	if len(j.Meta) > 0 {
		fmt.Fprintf(w, "meta:\n%s\n", indentJSON(j.Meta))
	}
	fmt.Fprintf(w, "payload:\n%s\n", indentJSON(j.Payload))
	fmt.Fprintf(w, "result:\n%s\n", indentJSON(j.Result))
	if len(j.Errors) == 0 {
		fmt.Fprintln(w, "errors: none")
		return
	}
	if j.ErrorsOmitted > 0 {
		fmt.Fprintf(w, "errors (%d kept of %d, oldest first):\n", len(j.Errors), len(j.Errors)+j.ErrorsOmitted)
	} else {
		fmt.Fprintf(w, "errors (%d, oldest first):\n", len(j.Errors))
	}
	for i, e := range j.Errors {
		at := "?"
		if !e.At.IsZero() {
			at = e.At.Local().Format(timeLayout)
		}
		fmt.Fprintf(w, "  attempt %d at %s: %s\n", e.Attempt, at, strings.ReplaceAll(multiLine(e.Error), "\n", "\n    "))
		if i == 0 && j.ErrorsOmitted > 0 {
			// The backend keeps the first entry and the newest ones.
			fmt.Fprintf(w, "  ... %d entries dropped here to keep the history short ...\n", j.ErrorsOmitted)
		}
	}
}

// indentJSON pretty-prints raw JSON indented by two spaces; "  -" when
// empty. The text is escaped: its only newlines are the indentation's, and
// what is not JSON is printed on one line.
func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "  -"
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "  ", "  "); err != nil {
		return "  " + oneLine(string(raw))
	}
	return "  " + multiLine(b.String())
}

// jobJSON is a job as the --json flags print it: the tasq_jobs columns, by
// their names.
type jobJSON struct {
	ID             uuid.UUID        `json:"id"`
	Kind           string           `json:"kind"`
	Queue          string           `json:"queue"`
	State          queue.JobState   `json:"state"`
	Priority       int16            `json:"priority"`
	Payload        json.RawMessage  `json:"payload"`
	Result         json.RawMessage  `json:"result"`
	Attempt        int              `json:"attempt"`
	MaxRetries     int              `json:"max_retries"`
	RetryDelayMS   int64            `json:"retry_delay_ms"`
	TimeoutMS      int64            `json:"timeout_ms"`
	RunAt          time.Time        `json:"run_at"`
	DispatchedAt   time.Time        `json:"dispatched_at"`
	AttemptedAt    *time.Time       `json:"attempted_at"`
	AttemptedBy    *string          `json:"attempted_by"`
	LeaseExpiresAt *time.Time       `json:"lease_expires_at"`
	FinishedAt     *time.Time       `json:"finished_at"`
	Errors         []queue.JobError `json:"errors"`
	ErrorsOmitted  int              `json:"errors_omitted"`
	ClaimToken     int64            `json:"claim_token"`
	Tags           []string         `json:"tags"`
	Meta           json.RawMessage  `json:"meta"`
	DependsOn      []uuid.UUID      `json:"depends_on,omitempty"`
	DepsWaiting    []uuid.UUID      `json:"deps_waiting,omitempty"`
	DepPolicy      string           `json:"dep_policy,omitempty"`
}

// idList joins job IDs with spaces.
func idList(ids []uuid.UUID) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = id.String()
	}
	return strings.Join(s, " ")
}

func toJSON(j *queue.JobInfo) jobJSON {
	out := jobJSON{
		ID: j.ID, Kind: j.Kind, Queue: j.Queue, State: j.State, Priority: j.Priority,
		Payload: j.Payload, Result: j.Result, Attempt: j.Attempt, MaxRetries: j.MaxRetries,
		RetryDelayMS: j.RetryDelay.Milliseconds(), TimeoutMS: j.Timeout.Milliseconds(),
		RunAt: j.RunAt, DispatchedAt: j.DispatchedAt, AttemptedAt: j.AttemptedAt,
		LeaseExpiresAt: j.LeaseExpiresAt, FinishedAt: j.FinishedAt, Errors: j.Errors,
		ErrorsOmitted: j.ErrorsOmitted, ClaimToken: j.Token,
	}
	if j.AttemptedBy != "" {
		out.AttemptedBy = &j.AttemptedBy
	}
	if out.Errors == nil {
		out.Errors = []queue.JobError{}
	}
	out.Tags, out.Meta = j.Tags, j.Meta
	if len(j.DependsOn) > 0 {
		out.DependsOn, out.DepsWaiting, out.DepPolicy = j.DependsOn, j.Waiting, j.DepPolicy.String()
	}
	if out.Tags == nil {
		out.Tags = []string{}
	}
	if out.Meta == nil {
		out.Meta = json.RawMessage(`{}`)
	}
	return out
}

// writeJSON prints v as indented JSON, with the characters a terminal may
// obey escaped inside its strings (see jsonSafe): decoded, the strings are
// the stored ones.
func writeJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	if _, err := w.Write(jsonSafe(b.Bytes())); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// jobActionCommand builds retry, cancel and delete: act changes the job and
// returns the success message (with a %s for the ID) and its error.
func (a *app) jobActionCommand(name, short string, act func(queue.JobEditor, *cobra.Command, uuid.UUID) (string, error)) *cobra.Command {
	return &cobra.Command{
		Use:   name + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			id, err := parseJobID(args[0])
			if err != nil {
				return err
			}
			return withCapability(a, cmd, "jobs "+name, func(ed queue.JobEditor) error {
				msg, err := act(ed, cmd, id)
				if err != nil {
					switch {
					case errors.Is(err, queue.ErrJobNotFound):
						return jobError(id, err)
					case errors.Is(err, queue.ErrJobState):
						return err // it names the operation, the job and its state
					}
					return fmt.Errorf("%s job %s: %w", name, id, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), msg+"\n", id)
				return nil
			})
		},
	}
}

func (a *app) jobsPurgeCommand() *cobra.Command {
	var (
		state       string
		olderThan   time.Duration
		queueName   string
		dryRun, yes bool
		archive     bool
		batch       int
	)
	cmd := &cobra.Command{
		Use:   "purge --state STATE --older-than AGE [--queue Q] (--dry-run | --yes)",
		Short: "Delete finished jobs older than an age, in batches (what retention does, on demand)",
		Long: `purge deletes finished jobs (completed, failed or cancelled) that finished more
than --older-than ago, of one queue or of all, in batches of --batch rows, oldest
first. --dry-run only counts them; deleting needs --yes. --archive moves them to
tasq_jobs_archive instead. A worker leader does the same continuously with its
Retention setting (completed 24 h, cancelled 7 d, failed 30 d by default).`,
		Example: `  tasq jobs purge --state completed --older-than 24h --dry-run
  tasq jobs purge --state failed --older-than 720h --queue payments --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := queue.ParseJobState(state)
			if err != nil {
				return err
			}
			f := queue.PurgeFilter{State: st, Queue: queueName, OlderThan: olderThan, Limit: batch, Archive: archive}
			if err := f.Check(); err != nil {
				return err
			}
			if !cmd.Flags().Changed("older-than") {
				return fmt.Errorf("give --older-than (e.g. 24h); purge never deletes by state alone")
			}
			if batch <= 0 || batch > 100000 {
				return fmt.Errorf("--batch %d: give 1 to 100000 rows per batch", batch)
			}
			if dryRun == yes {
				return fmt.Errorf("give --dry-run to count, or --yes to delete")
			}
			silenceUsage(cmd)
			return withCapability(a, cmd, "jobs purge", func(p queue.Purger) error {
				out := cmd.OutOrStdout()
				where := "all queues"
				if queueName != "" {
					where = "queue " + oneLine(queueName)
				}
				if dryRun {
					n, err := p.CountPurgeable(cmd.Context(), f)
					if err != nil {
						return err
					}
					fmt.Fprintf(out, "%d %s jobs of %s finished more than %v ago; nothing deleted (dry run)\n", n, st, where, olderThan)
					return nil
				}
				total := 0
				for {
					n, err := p.Purge(cmd.Context(), f)
					if err != nil {
						return fmt.Errorf("purge (after %d removed): %w", total, err)
					}
					total += n
					if n < batch {
						break
					}
				}
				verb := "deleted"
				if archive {
					verb = "archived"
				}
				fmt.Fprintf(out, "%s %d %s jobs of %s finished more than %v ago\n", verb, total, st, where, olderThan)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "completed, failed or cancelled (required)")
	cmd.Flags().DurationVar(&olderThan, "older-than", 0, "only jobs that finished more than this long ago (required), e.g. 24h")
	cmd.Flags().StringVar(&queueName, "queue", "", "only this queue (default: all)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count what would be deleted; delete nothing")
	cmd.Flags().BoolVar(&yes, "yes", false, "delete (or archive) them")
	cmd.Flags().BoolVar(&archive, "archive", false, "move them to tasq_jobs_archive instead of deleting them")
	cmd.Flags().IntVar(&batch, "batch", 1000, "rows per delete statement")
	_ = cmd.MarkFlagRequired("state")
	return cmd
}
