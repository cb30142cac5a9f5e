// Package ormref sends ORM models through the queue as references — table
// and primary key — and fetches them fresh from the database when the job
// runs: the guide's ORM integration, in Go with GORM.
//
// A task field that holds a GORM model (a pointer to a model struct, or a
// slice of them) is encoded as {"$table": "users", "ID": 42} instead of the
// whole row. Before Handle runs, the worker reloads every such field by its
// primary key, so the task sees the row as it is now, not as it was at
// dispatch:
//
//	codec := ormref.New(db)                                   // db: *gorm.DB
//	client, _ := queue.NewClient(adapter, queue.WithEncoder(codec))
//	w, _ := worker.New(adapter, reg, worker.Config{Resolver: codec})
//
// A struct is a model when it embeds gorm.Model, has a TableName method, or
// was registered with Codec.Register. Tasks with model fields must be pointer
// types (&SendWelcomeEmail{}), so that the fields can be filled in.
//
// Models are fetched with one query per table (WHERE pk IN (...)), the tables
// of one task concurrently: a task holding 100 users costs one round trip,
// not 100. The queries are built with GORM's clause builders, so they work
// on whatever database the *gorm.DB speaks (PostgreSQL, MySQL, MariaDB, ...).
//
// Without GORM, Ref[T, K] is an explicit reference with a loader function
// (see RegisterLoader); it works the same for pgx or database/sql users.
package ormref

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"golang.org/x/sync/errgroup"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"

	"github.com/tasqhq/tasq/queue"
)

// TableKey is the JSON key that marks an encoded reference and names its table.
const TableKey = "$table"

// Errors callers can branch on with errors.Is.
var (
	// ErrModelNotFound means a referenced row no longer exists. It is wrapped
	// in queue.Permanent: the job fails without retrying unless the task's
	// ShouldRetry says otherwise.
	ErrModelNotFound = errors.New("ormref: model not found")
	// ErrNoPrimaryKey means a model type has no primary key to refer by.
	ErrNoPrimaryKey = errors.New("ormref: model has no primary key")
	// ErrZeroPrimaryKey means a model was dispatched before it was saved.
	ErrZeroPrimaryKey = errors.New("ormref: model has a zero primary key")
	// ErrTableMismatch means a payload refers to a table that the task field's
	// model type does not live in (the type changed since dispatch).
	ErrTableMismatch = errors.New("ormref: payload refers to another table")
	// ErrNoLoader means a Ref's type has no loader registered.
	ErrNoLoader = errors.New("ormref: no loader for reference type")
)

// ModelNotFoundError says which row is missing. errors.Is(err, ErrModelNotFound) matches it.
type ModelNotFoundError struct {
	Field string // the task field
	Table string
	Key   string // the primary key, as column=value pairs (text values quoted)
}

func (e *ModelNotFoundError) Error() string {
	return fmt.Sprintf("ormref: model not found: field %s refers to %s(%s), which no longer exists", e.Field, e.Table, e.Key)
}

// Is reports whether target is ErrModelNotFound.
func (e *ModelNotFoundError) Is(target error) bool { return target == ErrModelNotFound }

// Codec encodes tasks with their models as references (a queue.Encoder) and
// reloads them before Handle (a queue.Resolver). It is safe for concurrent use.
type Codec struct {
	db      *gorm.DB
	schemas sync.Map // schema cache for gorm's parser
	mu      sync.RWMutex
	models  map[reflect.Type]bool // registered model struct types
	loaders map[reflect.Type]loader
	plans   sync.Map // reflect.Type (task struct) -> *plan
}

var (
	_ queue.Encoder  = (*Codec)(nil)
	_ queue.Resolver = (*Codec)(nil)
)

// New returns a codec that reads and writes models through db. db may be nil
// when only Ref fields with registered loaders are used.
func New(db *gorm.DB) *Codec {
	return &Codec{db: db, models: map[reflect.Type]bool{}, loaders: map[reflect.Type]loader{}}
}

