package redis_test

import (
	"context"
	"fmt"
	"log"
	"os"

	goredis "github.com/redis/go-redis/v9"

	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// sendEmail is a task, as in the guide.
type sendEmail struct {
	To string
}

func (t *sendEmail) Handle(ctx context.Context) (string, error) {
	return "sent to " + t.To, nil
}

// Open the adapter from a URL, dispatch a task, and run a worker on the
// same Redis. Redis cannot join a SQL transaction: dispatch after commit.
func ExampleNew() {
	ctx := context.Background()
	a, err := redis.New(ctx, os.Getenv("TASQ_REDIS_URL")) // redis://127.0.0.1:6379/0?key_prefix=myapp:
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	client, err := queue.NewClient(a)
	if err != nil {
		log.Fatal(err)
	}
	id, err := client.Dispatch(ctx, &sendEmail{To: "ada@example.com"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("dispatched", id)

	reg := queue.NewRegistry()
	queue.MustRegister(reg, &sendEmail{})
	w, err := worker.New(a, reg, worker.Config{Concurrency: 10})
	if err != nil {
		log.Fatal(err)
	}
	_ = w.Run(ctx) // until ctx is cancelled
}

// Share your application's client; keys go under your own prefix.
func ExampleNewFromClient() {
	ctx := context.Background()
	rdb := goredis.NewClient(&goredis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	a, err := redis.NewFromClient(ctx, rdb, redis.Options{Prefix: "myapp:tasq:"})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close() // leaves rdb open
	stats, err := a.Stats(ctx)
	if err != nil {
		log.Fatal(err)
	}
	for _, s := range stats {
		fmt.Println(s.Queue, s.State, s.Count)
	}
}
