package cli

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/queue"
)

func (a *app) queuesCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "queues",
		Short: "Pause, resume and limit queues across every worker (postgres)",
		Long: `queues pauses and resumes queues and sets their global limits. The claim
itself checks them, in the database, so they hold for every worker on every
machine from the moment the command returns: a paused queue is claimed by
no one (running jobs finish), and a limited one never has more jobs running,
or started within the interval, than its limits allow.

The same from SQL: SELECT tasq_pause_queue('mail'); SELECT tasq_resume_queue('mail');
and the table tasq_queues.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.queuesListCommand(), a.queuesPauseCommand("pause"), a.queuesPauseCommand("resume"), a.queuesLimitCommand())
	return cmd
}

func (a *app) queuesListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the queues that are paused or limited",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			return withCapability(a, cmd, "queues list", func(qc queue.QueueController) error {
				states, err := qc.QueueStates(cmd.Context())
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				if asJSON {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					return enc.Encode(states)
				}
				if len(states) == 0 {
					fmt.Fprintln(out, "no queue is paused or limited")
					return nil
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "QUEUE\tPAUSED\tLIMITS")
				for _, s := range states {
					paused := "no"
					if s.Paused {
						paused = "since " + s.PausedAt.Local().Format(time.DateTime)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", oneLine(s.Name), paused, describeLimits(s.Limits))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// describeLimits says a queue's limits in a line.
func describeLimits(l queue.QueueLimits) string {
	one := func(prefix string, x queue.Limit) string {
		s := ""
		if x.MaxRunning > 0 {
			s += fmt.Sprintf("%s%d running", prefix, x.MaxRunning)
		}
		if x.MaxStarts > 0 {
			if s != "" {
				s += ", "
			}
			s += fmt.Sprintf("%s%d starts per %v", prefix, x.MaxStarts, x.Per)
		}
		return s
	}
	s := one("≤ ", l.Total)
	if l.KeyField != "" {
		if s != "" {
			s += "; "
		}
		s += "per " + oneLine(l.KeyField) + ": " + one("≤ ", l.PerKey)
	}
	if s == "" {
		return "none"
	}
	return s
}

func (a *app) queuesPauseCommand(verb string) *cobra.Command {
	short := "Stop every worker from claiming jobs of the queue; running jobs finish"
	if verb == "resume" {
		short = "Let workers claim jobs of the queue again, and wake them"
	}
	return &cobra.Command{
		Use:   verb + " QUEUE",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			name := args[0]
			return withCapability(a, cmd, "queues "+verb, func(qc queue.QueueController) error {
				var err error
				if verb == "pause" {
					err = qc.PauseQueue(cmd.Context(), name)
				} else {
					err = qc.ResumeQueue(cmd.Context(), name)
				}
				if err != nil {
					return fmt.Errorf("%s queue %s: %w", verb, oneLine(name), err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "queue %s %sd\n", oneLine(name), verb)
				return nil
			})
		},
	}
}

func (a *app) queuesLimitCommand() *cobra.Command {
	var (
		l     queue.QueueLimits
		clear bool
	)
	cmd := &cobra.Command{
		Use:   "limit QUEUE [--max-running N] [--max-starts M --per D] [--key FIELD --key-max-running N --key-max-starts M --key-per D] | --clear",
		Short: "Set a queue's global limits: running at once and starts per interval, for the queue and per key",
		Long: `limit replaces the queue's limits with those given (a flag left out is no
limit). --key names the payload field whose value is a job's key, e.g.
customer_id or customer.id; --key-* limit each key on its own. --clear
removes every limit (a pause stays).

  tasq queues limit emails --max-running 10 --max-starts 100 --per 1m
  tasq queues limit reports --key customer_id --key-max-running 1`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			if clear == !l.IsZero() {
				if clear {
					return fmt.Errorf("--clear removes every limit; give it without other limit flags")
				}
				return fmt.Errorf("give at least one limit (--max-running, --max-starts with --per, --key with --key-max-running or --key-max-starts), or --clear")
			}
			if err := l.Check(); err != nil {
				return err
			}
			name := args[0]
			return withCapability(a, cmd, "queues limit", func(qc queue.QueueController) error {
				if err := qc.SetQueueLimits(cmd.Context(), name, l); err != nil {
					return fmt.Errorf("limit queue %s: %w", oneLine(name), err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "queue %s: %s\n", oneLine(name), describeLimits(l))
				return nil
			})
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&l.Total.MaxRunning, "max-running", 0, "most jobs of the queue running at once")
	fl.IntVar(&l.Total.MaxStarts, "max-starts", 0, "most jobs of the queue started within any interval of --per")
	fl.DurationVar(&l.Total.Per, "per", 0, "the interval of --max-starts")
	fl.StringVar(&l.KeyField, "key", "", "payload field whose value is a job's key (a.b for nested fields)")
	fl.IntVar(&l.PerKey.MaxRunning, "key-max-running", 0, "most jobs of one key running at once")
	fl.IntVar(&l.PerKey.MaxStarts, "key-max-starts", 0, "most jobs of one key started within any interval of --key-per")
	fl.DurationVar(&l.PerKey.Per, "key-per", 0, "the interval of --key-max-starts")
	fl.BoolVar(&clear, "clear", false, "remove the queue's limits")
	return cmd
}
