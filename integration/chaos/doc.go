// Package chaos is TasQ's chaos suite: it runs worker child processes
// against a real PostgreSQL and breaks things under them — SIGKILLed and
// SIGSTOPped workers, terminated database connections, operators cancelling
// and retrying running jobs, PostgreSQL restarts — then counts, in SQL,
// whether the promises held: every job ran at least once and none was lost,
// a finished job was finished once by the execution that held it, and
// nothing is left stuck.
//
// The package has only tests. `go test ./integration/chaos/` runs the short
// suite (2,000 jobs per scenario); TASQ_CHAOS=long runs 20,000 jobs per
// scenario with longer chaos. TASQ_CHAOS_LOG=1 lets the worker processes log
// their warnings to stderr.
package chaos