// Register declares model types that neither embed gorm.Model nor have a
// TableName method. It fails for a type without a primary key.
func (c *Codec) Register(models ...any) error {
	for _, m := range models {
		t := reflect.TypeOf(m)
		for t != nil && t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if t == nil || t.Kind() != reflect.Struct {
			return fmt.Errorf("ormref: Register(%T): a model is a struct type", m)
		}
		if _, err := c.schemaOf(t); err != nil {
			return err
		}
		c.mu.Lock()
		c.models[t] = true
		c.mu.Unlock()
	}
	return nil
}

var (
	gormModelType = reflect.TypeFor[gorm.Model]()
	timeType      = reflect.TypeFor[time.Time]()
	tablerType    = reflect.TypeFor[schema.Tabler]()
)

// isModel reports whether struct type t is a model.
func (c *Codec) isModel(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	c.mu.RLock()
	reg := c.models[t]
	c.mu.RUnlock()
	if reg || t.Implements(tablerType) || reflect.PointerTo(t).Implements(tablerType) {
		return true
	}
	for i := range t.NumField() {
		if f := t.Field(i); f.Anonymous && f.Type == gormModelType {
			return true
		}
	}
	return false
}

func (c *Codec) schemaOf(t reflect.Type) (*schema.Schema, error) {
	var namer schema.Namer = schema.NamingStrategy{}
	if c.db != nil && c.db.NamingStrategy != nil {
		namer = c.db.NamingStrategy
	}
	s, err := schema.Parse(reflect.New(t).Interface(), &c.schemas, namer)
	if err != nil {
		return nil, fmt.Errorf("ormref: parse model %s: %w", t, err)
	}
	if len(s.PrimaryFields) == 0 {
		return nil, fmt.Errorf("%w: %s (table %s) has no primary key field; add one (e.g. ID uint `gorm:\"primaryKey\"`) or pass the key yourself", ErrNoPrimaryKey, t, s.Table)
	}
	return s, nil
}

// fieldKind says how a task field holds models.
type fieldKind int

const (
	onePtr   fieldKind = iota // *Model
	slicePtr                  // []*Model
	sliceVal                  // []Model
	refField                  // Ref[T, K]
)

type modelField struct {
	index    int
	name     string // Go field name
	jsonName string
	kind     fieldKind
	model    reflect.Type // the model struct type (or Ref type)
}

// plan lists the model fields of one task struct type.
type plan struct {
	fields []modelField
	err    error
}

func (c *Codec) planFor(t reflect.Type) *plan {
	if p, ok := c.plans.Load(t); ok {
		return p.(*plan)
	}
	p := &plan{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() || f.Anonymous {
			continue
		}
		name := jsonName(f)
		if name == "" {
			continue
		}
		mf := modelField{index: i, name: f.Name, jsonName: name}
		ft := f.Type
		switch {
		case ft.Implements(refType):
			mf.kind, mf.model = refField, ft
		case ft.Kind() == reflect.Pointer && c.isModel(ft.Elem()):
			mf.kind, mf.model = onePtr, ft.Elem()
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Pointer && c.isModel(ft.Elem().Elem()):
			mf.kind, mf.model = slicePtr, ft.Elem().Elem()
		case ft.Kind() == reflect.Slice && c.isModel(ft.Elem()):
			mf.kind, mf.model = sliceVal, ft.Elem()
		case ft.Kind() == reflect.Struct && c.isModel(ft):
			p.err = fmt.Errorf("ormref: %s.%s holds a %s by value; use *%s so it can travel as a reference", t, f.Name, ft, ft.Name())
			continue
		default:
			continue
		}
		if mf.kind != refField {
			if _, err := c.schemaOf(mf.model); err != nil && p.err == nil {
				p.err = fmt.Errorf("field %s: %w", f.Name, err)
			}
		}
		p.fields = append(p.fields, mf)
	}
	c.plans.Store(t, p)
	return p
}

// jsonName is the key encoding/json uses for a top-level field, or "" when it skips it.
func jsonName(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	if tag == "-" {
		return ""
	}
	if name, _, _ := strings.Cut(tag, ","); name != "" {
		return name
	}
	return f.Name
}

func structOf(task any) (reflect.Value, bool) {
	v := reflect.ValueOf(task)
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return reflect.Value{}, false
		}
		v = v.Elem()
	}
	return v, v.Kind() == reflect.Struct
}

