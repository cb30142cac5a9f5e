package queue

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
)

// Job dependencies: a dispatch with After(ids...) stores a job that waits,
// in the state pending, until every job it names has completed; then it
// becomes available (or scheduled, while a Delay has not passed). What a
// dependency that fails for good, is cancelled or is deleted does to the
// jobs waiting for it is the dependant's policy (AfterPolicy): cancel them
// (DepCancel, the default), down the whole chain, or count it as done and
// run them anyway (DepRun).
//
// A job can only wait for jobs that exist when it is dispatched (or come
// before it in the same batch), so the dependencies of a job are always
// older than the job: no cycle can form. Unknown IDs are refused at
// dispatch with ErrUnknownDependency.

// MaxDependencies is the most jobs one job may wait for.
const MaxDependencies = 1000

// ErrUnknownDependency means a job was dispatched to wait for a job ID that
// no job has (never dispatched, deleted, purged, or in another backend or
// schema); nothing was stored. The error names the IDs.
var ErrUnknownDependency = errors.New("tasq: unknown dependency")

// ErrDepsUnsupported means a job with dependencies (After) went to a backend
// that cannot store them; nothing was stored. It wraps
// errors.ErrUnsupported.
var ErrDepsUnsupported = fmt.Errorf("tasq: job dependencies are not supported by this backend: %w", errors.ErrUnsupported)

// DepPolicy says what becomes of a job when a job it waits for fails for
// good (failed), is cancelled, or is deleted before it finished.
type DepPolicy uint8

const (
	// DepCancel, the zero value, cancels the waiting job, with an entry in
	// its error history naming the dependency; the jobs that wait for it
	// are then cancelled (or run, per their own policy) in turn.
	DepCancel DepPolicy = iota
	// DepRun counts the dependency as done: the job runs once the others
	// have finished, whatever became of this one.
	DepRun
)

// String returns "cancel" or "run", the values of tasq_jobs.dep_policy.
func (p DepPolicy) String() string {
	switch p {
	case DepCancel:
		return "cancel"
	case DepRun:
		return "run"
	}
	return fmt.Sprintf("DepPolicy(%d)", uint8(p))
}

// ParseDepPolicy reads a policy as String writes it.
func ParseDepPolicy(s string) (DepPolicy, error) {
	switch s {
	case "cancel":
		return DepCancel, nil
	case "run":
		return DepRun, nil
	}
	return 0, fmt.Errorf("%w: unknown dependency policy %q; use cancel or run", ErrInvalidConfig, s)
}

// depOpts holds the dispatch options of this file.
type depOpts struct {
	after  []uuid.UUID
	policy DepPolicy
}

// After makes the job wait for the jobs ids: it is stored pending and
// becomes available when all of them have completed. What a dependency that
// fails or is cancelled does is the policy (AfterPolicy; DepCancel unless
// given). A dependency that has already completed counts as done; one that
// has already failed or been cancelled applies the policy at dispatch. Each
// ID must name an existing job (ErrUnknownDependency otherwise); given
// twice, or in two After options, an ID is an error. A job may wait for at
// most MaxDependencies jobs. A unique job (WithUnique) cannot wait. A
// Delay counts from the dispatch: a job released before its run time is
// scheduled until then.
//
// In a caller's transaction (DispatchTx) the dependencies that have not
// finished stay locked until it ends, so that none can finish unseen: a
// worker finishing one of them meanwhile waits for the commit.
//
// Only the postgres backend stores dependencies; the others refuse such a
// job with ErrDepsUnsupported.
func After(ids ...uuid.UUID) DispatchOption {
	return func(o *dispatchOpts) error {
		for _, id := range ids {
			if id == uuid.Nil {
				return fmt.Errorf("%w: After: the nil job ID", ErrInvalidConfig)
			}
			if slices.Contains(o.ext.deps.after, id) {
				return fmt.Errorf("%w: After: job %s is named twice", ErrInvalidConfig, id)
			}
			o.ext.deps.after = append(o.ext.deps.after, id)
		}
		if len(o.ext.deps.after) > MaxDependencies {
			return fmt.Errorf("%w: After: %d dependencies; a job may wait for at most %d", ErrInvalidConfig, len(o.ext.deps.after), MaxDependencies)
		}
		return nil
	}
}

