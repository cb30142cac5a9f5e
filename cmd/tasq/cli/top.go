package cli

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/queue"
)

func (a *app) topCommand() *cobra.Command {
	var interval time.Duration
	var once bool
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Watch the queues live: depth, lag and completions per minute",
		Long: `top shows every queue's jobs by state, its lag (how long the oldest available
job has waited, on backends that can tell: postgres) and the jobs completed
per minute, refreshed every --interval in place on a terminal (elsewhere one
frame after another) until interrupted.

COMPLETED/MIN comes from the change of the completed count between two
frames: it shows - on the first frame, and is marked ~ where the count is
an estimate (the finished jobs of a large postgres table; see tasq stats).
Retention deleting completed jobs meanwhile makes it read low.

--once samples twice, --interval apart, prints one frame and exits.`,
		Example: `  tasq top
  tasq top --interval 5s
  tasq top --once --interval 10s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			if interval <= 0 {
				return fmt.Errorf("--interval %v: give a positive duration such as 2s", interval)
			}
			return withCapability(a, cmd, "top", func(sr queue.StatsReader) error {
				ctx, stop := withSignals(cmd.Context(), nil)
				defer stop()
				return runTop(ctx, cmd.OutOrStdout(), sr, interval, once)
			})
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "time between frames")
	cmd.Flags().BoolVar(&once, "once", false, "print one frame (after two samples --interval apart) and exit")
	return cmd
}

// topSample is one reading of the queues.
type topSample struct {
	at    time.Time
	stats []queue.QueueStat
	lags  map[string]time.Duration // nil when the backend cannot tell lag
}

func readTop(ctx context.Context, sr queue.StatsReader) (topSample, error) {
	s := topSample{at: time.Now()}
	var err error
	if s.stats, err = sr.Stats(ctx); err != nil {
		return s, fmt.Errorf("count jobs: %w", err)
	}
	if lr, ok := sr.(queue.LagReader); ok {
		lags, err := lr.Lag(ctx)
		if err != nil {
			return s, fmt.Errorf("read queue lag: %w", err)
		}
		s.lags = make(map[string]time.Duration, len(lags))
		for _, l := range lags {
			s.lags[l.Queue] = l.Lag
		}
	}
	return s, nil
}

func runTop(ctx context.Context, out io.Writer, sr queue.StatsReader, interval time.Duration, once bool) error {
	tty := isTerminal(out)
	var prev *topSample
	t := time.NewTicker(interval)
	defer t.Stop()
	for first := true; ; first = false {
		cur, err := readTop(ctx, sr)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if !once || prev != nil {
			switch {
			case tty:
				_, _ = io.WriteString(out, "\x1b[H\x1b[2J") // home, clear screen
			case !first && !once:
				fmt.Fprintln(out)
			}
			writeTopFrame(out, prev, cur, interval)
			if once {
				return nil
			}
		}
		prev = &cur
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// topRow is one queue's line.
type topRow struct {
	available, running, waiting, failed int64
	completed                           statCell
}

func topRows(stats []queue.QueueStat) map[string]*topRow {
	rows := map[string]*topRow{}
	for _, s := range stats {
		r := rows[s.Queue]
		if r == nil {
			r = &topRow{}
			rows[s.Queue] = r
		}
		switch s.State {
		case queue.StateAvailable:
			r.available += s.Count
		case queue.StateRunning:
			r.running += s.Count
		case queue.StateFailed:
			r.failed += s.Count
		case queue.StateCompleted:
			r.completed.add(s.Count, s.Estimated)
		case queue.StateCancelled:
		default: // scheduled, retryable, and any state that waits for its turn
			r.waiting += s.Count
		}
	}
	return rows
}

// writeTopFrame prints one frame: a header and a row per queue. The rate
// needs prev; without it the column shows -.
func writeTopFrame(w io.Writer, prev *topSample, cur topSample, interval time.Duration) {
	fmt.Fprintf(w, "tasq top  %s  every %v\n\n", cur.at.UTC().Format("2006-01-02 15:04:05 UTC"), interval)
	rows := topRows(cur.stats)
	var before map[string]*topRow
	if prev != nil {
		before = topRows(prev.stats)
	}
	if len(rows) == 0 {
		fmt.Fprintln(w, "no jobs yet")
		return
	}
	queues := make([]string, 0, len(rows))
	for q := range rows {
		queues = append(queues, q)
	}
	slices.Sort(queues)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tAVAILABLE\tRUNNING\tWAITING\tFAILED\tLAG\tCOMPLETED/MIN")
	for _, q := range queues {
		r := rows[q]
		lag := "-"
		if cur.lags != nil {
			lag = formatLag(cur.lags[q])
		}
		rate := "-"
		if before != nil {
			var was statCell
			if b := before[q]; b != nil {
				was = b.completed
			}
			perMin := float64(max(r.completed.n-was.n, 0)) / cur.at.Sub(prev.at).Minutes()
			rate = fmt.Sprintf("%.0f", perMin)
			if r.completed.estimated || was.estimated {
				rate = "~" + rate
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\n", oneLine(q), r.available, r.running, r.waiting, r.failed, lag, rate)
	}
	_ = tw.Flush()
}

// formatLag rounds a lag for reading: 0 when nothing waits.
func formatLag(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(100 * time.Millisecond).String()
	}
}