// Encode implements queue.Encoder: the task's JSON, with each model field
// replaced by a reference to its row. A model without a primary key, or one
// not saved yet (zero key), is an error at dispatch.
func (c *Codec) Encode(task any) ([]byte, error) {
	if fc, ok := task.(*queue.FuncCall); ok {
		return json.Marshal(fc)
	}
	sv, ok := structOf(task)
	if !ok {
		return json.Marshal(task)
	}
	p := c.planFor(sv.Type())
	if p.err != nil {
		return nil, p.err
	}
	if len(p.fields) == 0 {
		return json.Marshal(task)
	}
	raw, err := json.Marshal(task)
	if err != nil {
		return nil, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("ormref: %T does not encode as a JSON object: %w", task, err)
	}
	for _, mf := range p.fields {
		fv := sv.Field(mf.index)
		if mf.kind == refField {
			ref, err := c.encodeRef(fv.Interface().(refValue))
			if err != nil {
				return nil, fmt.Errorf("ormref: field %s: %w", mf.name, err)
			}
			fields[mf.jsonName] = ref
			continue
		}
		ref, err := c.encodeField(mf, fv)
		if err != nil {
			return nil, fmt.Errorf("ormref: field %s: %w", mf.name, err)
		}
		fields[mf.jsonName] = ref
	}
	return json.Marshal(fields)
}

