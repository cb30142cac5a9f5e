package ui

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// The overview's throughput chart counts the jobs completed in each minute
// of the last hour. No capability counts them yet, so the chart reads them
// with queue.JobReader: the newest chartSample completed jobs dispatched
// within the last hour (plus a margin), bucketed by their finish time. On
// PostgreSQL that listing walks the primary key from its newest end and
// stops at the sample size or at the IDs older than the hour (ListFilter.Since
// bounds the ID), so it stays cheap on a table of ten million rows; when the
// hour held more completions than the sample, the chart says so and shows
// the sampled minutes only.

const (
	chartMinutes = 60
	chartSample  = 2000
	chartWidth   = 600
	chartHeight  = 120
)

type bar struct {
	X, Y, W, H int
	Count      int
	Label      string
}

type chart struct {
	Bars          []bar
	Max, Total    int
	Width, Height int
	From, To      string
}

// throughput returns the chart and a note about how it was made, or nil
// and why there is none.
func (h *Handler) throughput(r *http.Request) (*chart, string) {
	jr, ok := h.ad.(queue.JobReader)
	if !ok {
		return nil, fmt.Sprintf("The %s backend cannot list jobs (no queue.JobReader), so there is no throughput chart.", h.ad.Name())
	}
	now := h.opts.Now().UTC()
	end := now.Truncate(time.Minute).Add(time.Minute)
	start := end.Add(-chartMinutes * time.Minute)
	// Jobs finished within the hour may have been dispatched before it.
	jobs, err := jr.ListJobs(r.Context(), queue.ListFilter{State: queue.StateCompleted, Since: start.Add(-10 * time.Minute), Limit: chartSample})
	if err != nil {
		return nil, "Could not read completed jobs: " + err.Error()
	}
	counts := make([]int, chartMinutes)
	for _, j := range jobs {
		if j.FinishedAt == nil || j.FinishedAt.Before(start) || !j.FinishedAt.Before(end) {
			continue
		}
		counts[int(j.FinishedAt.Sub(start)/time.Minute)]++
	}
	c := &chart{Width: chartWidth, Height: chartHeight, From: start.Format("15:04"), To: end.Format("15:04 UTC")}
	for _, n := range counts {
		c.Total += n
		c.Max = max(c.Max, n)
	}
	w := chartWidth / chartMinutes
	for i, n := range counts {
		hgt := 0
		if c.Max > 0 {
			hgt = n * (chartHeight - 2) / c.Max
		}
		if n > 0 && hgt == 0 {
			hgt = 1
		}
		c.Bars = append(c.Bars, bar{X: i * w, Y: chartHeight - hgt, W: w - 1, H: hgt, Count: n,
			Label: fmt.Sprintf("%s: %d completed", start.Add(time.Duration(i)*time.Minute).Format("15:04"), n)})
	}
	note := ""
	if len(jobs) == chartSample {
		note = fmt.Sprintf("More than %d jobs completed recently: the chart shows the newest %d only, so older minutes read low.", chartSample, chartSample)
	}
	return c, note
}
