package redis_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/internal/testredis"
	"github.com/tasqhq/tasq/queue"
)

// BenchmarkInsert measures Insert of batches of no-op jobs into one queue
// (1000 a batch is how `tasq bench` inserts); b.N counts batches. The
// parallel cases insert from that many goroutines at once, so the client's
// work on one batch overlaps the server's on another.
func BenchmarkInsert(b *testing.B) {
	for _, tc := range []struct{ size, par int }{{1, 1}, {100, 1}, {1000, 1}, {1000, 2}, {1000, 4}} {
		b.Run(fmt.Sprintf("batch=%d/goroutines=%d", tc.size, tc.par), func(b *testing.B) {
			ctx := b.Context()
			a, err := redis.NewFromClient(ctx, testredis.NewClient(b), redis.Options{Prefix: testredis.NewPrefix(b)})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(a.Close)
			batch := func() []queue.NewJob {
				out := make([]queue.NewJob, tc.size)
				for i := range out {
					out[i] = queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "bench_noop", Queue: "bench",
						Payload: fmt.Appendf(nil, `{"n":%d}`, i), MaxRetries: 25}
				}
				return out
			}
			b.ReportAllocs()
			if tc.par == 1 {
				for b.Loop() {
					if err := a.Insert(ctx, batch()); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range tc.par {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							if err := a.Insert(ctx, batch()); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(b.N*tc.size)/b.Elapsed().Seconds(), "jobs/s")
		})
	}
}
