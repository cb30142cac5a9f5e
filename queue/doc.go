// Package queue is the public face of TasQ: the task contract, per-task
// configuration, lifecycle hooks, metadata, the registry of task kinds, the
// client that dispatches tasks, and the adapter interface every backend
// implements.
//
// A task is a struct whose exported fields are its payload and whose Handle
// method does the work:
//
//	type SendEmail struct {
//		queue.TaskBase // ID(), Attempt(), DispatchedAt()
//		To, Subject, Body string
//	}
//
//	func (*SendEmail) Config() queue.Config {
//		return queue.Config{Queue: "emails", MaxRetries: 5, RetryDelay: 2 * time.Minute, Timeout: 30 * time.Second}
//	}
//
//	func (t *SendEmail) Handle(ctx context.Context) (bool, error) { ... }
//
// Dispatching returns the job's UUID; the job runs when a worker (package
// worker) claims it:
//
//	id, err := client.Dispatch(ctx, &SendEmail{To: "a@example.com"}, queue.OnQueue("high"), queue.Delay(time.Minute))
//	id, err := client.DispatchTx(ctx, tx, &SendEmail{...}) // tx: pgx.Tx, *sql.Tx or *gorm.DB
//
// A worker decodes every job into a new value of its task type. Handle gets
// its dependencies (a database handle, a mailer, an HTTP client) from a
// function registered with RegisterFactory, which fills the fields that do
// not travel:
//
//	queue.RegisterFactory(reg, func() *SendEmail { return &SendEmail{mailer: mailer} })
//
// Package queue imports no backend. Adapters (adapters/postgres and others)
// register themselves by name, the way database/sql drivers do.
package queue
