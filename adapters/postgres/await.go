package postgres

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/queue"
)

// Waiting for a job (queue.Client.Wait) across processes.
//
// A client that waits LISTENs on the schema's done channel (DoneChannelFor)
// and reads the job at intervals (queue.AwaitByPolling: at once, then from
// 10 ms doubling to 1 s) as the fallback. Workers name the jobs they finish
// on the done channel, but only while some client waits: a NOTIFY
// serialises commits cluster-wide (see waker.go), and a queue where nobody
// waits should not pay for one per completion batch. So a waiting client
// says "await" on the control channel (ControlChannelFor) when it starts
// waiting and every awaitAnnounceEvery while it waits; a worker's adapter
// that hears it (through Listen) names finished jobs for awaitTTL after.
// The names go out after the finish has committed, coalesced like the
// wake-ups of dispatches: one statement carries as many IDs as waited
// while the previous one was in flight, up to notifyPayloadMax bytes per
// notification.
//
// A job that finishes before its worker heard "await" (the first moments
// of a wait, a worker started since the last announcement) is found by the
// polling; so is a job deleted by retention while waited for.

const (
	// awaitMessage is what a waiting client says on the control channel.
	awaitMessage = "await"
	// awaitAnnounceEvery is how often a client that waits says so again.
	awaitAnnounceEvery = 5 * time.Second
	// awaitTTL is how long a worker's adapter names finished jobs after it
	// last heard "await": several announcements may be lost before it stops.
	awaitTTL = 6 * awaitAnnounceEvery
	// awaitIdle is how long a client's done listener stays connected after
	// its last wait ended, so that waits one after another share it.
	awaitIdle = 30 * time.Second
	// notifyPayloadMax is the most a notification's payload may hold
	// (PostgreSQL's limit is 8000 bytes).
	notifyPayloadMax = 7999
	// doneBacklogMax bounds the finished IDs kept for the done channel while
	// the database is slow to take them; beyond it they are dropped (the
	// waiting clients find those jobs by polling).
	doneBacklogMax = 1 << 16
)

// awaitState is an adapter's part in waiting for jobs: as a worker's
// adapter it names finished jobs (done); as a waiting client's it listens
// (hub).
type awaitState struct {
	until atomic.Int64 // unix nanoseconds until which finished jobs are named

	mu     sync.Mutex
	closed bool
	done   *doneSender // started on first use
	hub    *awaitHub   // started on first use
}

// heardAwait turns on finish notifications for awaitTTL.
func (a *Adapter) heardAwait() {
	a.await.until.Store(time.Now().Add(awaitTTL).UnixNano())
}

