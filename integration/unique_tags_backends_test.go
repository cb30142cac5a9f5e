package integration

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/adapters/mysql"
	"github.com/tasqhq/tasq/adapters/redis"
	"github.com/tasqhq/tasq/adapters/sqs"
	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/internal/testredis"
	"github.com/tasqhq/tasq/internal/testsqs"
	"github.com/tasqhq/tasq/queue"
)

// MySQL, Redis and SQS store neither unique keys nor tags and metadata: a
// dispatch that has them fails with an error matching errors.ErrUnsupported
// and stores nothing, and a listing by tag finds no job.
func TestUniqueAndTagsRefusedByOtherBackends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rd, err := redis.NewFromClient(ctx, testredis.NewClient(t), redis.Options{Prefix: testredis.NewPrefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	sq, err := sqs.NewFromClient(ctx, testsqs.Client(t), sqs.Options{Prefix: testsqs.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	my, err := mysql.New(ctx, testmysql.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(my.Close)
	for _, a := range []queue.Adapter{rd, sq, my} {
		c, err := queue.NewClient(a)
		if err != nil {
			t.Fatal(err)
		}
		for name, tc := range map[string]struct {
			opt  queue.DispatchOption
			want error
		}{
			"unique": {queue.WithUnique(queue.UniqueOpts{}), queue.ErrUniqueUnsupported},
			"tags":   {queue.WithTags("tenant:1"), queue.ErrTagsUnsupported},
			"meta":   {queue.WithMeta(map[string]int{"n": 1}), queue.ErrTagsUnsupported},
		} {
			_, err := c.Dispatch(ctx, &DefaultTask{Key: name}, tc.opt)
			if !errors.Is(err, tc.want) || !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("%s: dispatch with %s = %v; want %v", a.Name(), name, err, tc.want)
			}
		}
		// The adapter refuses them itself too, when called directly.
		job := queue.NewJob{ID: uuid.Must(uuid.NewV7()), Kind: "k", Queue: "q", Payload: []byte(`{}`), Tags: []string{"t"}}
		if err := a.Insert(ctx, []queue.NewJob{job}); !errors.Is(err, queue.ErrTagsUnsupported) {
			t.Errorf("%s: Insert with tags = %v", a.Name(), err)
		}
		if jr, ok := a.(queue.JobReader); ok {
			if _, err := c.Dispatch(ctx, &DefaultTask{Key: "plain"}); err != nil {
				t.Fatalf("%s: plain dispatch: %v", a.Name(), err)
			}
			jobs, err := jr.ListJobs(ctx, queue.ListFilter{Tag: "tenant:1"})
			if err != nil || len(jobs) != 0 {
				t.Errorf("%s: ListJobs by tag = %d jobs, %v; want none", a.Name(), len(jobs), err)
			}
			all, err := jr.ListJobs(ctx, queue.ListFilter{})
			if err != nil || len(all) != 1 {
				t.Errorf("%s: %d jobs stored, %v; want only the plain one", a.Name(), len(all), err)
			}
		}
	}
}
