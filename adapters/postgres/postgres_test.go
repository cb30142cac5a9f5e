package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/tasqhq/tasq/adapters/adaptertest"
	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

func TestConformance(t *testing.T) {
	adaptertest.Run(t, adaptertest.Harness{
		New: func(t *testing.T) queue.Adapter {
			a, err := postgres.New(context.Background(), testpg.NewDatabase(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(a.Close)
			return a
		},
		Tx: func(t *testing.T, a queue.Adapter) (any, func() error, func() error) {
			ctx := context.Background()
			tx, err := a.(*postgres.Adapter).Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return tx, func() error { return tx.Commit(ctx) }, func() error { return tx.Rollback(ctx) }
		},
	})
}
