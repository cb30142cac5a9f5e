package ormref_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	gomysql "github.com/go-sql-driver/mysql"
	gormmysql "gorm.io/driver/mysql"
	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/ormref"
	"github.com/tasqhq/tasq/queue"
)

// The codec's core — encode at dispatch, reload before Handle — runs on
// every database a *gorm.DB can point at, so these tests run it on each:
// PostgreSQL (testpg) and MariaDB (testmysql). They drive the codec the way
// a dispatcher and a worker do (Encode, then decode and Resolve), without a
// queue backend in between; ormref_test.go runs the whole way through a
// worker on PostgreSQL.

// dialect is one database the codec tests run against.
type dialect struct {
	name string
	open func(t *testing.T) *gorm.DB // a fresh, empty database of its own
}

var dialects = []dialect{
	{"postgres", func(t *testing.T) *gorm.DB {
		return openGorm(t, gormpg.Open(testpg.NewDatabase(t)))
	}},
	{"mariadb", func(t *testing.T) *gorm.DB {
		cfg, err := gomysql.ParseDSN(testmysql.NewEmptyDatabase(t))
		if err != nil {
			t.Fatal(err)
		}
		cfg.ParseTime = true // GORM scans DATETIME columns into time.Time
		return openGorm(t, gormmysql.New(gormmysql.Config{DSNConfig: cfg}))
	}},
}

func openGorm(t *testing.T, d gorm.Dialector) *gorm.DB {
	t.Helper()
	db, err := gorm.Open(d, &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sqlDB, err := db.DB(); err == nil {
			_ = sqlDB.Close()
		}
	})
	if err := db.AutoMigrate(&User{}, &Order{}, &OrderLine{}, &Setting{}); err != nil {
		t.Fatal(err)
	}
	return db
}

// eachDialect runs f as a parallel subtest per dialect, each on a fresh
// database with the test models migrated.
// The test itself runs in parallel with the other codec tests.
func eachDialect(t *testing.T, f func(t *testing.T, db *gorm.DB)) {
	t.Helper()
	t.Parallel()
	for _, d := range dialects {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			f(t, d.open(t))
		})
	}
}

// roundTrip is a job's way through the codec: Encode at dispatch, then, as
// a worker does (queue.Registry.Prepare, then the Resolver), decode the
// payload into a fresh value of the task's type and Resolve it. It returns
// the payload and the resolved task.
func roundTrip[T any](t *testing.T, ctx context.Context, codec *ormref.Codec, task *T, between func()) ([]byte, *T, error) {
	t.Helper()
	payload, err := codec.Encode(task)
	if err != nil {
		t.Fatalf("Encode: %v", err)
	}
	if between != nil {
		between() // what happens to the rows while the job waits
	}
	fresh := new(T)
	if err := json.Unmarshal(payload, fresh); err != nil {
		t.Fatalf("decode %s: %v", payload, err)
	}
	return payload, fresh, codec.Resolve(ctx, fresh, payload)
}

// fieldOf returns the JSON object the payload holds for field name.
func fieldOf(t *testing.T, payload []byte, name string) map[string]any {
	t.Helper()
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil {
		t.Fatal(err)
	}
	var ref map[string]any
	if err := json.Unmarshal(fields[name], &ref); err != nil {
		t.Fatalf("field %s is %s: %v", name, fields[name], err)
	}
	return ref
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A model created a moment before travels as {$table, ID} and is reloaded
// as the row is now. On MariaDB this once failed with "users(id=N), which no
// longer exists": the key column was double-quoted, which MySQL reads as a
// string literal.
func TestCodecReloadsFreshRowOnEachDialect(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		codec := ormref.New(db)
		u := User{Email: "old@example.com", Name: "Ada"}
		must(t, db.Create(&u).Error)
		payload, got, err := roundTrip(t, ctx, codec, &SendWelcomeEmail{User: &u}, func() {
			must(t, db.Model(&u).Update("email", "new@example.com").Error)
		})
		if ref := fieldOf(t, payload, "User"); ref["$table"] != "users" || ref["ID"] != float64(u.ID) || len(ref) != 2 {
			t.Errorf("User travelled as %v; want only {$table: users, ID: %d}", ref, u.ID)
		}
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if got.User.Email != "new@example.com" || got.User.Name != "Ada" || got.User.ID != u.ID || got.User.CreatedAt.IsZero() {
			t.Errorf("task saw %+v; want the fresh row", got.User)
		}
	})
}

func TestCodecDeletedRowIsModelNotFoundOnEachDialect(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		codec := ormref.New(db)
		u := User{Email: "gone@example.com"}
		must(t, db.Create(&u).Error)
		_, _, err := roundTrip(t, context.Background(), codec, &SendWelcomeEmail{User: &u}, func() {
			must(t, db.Unscoped().Delete(&u).Error)
		})
		var nf *ormref.ModelNotFoundError
		if !errors.Is(err, ormref.ErrModelNotFound) || !errors.As(err, &nf) || !queue.IsPermanent(err) {
			t.Fatalf("Resolve: %v; want a permanent ModelNotFoundError", err)
		}
		if nf.Field != "User" || nf.Table != "users" || !strings.HasPrefix(nf.Key, "id=") {
			t.Errorf("ModelNotFoundError %+v", nf)
		}
	})
}

