package ormref_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"
	"gorm.io/gorm/logger"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/internal/testmain"
	"github.com/tasqhq/tasq/internal/testmysql"
	"github.com/tasqhq/tasq/internal/testpg"
	"github.com/tasqhq/tasq/ormref"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

func TestMain(m *testing.M) { os.Exit(testmain.Chain(m, testpg.Main, testmysql.Main)) }

// User is a realistic model: the kind of row a welcome email needs.
type User struct {
	gorm.Model
	Email       string
	Name        string
	Bio         string
	Locale      string
	Timezone    string
	Plan        string
	Newsletter  bool
	LastLoginIP string
}

type Order struct {
	ID     int64 `gorm:"primaryKey"`
	UserID uint
	Total  float64
	Status string
}

func (Order) TableName() string { return "orders" }

// OrderLine has a composite primary key.
type OrderLine struct {
	OrderID int64 `gorm:"primaryKey;autoIncrement:false"`
	LineNo  int   `gorm:"primaryKey;autoIncrement:false"`
	SKU     string
	Qty     int
}

func (OrderLine) TableName() string { return "order_lines" }

// Keyless has no primary key.
type Keyless struct{ Name string }

func (Keyless) TableName() string { return "keyless" }

// seen collects what tasks saw, per test key.
var seen sync.Map // key -> chan any

func report(key string, v any) {
	if ch, ok := seen.Load(key); ok {
		ch.(chan any) <- v
	}
}

// SendWelcomeEmail is the guide's ORM example.
type SendWelcomeEmail struct {
	Key  string
	User *User
}

func (*SendWelcomeEmail) Config() queue.Config {
	return queue.Config{Queue: "emails", RetryDelay: queue.RetryImmediately}
}

func (t *SendWelcomeEmail) Handle(ctx context.Context) (string, error) {
	report(t.Key, *t.User)
	return "sent to " + t.User.Email, nil
}

// ProcessOrder holds several models and a slice of composite-key rows.
type ProcessOrder struct {
	Key   string
	Order *Order
	User  *User
	Lines []*OrderLine
}

func (*ProcessOrder) Config() queue.Config { return queue.Config{Queue: "orders"} }

func (t *ProcessOrder) Handle(ctx context.Context) (int, error) {
	report(t.Key, t)
	return len(t.Lines), nil
}

// Forgiving retries even a missing model (ShouldRetry overrides the default).
type Forgiving struct {
	User *User
}

func (*Forgiving) Config() queue.Config {
	return queue.Config{Queue: "forgiving", RetryDelay: time.Hour}
}
func (t *Forgiving) Handle(ctx context.Context) (bool, error) { return true, nil }
func (t *Forgiving) ShouldRetry(err error) bool               { return true }

type env struct {
	t      *testing.T
	ctx    context.Context
	db     *gorm.DB
	codec  *ormref.Codec
	client *queue.Client
	a      *postgres.Adapter
	dsn    string
}

func newEnv(t *testing.T) *env {
	ctx := context.Background()
	dsn := testpg.NewDatabase(t)
	db, err := gorm.Open(gormpg.Open(dsn), &gorm.Config{Logger: logger.Discard})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AutoMigrate(&User{}, &Order{}, &OrderLine{}); err != nil {
		t.Fatal(err)
	}
	a, err := postgres.New(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	codec := ormref.New(db)
	client, err := queue.NewClient(a, queue.WithEncoder(codec))
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ctx: ctx, db: db, codec: codec, client: client, a: a, dsn: dsn}
}

