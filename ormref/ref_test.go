package ormref_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	gormpg "gorm.io/driver/postgres"

	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/ormref"
	"github.com/tasqhq/tasq/queue"
)

// A Ref travels as {"$table": ..., "key": ...}, as its godoc promises; the
// worker checks the table, and payloads written before "$table" was added
// still load.
func TestRefCarriesItsTable(t *testing.T) {
	ctx := context.Background()
	db := openGorm(t, gormpg.Open(testpg.NewDatabase(t)))
	must(t, db.Exec(`CREATE TABLE customers (id bigint PRIMARY KEY, name text)`).Error)
	must(t, db.Exec(`INSERT INTO customers VALUES (1, 'Old name')`).Error)
	codec := ormref.New(nil)
	ormref.RegisterLoader(codec, "customers", func(ctx context.Context, id int64) (*Customer, error) {
		var cs []Customer
		if err := db.WithContext(ctx).Raw(`SELECT id, name FROM customers WHERE id = ?`, id).Scan(&cs).Error; err != nil || len(cs) == 0 {
			return nil, err
		}
		return &cs[0], nil
	})

	payload, got, err := roundTrip(t, ctx, codec, &SendInvoice{Customer: ormref.RefTo[Customer](int64(1))}, func() {
		must(t, db.Exec(`UPDATE customers SET name = 'New name' WHERE id = 1`).Error)
	})
	if ref, want := fieldOf(t, payload, "Customer"), map[string]any{"$table": "customers", "key": float64(1)}; !reflect.DeepEqual(ref, want) {
		t.Errorf("Customer travelled as %v; want %v", ref, want)
	}
	if err != nil || got.Customer.Value() == nil || got.Customer.Value().Name != "New name" {
		t.Fatalf("Resolve: %v, value %+v; want the fresh row", err, got.Customer.Value())
	}

	// A decoded Ref keeps its table, so a codec without the loader can
	// encode it again (a task that dispatches itself anew).
	again, err := ormref.New(nil).Encode(got)
	if err != nil || fieldOf(t, again, "Customer")["$table"] != "customers" {
		t.Errorf("re-encoding a decoded Ref: %s, %v", again, err)
	}
	// A fresh Ref on a codec without a loader cannot name its table.
	if _, err := ormref.New(nil).Encode(&SendInvoice{Customer: ormref.RefTo[Customer](int64(1))}); !errors.Is(err, ormref.ErrNoLoader) {
		t.Errorf("Encode without a loader: %v; want ErrNoLoader", err)
	}

	resolve := func(payload string) (*SendInvoice, error) {
		var task SendInvoice
		if err := json.Unmarshal([]byte(payload), &task); err != nil {
			t.Fatal(err)
		}
		return &task, codec.Resolve(ctx, &task, []byte(payload))
	}
	// A payload from before "$table" was written still loads.
	if task, err := resolve(`{"Customer": {"key": 1}}`); err != nil || task.Customer.Value() == nil || task.Customer.Value().Name != "New name" {
		t.Errorf("payload without $table: %v, value %+v", err, task.Customer.Value())
	}
	// A payload naming another table is refused for good.
	if _, err := resolve(`{"Customer": {"$table": "accounts", "key": 1}}`); !errors.Is(err, ormref.ErrTableMismatch) || !queue.IsPermanent(err) {
		t.Errorf("payload naming another table: %v; want a permanent ErrTableMismatch", err)
	}
}
