package cli

import (
	"bytes"
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
		Long: `jobs looks up and changes single jobs through the backend's inspector. It
works on postgres, mysql and redis. SQS cannot find a job by ID, so on sqs these
commands fail and say so; use ` + "`tasq stats`" + ` there for counts per queue.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		a.jobsListCommand(),
		a.jobsShowCommand(),
		a.jobActionCommand("retry", "Make a failed, cancelled, retryable or scheduled job run again now, with a fresh retry budget",
			func(ad queue.Inspector, cmd *cobra.Command, id uuid.UUID) (string, error) {
				return "job %s retried: it is available now", ad.RetryJob(cmd.Context(), id)
			}),
		a.jobActionCommand("cancel", "Cancel a job that has not finished",
			func(ad queue.Inspector, cmd *cobra.Command, id uuid.UUID) (string, error) {
				return "job %s cancelled", ad.CancelJob(cmd.Context(), id)
			}),
		a.jobActionCommand("delete", "Delete a job that is not running",
			func(ad queue.Inspector, cmd *cobra.Command, id uuid.UUID) (string, error) {
				return "job %s deleted", ad.DeleteJob(cmd.Context(), id)
			}),
	)
	return cmd
}

// withInspector opens the backend, runs fn with its inspector and closes
// it. An error of fn that matches errors.ErrUnsupported becomes an
// UnsupportedError naming the backend and command.
func (a *app) withInspector(cmd *cobra.Command, command string, fn func(queue.Inspector) error) error {
	ad, err := a.openAdapter(cmd.Context())
	if err != nil {
		return err
	}
	defer ad.Close()
	return unsupported(ad, command, fn(ad))
}

func (a *app) jobsListCommand() *cobra.Command {
	var (
		state, queueName, kind string
		since                  time.Duration
		limit                  int
		asJSON                 bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs, newest first",
		Example: `  tasq jobs list --state failed
  tasq jobs list --queue payments --since 1h --json`,
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
			f.Queue, f.Kind, f.Limit = queueName, kind, limit
			return a.withInspector(cmd, "jobs list", func(ad queue.Inspector) error {
				jobs, err := ad.ListJobs(cmd.Context(), f)
				if errors.Is(err, errors.ErrUnsupported) {
					return err // withInspector explains it
				}
				if err != nil {
					return fmt.Errorf("list jobs: %w", err)
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
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&state, "state", "", "only jobs in this state: "+statesList())
	fl.StringVar(&queueName, "queue", "", "only jobs of this queue")
	fl.StringVar(&kind, "kind", "", "only jobs of this kind (task type), e.g. SendEmail")
	fl.DurationVar(&since, "since", 0, "only jobs dispatched within this long, e.g. 1h")
	fl.IntVar(&limit, "limit", 100, "show at most this many jobs")
	fl.BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return cmd
}

func statesList() string {
	s := make([]string, len(queue.States))
	for i, st := range queue.States {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

// writeJobTable prints one line per job.
func writeJobTable(w io.Writer, jobs []*queue.JobInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tKIND\tQUEUE\tSTATE\tATTEMPT\tDISPATCHED\tLAST ERROR")
	for _, j := range jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", j.ID, j.Kind, j.Queue, j.State,
			j.Attempt, j.MaxRetries+1, j.DispatchedAt.Local().Format(timeLayout), truncate(firstLine(j.LastError()), 60))
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
			return a.withInspector(cmd, "jobs show", func(ad queue.Inspector) error {
				j, err := ad.GetJob(cmd.Context(), id)
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
// error history.
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
		return s
	}
	timeout := "none"
	if j.Timeout > 0 {
		timeout = j.Timeout.String()
	}
	fmt.Fprintf(tw, "id:\t%s\n", j.ID)
	fmt.Fprintf(tw, "kind:\t%s\n", j.Kind)
	fmt.Fprintf(tw, "queue:\t%s\n", j.Queue)
	fmt.Fprintf(tw, "state:\t%s\n", j.State)
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
	_ = tw.Flush()
	fmt.Fprintf(w, "payload:\n%s\n", indentJSON(j.Payload))
	fmt.Fprintf(w, "result:\n%s\n", indentJSON(j.Result))
	if len(j.Errors) == 0 {
		fmt.Fprintln(w, "errors: none")
		return
	}
	fmt.Fprintf(w, "errors (%d, oldest first):\n", len(j.Errors))
	for _, e := range j.Errors {
		at := "?"
		if !e.At.IsZero() {
			at = e.At.Local().Format(timeLayout)
		}
		fmt.Fprintf(w, "  attempt %d at %s: %s\n", e.Attempt, at, strings.ReplaceAll(e.Error, "\n", "\n    "))
	}
}

// indentJSON pretty-prints raw JSON indented by two spaces; "  -" when empty.
func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "  -"
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "  ", "  "); err != nil {
		return "  " + string(raw)
	}
	return "  " + b.String()
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
}

func toJSON(j *queue.JobInfo) jobJSON {
	out := jobJSON{
		ID: j.ID, Kind: j.Kind, Queue: j.Queue, State: j.State, Priority: j.Priority,
		Payload: j.Payload, Result: j.Result, Attempt: j.Attempt, MaxRetries: j.MaxRetries,
		RetryDelayMS: j.RetryDelay.Milliseconds(), TimeoutMS: j.Timeout.Milliseconds(),
		RunAt: j.RunAt, DispatchedAt: j.DispatchedAt, AttemptedAt: j.AttemptedAt,
		LeaseExpiresAt: j.LeaseExpiresAt, FinishedAt: j.FinishedAt, Errors: j.Errors,
	}
	if j.AttemptedBy != "" {
		out.AttemptedBy = &j.AttemptedBy
	}
	if out.Errors == nil {
		out.Errors = []queue.JobError{}
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// jobActionCommand builds retry, cancel and delete: act changes the job and
// returns the success message (with a %s for the ID) and its error.
func (a *app) jobActionCommand(name, short string, act func(queue.Inspector, *cobra.Command, uuid.UUID) (string, error)) *cobra.Command {
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
			return a.withInspector(cmd, "jobs "+name, func(ad queue.Inspector) error {
				msg, err := act(ad, cmd, id)
				if err != nil {
					switch {
					case errors.Is(err, errors.ErrUnsupported):
						return err // withInspector explains it
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
