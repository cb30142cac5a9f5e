package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/queue"
)

func (a *app) outboxCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "outbox",
		Short: "Relay the outbox's jobs to Redis or SQS, and count them (postgres)",
		Long: `A task bound for Redis or SQS, dispatched with DispatchTx inside a
PostgreSQL transaction by a client built with queue.WithOutbox(pgAdapter), is
written to the table tasq_outbox in that transaction. A relay delivers it to
its backend after the commit, at least once; Redis deduplicates by the job's
ID. Rolled back, it is never sent.

  tasq outbox relay --to redis=redis://127.0.0.1:6379/0 --to sqs=http://127.0.0.1:4566
  tasq outbox stats

Any number of relays may run at once. From SQL:
SELECT driver, count(*), min(created_at) FROM tasq_outbox WHERE failed_at IS NULL GROUP BY 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.outboxRelayCommand(), a.outboxStatsCommand())
	return cmd
}

// openOutbox opens the database URL's backend, which must be postgres.
func (a *app) openOutbox(ctx context.Context) (*postgres.Adapter, error) {
	ad, err := a.openAdapter(ctx)
	if err != nil {
		return nil, err
	}
	pg, ok := ad.(*postgres.Adapter)
	if !ok {
		ad.Close()
		return nil, &UnsupportedError{Backend: ad.Name(), Command: "outbox", Capability: capabilityName[queue.Outbox]()}
	}
	return pg, nil
}

func (a *app) outboxRelayCommand() *cobra.Command {
	var to []string
	var opts postgres.RelayOptions
	cmd := &cobra.Command{
		Use:   "relay --to DRIVER=URL ...",
		Short: "Deliver the outbox's jobs to their backends until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(to) == 0 {
				return fmt.Errorf("%w: relay needs at least one --to DRIVER=URL (e.g. --to redis=redis://127.0.0.1:6379/0)", queue.ErrInvalidConfig)
			}
			targets, closeTargets, err := openRelayTargets(cmd.Context(), "--to", to)
			if err != nil {
				return err
			}
			defer closeTargets()
			silenceUsage(cmd)
			pg, err := a.openOutbox(cmd.Context())
			if err != nil {
				return err
			}
			defer pg.Close()
			relay, err := pg.NewRelay(targets, opts)
			if err != nil {
				return err
			}
			ctx, stop := withSignals(cmd.Context(), nil)
			defer stop()
			fmt.Fprintf(cmd.ErrOrStderr(), "relaying the outbox to %s; Ctrl-C stops\n", strings.Join(sortedKeys(targets), ", "))
			return relay.Run(ctx)
		},
	}
	cmd.Flags().StringArrayVar(&to, "to", nil, "a target backend: DRIVER=URL, DRIVER being the name jobs were dispatched for (repeatable)")
	cmd.Flags().IntVar(&opts.Batch, "batch", 500, "most jobs per delivery round")
	cmd.Flags().DurationVar(&opts.Poll, "poll", time.Second, "longest wait after a round that found nothing (committing transactions wake the relay at once; behind a transaction pooler this is the lag)")
	return cmd
}

// openRelayTargets opens the backends of DRIVER=URL values given to flag,
// and returns them with a function that closes them.
func openRelayTargets(ctx context.Context, flag string, to []string) (map[string]queue.Inserter, func(), error) {
	targets := map[string]queue.Inserter{}
	var opened []queue.Adapter
	closeAll := func() {
		for _, ad := range opened {
			ad.Close()
		}
	}
	for _, t := range to {
		name, url, ok := strings.Cut(t, "=")
		if !ok || name == "" || url == "" {
			closeAll()
			return nil, nil, fmt.Errorf("%w: %s %q: want DRIVER=URL, e.g. redis=redis://127.0.0.1:6379/0", queue.ErrInvalidConfig, flag, t)
		}
		if _, dup := targets[name]; dup {
			closeAll()
			return nil, nil, fmt.Errorf("%w: %s names %q twice", queue.ErrInvalidConfig, flag, name)
		}
		driver, err := DriverForURL(url)
		if err == nil {
			var ad queue.Adapter
			if ad, err = (backend{driver: driver, url: url}).open(ctx); err == nil {
				opened = append(opened, ad)
				targets[name] = ad
				continue
			}
		}
		closeAll()
		return nil, nil, fmt.Errorf("%s %s: %w", flag, name, err)
	}
	return targets, closeAll, nil
}

func (a *app) outboxStatsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count the outbox's pending and failed jobs per target backend",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			pg, err := a.openOutbox(cmd.Context())
			if err != nil {
				return err
			}
			defer pg.Close()
			stats, err := pg.OutboxStats(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(stats)
			}
			if len(stats) == 0 {
				fmt.Fprintln(out, "the outbox is empty")
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "DRIVER\tPENDING\tFAILED\tOLDEST PENDING")
			for _, s := range stats {
				oldest := "-"
				if !s.Oldest.IsZero() {
					oldest = time.Since(s.Oldest).Round(time.Millisecond).String() + " ago"
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", oneLine(s.Driver), s.Pending, s.Failed, oldest)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
