// Package pgschema holds the rules for the PostgreSQL schema that TasQ's
// tables live in, shared by the adapter (adapters/postgres) and the
// migrations (migrations), which must agree on them: which names are
// accepted, the default, the URL parameter, and each schema's
// LISTEN/NOTIFY channel.
package pgschema

import (
	"fmt"
	"regexp"
	"strings"
)

// Default is the schema that holds TasQ's tables when none is chosen.
const Default = "public"

// Param is the URL parameter that chooses the schema, e.g.
// tasq_schema=billing. The adapter and the migrations both read it.
const Param = "tasq_schema"

// DefaultChannel is the LISTEN/NOTIFY channel of the Default schema; each
// notification's payload is the name of a queue that has new available jobs.
const DefaultChannel = "tasq_jobs"

// MaxLength is the longest schema name accepted: the schema's channel,
// "tasq_jobs." and the name, must fit PostgreSQL's 63-byte names.
const MaxLength = 63 - len(DefaultChannel) - 1

// valid is what Check accepts: an identifier that needs no quotes in
// hand-written SQL (psql users write billing.tasq_jobs).
var valid = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

// Check reports whether name can be a TasQ schema: lower-case ASCII letters,
// digits and underscores, not starting with a digit, at most MaxLength
// bytes, and not one of PostgreSQL's own (pg_*, information_schema).
func Check(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("schema name is empty; leave it unset for %q", Default)
	case len(name) > MaxLength:
		return fmt.Errorf("schema name %.20q... is %d bytes; the limit is %d, so that its notification channel fits PostgreSQL's 63-byte names",
			name, len(name), MaxLength)
	case !valid.MatchString(name):
		return fmt.Errorf("schema name %q: use lower-case letters, digits and underscores, not starting with a digit (so that it needs no quotes in SQL)", name)
	case strings.HasPrefix(name, "pg_") || name == "information_schema":
		return fmt.Errorf("schema name %q belongs to PostgreSQL itself; choose another", name)
	}
	return nil
}

// Channel returns the LISTEN/NOTIFY channel of schema: DefaultChannel for
// Default (as before schemas could be chosen) and "tasq_jobs.<schema>" for
// any other, so that two apps sharing a database do not wake each other's
// workers. The SQL function tasq_channel() (migration 6) says the same.
func Channel(schema string) string {
	if schema == "" || schema == Default {
		return DefaultChannel
	}
	return DefaultChannel + "." + schema
}

// ControlChannel returns the LISTEN/NOTIFY channel on which the workers of
// schema are told about changes to jobs they may hold: "tasq_ctrl" for
// Default and "tasq_ctrl.<schema>" for any other. A notification's payload
// is "cancel <job id> <claim token>" when an operator cancelled a running
// job, or "await" when a client waits for jobs to finish (see DoneChannel).
// The prefix has the length of DefaultChannel's, so every name Check
// accepts fits.
func ControlChannel(schema string) string { return sibling("tasq_ctrl", schema) }

// DoneChannel returns the LISTEN/NOTIFY channel on which the workers of
// schema report finished jobs to waiting clients: "tasq_done" for Default
// and "tasq_done.<schema>" for any other. A notification's payload is job
// IDs separated by commas. Workers send it only while a client has said
// (on ControlChannel) that it waits.
func DoneChannel(schema string) string { return sibling("tasq_done", schema) }

// OutboxChannel returns the LISTEN/NOTIFY channel on which a transaction
// that wrote jobs to the outbox (tasq_outbox) wakes the relays: "tasq_send"
// for Default and "tasq_send.<schema>" for any other. The payload is the
// target driver's name.
func OutboxChannel(schema string) string { return sibling("tasq_send", schema) }

// sibling names a channel like Channel does, with base instead of
// DefaultChannel. base has DefaultChannel's length, so MaxLength holds for
// it too (a test checks).
func sibling(base, schema string) string {
	if schema == "" || schema == Default {
		return base
	}
	return base + "." + schema
}
