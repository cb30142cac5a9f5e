package cli

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/queue"
)

// statJSON is one line of `tasq stats --json`.
type statJSON struct {
	Queue string         `json:"queue"`
	State queue.JobState `json:"state"`
	Count int64          `json:"count"`
}

func (a *app) statsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count jobs per queue and state",
		Long: `stats counts jobs per queue and state. On postgres and mysql that is the same as

    SELECT queue, state, count(*) FROM tasq_jobs GROUP BY 1, 2 ORDER BY 1, 2

Redis counts its per-state indexes. SQS gives approximate counts: visible
messages as available, in-flight ones as running, delayed ones as scheduled
and the failed-job queues as failed; completed and cancelled jobs are deleted
from SQS, so they are not counted there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			return withCapability(a, cmd, "stats", func(sr queue.StatsReader) error {
				stats, err := sr.Stats(cmd.Context())
				if err != nil {
					return fmt.Errorf("count jobs: %w", err)
				}
				out := cmd.OutOrStdout()
				if asJSON {
					list := make([]statJSON, len(stats))
					for i, s := range stats {
						list[i] = statJSON{Queue: s.Queue, State: s.State, Count: s.Count}
					}
					return writeJSON(out, list)
				}
				if len(stats) == 0 {
					fmt.Fprintln(out, "no jobs yet")
					return nil
				}
				writeStatsTable(out, stats)
				if ur, ok := sr.(queue.UnservedReader); ok {
					un, err := ur.Unserved(cmd.Context())
					if err != nil {
						return fmt.Errorf("find jobs no worker serves: %w", err)
					}
					writeUnserved(out, un, time.Now())
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: one {queue, state, count} object per pair")
	return cmd
}

// writeUnserved lists available jobs that no live worker can take: their
// kind is not registered with any running worker of their queue (a rolling
// deploy in progress, or a worker that was never deployed).
func writeUnserved(w io.Writer, un []queue.UnservedKind, now time.Time) {
	if len(un) == 0 {
		return
	}
	fmt.Fprintln(w, "\nwaiting for a worker that knows their kind (no live worker serves it):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tKIND\tJOBS\tOLDEST")
	for _, u := range un {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s ago\n", oneLine(u.Queue), oneLine(u.Kind), u.Count, now.Sub(u.Oldest).Round(time.Second))
	}
	_ = tw.Flush()
}

// writeStatsTable prints one row per queue and one column per state, with
// totals on the right and at the bottom. Queue names are escaped (oneLine):
// a row inserted by hand may name any queue.
func writeStatsTable(w io.Writer, stats []queue.QueueStat) {
	var queues []string
	counts := map[string]map[queue.JobState]int64{}
	for _, s := range stats {
		if counts[s.Queue] == nil {
			counts[s.Queue] = map[queue.JobState]int64{}
			queues = append(queues, s.Queue)
		}
		counts[s.Queue][s.State] += s.Count
	}
	slices.Sort(queues)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "QUEUE\t")
	for _, st := range queue.States {
		fmt.Fprintf(tw, "%s\t", st)
	}
	fmt.Fprintln(tw, "TOTAL")
	totals := map[queue.JobState]int64{}
	row := func(name string, c map[queue.JobState]int64) {
		fmt.Fprintf(tw, "%s\t", oneLine(name))
		var sum int64
		for _, st := range queue.States {
			fmt.Fprintf(tw, "%d\t", c[st])
			sum += c[st]
		}
		fmt.Fprintf(tw, "%d\n", sum)
	}
	for _, q := range queues {
		row(q, counts[q])
		for st, n := range counts[q] {
			totals[st] += n
		}
	}
	row("TOTAL", totals)
	_ = tw.Flush()
}
