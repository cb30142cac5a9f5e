package cli

import (
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

func (a *app) cronCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cron",
		Short: "List, add, pause, resume, trigger and remove periodic jobs (schedules)",
		Long: `cron manages schedules: periodic jobs that the workers dispatch on every tick
of a cron expression or an interval. Schedules live in the database
(tasq_schedules on postgres), so a change here reaches every worker at once,
and survives restarts and deploys. Only backends that keep schedules
(queue.Scheduler) have them: postgres.

A paused schedule does not tick; resume goes on from its next tick after the
resume (the ticks in between do not run). trigger dispatches the schedule's
job now and leaves its regular ticks as they were. An application that
defines its schedules in code (client.Schedule at start) puts a removed one
back on its next start; pause it instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(
		a.cronListCommand(),
		a.cronAddCommand(),
		a.cronActionCommand("pause", "Stop a schedule's ticks until it is resumed",
			func(s queue.Scheduler, cmd *cobra.Command, name string) (string, error) {
				return "schedule %s paused", s.PauseSchedule(cmd.Context(), name)
			}),
		a.cronActionCommand("resume", "Let a paused schedule tick again, from its next tick after now",
			func(s queue.Scheduler, cmd *cobra.Command, name string) (string, error) {
				if err := s.ResumeSchedule(cmd.Context(), name); err != nil {
					return "", err
				}
				info, err := s.GetSchedule(cmd.Context(), name)
				if err != nil {
					return "", err
				}
				return "schedule %s resumed; next tick " + nextText(info), nil
			}),
		a.cronActionCommand("trigger", "Dispatch a schedule's job now (its regular ticks stay as they are)",
			func(s queue.Scheduler, cmd *cobra.Command, name string) (string, error) {
				id, err := s.TriggerSchedule(cmd.Context(), name)
				return "schedule %s triggered: job " + id.String(), err
			}),
		a.cronActionCommand("remove", "Delete a schedule (the jobs it dispatched stay)",
			func(s queue.Scheduler, cmd *cobra.Command, name string) (string, error) {
				return "schedule %s removed", s.RemoveSchedule(cmd.Context(), name)
			}),
	)
	return cmd
}

// cronActionCommand builds pause, resume, trigger and remove: act does it
// and returns the success message (with a %s for the name) and its error.
func (a *app) cronActionCommand(name, short string, act func(queue.Scheduler, *cobra.Command, string) (string, error)) *cobra.Command {
	return &cobra.Command{
		Use:   name + " NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			sname := args[0]
			return withCapability(a, cmd, "cron "+name, func(s queue.Scheduler) error {
				msg, err := act(s, cmd, sname)
				if errors.Is(err, queue.ErrScheduleNotFound) {
					return fmt.Errorf("no schedule is named %q (list them with `tasq cron list`)", oneLine(sname))
				}
				if err != nil {
					return fmt.Errorf("%s schedule %s: %w", name, oneLine(sname), err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), msg+"\n", oneLine(sname))
				return nil
			})
		},
	}
}

func (a *app) cronListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the schedules with their next and last runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			return withCapability(a, cmd, "cron list", func(s queue.Scheduler) error {
				list, err := s.ListSchedules(cmd.Context())
				if err != nil {
					return fmt.Errorf("list schedules: %w", err)
				}
				out := cmd.OutOrStdout()
				if asJSON {
					rows := make([]scheduleJSON, len(list))
					for i, s := range list {
						rows[i] = toScheduleJSON(s)
					}
					return writeJSON(out, rows)
				}
				if len(list) == 0 {
					fmt.Fprintln(out, "no schedules")
					return nil
				}
				writeScheduleTable(out, list)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (the tasq_schedules columns) instead of a table")
	return cmd
}

// whenText says when a schedule ticks: its expression and zone, or its
// interval.
func whenText(s *queue.ScheduleInfo) string {
	if s.Cron == "" {
		return "every " + shortDuration(s.Every)
	}
	if s.TimeZone == "" || s.TimeZone == "UTC" {
		return s.Cron
	}
	return s.Cron + " (" + s.TimeZone + ")"
}

// nextText is a schedule's next tick as the table shows it.
func nextText(s *queue.ScheduleInfo) string {
	switch {
	case s.Error != "":
		return "broken (see below)"
	case s.Paused:
		return "paused"
	case s.NextRunAt.IsZero():
		return "when a worker sees it"
	}
	return s.NextRunAt.Local().Format(timeLayout)
}

// shortDuration prints d without zero units: 1h, 1h30m, 90s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// writeScheduleTable prints one line per schedule, then the reasons of the
// schedules that cannot tick. Stored strings are escaped (oneLine).
func writeScheduleTable(w io.Writer, list []*queue.ScheduleInfo) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tWHEN\tKIND\tQUEUE\tMISSED\tNEXT\tLAST RUN")
	for _, s := range list {
		last := "-"
		if !s.LastRunAt.IsZero() {
			last = s.LastRunAt.Local().Format(timeLayout)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", oneLine(s.Name), oneLine(whenText(s)), oneLine(s.Kind), oneLine(s.Queue),
			oneLine(string(s.Missed)), nextText(s), last)
	}
	_ = tw.Flush()
	for _, s := range list {
		if s.Error != "" {
			fmt.Fprintf(w, "schedule %s cannot tick until it is changed or resumed: %s\n", oneLine(s.Name), oneLine(s.Error))
		}
	}
}

// scheduleJSON is a schedule as `tasq cron list --json` prints it: the
// tasq_schedules columns, by their names.
type scheduleJSON struct {
	Name         string          `json:"name"`
	Cron         *string         `json:"cron"`
	EveryMS      *int64          `json:"every_ms"`
	TimeZone     string          `json:"time_zone"`
	Missed       string          `json:"missed"`
	GraceMS      int64           `json:"grace_ms"`
	Kind         string          `json:"kind"`
	Payload      json.RawMessage `json:"payload"`
	Queue        string          `json:"queue"`
	Priority     int16           `json:"priority"`
	MaxRetries   int             `json:"max_retries"`
	RetryDelayMS int64           `json:"retry_delay_ms"`
	TimeoutMS    int64           `json:"timeout_ms"`
	Paused       bool            `json:"paused"`
	NextRunAt    *time.Time      `json:"next_run_at"`
	LastRunAt    *time.Time      `json:"last_run_at"`
	LastJobID    *uuid.UUID      `json:"last_job_id"`
	Error        *string         `json:"error"`
	CreatedAt    time.Time       `json:"created_at"`
	UpdatedAt    time.Time       `json:"updated_at"`
}

func toScheduleJSON(s *queue.ScheduleInfo) scheduleJSON {
	out := scheduleJSON{
		Name: s.Name, TimeZone: s.TimeZone, Missed: string(s.Missed), GraceMS: s.Grace.Milliseconds(), Kind: s.Kind,
		Payload: s.Payload, Queue: s.Queue, Priority: s.Priority, MaxRetries: s.MaxRetries,
		RetryDelayMS: s.RetryDelay.Milliseconds(), TimeoutMS: s.Timeout.Milliseconds(), Paused: s.Paused,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt,
	}
	if s.Cron != "" {
		out.Cron = &s.Cron
	} else {
		ms := s.Every.Milliseconds()
		out.EveryMS = &ms
	}
	if !s.NextRunAt.IsZero() {
		out.NextRunAt = &s.NextRunAt
	}
	if !s.LastRunAt.IsZero() {
		out.LastRunAt = &s.LastRunAt
	}
	if s.LastJobID != uuid.Nil {
		out.LastJobID = &s.LastJobID
	}
	if s.Error != "" {
		out.Error = &s.Error
	}
	return out
}

func (a *app) cronAddCommand() *cobra.Command {
	var (
		s                 queue.Schedule
		payload, missed   string
		replace           bool
		retries, priority int
	)
	cmd := &cobra.Command{
		Use:   "add NAME --kind KIND (--cron EXPR | --every DURATION) [flags]",
		Short: "Add a schedule (or replace one with --replace)",
		Long: `add stores a schedule that dispatches a job of --kind with --payload on every
tick of --cron (five fields, or six with seconds first, or @hourly, @daily,
@weekly, @monthly, @yearly; read in --tz) or of --every. Its first tick is the
first one after now. A name that is taken is refused unless --replace; a
replaced schedule keeps its next tick when its timing is unchanged.

--missed says what happens to ticks more than --grace late (no worker ran):
run_once dispatches one job for them all, skip drops them.`,
		Example: `  tasq cron add nightly-report --kind GenerateReport --cron '0 3 * * *' --tz Europe/Berlin --queue reports
  tasq cron add heartbeat --kind Ping --every 30s --missed skip --payload '{"target": "api"}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s.Name, s.Payload = args[0], json.RawMessage(payload)
			if priority < -32768 || priority > 32767 {
				return fmt.Errorf("--priority %d: give a number from -32768 to 32767", priority)
			}
			s.Priority, s.MaxRetries = int16(priority), retries
			if missed != "" {
				p, err := queue.ParseMissedPolicy(missed)
				if err != nil {
					return fmt.Errorf("--missed: %w", err)
				}
				s.Missed = p
			}
			if err := s.Check(); err != nil {
				return err
			}
			silenceUsage(cmd)
			return withCapability(a, cmd, "cron add", func(sc queue.Scheduler) error {
				var err error
				if replace {
					err = sc.UpsertSchedule(cmd.Context(), s)
				} else {
					err = sc.AddSchedule(cmd.Context(), s)
				}
				if errors.Is(err, queue.ErrScheduleExists) {
					return fmt.Errorf("a schedule named %q exists; give --replace to replace it", oneLine(s.Name))
				}
				if err != nil {
					return fmt.Errorf("add schedule %s: %w", oneLine(s.Name), err)
				}
				info, err := sc.GetSchedule(cmd.Context(), s.Name)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "schedule %s stored: %s; next tick %s\n", oneLine(s.Name), oneLine(whenText(info)), nextText(info))
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&s.Kind, "kind", "", "the task kind each tick runs (its Go type name or Kind()) (required)")
	fl.StringVar(&s.Cron, "cron", "", "a cron expression, e.g. '0 3 * * *'")
	fl.DurationVar(&s.Every, "every", 0, "or an interval between ticks, e.g. 15m")
	fl.StringVar(&s.TimeZone, "tz", "UTC", "the IANA time zone --cron is read in, e.g. Europe/Berlin")
	fl.StringVar(&missed, "missed", string(queue.MissedRunOnce), "what to do with ticks more than --grace late: run_once or skip")
	fl.DurationVar(&s.Grace, "grace", queue.DefaultScheduleGrace, "how late a tick may fire and still count as on time")
	fl.StringVar(&payload, "payload", "{}", "the job's payload, a JSON value")
	fl.StringVar(&s.Queue, "queue", queue.DefaultQueue, "the job's queue")
	fl.IntVar(&priority, "priority", 0, "the job's priority (higher runs first)")
	fl.IntVar(&retries, "max-retries", queue.DefaultMaxRetries, "the job's retries after its first attempt")
	fl.DurationVar(&s.RetryDelay, "retry-delay", queue.DefaultRetryDelay, "the job's wait between attempts")
	fl.DurationVar(&s.Timeout, "timeout", 0, "the job's timeout per attempt (0: none)")
	fl.BoolVar(&replace, "replace", false, "replace a schedule of the same name")
	_ = cmd.MarkFlagRequired("kind")
	return cmd
}
