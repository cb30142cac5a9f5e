package postgres

import (
	"context"
	"time"

	"github.com/tasqhq/tasq/queue"
)

// FireSchedulesWithHook is FireSchedules with hook run inside each
// transaction at two stages: "claimed" (after the claim, before anything is
// written) and "dispatched" (jobs and next ticks written, not committed).
// Tests stop a firer there, as a crash would.
func FireSchedulesWithHook(ctx context.Context, a *Adapter, now time.Time, hook func(ctx context.Context, stage string) error) ([]queue.FiredSchedule, error) {
	return a.fireSchedules(ctx, now, hook)
}