// finished names the jobs the outcomes finished on the done channel, when a
// client waits. Finish calls it after its statement committed; outcomes the
// guard refused are named as well (a waiting client reads the job anyway).
func (a *Adapter) finished(outcomes []queue.Outcome) {
	if a.await.until.Load() < time.Now().UnixNano() {
		return
	}
	ids := make([]uuid.UUID, 0, len(outcomes))
	for i := range outcomes {
		if outcomes[i].Finishes() {
			ids = append(ids, outcomes[i].ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	if d := a.doneSender(); d != nil {
		d.add(ids)
	}
}

// doneSender returns the adapter's sender of done notifications, starting it
// on first use, or nil once the adapter is closed.
func (a *Adapter) doneSender() *doneSender {
	s := &a.await
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if s.done == nil {
		s.done = &doneSender{a: a, kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
		go s.done.run()
	}
	return s.done
}

// closeAwait stops the done sender (after it sent what is pending) and the
// waiting clients' listener.
func (a *Adapter) closeAwait() {
	s := &a.await
	s.mu.Lock()
	was := s.closed
	s.closed = true
	done, hub := s.done, s.hub
	s.mu.Unlock()
	if was {
		return
	}
	if done != nil {
		close(done.stop)
		<-done.stopped
	}
	if hub != nil {
		hub.mu.Lock()
		hub.closed = true // no goroutine starts from here on
		hub.mu.Unlock()
		hub.cancel()
		hub.wg.Wait()
	}
}

// doneSender sends done notifications, coalesced: one statement at a time,
// carrying every ID that was added while the previous one was in flight.
type doneSender struct {
	a       *Adapter
	mu      sync.Mutex
	pending []uuid.UUID
	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

func (d *doneSender) add(ids []uuid.UUID) {
	d.mu.Lock()
	if len(d.pending)+len(ids) <= doneBacklogMax {
		d.pending = append(d.pending, ids...)
	}
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *doneSender) run() {
	defer close(d.stopped)
	for {
		select {
		case <-d.kick:
			d.send()
		case <-d.stop:
			d.send()
			return
		}
	}
}

func (d *doneSender) send() {
	d.mu.Lock()
	ids := d.pending
	d.pending = nil
	d.mu.Unlock()
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A lost notification only makes the waiting clients find the job at
	// their next poll.
	if _, err := d.a.pool.Exec(ctx, d.a.sql.q(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`), d.a.sql.done, donePayloads(ids)); err != nil {
		d.a.log.DebugContext(ctx, "tasq/postgres: done notification failed; waiting clients find the jobs at their next poll", "err", err)
	}
}

// donePayloads packs ids into notification payloads of at most
// notifyPayloadMax bytes, separated by commas.
func donePayloads(ids []uuid.UUID) []string {
	var out []string
	var b strings.Builder
	for _, id := range ids {
		if b.Len() > 0 && b.Len()+1+36 > notifyPayloadMax {
			out = append(out, b.String())
			b.Reset()
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id.String())
	}
	if b.Len() > 0 {
		out = append(out, b.String())
	}
	return out
}

// AwaitJob implements queue.JobAwaiter: it returns job id once it has
// finished (completed, failed or cancelled). It listens on the done channel
// (one connection per adapter, shared by every wait, closed awaitIdle after
// the last one), tells the workers it waits, and reads the job at once, when
// a notification names it, and at intervals from 10 ms doubling to 1 s as
// the fallback. In poll-only mode (WakeupsPoll) it only polls.
func (a *Adapter) AwaitJob(ctx context.Context, id uuid.UUID) (*queue.JobInfo, error) {
	if a.setup.Wakeups == WakeupsPoll {
		return queue.AwaitByPolling(ctx, a, id, queue.DefaultPollCap, nil)
	}
	h := a.awaitHub()
	if h == nil { // closed: the reads fail with the pool's error
		return queue.AwaitByPolling(ctx, a, id, queue.DefaultPollCap, nil)
	}
	poke, leave := h.join(id)
	defer leave()
	return queue.AwaitByPolling(ctx, a, id, queue.DefaultPollCap, poke)
}

// awaitHub is the waiting side: one LISTEN connection on the done channel
// for every wait of the adapter, and the announcements to the workers.
type awaitHub struct {
	a      *Adapter
	ctx    context.Context // cancelled when the adapter closes
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	closed    bool // the adapter is closed: start no goroutine
	waiters   map[uuid.UUID][]chan struct{}
	n         int       // waits in progress
	idleSince time.Time // when n last became 0
	running   bool      // the listener goroutine runs
	announced time.Time // when "await" was last sent
}

// awaitHub returns the adapter's hub, or nil once it is closed.
func (a *Adapter) awaitHub() *awaitHub {
	s := &a.await
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	if s.hub == nil {
		ctx, cancel := context.WithCancel(context.Background())
		s.hub = &awaitHub{a: a, ctx: ctx, cancel: cancel, waiters: map[uuid.UUID][]chan struct{}{}}
	}
	return s.hub
}

// join registers a wait for id. poke receives when a notification names the
// job (or may have been missed); leave ends the wait.
func (h *awaitHub) join(id uuid.UUID) (poke <-chan struct{}, leave func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.waiters[id] = append(h.waiters[id], ch)
	h.n++
	if !h.running && !h.closed {
		h.running = true
		h.wg.Add(1)
		go h.run()
	}
	if !h.closed && time.Since(h.announced) >= awaitAnnounceEvery {
		h.announced = time.Now()
		h.wg.Add(1)
		go func() { defer h.wg.Done(); h.announce() }()
	}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		chans := h.waiters[id]
		for i, c := range chans {
			if c == ch {
				chans = append(chans[:i], chans[i+1:]...)
				break
			}
		}
		if len(chans) == 0 {
			delete(h.waiters, id)
		} else {
			h.waiters[id] = chans
		}
		if h.n--; h.n == 0 {
			h.idleSince = time.Now()
		}
	}
}

// announce tells the workers that a client waits.
func (h *awaitHub) announce() {
	ctx, cancel := context.WithTimeout(h.ctx, 5*time.Second)
	defer cancel()
	if _, err := h.a.pool.Exec(ctx, h.a.sql.q(`SELECT pg_notify($1, $2)`), h.a.sql.ctrl, awaitMessage); err != nil && h.ctx.Err() == nil {
		h.a.log.DebugContext(ctx, "tasq/postgres: cannot tell the workers that a client waits for jobs; it finds them by polling", "err", err)
	}
}

// run holds the LISTEN connection while waits are in progress (and for
// awaitIdle after the last one) and pokes the waits of the jobs each
// notification names. After the connection was lost it pokes every wait.
func (h *awaitHub) run() {
	defer h.wg.Done()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(ctx)
			cancel()
		}
	}()
	backoff := 100 * time.Millisecond
	for {
		if h.idle() {
			return
		}
		if conn == nil {
			c, err := h.a.listen(h.ctx, h.a.sql.done)
			if err != nil {
				if h.ctx.Err() != nil {
					return
				}
				h.a.log.DebugContext(h.ctx, "tasq/postgres: cannot listen for finished jobs; waiting clients poll", "err", err, "retry_in", backoff)
				select {
				case <-h.ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			conn, backoff = c, 100*time.Millisecond
			h.pokeAll() // what finished while not listening
		}
		// Wake up every second to re-announce and to notice idleness.
		wctx, cancel := context.WithTimeout(h.ctx, time.Second)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if n != nil {
			h.poke(n.Payload)
		}
		if err != nil && (h.ctx.Err() != nil || wctx.Err() == nil || conn.IsClosed()) {
			// Closed, or the connection failed (not the second's timeout).
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = conn.Close(ctx)
			cancel()
			conn = nil
			if h.ctx.Err() != nil {
				return
			}
		}
		h.reannounce()
	}
}

// idle reports, and records, that the listener may stop: no wait for awaitIdle.
func (h *awaitHub) idle() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx.Err() != nil || (h.n == 0 && time.Since(h.idleSince) >= awaitIdle) {
		h.running = false
		return true
	}
	return false
}

// reannounce says "await" again when waits are in progress and the last
// announcement is awaitAnnounceEvery old.
func (h *awaitHub) reannounce() {
	h.mu.Lock()
	due := h.n > 0 && time.Since(h.announced) >= awaitAnnounceEvery
	if due {
		h.announced = time.Now()
	}
	h.mu.Unlock()
	if due {
		h.announce()
	}
}

// poke wakes the waits of the jobs named in payload.
func (h *awaitHub) poke(payload string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range strings.SplitSeq(payload, ",") {
		id, err := uuid.Parse(s)
		if err != nil {
			continue
		}
		for _, ch := range h.waiters[id] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// pokeAll wakes every wait.
func (h *awaitHub) pokeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, chans := range h.waiters {
		for _, ch := range chans {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}
