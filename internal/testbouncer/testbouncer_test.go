package testbouncer_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasqhq/tasq/internal/testbouncer"
	"github.com/tasqhq/tasq/internal/testpg"
)

func TestMain(m *testing.M) { os.Exit(testpg.Main(m)) }

// serverPID connects to dsn and returns the process id the server reports
// and the one the connection was given at login (in BackendKeyData). The
// connection stays open until the test ends.
func serverPID(t *testing.T, ctx context.Context, dsn string) (server, given uint32) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`, pgx.QueryExecModeSimpleProtocol).Scan(&server); err != nil {
		t.Fatal(err)
	}
	return server, conn.PgConn().PID()
}

// TestTransactionPooling checks that a bouncer in transaction mode with one
// server connection really shares it between clients, and runs as
// configured.
func TestTransactionPooling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := testpg.NewDatabase(t)
	b := testbouncer.Start(t, testbouncer.Options{Server: dsn, PoolMode: testbouncer.Transaction, PoolSize: 1})
	if !strings.HasPrefix(b.Version(), "PgBouncer ") {
		t.Errorf("Version() = %q", b.Version())
	}
	s1, given1 := serverPID(t, ctx, b.URL(dsn))
	s2, _ := serverPID(t, ctx, b.URL(dsn))
	if s1 != s2 {
		t.Errorf("two clients of a pool of one server connection ran on server processes %d and %d", s1, s2)
	}
	if given1 == s1 {
		t.Errorf("the bouncer gave the client the server's process id %d; PgBouncer makes up its own", s1)
	}
	admin, err := pgx.Connect(ctx, b.AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	rows, err := admin.Query(ctx, "SHOW CONFIG")
	if err != nil {
		t.Fatal(err)
	}
	config := map[string]string{}
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		k, _ := vals[0].(string)
		v, _ := vals[1].(string) // NULL for an empty setting
		config[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"pool_mode": "transaction", "default_pool_size": "1", "listen_addr": "127.0.0.1", "unix_socket_dir": ""} {
		if config[k] != want {
			t.Errorf("SHOW CONFIG: %s = %q; want %q", k, config[k], want)
		}
	}
}

// TestSessionPooling: in session mode each client keeps its own server
// connection.
func TestSessionPooling(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := testpg.NewDatabase(t)
	b := testbouncer.Start(t, testbouncer.Options{Server: dsn, PoolMode: testbouncer.Session, PoolSize: 2})
	s1, _ := serverPID(t, ctx, b.URL(dsn))
	s2, _ := serverPID(t, ctx, b.URL(dsn))
	if s1 == s2 {
		t.Errorf("two clients of a session pool share server process %d", s1)
	}
}

func TestURL(t *testing.T) {
	dsn := testpg.NewDatabase(t)
	b := testbouncer.Start(t, testbouncer.Options{Server: dsn})
	if got := b.URL("postgres://u:p@127.0.0.1:1/db?sslmode=disable"); got != "postgres://u:p@"+b.Addr()+"/db?sslmode=disable" {
		t.Errorf("URL of a URL = %q", got)
	}
	if got, want := b.URL("host=127.0.0.1 port=1 dbname=db"), "host=127.0.0.1 port=1 dbname=db host=127.0.0.1 port="+strings.TrimPrefix(b.Addr(), "127.0.0.1:"); got != want {
		t.Errorf("URL of a key=value DSN = %q; want %q", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	serverPID(t, ctx, b.URL(dsn)) // it connects
}
