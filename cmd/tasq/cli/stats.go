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
	// Estimated is true when Count is an estimate (see queue.QueueStat).
	Estimated bool `json:"estimated"`
}

func (a *app) statsCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats",
		Short: "Count jobs per queue and state",
		Long: `stats counts jobs per queue and state. On mysql, and on postgres while the
table is small, that is the same as

    SELECT queue, state, count(*) FROM tasq_jobs GROUP BY 1, 2 ORDER BY 1, 2

On a large postgres table the live jobs (pending, scheduled, available,
running, retryable) are still counted exactly, from the indexes that hold only them,
but the finished ones (completed, failed, cancelled) are estimated from the
table's statistics, as fresh as its last ANALYZE: the table marks estimates
with ~ and --json with "estimated": true. Counting millions of finished jobs
would read the whole table.

Redis counts its per-state indexes. SQS gives approximate counts: visible
messages as available, in-flight ones as running, delayed ones as scheduled
and the failed-job queues as failed; completed and cancelled jobs are deleted
from SQS, so they are not counted there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			return withCapability(a, cmd, "stats", func(sr queue.StatsReader) error {
				// The table lists the jobs no worker serves as well: look
				// them up at the same time as the counts, on a connection
				// of their own.
				type unserved struct {
					list []queue.UnservedKind
					err  error
				}
				var unservedDone chan unserved
				if ur, ok := sr.(queue.UnservedReader); ok && !asJSON {
					unservedDone = make(chan unserved, 1)
					go func() {
						list, err := ur.Unserved(cmd.Context())
						unservedDone <- unserved{list, err}
					}()
				}
				stats, err := sr.Stats(cmd.Context())
				var un unserved
				if unservedDone != nil {
					// Wait for the lookup in every case: the adapter
					// closes when this function returns.
					un = <-unservedDone
				}
				if err != nil {
					return fmt.Errorf("count jobs: %w", err)
				}
				if un.err != nil {
					return fmt.Errorf("find jobs no worker serves: %w", un.err)
				}
				out := cmd.OutOrStdout()
				if asJSON {
					list := make([]statJSON, len(stats))
					for i, s := range stats {
						list[i] = statJSON{Queue: s.Queue, State: s.State, Count: s.Count, Estimated: s.Estimated}
					}
					return writeJSON(out, list)
				}
				if len(stats) == 0 {
					fmt.Fprintln(out, "no jobs yet")
					return nil
				}
				writeStatsTable(out, stats)
				writeUnserved(out, un.list, time.Now())
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: one {queue, state, count, estimated} object per pair")
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

// statCell is one count of the stats table, and whether any part of it is
// an estimate.
type statCell struct {
	n         int64
	estimated bool
}

func (c *statCell) add(n int64, estimated bool) {
	c.n += n
	c.estimated = c.estimated || estimated
}

// String prints the count, after a ~ when it is an estimate.
func (c statCell) String() string {
	if c.estimated {
		return fmt.Sprintf("~%d", c.n)
	}
	return fmt.Sprint(c.n)
}

// writeStatsTable prints one row per queue and one column per state, with
// totals on the right and at the bottom; an estimated count (and a total
// that includes one) is marked with ~, explained below the table. Queue
// names are escaped (oneLine): a row inserted by hand may name any queue.
// The pending column (jobs waiting for others, queue.After) is shown only
// when some job is pending, so that the table of a backend or an app
// without dependencies keeps its columns.
func writeStatsTable(w io.Writer, stats []queue.QueueStat) {
	states := queue.States
	if !slices.ContainsFunc(stats, func(s queue.QueueStat) bool { return s.State == queue.StatePending && s.Count > 0 }) {
		states = slices.DeleteFunc(slices.Clone(states), func(s queue.JobState) bool { return s == queue.StatePending })
	}
	var queues []string
	counts := map[string]map[queue.JobState]*statCell{}
	anyEstimate := false
	for _, s := range stats {
		if counts[s.Queue] == nil {
			counts[s.Queue] = map[queue.JobState]*statCell{}
			queues = append(queues, s.Queue)
		}
		c := counts[s.Queue][s.State]
		if c == nil {
			c = &statCell{}
			counts[s.Queue][s.State] = c
		}
		c.add(s.Count, s.Estimated)
		anyEstimate = anyEstimate || s.Estimated
	}
	slices.Sort(queues)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprint(tw, "QUEUE\t")
	for _, st := range states {
		fmt.Fprintf(tw, "%s\t", st)
	}
	fmt.Fprintln(tw, "TOTAL")
	totals := map[queue.JobState]*statCell{}
	for _, st := range states {
		totals[st] = &statCell{}
	}
	row := func(name string, c map[queue.JobState]*statCell) {
		fmt.Fprintf(tw, "%s\t", oneLine(name))
		var sum statCell
		for _, st := range states {
			var cell statCell
			if c[st] != nil {
				cell = *c[st]
			}
			fmt.Fprintf(tw, "%s\t", cell)
			sum.add(cell.n, cell.estimated)
		}
		fmt.Fprintf(tw, "%s\n", sum)
	}
	for _, q := range queues {
		row(q, counts[q])
		for st, c := range counts[q] {
			if totals[st] == nil { // a state this build does not know
				totals[st] = &statCell{}
			}
			totals[st].add(c.n, c.estimated)
		}
	}
	row("TOTAL", totals)
	_ = tw.Flush()
	if anyEstimate {
		fmt.Fprintln(w, "\n~ estimated from the table's statistics (as of its last ANALYZE); live jobs are counted exactly")
	}
}
