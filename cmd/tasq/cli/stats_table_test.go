package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/tasqhq/tasq/queue"
)

// The stats table marks estimated counts, and the totals that include one,
// with ~, and says below the table what that means; exact tables carry no
// mark and no note.
func TestStatsTableMarksEstimates(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	writeStatsTable(&b, []queue.QueueStat{
		{Queue: "mail", State: queue.StateAvailable, Count: 12},
		{Queue: "mail", State: queue.StateCompleted, Count: 9000, Estimated: true},
		{Queue: "pay", State: queue.StateRunning, Count: 3},
		{Queue: "pay", State: queue.StateFailed, Count: 40, Estimated: true},
	})
	out := b.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^mail\s+0\s+12\s+0\s+~9000\s+0\s+0\s+0\s+~9012$`),
		regexp.MustCompile(`(?m)^pay\s+0\s+0\s+3\s+0\s+0\s+~40\s+0\s+~43$`),
		regexp.MustCompile(`(?m)^TOTAL\s+0\s+12\s+3\s+~9000\s+0\s+~40\s+0\s+~9055$`),
		regexp.MustCompile(`(?m)^~ estimated from the table's statistics`),
	} {
		if !want.MatchString(out) {
			t.Errorf("stats table does not match %v:\n%s", want, out)
		}
	}

	b.Reset()
	writeStatsTable(&b, []queue.QueueStat{{Queue: "mail", State: queue.StateCompleted, Count: 5}})
	if out := b.String(); strings.Contains(out, "~") {
		t.Errorf("exact stats table has a ~:\n%s", out)
	}
}

// The pending column shows only when some job waits for others.
func TestStatsTablePendingColumn(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	writeStatsTable(&b, []queue.QueueStat{
		{Queue: "albums", State: queue.StatePending, Count: 2},
		{Queue: "images", State: queue.StateAvailable, Count: 5},
	})
	out := b.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^QUEUE\s+pending\s+scheduled\s+available`),
		regexp.MustCompile(`(?m)^albums\s+2\s+0\s+0\s+0\s+0\s+0\s+0\s+0\s+2$`),
		regexp.MustCompile(`(?m)^images\s+0\s+0\s+5\s+0\s+0\s+0\s+0\s+0\s+5$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("stats table does not match %v:\n%s", want, out)
		}
	}
}