func TestCodecSeveralTablesAndCompositeKeysOneQueryPerTableOnEachDialect(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		codec := ormref.New(db)
		u := User{Email: "buyer@example.com"}
		must(t, db.Create(&u).Error)
		o := Order{ID: 100, UserID: u.ID, Total: 12.5, Status: "new"}
		must(t, db.Create(&o).Error)
		lines := []*OrderLine{{OrderID: 100, LineNo: 1, SKU: "A", Qty: 1}, {OrderID: 100, LineNo: 2, SKU: "B", Qty: 2}, {OrderID: 100, LineNo: 3, SKU: "C", Qty: 3}}
		must(t, db.Create(&lines).Error)

		var mu sync.Mutex
		queries := map[string]int{}
		must(t, db.Callback().Query().After("gorm:query").Register("count_queries", func(db *gorm.DB) {
			mu.Lock()
			queries[db.Statement.Table]++
			mu.Unlock()
		}))
		_, got, err := roundTrip(t, context.Background(), codec, &ProcessOrder{Order: &o, User: &u, Lines: lines}, func() {
			must(t, db.Model(&OrderLine{}).Where("order_id = ? AND line_no = ?", 100, 2).Update("qty", 20).Error)
			must(t, db.Model(&o).Update("status", "paid").Error)
			mu.Lock()
			clear(queries)
			mu.Unlock()
		})
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		if got.Order.Status != "paid" || got.User.Email != "buyer@example.com" || len(got.Lines) != 3 ||
			got.Lines[0].SKU != "A" || got.Lines[1].Qty != 20 || got.Lines[2].SKU != "C" {
			t.Errorf("task saw order %+v user %+v lines %+v %+v %+v", got.Order, got.User, got.Lines[0], got.Lines[1], got.Lines[2])
		}
		mu.Lock()
		defer mu.Unlock()
		if want := map[string]int{"orders": 1, "users": 1, "order_lines": 1}; !reflect.DeepEqual(queries, want) {
			t.Errorf("queries per table = %v; want %v", queries, want)
		}
	})
}

// Setting has a composite text primary key, whose parts may hold the
// characters a key joined into one string would use as separators.
type Setting struct {
	Scope string `gorm:"primaryKey;size:100"`
	Name  string `gorm:"primaryKey;size:100"`
	Value string
}

func (Setting) TableName() string { return "settings" }

type ApplySettings struct {
	Settings []*Setting
	One      *Setting
}

func (*ApplySettings) Handle(context.Context) (int, error) { return 0, nil }

// Two rows whose keys, joined as "scope=...,name=...", read the same must
// each come back as itself: rows are matched by their key values.
func TestCodecCompositeTextKeysWithSeparatorsOnEachDialect(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		codec := ormref.New(db)
		a := &Setting{Scope: "app,name=theme", Name: "dark", Value: "a"}
		b := &Setting{Scope: "app", Name: "theme,name=dark", Value: "b"}
		c := &Setting{Scope: "x=1", Name: "y", Value: "c"}
		must(t, db.Create([]*Setting{a, b, c}).Error)
		_, got, err := roundTrip(t, ctx, codec, &ApplySettings{Settings: []*Setting{a, b, c}, One: b}, func() {
			must(t, db.Model(&Setting{}).Where("1 = 1").Update("value", gorm.Expr("CONCAT(value, '2')")).Error)
		})
		if err != nil {
			t.Fatalf("Resolve: %v", err)
		}
		var seen []string
		for _, s := range append(got.Settings, got.One) {
			seen = append(seen, s.Scope+"|"+s.Name+"|"+s.Value)
		}
		want := []string{"app,name=theme|dark|a2", "app|theme,name=dark|b2", "x=1|y|c2", "app|theme,name=dark|b2"}
		if !reflect.DeepEqual(seen, want) {
			t.Errorf("task saw\n\t%q\nwant\n\t%q", seen, want)
		}

		// A missing row is reported by its key, readably.
		_, _, err = roundTrip(t, ctx, codec, &ApplySettings{Settings: []*Setting{a}, One: b}, func() {
			must(t, db.Delete(b).Error)
		})
		var nf *ormref.ModelNotFoundError
		if !errors.As(err, &nf) || nf.Field != "One" || nf.Key != `scope="app",name="theme,name=dark"` {
			t.Errorf("Resolve after deleting b: %v; want field One, key scope=\"app\",name=\"theme,name=dark\"", err)
		}
	})
}

// A table the worker cannot read fails the job for good, with the reason, on
// each dialect (PostgreSQL says so with SQLSTATE class 42, MySQL with its
// own error numbers); a cancelled attempt stays retryable.
func TestCodecUnloadableTableIsPermanentOnEachDialect(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *gorm.DB) {
		codec := ormref.New(db)
		o := Order{ID: 7}
		must(t, db.Create(&o).Error)

		cancelled, cancel := context.WithCancel(context.Background())
		cancel()
		_, _, err := roundTrip(t, cancelled, codec, &ProcessOrder{Order: &o}, nil)
		if err == nil || queue.IsPermanent(err) {
			t.Errorf("Resolve with a cancelled context: %v; want a retryable error", err)
		}

		_, _, err = roundTrip(t, context.Background(), codec, &ProcessOrder{Order: &o}, func() {
			must(t, db.Migrator().DropTable(&Order{}))
		})
		if !queue.IsPermanent(err) || !strings.Contains(err.Error(), "cannot load this table") {
			t.Errorf("Resolve after DROP TABLE orders: %v; want a permanent error saying the table cannot be loaded", err)
		}
	})
}
