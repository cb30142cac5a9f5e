package postgres

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/adapters/postgres/pgschema"
)

// DefaultSchema is the PostgreSQL schema that holds TasQ's tables when no
// schema is set.
const DefaultSchema = pgschema.Default

// ParamSchema is the URL parameter that sets the schema, e.g.
// tasq_schema=billing (see WithSchema). The migrations package reads it too.
const ParamSchema = pgschema.Param

// CheckSchema reports whether name can be a TasQ schema (see pgschema.Check).
func CheckSchema(name string) error {
	if err := pgschema.Check(name); err != nil {
		return fmt.Errorf("tasq/postgres: %w", err)
	}
	return nil
}

// ChannelFor returns the LISTEN/NOTIFY channel of the TasQ tables in schema:
// NotifyChannel for DefaultSchema, "tasq_jobs.<schema>" for any other (see
// pgschema.Channel).
func ChannelFor(schema string) string { return pgschema.Channel(schema) }

// ControlChannelFor returns the channel on which the workers of schema hear
// that an operator cancelled a running job ("cancel <id> <claim token>") and
// that clients wait for jobs ("await"): "tasq_ctrl" for DefaultSchema,
// "tasq_ctrl.<schema>" for any other (see pgschema.ControlChannel).
func ControlChannelFor(schema string) string { return pgschema.ControlChannel(schema) }

// DoneChannelFor returns the channel on which workers name finished jobs
// (IDs separated by commas) while clients wait for jobs: "tasq_done" for
// DefaultSchema, "tasq_done.<schema>" for any other (see
// pgschema.DoneChannel).
func DoneChannelFor(schema string) string { return pgschema.DoneChannel(schema) }

// WithSchema makes the adapter use the TasQ tables in PostgreSQL schema name
// (DefaultSchema when not set), migrated there with
// migrations.Up(ctx, url, migrations.WithSchema(name)) or `tasq migrate up
// --schema name`. Every statement the adapter sends names the schema, so the
// connections' search_path does not matter, and each schema has its own
// notification channel (ChannelFor). Two apps can share one database by
// using different schemas.
func WithSchema(name string) Option { return func(o *options) { o.schema = name } }

// tasqObjects are the database objects of the TasQ schema that statements
// name: tables, the state type and the functions.
var tasqObjects = regexp.MustCompile(`\btasq_(?:jobs_archive|jobs|leader|workers|instance|job_state|errors_append|dispatch|uuidv7|unique_held|channel|queues|queue_keys|pause_queue|resume_queue|schedules|trigger_schedule|pause_schedule|resume_schedule|release_dependants|outbox)\b`)

// qualify returns statement with every TasQ object it names prefixed by
// schema, quoted. A name inside a string literal ('tasq_jobs'), quoted, or
// itself a qualifier (tasq_leader.leader_id, a column of the upsert's
// target) is left as it is: statements that need the schema in a literal
// pass it as a parameter instead.
func qualify(schema, statement string) string {
	prefix := pgx.Identifier{schema}.Sanitize() + "."
	var b strings.Builder
	last := 0
	for _, m := range tasqObjects.FindAllStringIndex(statement, -1) {
		start, end := m[0], m[1]
		if start > 0 && strings.ContainsRune(`'".`, rune(statement[start-1])) {
			continue
		}
		if end < len(statement) && strings.ContainsRune(`'".`, rune(statement[end])) {
			continue
		}
		b.WriteString(statement[last:start])
		b.WriteString(prefix)
		b.WriteString(statement[start:end])
		last = end
	}
	if last == 0 {
		return statement
	}
	b.WriteString(statement[last:])
	return b.String()
}

// maxCachedStatements bounds the statements an adapter keeps qualified. The
// adapter's statements are constants, plus the few shapes of ListJobs and
// Purge filters; the bound only guards against a statement built from
// values.
const maxCachedStatements = 512

// statements qualifies the adapter's SQL for its schema, once per statement.
type statements struct {
	schema  string
	channel string
	ctrl    string // cancels and await announcements: ControlChannelFor
	done    string // finished jobs, for waiting clients: DoneChannelFor
	outbox  string // jobs written to the outbox, for relays: pgschema.OutboxChannel

	cache  sync.Map // statement -> qualified statement
	cached atomic.Int32
}

func newStatements(schema string) *statements {
	return &statements{schema: schema, channel: ChannelFor(schema), ctrl: ControlChannelFor(schema), done: DoneChannelFor(schema),
		outbox: pgschema.OutboxChannel(schema)}
}

// q returns statement qualified for the adapter's schema.
func (s *statements) q(statement string) string {
	if out, ok := s.cache.Load(statement); ok {
		return out.(string)
	}
	out := qualify(s.schema, statement)
	if s.cached.Add(1) <= maxCachedStatements {
		s.cache.Store(statement, out)
	}
	return out
}

// object returns the qualified name of a TasQ object (e.g. "tasq_jobs"), as
// a text parameter for statements that need it in a literal, such as
// $1::regclass.
func (s *statements) object(name string) string {
	return pgx.Identifier{s.schema, name}.Sanitize()
}
