package cli_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/queue"
)

// `tasq jobs list --tag` lists the jobs with the tag, and keeps the filter
// in the next page's command; `jobs show` and --json print tags and meta.
func TestJobsListByTag(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	var tagged []uuid.UUID // newest first
	for i := range 5 {
		opts := []queue.DispatchOption{queue.WithTags("tenant:7")}
		if i%2 == 0 {
			opts = []queue.DispatchOption{queue.WithTags("tenant:8")}
		}
		id := e.dispatch(t, ctx, &demo.SendEmail{To: "ann@example.com"}, opts...)
		if i%2 == 1 {
			tagged = append([]uuid.UUID{id}, tagged...)
		}
	}
	withMeta := e.dispatch(t, ctx, &demo.SendEmail{To: "bob@example.com"}, queue.WithTags("tenant:7", "vip"),
		queue.WithMeta(map[string]any{"request_id": "r-1\x1b[31m"}))
	tagged = append([]uuid.UUID{withMeta}, tagged...)

	r := run(ctx, cli.Options{}, "jobs", "list", "--tag", "tenant:7", "--limit", "2", "--database-url", e.dsn)
	if r.err != nil {
		t.Fatal(r.err)
	}
	for i, id := range tagged[:2] {
		if !strings.Contains(r.out, id.String()) {
			t.Errorf("page 1 lacks job %d (%s):\n%s", i, id, r.out)
		}
	}
	m := nextPage.FindStringSubmatch(r.errOut)
	if m == nil || !strings.Contains(m[1], "--tag tenant:7") {
		t.Fatalf("next page command %q lacks --tag tenant:7", r.errOut)
	}

	r = run(ctx, cli.Options{}, "jobs", "list", "--tag", "tenant:7", "--json", "--database-url", e.dsn)
	if r.err != nil {
		t.Fatal(r.err)
	}
	var list []struct {
		ID   uuid.UUID       `json:"id"`
		Tags []string        `json:"tags"`
		Meta json.RawMessage `json:"meta"`
	}
	if err := json.Unmarshal([]byte(r.out), &list); err != nil {
		t.Fatalf("%v:\n%s", err, r.out)
	}
	if len(list) != len(tagged) {
		t.Fatalf("--tag tenant:7 --json listed %d jobs; want %d", len(list), len(tagged))
	}
	for i := range list {
		if list[i].ID != tagged[i] {
			t.Errorf("job %d: %s; want %s", i, list[i].ID, tagged[i])
		}
	}
	var meta map[string]string
	if err := json.Unmarshal(list[0].Meta, &meta); err != nil || meta["request_id"] != "r-1\x1b[31m" || strings.Join(list[0].Tags, ",") != "tenant:7,vip" {
		t.Errorf("--json job: tags %v meta %s (%v)", list[0].Tags, list[0].Meta, err)
	}
	if strings.Contains(r.out, "\x1b") {
		t.Error("--json printed a raw escape character")
	}

	r = run(ctx, cli.Options{}, "jobs", "show", withMeta.String(), "--database-url", e.dsn)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !strings.Contains(r.out, "tenant:7 vip") || !strings.Contains(r.out, `"request_id": "r-1\u001b[31m"`) || strings.Contains(r.out, "\x1b") {
		t.Errorf("jobs show lacks the tags or the (escaped) meta:\n%s", r.out)
	}

	r = run(ctx, cli.Options{}, "jobs", "list", "--tag", "no such", "--database-url", e.dsn)
	if r.err == nil || !strings.Contains(r.err.Error(), "--tag") {
		t.Errorf("a bad --tag: %v", r.err)
	}
	r = run(ctx, cli.Options{}, "jobs", "list", "--tag", "tenant:9", "--database-url", e.dsn)
	if r.err != nil || !strings.Contains(r.out, "no jobs match") {
		t.Errorf("an unused tag: %v\n%s", r.err, r.out)
	}
}