func (c *Codec) encodeField(mf modelField, fv reflect.Value) (json.RawMessage, error) {
	s, err := c.schemaOf(mf.model)
	if err != nil {
		return nil, err
	}
	switch mf.kind {
	case onePtr:
		if fv.IsNil() {
			return json.RawMessage("null"), nil
		}
		ref, err := refOf(s, fv.Elem())
		if err != nil {
			return nil, err
		}
		return json.Marshal(ref)
	default:
		if fv.IsNil() {
			return json.RawMessage("null"), nil
		}
		refs := make([]map[string]any, fv.Len())
		for i := range refs {
			ev := fv.Index(i)
			if mf.kind == slicePtr {
				if ev.IsNil() {
					return nil, fmt.Errorf("element %d is nil", i)
				}
				ev = ev.Elem()
			}
			if refs[i], err = refOf(s, ev); err != nil {
				return nil, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return json.Marshal(refs)
	}
}

// encodeRef encodes a Ref field with its "$table": the table its loader was
// registered with, or the one it was decoded with when this codec has no
// loader for it.
func (c *Codec) encodeRef(r refValue) (json.RawMessage, error) {
	c.mu.RLock()
	l, ok := c.loaders[r.target()]
	c.mu.RUnlock()
	table := r.tableName()
	if ok {
		table = l.table
	}
	if table == "" {
		return nil, fmt.Errorf("%w: %s; register it on the dispatching codec too (ormref.RegisterLoader), so that the reference names its table", ErrNoLoader, r.target())
	}
	return r.encodeAs(table)
}

// refOf builds {"$table": table, <pk json name>: value, ...} for one model value.
func refOf(s *schema.Schema, v reflect.Value) (map[string]any, error) {
	ref := map[string]any{TableKey: s.Table}
	for _, pf := range s.PrimaryFields {
		val, zero := pf.ValueOf(context.Background(), v)
		if zero {
			return nil, fmt.Errorf("%w: %s.%s is zero; save the model before dispatching it", ErrZeroPrimaryKey, s.Name, pf.Name)
		}
		name := jsonName(pf.StructField)
		if name == "" {
			return nil, fmt.Errorf("ormref: %s.%s is the primary key but is hidden from JSON (json:\"-\")", s.Name, pf.Name)
		}
		ref[name] = val
	}
	return ref, nil
}

// Resolve implements queue.Resolver: it reloads every model field of task
// from the database (one query per table, tables concurrently) and loads
// every Ref field with its loader.
func (c *Codec) Resolve(ctx context.Context, task any, payload []byte) error {
	sv, ok := structOf(task)
	if !ok {
		return nil
	}
	p := c.planFor(sv.Type())
	if len(p.fields) == 0 {
		return nil
	}
	if p.err != nil {
		return queue.Permanent(p.err)
	}
	if !sv.CanSet() {
		return queue.Permanent(fmt.Errorf("ormref: task %T holds models but is not a pointer; register it as &%s{}", task, sv.Type().Name()))
	}
	var raw map[string]json.RawMessage
	_ = json.Unmarshal(payload, &raw) // decoded already; this only reads "$table" markers

	// Gather the rows to load, grouped by model type.
	byModel := map[reflect.Type]*batch{}
	var refs []modelField
	for _, mf := range p.fields {
		fv := sv.Field(mf.index)
		if mf.kind == refField {
			refs = append(refs, mf)
			continue
		}
		if err := c.checkTables(mf, raw[mf.jsonName]); err != nil {
			return queue.Permanent(err)
		}
		b := byModel[mf.model]
		if b == nil {
			b = &batch{model: mf.model}
			byModel[mf.model] = b
		}
		switch mf.kind {
		case onePtr:
			if !fv.IsNil() {
				b.targets = append(b.targets, target{field: mf.name, ptr: fv})
			}
		case slicePtr, sliceVal:
			for i := range fv.Len() {
				ev := fv.Index(i)
				if mf.kind == slicePtr {
					if ev.IsNil() {
						continue
					}
				} else {
					ev = ev.Addr()
				}
				b.targets = append(b.targets, target{field: fmt.Sprintf("%s[%d]", mf.name, i), ptr: ev})
			}
		}
	}
	if len(byModel) > 0 && c.db == nil {
		return queue.Permanent(errors.New("ormref: the task holds GORM models but the codec has no *gorm.DB; create it with ormref.New(db)"))
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, b := range byModel {
		if len(b.targets) == 0 {
			continue
		}
		g.Go(func() error { return c.load(gctx, b) })
	}
	for _, mf := range refs {
		r := sv.Field(mf.index).Addr().Interface().(resolvable)
		g.Go(func() error { return r.resolve(gctx, c, mf.name) })
	}
	return g.Wait()
}

// checkTables verifies that the payload's references name the table the
// field's model type lives in now.
func (c *Codec) checkTables(mf modelField, raw json.RawMessage) error {
	if len(raw) == 0 || raw[0] == 'n' {
		return nil
	}
	s, err := c.schemaOf(mf.model)
	if err != nil {
		return err
	}
	var tables []struct {
		Table string `json:"$table"`
	}
	if raw[0] == '[' {
		_ = json.Unmarshal(raw, &tables)
	} else {
		tables = make([]struct {
			Table string `json:"$table"`
		}, 1)
		_ = json.Unmarshal(raw, &tables[0])
	}
	for _, t := range tables {
		if t.Table != "" && t.Table != s.Table {
			return fmt.Errorf("%w: field %s was dispatched as a row of %q, but %s lives in %q; the worker cannot load it", ErrTableMismatch, mf.name, t.Table, mf.model, s.Table)
		}
	}
	return nil
}

type target struct {
	field string
	ptr   reflect.Value // *Model to overwrite with the fresh row
}

type batch struct {
	model   reflect.Type
	targets []target
}

// load fetches every row of one batch with a single query and overwrites the
// targets with them.
func (c *Codec) load(ctx context.Context, b *batch) error {
	s, err := c.schemaOf(b.model)
	if err != nil {
		return queue.Permanent(err)
	}
	var keys []any // one per distinct row: the value, or []any of the values for a composite key
	want := make([]string, len(b.targets))
	seen := map[string]bool{}
	for i, t := range b.targets {
		for _, pf := range s.PrimaryFields {
			if _, zero := pf.ValueOf(ctx, t.ptr.Elem()); zero {
				return queue.Permanent(fmt.Errorf("%w: field %s refers to %s with %s unset", ErrZeroPrimaryKey, t.field, s.Table, pf.Name))
			}
		}
		vals, k, err := rowKey(ctx, s, t.ptr.Elem())
		if err != nil {
			return queue.Permanent(fmt.Errorf("ormref: field %s: %w", t.field, err))
		}
		want[i] = k
		if seen[k] {
			continue
		}
		seen[k] = true
		if len(vals) == 1 {
			keys = append(keys, vals[0])
		} else {
			keys = append(keys, vals)
		}
	}
	// The key columns go through clause builders, so that each dialect
	// quotes them its own way ("id" for PostgreSQL, `id` for MySQL).
	in := clause.IN{Values: keys}
	if len(s.PrimaryFields) == 1 {
		in.Column = clause.Column{Name: s.PrimaryFields[0].DBName}
	} else {
		cols := make([]clause.Column, len(s.PrimaryFields))
		for i, pf := range s.PrimaryFields {
			cols[i] = clause.Column{Name: pf.DBName}
		}
		in.Column = cols
	}
	rows := reflect.New(reflect.SliceOf(reflect.PointerTo(b.model)))
	q := c.db.WithContext(ctx).Model(reflect.New(b.model).Interface()).Clauses(clause.Where{Exprs: []clause.Expression{in}})
	if err := q.Find(rows.Interface()).Error; err != nil {
		err = fmt.Errorf("ormref: load %s: %w", s.Table, err)
		if unloadable(err) {
			return queue.Permanent(fmt.Errorf("%w; the worker cannot load this table", err))
		}
		return err
	}
	found := map[string]reflect.Value{}
	for i := range rows.Elem().Len() {
		r := rows.Elem().Index(i)
		_, k, err := rowKey(ctx, s, r.Elem())
		if err != nil {
			return queue.Permanent(fmt.Errorf("ormref: load %s: %w", s.Table, err))
		}
		found[k] = r
	}
	for i, t := range b.targets {
		r, ok := found[want[i]]
		if !ok {
			return queue.Permanent(&ModelNotFoundError{Field: t.field, Table: s.Table, Key: displayKey(ctx, s, t.ptr.Elem())})
		}
		t.ptr.Elem().Set(r.Elem())
	}
	return nil
}

// rowKey returns the primary key values of model value v, and a map key
// that is equal for two rows exactly when every key value is: the values
// JSON-encoded as one array, so that no text inside a key (a comma, an
// equals sign, a quote) can make two different keys look alike. Pointers
// count as what they point to; times as the instant, whatever the zone.
func rowKey(ctx context.Context, s *schema.Schema, v reflect.Value) ([]any, string, error) {
	vals := make([]any, len(s.PrimaryFields))
	norm := make([]any, len(s.PrimaryFields))
	for i, pf := range s.PrimaryFields {
		vals[i], _ = pf.ValueOf(ctx, v)
		norm[i] = vals[i]
		if rv := reflect.Indirect(reflect.ValueOf(vals[i])); rv.IsValid() && rv.Type() == timeType {
			norm[i] = rv.Interface().(time.Time).UTC()
		}
	}
	b, err := json.Marshal(norm)
	if err != nil {
		return nil, "", fmt.Errorf("primary key of %s cannot be compared: %w", s.Table, err)
	}
	return vals, string(b), nil
}

// displayKey formats the primary key of model value v for error messages, as
// column=value pairs; text values are quoted, so that commas and equals signs
// inside them read unambiguously.
func displayKey(ctx context.Context, s *schema.Schema, v reflect.Value) string {
	parts := make([]string, len(s.PrimaryFields))
	for i, pf := range s.PrimaryFields {
		val, _ := pf.ValueOf(ctx, v)
		if rv := reflect.Indirect(reflect.ValueOf(val)); rv.IsValid() {
			val = rv.Interface()
		}
		if str, ok := val.(string); ok {
			parts[i] = fmt.Sprintf("%s=%q", pf.DBName, str)
		} else {
			parts[i] = fmt.Sprintf("%s=%v", pf.DBName, val)
		}
	}
	return strings.Join(parts, ",")
}

// unloadable reports whether err says that the table cannot be read at all —
// it or a key column is missing, or the user may not read it — so that no
// retry will help. Each database says so in its own way.
func unloadable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 42: syntax error or access rule violation (undefined table
		// or column, insufficient privilege).
		return strings.HasPrefix(pgErr.Code, "42")
	}
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) {
		switch myErr.Number {
		case 1146, // ER_NO_SUCH_TABLE
			1054, // ER_BAD_FIELD_ERROR: unknown column
			1142, // ER_TABLEACCESS_DENIED_ERROR
			1143: // ER_COLUMNACCESS_DENIED_ERROR
			return true
		}
	}
	return false
}
