package cli

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/queue"
)

// What a backend can do beyond claiming and running jobs is a capability
// its adapter has or lacks (package queue: JobReader, JobEditor,
// StatsReader, ...). The jobs and stats commands look for the capability
// they need with a type assertion, and say so when the backend lacks it:
// an adapter never carries a method that always fails.

// UnsupportedError is returned by the jobs and stats commands when the
// backend lacks the capability the command needs, as SQS cannot look up,
// list or change single jobs. It names the backend, the command and the
// capability, and says what works on that backend instead. It matches
// errors.ErrUnsupported.
type UnsupportedError struct {
	// Backend is the driver name, e.g. "sqs".
	Backend string
	// Command is the command that failed, e.g. "jobs list".
	Command string
	// Capability is the interface the backend's adapter does not
	// implement, e.g. "queue.JobReader".
	Capability string
	// hasStats records whether the backend can count jobs, so that the
	// error points to `tasq stats` only where it works.
	hasStats bool
}

// Error says what the backend cannot do and what to use instead.
func (e *UnsupportedError) Error() string {
	var cannot, needs string
	switch e.Capability {
	case capabilityName[queue.JobReader]():
		cannot = "it cannot look up or list single jobs"
		needs = "The jobs commands need a backend that keeps jobs by ID: postgres, mysql or redis"
	case capabilityName[queue.JobEditor]():
		cannot = "it cannot retry, cancel or delete single jobs"
		needs = "The jobs commands need a backend that keeps jobs by ID: postgres, mysql or redis"
	case capabilityName[queue.StatsReader]():
		cannot = "it cannot count jobs per queue and state"
		needs = "`tasq stats` needs a backend that counts its jobs: postgres, mysql, redis or sqs"
	case capabilityName[queue.Purger]():
		cannot = "it cannot delete finished jobs in batches"
		needs = "`tasq jobs purge` needs postgres"
	case capabilityName[queue.QueueController]():
		cannot = "its claims cannot honour queue pauses and global limits"
		needs = "`tasq queues` needs postgres"
	case capabilityName[queue.Scheduler]():
		cannot = "it keeps no schedules (periodic jobs)"
		needs = "`tasq cron` needs postgres, which keeps them in the table tasq_schedules"
	default:
		cannot = "it lacks a capability this command needs"
		needs = "postgres has every capability"
	}
	instead := "`tasq worker` still runs its jobs"
	if e.hasStats && e.Command != "stats" {
		instead = "use `tasq stats` for job counts per queue and state; `tasq worker` runs its jobs"
	}
	return fmt.Sprintf("`tasq %s` is not supported on the %s backend: %s (its adapter is no %s).\nOn %s, %s. %s.",
		e.Command, e.Backend, cannot, e.Capability, e.Backend, instead, needs)
}

// Unwrap returns errors.ErrUnsupported.
func (e *UnsupportedError) Unwrap() error { return errors.ErrUnsupported }

// capabilityName returns the name of the interface C, e.g. "queue.JobReader".
func capabilityName[C any]() string { return reflect.TypeFor[C]().String() }

// need returns the adapter as the capability C that command needs, or an
// UnsupportedError when the backend lacks it.
func need[C any](ad queue.Adapter, command string) (C, error) {
	c, ok := ad.(C)
	if !ok {
		_, hasStats := ad.(queue.StatsReader)
		return c, &UnsupportedError{Backend: ad.Name(), Command: command, Capability: capabilityName[C](), hasStats: hasStats}
	}
	return c, nil
}

// withCapability opens the backend, finds the capability C that command
// needs, runs fn with it and closes the backend.
func withCapability[C any](a *app, cmd *cobra.Command, command string, fn func(C) error) error {
	ad, err := a.openAdapter(cmd.Context())
	if err != nil {
		return err
	}
	defer ad.Close()
	c, err := need[C](ad, command)
	if err != nil {
		return err
	}
	return fn(c)
}
