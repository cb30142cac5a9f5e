package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/queue"
)

// Finish names finished jobs on the done channel only after a client said
// it waits ("await" on the control channel, heard through Listen), and then
// in payloads PostgreSQL accepts.
func TestFinishNotificationsOnlyWhileClientsWait(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := New(ctx, testpg.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	listener, err := a.listen(ctx, a.sql.done)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(context.Background())
	next := func(within time.Duration) string {
		t.Helper()
		nctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		n, err := listener.WaitForNotification(nctx)
		if err != nil {
			t.Fatalf("no notification on %s within %v: %v", a.sql.done, within, err)
		}
		return n.Payload
	}
	sentinel := func(s string) {
		t.Helper()
		if _, err := a.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, a.sql.done, s); err != nil {
			t.Fatal(err)
		}
	}
	finished := []queue.Outcome{{ID: uuid.New(), State: queue.StateCompleted}, {ID: uuid.New(), State: queue.StateRetryable}}

	// Nobody waits: nothing is sent. The sentinel, sent after, comes first.
	a.finished(finished)
	if a.await.done != nil {
		t.Error("the done sender started while nobody waits")
	}
	sentinel("first")
	if got := next(10 * time.Second); got != "first" {
		t.Errorf("got %q before the sentinel; want nothing sent while nobody waits", got)
	}

	// A worker's subscription hears a client's announcement.
	lctx, stop := context.WithCancel(ctx)
	defer stop()
	notices, err := a.Listen(lctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(ctx, `SELECT pg_notify($1, $2)`, a.sql.ctrl, awaitMessage); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.await.until.Load() < time.Now().UnixNano() {
		if time.Now().After(deadline) {
			t.Fatal("Listen did not hear the announcement")
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.finished(finished)
	if got := next(10 * time.Second); got != finished[0].ID.String() {
		t.Errorf("done notification %q; want only the completed job %s (the retryable one has not finished)", got, finished[0].ID)
	}
	select {
	case n := <-notices:
		t.Errorf("the announcement was delivered to the worker as %+v", n)
	default:
	}

	// Many IDs go out in several notifications, each under 8000 bytes.
	many := make([]queue.Outcome, 500)
	want := map[string]bool{}
	for i := range many {
		many[i] = queue.Outcome{ID: uuid.New(), State: queue.StateFailed}
		want[many[i].ID.String()] = true
	}
	a.finished(many)
	for len(want) > 0 {
		p := next(10 * time.Second)
		if len(p) > notifyPayloadMax {
			t.Errorf("payload of %d bytes", len(p))
		}
		for s := range strings.SplitSeq(p, ",") {
			delete(want, s)
		}
	}
}

// A waiting client's listener pokes the waits of the jobs a notification
// names, and only those.
func TestAwaitHubPokesTheNamedJobs(t *testing.T) {
	t.Parallel()
	a := &Adapter{}
	h := a.awaitHub()
	h.running = true // no listener goroutine: the test calls poke itself
	h.announced = time.Now()
	x, y := uuid.New(), uuid.New()
	px, leaveX := h.join(x)
	py, leaveY := h.join(y)
	px2, leaveX2 := h.join(x)
	h.poke("junk," + x.String())
	for name, c := range map[string]<-chan struct{}{"first wait for x": px, "second wait for x": px2} {
		select {
		case <-c:
		default:
			t.Errorf("%s not poked", name)
		}
	}
	select {
	case <-py:
		t.Error("the wait for y was poked by a notification naming x")
	default:
	}
	leaveX()
	leaveX2()
	leaveY()
	if len(h.waiters) != 0 || h.n != 0 {
		t.Errorf("after every wait left: %d waiters, n = %d", len(h.waiters), h.n)
	}
}

func TestDonePayloadsFitTheLimit(t *testing.T) {
	ids := make([]uuid.UUID, 1000)
	for i := range ids {
		ids[i] = uuid.New()
	}
	total := 0
	for _, p := range donePayloads(ids) {
		if len(p) > notifyPayloadMax {
			t.Errorf("payload of %d bytes", len(p))
		}
		total += len(strings.Split(p, ","))
	}
	if total != len(ids) {
		t.Errorf("%d IDs in the payloads, want %d", total, len(ids))
	}
	if got := donePayloads(nil); len(got) != 0 {
		t.Errorf("donePayloads(nil) = %q", got)
	}
}
