package queue

import "context"

// BulkFilter selects the jobs a BulkEditor counts or changes: the jobs in
// State (required) that match every other field that is set.
type BulkFilter struct {
	// State is the state the jobs are in. It must be set, and be one the
	// action takes jobs from (see BulkEditor).
	State JobState
	// Queue, Kind and Tag, when set, keep the jobs of that queue, of that
	// kind, and with that tag (WithTags).
	Queue string
	Kind  string
	Tag   string
	// Limit caps how many jobs one call counts or changes; 0 means no cap.
	Limit int
}

// BulkEditor is the capability of backends that change every job a filter
// selects, set by set in a few statements instead of job by job: the bulk
// form of JobEditor, with its rules for each job.
//
// Each action checks the state of every job as it changes it: a job that
// left f.State in the meantime (a worker claimed it, say) is not touched,
// and is not counted. A backend changes the jobs in batches, each batch in
// a transaction of its own, so that a million matching jobs are not locked
// all at once; a call that fails part way leaves the batches before it
// done and returns how many jobs they changed with the error. A job that
// another transaction holds locked at that moment (a worker finishing it,
// maintenance promoting it) may be passed over; run the action again for
// it.
//
// An action returns an error wrapping ErrJobState, and changes nothing,
// when f.State is not one it takes jobs from.
type BulkEditor interface {
	// CountJobs counts the jobs f selects, exactly, up to f.Limit when it
	// is set. It accepts any state.
	CountJobs(ctx context.Context, f BulkFilter) (int, error)
	// RetryJobs does what JobEditor.RetryJob does to each failed,
	// cancelled, retryable or scheduled job f selects: available now, with
	// a fresh retry budget, the error history and the claim token kept (so
	// an execution of it still running somewhere can never finish the new
	// attempt), and the queue's workers woken. A unique job whose key
	// another job holds now is left as it is, as RetryJob refuses it.
	RetryJobs(ctx context.Context, f BulkFilter) (int, error)
	// CancelJobs does what JobEditor.CancelJob does to each scheduled,
	// available or retryable job f selects: cancelled now, with the cancel
	// in its error history, and named to clients waiting for it. Running
	// jobs are not bulk-cancelled: CancelJob cancels one and tells its
	// worker.
	CancelJobs(ctx context.Context, f BulkFilter) (int, error)
	// DeleteJobs deletes each job f selects, in any state but running.
	DeleteJobs(ctx context.Context, f BulkFilter) (int, error)
}