// AfterPolicy sets what a dependency (After) that fails for good, is
// cancelled or is deleted does to the job: DepCancel (the default) or
// DepRun.
func AfterPolicy(p DepPolicy) DispatchOption {
	return func(o *dispatchOpts) error {
		if p != DepCancel && p != DepRun {
			return fmt.Errorf("%w: AfterPolicy: %v; use DepCancel or DepRun", ErrInvalidConfig, p)
		}
		o.ext.deps.policy = p
		return nil
	}
}

// After makes the job wait for other jobs. See the function After.
func (p *Pending) After(ids ...uuid.UUID) *Pending { p.opts = append(p.opts, After(ids...)); return p }

// AfterPolicy sets the dependency policy. See the function AfterPolicy.
func (p *Pending) AfterPolicy(policy DepPolicy) *Pending {
	p.opts = append(p.opts, AfterPolicy(policy))
	return p
}

// setDeps gives job the dependencies of the dispatch options.
func (d *depOpts) setDeps(job *NewJob) {
	if len(d.after) > 0 {
		job.DependsOn = slices.Clone(d.after)
		job.DepPolicy = d.policy
	}
}

// HasDeps reports whether any job of the batch waits for other jobs.
func HasDeps(jobs []NewJob) bool {
	for i := range jobs {
		if len(jobs[i].DependsOn) > 0 {
			return true
		}
	}
	return false
}

// checkBatchDeps checks the dependencies of a batch: no nil or repeated ID,
// at most MaxDependencies, a known policy, no unique key with them, and no
// job of the batch waiting for itself or for a job after it (which is how a
// cycle could otherwise be written). CheckNewJobs calls it.
func checkBatchDeps(jobs []NewJob) error {
	if !HasDeps(jobs) {
		return nil
	}
	if HasUnique(jobs) {
		return fmt.Errorf("%w: a batch holds unique jobs and jobs that wait for other jobs; dispatch them in separate calls", ErrInvalidConfig)
	}
	index := make(map[uuid.UUID]int, len(jobs))
	for i := range jobs {
		index[jobs[i].ID] = i
	}
	for i := range jobs {
		j := &jobs[i]
		if len(j.DependsOn) == 0 {
			if j.DepPolicy != DepCancel {
				return fmt.Errorf("%w: job %d (%s) has a dependency policy without dependencies", ErrInvalidConfig, i, j.Kind)
			}
			continue
		}
		switch {
		case len(j.DependsOn) > MaxDependencies:
			return fmt.Errorf("%w: job %d (%s) waits for %d jobs; the limit is %d", ErrInvalidConfig, i, j.Kind, len(j.DependsOn), MaxDependencies)
		case j.DepPolicy != DepCancel && j.DepPolicy != DepRun:
			return fmt.Errorf("%w: job %d (%s) has dependency policy %v", ErrInvalidConfig, i, j.Kind, j.DepPolicy)
		case j.UniqueKey != nil:
			return fmt.Errorf("%w: job %d (%s) is unique and waits for other jobs; a unique job cannot have dependencies", ErrInvalidConfig, i, j.Kind)
		}
		for k, d := range j.DependsOn {
			switch at, inBatch := index[d]; {
			case d == uuid.Nil:
				return fmt.Errorf("%w: job %d (%s) waits for the nil job ID", ErrInvalidConfig, i, j.Kind)
			case d == j.ID:
				return fmt.Errorf("%w: job %d (%s) waits for itself", ErrInvalidConfig, i, j.Kind)
			case inBatch && at > i:
				return fmt.Errorf("%w: job %d (%s) waits for job %d (%s), which comes after it in the batch; a job waits only for jobs dispatched before it", ErrInvalidConfig, i, j.Kind, at, d)
			case slices.Contains(j.DependsOn[:k], d):
				return fmt.Errorf("%w: job %d (%s) waits for job %s twice", ErrInvalidConfig, i, j.Kind, d)
			}
		}
	}
	return nil
}

// checkPlainDeps refuses a job with dependencies for CheckPlainJobs.
func checkPlainDeps(driver string, jobs []NewJob) error {
	for i := range jobs {
		if len(jobs[i].DependsOn) > 0 {
			return fmt.Errorf("%w: driver %s cannot make job %d (%s) wait for other jobs; dispatch it to postgres, or without After", ErrDepsUnsupported, driver, i, jobs[i].Kind)
		}
	}
	return nil
}
