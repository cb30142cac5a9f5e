package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// burnDownWaitsSQL classifies the backends of the bench's database: the
// worker's statements by kind and what each waits on ("running" when it
// waits on nothing: on the CPU, or ready for it), idle connections, and
// autovacuum workers. Each row is a class and how many backends are in it.
const burnDownWaitsSQL = `
SELECT CASE WHEN backend_type = 'autovacuum worker' THEN 'autovacuum'
            WHEN state <> 'active' THEN coalesce(state, 'unknown')
            WHEN query LIKE '%SET state = ''running''%' THEN 'claim'
            WHEN query LIKE '%WITH done AS%' THEN 'finish'
            WHEN query LIKE '%INSERT INTO tasq_jobs%' THEN 'insert'
            ELSE 'other' END
       || CASE WHEN state = 'active' OR backend_type = 'autovacuum worker'
               THEN ' ' || coalesce(wait_event_type || ':' || wait_event, 'running') ELSE '' END,
       count(*)
FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND (backend_type = 'autovacuum worker' OR (backend_type = 'client backend' AND query NOT LIKE 'LISTEN%'))
GROUP BY 1`

// waitSampler polls pg_stat_activity on a connection of its own and sums,
// per class, the backends seen in it.
type waitSampler struct {
	stopCh chan struct{}
	done   chan map[string]float64
}

// startWaitSampler samples q every --wait-sample until stop. q returns
// (class text, backends bigint) rows. On a 2-core machine each sample costs
// a fraction of a millisecond of server CPU; --wait-sample 0 turns it off.
func (b *bench) startWaitSampler(ctx context.Context, q string, args ...any) *waitSampler {
	s := &waitSampler{stopCh: make(chan struct{}), done: make(chan map[string]float64, 1)}
	if b.f.waitSampleTick <= 0 {
		s.done <- nil
		return s
	}
	go func() {
		s.done <- b.sampleWaits(ctx, s.stopCh, q, args)
	}()
	return s
}

// stop ends the sampling and returns, per class, the average number of
// backends in it over the samples (nil when sampling was off or failed).
func (s *waitSampler) stop() map[string]float64 {
	close(s.stopCh)
	return <-s.done
}

func (b *bench) sampleWaits(ctx context.Context, stop <-chan struct{}, q string, args []any) map[string]float64 {
	conn, err := pgx.ConnectConfig(ctx, b.ad.Pool().Config().ConnConfig.Copy())
	if err != nil {
		fmt.Fprintf(b.errw, "[tasq] wait sampling off: %v\n", err)
		return nil
	}
	defer conn.Close(context.Background())
	sums := map[string]int64{}
	samples := 0
	t := time.NewTicker(b.f.waitSampleTick)
	defer t.Stop()
	for {
		select {
		case <-stop:
			if samples == 0 {
				return nil
			}
			avg := make(map[string]float64, len(sums))
			for k, v := range sums {
				avg[k] = float64(v) / float64(samples)
			}
			return avg
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rows, err := conn.Query(ctx, q, args...)
		if err != nil {
			fmt.Fprintf(b.errw, "[tasq] wait sampling stopped: %v\n", err)
			<-stop
			return nil
		}
		for rows.Next() {
			var class string
			var n int64
			if err := rows.Scan(&class, &n); err == nil {
				sums[class] += n
			}
		}
		rows.Close()
		samples++
	}
}

// formatWaits lists the classes busiest first, at most top of them, as
// "class 1.23" (average backends).
func formatWaits(w map[string]float64, top int) string {
	keys := slices.Collect(maps.Keys(w))
	slices.SortFunc(keys, func(a, b string) int {
		if w[a] != w[b] {
			if w[a] > w[b] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	parts := make([]string, 0, min(top, len(keys)))
	for i, k := range keys {
		if i == top {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %.2f", k, w[k]))
	}
	return strings.Join(parts, ", ")
}
