package ormref

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/tasqhq/tasq/queue"
)

// Ref is an explicit reference to a T by its key K, for code without GORM:
// a task field of type Ref[T, K] travels as {"$table": ..., "key": ...} and
// is loaded, by the loader registered for T, before Handle runs.
//
// The codec writes "$table" at dispatch from the table the loader for T was
// registered with (see RegisterLoader), so the dispatching codec needs the
// loader too; at resolve, a reference whose "$table" names another table
// fails with ErrTableMismatch. Payloads written without "$table" (by older
// versions, or by plain encoding/json) still decode and load.
//
//	type SendInvoice struct {
//		Customer ormref.Ref[Customer, int64]
//	}
//	ormref.RegisterLoader(codec, "customers", func(ctx context.Context, id int64) (*Customer, error) { ... })
//	client.Dispatch(ctx, &SendInvoice{Customer: ormref.RefTo[Customer](c.ID)})
//	// in Handle: t.Customer.Value() is the freshly loaded *Customer
type Ref[T any, K comparable] struct {
	key   K
	table string
	val   *T
}

// RefTo refers to the T with key.
func RefTo[T any, K comparable](key K) Ref[T, K] { return Ref[T, K]{key: key} }

// Key returns the referenced key.
func (r Ref[T, K]) Key() K { return r.key }

// Value returns the loaded value; nil until the worker has resolved the task.
func (r Ref[T, K]) Value() *T { return r.val }

type refWire[K any] struct {
	Table string `json:"$table,omitempty"`
	Key   K      `json:"key"`
}

// MarshalJSON encodes the reference (never the value).
func (r Ref[T, K]) MarshalJSON() ([]byte, error) {
	var zero K
	if r.key == zero {
		return nil, fmt.Errorf("%w: Ref[%s] has a zero key", ErrZeroPrimaryKey, reflect.TypeFor[T]())
	}
	return json.Marshal(refWire[K]{Table: r.table, Key: r.key})
}

// UnmarshalJSON decodes the reference; the value is loaded later.
func (r *Ref[T, K]) UnmarshalJSON(b []byte) error {
	var w refWire[K]
	if err := json.Unmarshal(b, &w); err != nil {
		return fmt.Errorf("ormref: decode Ref[%s]: %w", reflect.TypeFor[T](), err)
	}
	r.key, r.table, r.val = w.Key, w.Table, nil
	return nil
}

func (r Ref[T, K]) target() reflect.Type { return reflect.TypeFor[T]() }

func (r Ref[T, K]) tableName() string { return r.table }

// encodeAs encodes the reference with table as its "$table".
func (r Ref[T, K]) encodeAs(table string) ([]byte, error) {
	r.table = table
	return r.MarshalJSON()
}

func (r *Ref[T, K]) resolve(ctx context.Context, c *Codec, field string) error {
	var zero K
	if r.key == zero {
		return queue.Permanent(fmt.Errorf("%w: field %s has a zero key", ErrZeroPrimaryKey, field))
	}
	t := reflect.TypeFor[T]()
	c.mu.RLock()
	l, ok := c.loaders[t]
	c.mu.RUnlock()
	if !ok {
		return queue.Permanent(fmt.Errorf("%w: %s (field %s); register one with ormref.RegisterLoader", ErrNoLoader, t, field))
	}
	if r.table != "" && r.table != l.table {
		return queue.Permanent(fmt.Errorf("%w: field %s was dispatched as a row of %q, but the loader for %s reads %q; the worker cannot load it", ErrTableMismatch, field, r.table, t, l.table))
	}
	v, err := l.load(ctx, r.key)
	if errors.Is(err, ErrModelNotFound) || (err == nil && v == nil) {
		return queue.Permanent(&ModelNotFoundError{Field: field, Table: l.table, Key: fmt.Sprintf("key=%v", r.key)})
	}
	if err != nil {
		return fmt.Errorf("ormref: load %s %v: %w", l.table, r.key, err)
	}
	val, ok := v.(*T)
	if !ok {
		return queue.Permanent(fmt.Errorf("ormref: loader for %s returned %T", t, v))
	}
	r.val = val
	return nil
}

// resolvable is implemented by *Ref.
type resolvable interface {
	resolve(ctx context.Context, c *Codec, field string) error
}

// refValue is implemented by Ref: what Codec.Encode needs to write a
// reference with its table.
type refValue interface {
	refMarker()
	// target is the referenced type T.
	target() reflect.Type
	// tableName is the table the reference carries (from a decoded payload), or "".
	tableName() string
	encodeAs(table string) ([]byte, error)
}

var refType = reflect.TypeFor[refValue]()

func (Ref[T, K]) refMarker() {}

type loader struct {
	table string
	load  func(ctx context.Context, key any) (any, error)
}

// RegisterLoader tells c how to load a T by key for Ref[T, K] fields. table
// names the source: Encode writes it into each reference's "$table", Resolve
// checks it and errors name it. Register the loader on the dispatching codec
// as well as on the worker's. A loader returns (nil, nil) or an error
// wrapping ErrModelNotFound when the row is gone.
func RegisterLoader[T any, K comparable](c *Codec, table string, load func(ctx context.Context, key K) (*T, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.loaders[reflect.TypeFor[T]()] = loader{table: table, load: func(ctx context.Context, key any) (any, error) {
		v, err := load(ctx, key.(K))
		if v == nil {
			return nil, err
		}
		return v, err
	}}
}