func (e *env) work(queues ...string) {
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &SendWelcomeEmail{})
	queue.MustRegister(reg, &ProcessOrder{})
	queue.MustRegister(reg, &Forgiving{})
	w, err := worker.New(e.a, reg, worker.Config{
		Queues: queues, Resolver: e.codec, MaintenanceInterval: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
}

func (e *env) wait(id uuid.UUID, st queue.JobState) *queue.JobInfo {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := e.a.GetJob(e.ctx, id)
		if err != nil {
			e.t.Fatal(err)
		}
		if j.State == st {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s is %s (errors %+v), want %s", id, j.State, j.Errors, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func listen(t *testing.T) (string, chan any) {
	key := uuid.NewString()
	ch := make(chan any, 10)
	seen.Store(key, ch)
	t.Cleanup(func() { seen.Delete(key) })
	return key, ch
}

func receive(t *testing.T, ch chan any) any {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("task did not run")
		return nil
	}
}

func TestModelTravelsAsReferenceAndIsFetchedFresh(t *testing.T) {
	e := newEnv(t)
	key, ch := listen(t)
	u := User{Email: "old@example.com", Name: "Ada", Bio: strings.Repeat("x", 400)}
	if err := e.db.Create(&u).Error; err != nil {
		t.Fatal(err)
	}
	id, err := e.client.Dispatch(e.ctx, &SendWelcomeEmail{Key: key, User: &u})
	if err != nil {
		t.Fatal(err)
	}
	j, _ := e.a.GetJob(e.ctx, id)
	var payload map[string]json.RawMessage
	_ = json.Unmarshal(j.Payload, &payload)
	var ref map[string]any
	_ = json.Unmarshal(payload["User"], &ref)
	if ref["$table"] != "users" || ref["ID"] != float64(u.ID) || len(ref) != 2 {
		t.Fatalf("User travelled as %s; want only {$table, ID}", payload["User"])
	}
	// The row changes after dispatch: the task must see the new values.
	if err := e.db.Model(&u).Update("email", "new@example.com").Error; err != nil {
		t.Fatal(err)
	}
	e.work("emails")
	got := receive(t, ch).(User)
	if got.Email != "new@example.com" || got.Name != "Ada" || got.ID != u.ID || got.CreatedAt.IsZero() {
		t.Errorf("task saw %+v; want the fresh row", got)
	}
	j = e.wait(id, queue.StateCompleted)
	if string(j.Result) != `"sent to new@example.com"` {
		t.Errorf("result %s", j.Result)
	}
}

func TestDeletedModelFailsWithoutRetry(t *testing.T) {
	e := newEnv(t)
	u := User{Email: "gone@example.com"}
	e.db.Create(&u)
	id, err := e.client.Dispatch(e.ctx, &SendWelcomeEmail{User: &u})
	if err != nil {
		t.Fatal(err)
	}
	forgiving, _ := e.client.Dispatch(e.ctx, &Forgiving{User: &u})
	e.db.Unscoped().Delete(&u)
	e.work("emails", "forgiving")
	j := e.wait(id, queue.StateFailed)
	if j.Attempt != 1 || !strings.Contains(j.LastError(), "model not found: field User refers to users(id=") {
		t.Errorf("attempt %d, last error %q; want one attempt and a ModelNotFound reason", j.Attempt, j.LastError())
	}
	// A task whose ShouldRetry says yes is retried after all.
	f := e.wait(forgiving, queue.StateRetryable)
	if !strings.Contains(f.LastError(), "model not found") {
		t.Errorf("forgiving task error %q", f.LastError())
	}
}

func TestSeveralModelsSlicesAndCompositeKeysOneQueryPerTable(t *testing.T) {
	e := newEnv(t)
	key, ch := listen(t)
	u := User{Email: "buyer@example.com"}
	e.db.Create(&u)
	o := Order{ID: 100, UserID: u.ID, Total: 12.5, Status: "new"}
	e.db.Create(&o)
	lines := []*OrderLine{{OrderID: 100, LineNo: 1, SKU: "A", Qty: 1}, {OrderID: 100, LineNo: 2, SKU: "B", Qty: 2}, {OrderID: 100, LineNo: 3, SKU: "C", Qty: 3}}
	e.db.Create(&lines)
	id, err := e.client.Dispatch(e.ctx, &ProcessOrder{Key: key, Order: &o, User: &u, Lines: lines})
	if err != nil {
		t.Fatal(err)
	}
	e.db.Model(&OrderLine{}).Where("order_id = 100 AND line_no = 2").Update("qty", 20)
	e.db.Model(&o).Update("status", "paid")

	var mu sync.Mutex
	queries := map[string]int{}
	if err := e.db.Callback().Query().After("gorm:query").Register("count_queries", func(db *gorm.DB) {
		mu.Lock()
		queries[db.Statement.Table]++
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	e.work("orders")
	got := receive(t, ch).(*ProcessOrder)
	if got.Order.Status != "paid" || got.User.Email != "buyer@example.com" || len(got.Lines) != 3 || got.Lines[1].Qty != 20 || got.Lines[2].SKU != "C" {
		t.Errorf("task saw order %+v user %+v lines %+v", got.Order, got.User, got.Lines)
	}
	e.wait(id, queue.StateCompleted)
	mu.Lock()
	defer mu.Unlock()
	if queries["orders"] != 1 || queries["users"] != 1 || queries["order_lines"] != 1 {
		t.Errorf("queries per table = %v; want one each", queries)
	}
}

func TestDispatchInsideGormTransactionWithModelCreatedThere(t *testing.T) {
	e := newEnv(t)
	key, ch := listen(t)
	var id uuid.UUID
	err := e.db.Transaction(func(tx *gorm.DB) error {
		u := User{Email: "tx@example.com"}
		if err := tx.Create(&u).Error; err != nil {
			return err
		}
		var err error
		id, err = e.client.DispatchTx(e.ctx, tx, &SendWelcomeEmail{Key: key, User: &u})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.work("emails")
	if got := receive(t, ch).(User); got.Email != "tx@example.com" {
		t.Errorf("task saw %+v", got)
	}
	e.wait(id, queue.StateCompleted)
}

type hasKeyless struct{ K *Keyless }

func (*hasKeyless) Handle(context.Context) (int, error) { return 0, nil }

type hasValueModel struct{ U User }

func (*hasValueModel) Handle(context.Context) (int, error) { return 0, nil }

func TestBadModelsAreRejectedAtDispatch(t *testing.T) {
	e := newEnv(t)
	_, err := e.client.Dispatch(e.ctx, &SendWelcomeEmail{User: &User{Email: "unsaved"}})
	if !errors.Is(err, ormref.ErrZeroPrimaryKey) || !strings.Contains(err.Error(), "save the model before dispatching") {
		t.Errorf("unsaved model: %v", err)
	}
	_, err = e.client.Dispatch(e.ctx, &hasKeyless{K: &Keyless{Name: "x"}})
	if !errors.Is(err, ormref.ErrNoPrimaryKey) || !strings.Contains(err.Error(), "keyless") {
		t.Errorf("model without primary key: %v", err)
	}
	_, err = e.client.Dispatch(e.ctx, &hasValueModel{})
	if err == nil || !strings.Contains(err.Error(), "use *User") {
		t.Errorf("model by value: %v", err)
	}
	if err := e.codec.Register(Keyless{}); !errors.Is(err, ormref.ErrNoPrimaryKey) {
		t.Errorf("Register(Keyless): %v", err)
	}
	_, err = e.client.Dispatch(e.ctx, &ProcessOrder{Lines: []*OrderLine{{OrderID: 1, LineNo: 0}}})
	if !errors.Is(err, ormref.ErrZeroPrimaryKey) {
		t.Errorf("composite key with a zero part: %v", err)
	}
	var n int
	conn, _ := pgx.Connect(e.ctx, e.dsn)
	defer conn.Close(e.ctx)
	_ = conn.QueryRow(e.ctx, `SELECT count(*) FROM tasq_jobs`).Scan(&n)
	if n != 0 {
		t.Errorf("%d jobs stored by rejected dispatches", n)
	}
}

func TestUnloadableTablesFailTheJobWithTheReason(t *testing.T) {
	e := newEnv(t)
	u := User{Email: "x@example.com"}
	e.db.Create(&u)
	// The payload names a table the field's type does not live in.
	mismatch, _ := e.client.Dispatch(e.ctx, &SendWelcomeEmail{User: &u})
	e.db.Exec(`UPDATE tasq_jobs SET payload = jsonb_set(payload, '{User,$table}', '"accounts"') WHERE id = ?`, mismatch)
	// The table is gone when the job runs.
	o := Order{ID: 7}
	e.db.Create(&o)
	dropped, _ := e.client.Dispatch(e.ctx, &ProcessOrder{Order: &o})
	e.db.Exec(`DROP TABLE orders`)
	e.work("emails", "orders")
	if j := e.wait(mismatch, queue.StateFailed); !strings.Contains(j.LastError(), `dispatched as a row of "accounts"`) {
		t.Errorf("mismatch error %q", j.LastError())
	}
	if j := e.wait(dropped, queue.StateFailed); j.Attempt != 1 || !strings.Contains(j.LastError(), "cannot load this table") {
		t.Errorf("dropped table: attempt %d error %q", j.Attempt, j.LastError())
	}
}

// Customer is loaded without GORM, through a Ref and a pgx loader.
type Customer struct {
	ID   int64
	Name string
}

type SendInvoice struct {
	Key      string
	Customer ormref.Ref[Customer, int64]
}

func (*SendInvoice) Config() queue.Config { return queue.Config{Queue: "invoices"} }

func (t *SendInvoice) Handle(ctx context.Context) (string, error) {
	report(t.Key, *t.Customer.Value())
	return t.Customer.Value().Name, nil
}

func TestRefWithLoaderForPgxUsers(t *testing.T) {
	e := newEnv(t)
	key, ch := listen(t)
	pool := e.a.Pool()
	pool.Exec(e.ctx, `CREATE TABLE customers (id bigint PRIMARY KEY, name text)`)
	pool.Exec(e.ctx, `INSERT INTO customers VALUES (1, 'Old name'), (2, 'Doomed')`)
	codec := ormref.New(nil)
	ormref.RegisterLoader(codec, "customers", func(ctx context.Context, id int64) (*Customer, error) {
		var c Customer
		err := pool.QueryRow(ctx, `SELECT id, name FROM customers WHERE id = $1`, id).Scan(&c.ID, &c.Name)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, nil
		}
		return &c, err
	})
	client, _ := queue.NewClient(e.a, queue.WithEncoder(codec))
	id, err := client.Dispatch(e.ctx, &SendInvoice{Key: key, Customer: ormref.RefTo[Customer](int64(1))})
	if err != nil {
		t.Fatal(err)
	}
	gone, _ := client.Dispatch(e.ctx, &SendInvoice{Customer: ormref.RefTo[Customer](int64(2))})
	if _, err := client.Dispatch(e.ctx, &SendInvoice{}); !errors.Is(err, ormref.ErrZeroPrimaryKey) {
		t.Errorf("zero Ref: %v", err)
	}
	pool.Exec(e.ctx, `UPDATE customers SET name = 'New name' WHERE id = 1`)
	pool.Exec(e.ctx, `DELETE FROM customers WHERE id = 2`)
	j, _ := e.a.GetJob(e.ctx, id)
	var payload struct{ Customer map[string]any }
	if err := json.Unmarshal(j.Payload, &payload); err != nil || payload.Customer["$table"] != "customers" || payload.Customer["key"] != float64(1) {
		t.Errorf("payload %s; want Customer as {$table: customers, key: 1}", j.Payload)
	}

	reg := queue.NewRegistry()
	queue.MustRegister(reg, &SendInvoice{})
	w, _ := worker.New(e.a, reg, worker.Config{Queues: []string{"invoices"}, Resolver: codec, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if got := receive(t, ch).(Customer); got.Name != "New name" {
		t.Errorf("task saw %+v", got)
	}
	e.wait(id, queue.StateCompleted)
	if j := e.wait(gone, queue.StateFailed); !strings.Contains(j.LastError(), "model not found: field Customer refers to customers(key=2)") {
		t.Errorf("gone customer: %q", j.LastError())
	}
}

// TestPayloadSize measures a realistic model by value and by reference; the
// numbers are in README.md.
func TestPayloadSize(t *testing.T) {
	e := newEnv(t)
	u := User{
		Email: "ada.lovelace@example.com", Name: "Ada Lovelace", Locale: "en-GB", Timezone: "Europe/London",
		Plan: "enterprise", Newsletter: true, LastLoginIP: "203.0.113.42",
		Bio: "Mathematician and writer, chiefly known for her work on Charles Babbage's proposed mechanical " +
			"general-purpose computer, the Analytical Engine. She was the first to recognise that the machine " +
			"had applications beyond pure calculation.",
	}
	e.db.Create(&u)
	byValue, _ := json.Marshal(&SendWelcomeEmail{User: &u})
	byRef, err := e.codec.Encode(&SendWelcomeEmail{User: &u})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SendWelcomeEmail payload: by value %d bytes, by reference %d bytes (%.0f%% smaller)",
		len(byValue), len(byRef), 100*(1-float64(len(byRef))/float64(len(byValue))))
	if len(byRef)*5 > len(byValue) {
		t.Errorf("reference payload %d bytes is not much smaller than the value %d", len(byRef), len(byValue))
	}
}
