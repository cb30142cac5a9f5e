package ormref_test

import (
	"context"
	"fmt"
	"log"
	"os"

	gormpg "gorm.io/driver/postgres"
	"gorm.io/gorm"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/ormref"
	"github.com/tasqhq/tasq/queue"
	"github.com/tasqhq/tasq/worker"
)

// The guide's SendWelcomeEmail and ProcessOrder, with GORM models as fields.
// Only table and primary key travel; the worker fetches the rows fresh.
func Example() {
	ctx := context.Background()
	url := os.Getenv("TASQ_DATABASE_URL")
	db, err := gorm.Open(gormpg.Open(url), &gorm.Config{})
	if err != nil {
		log.Fatal(err)
	}
	adapter, err := postgres.New(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	codec := ormref.New(db) // the guide's session for fetching models

	// Dispatching side: models become {"$table": "users", "ID": 1}.
	client, _ := queue.NewClient(adapter, queue.WithEncoder(codec))
	var user User
	db.First(&user, 1)
	if _, err := client.Dispatch(ctx, &WelcomeEmail{User: &user}); err != nil {
		log.Fatal(err)
	}
	var order Order
	db.First(&order, 100)
	if _, err := client.Dispatch(ctx, &FulfilOrder{Order: &order, User: &user}); err != nil {
		log.Fatal(err)
	}

	// Worker side: the same codec reloads every model before Handle.
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &WelcomeEmail{})
	queue.MustRegister(reg, &FulfilOrder{})
	w, _ := worker.New(adapter, reg, worker.Config{Queues: []string{"emails", "orders"}, Resolver: codec})
	_ = w.Run(ctx)
}

// WelcomeEmail mirrors the guide's SendWelcomeEmail.
type WelcomeEmail struct {
	User *User
}

func (*WelcomeEmail) Config() queue.Config { return queue.Config{Queue: "emails"} }

func (t *WelcomeEmail) Handle(ctx context.Context) (any, error) {
	fmt.Printf("Sending welcome email to %s (ID: %d)\n", t.User.Email, t.User.ID)
	return nil, nil
}

// FulfilOrder mirrors the guide's ProcessOrder: several models, fetched with
// one query per table, the tables concurrently.
type FulfilOrder struct {
	Order *Order
	User  *User
}

func (*FulfilOrder) Config() queue.Config { return queue.Config{Queue: "orders"} }

func (t *FulfilOrder) Handle(ctx context.Context) (any, error) {
	fmt.Printf("Processing order %d for user %s\n", t.Order.ID, t.User.Name)
	return nil, nil
}
