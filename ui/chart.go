package ui

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// The overview's throughput chart counts the jobs completed and failed in
// each minute of the last hour.
//
// With queue.ThroughputReader (postgres has it) the counts are exact: the
// backend counts the jobs finished since the hour began from its index on
// finish times, at a cost that grows with the hour's finished jobs, not
// with the table.
//
// Without it the chart falls back to a sample read with queue.JobReader:
// the newest chartSample completed jobs dispatched within the last hour
// (plus a margin), bucketed by their finish time, and no failed count. On
// PostgreSQL that listing walks the primary key from its newest end and
// stops at the sample size or at the IDs older than the hour (ListFilter.Since
// bounds the ID); when the hour held more completions than the sample, the
// chart says so and shows the sampled minutes only.

const (
	chartMinutes = 60
	chartSample  = 2000
	chartWidth   = 600
	chartHeight  = 120
)

// bar is one minute: the completed part from the bottom (Y, H) and the
// failed part stacked on it (FY, FH).
type bar struct {
	X, Y, W, H int
	FY, FH     int
	Label      string
}

type chart struct {
	Bars          []bar
	Max           int64 // the most jobs finished (completed + failed) in a minute
	Total, Failed int64
	Width, Height int
	From, To      string
	Exact         bool
}

// throughput returns the chart and a note about how it was made, or nil
// and why there is none.
func (h *Handler) throughput(r *http.Request) (*chart, string) {
	now := h.opts.Now().UTC()
	end := now.Truncate(time.Minute).Add(time.Minute)
	start := end.Add(-chartMinutes * time.Minute)
	completed := make([]int64, chartMinutes)
	failed := make([]int64, chartMinutes)
	note := ""
	exact := false
	if tr, ok := h.ad.(queue.ThroughputReader); ok {
		pts, err := tr.Throughput(r.Context(), start, time.Minute)
		if err != nil {
			return nil, "Could not count finished jobs: " + err.Error()
		}
		for _, p := range pts {
			i := int(p.At.Sub(start) / time.Minute)
			if i < 0 || i >= chartMinutes {
				continue // finished "in the future": a clock ahead of ours
			}
			completed[i] += p.Completed
			failed[i] += p.Failed
		}
		exact = true
	} else {
		jr, ok := h.ad.(queue.JobReader)
		if !ok {
			return nil, fmt.Sprintf("The %s backend can neither count finished jobs (no queue.ThroughputReader) nor list them (no queue.JobReader), so there is no throughput chart.", h.ad.Name())
		}
		// Jobs finished within the hour may have been dispatched before it.
		jobs, err := jr.ListJobs(r.Context(), queue.ListFilter{State: queue.StateCompleted, Since: start.Add(-10 * time.Minute), Limit: chartSample})
		if err != nil {
			return nil, "Could not read completed jobs: " + err.Error()
		}
		for _, j := range jobs {
			if j.FinishedAt == nil || j.FinishedAt.Before(start) || !j.FinishedAt.Before(end) {
				continue
			}
			completed[int(j.FinishedAt.Sub(start)/time.Minute)]++
		}
		note = fmt.Sprintf("The %s backend cannot count finished jobs (no queue.ThroughputReader): the chart samples the newest %d completed jobs and shows no failures.", h.ad.Name(), chartSample)
		if len(jobs) == chartSample {
			note = fmt.Sprintf("More than %d jobs completed recently: the chart shows the newest %d only, so older minutes read low.", chartSample, chartSample)
		}
	}
	c := &chart{Width: chartWidth, Height: chartHeight, From: start.Format("15:04"), To: end.Format("15:04 UTC"), Exact: exact}
	for i := range completed {
		c.Total += completed[i]
		c.Failed += failed[i]
		c.Max = max(c.Max, completed[i]+failed[i])
	}
	w := chartWidth / chartMinutes
	height := func(n int64) int {
		if c.Max == 0 || n == 0 {
			return 0
		}
		return max(1, int(n*(chartHeight-2)/c.Max))
	}
	for i := range completed {
		hc, hf := height(completed[i]), height(failed[i])
		c.Bars = append(c.Bars, bar{X: i * w, Y: chartHeight - hc, W: w - 1, H: hc, FY: chartHeight - hc - hf, FH: hf,
			Label: fmt.Sprintf("%s: %d completed, %d failed", start.Add(time.Duration(i)*time.Minute).Format("15:04"), completed[i], failed[i])})
	}
	return c, note
}
