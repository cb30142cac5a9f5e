package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/tasqhq/tasq/queue"
)

// EnvDriver names the environment variable read when --driver is not given.
const EnvDriver = "TASQ_DRIVER"

// The backends the CLI knows by name. Each is served by the adapter package
// of the same name under github.com/tasqhq/tasq/adapters.
const (
	driverPostgres = "postgres"
	driverMySQL    = "mysql"
	driverRedis    = "redis"
	driverSQS      = "sqs"
)

// urlForms lists the database URL forms and the backend each one selects,
// for help texts and for the error of an unknown scheme.
const urlForms = `  postgres://user:pass@host:5432/db    PostgreSQL (also postgresql://, and key=value
                                       DSNs such as "host=127.0.0.1 dbname=app")
  mysql://user:pass@tcp(host:3306)/db  MySQL 8 / MariaDB 10.6+ (a go-sql-driver DSN,
                                       with or without the mysql:// prefix)
  redis://host:6379/0                  Redis (also rediss://); ?key_prefix=app:tasq:
                                       sets the key prefix (default tasq:)
  sqs://us-east-1                      Amazon SQS in a region, with the AWS credential chain
  http://127.0.0.1:9324                an SQS-compatible endpoint or emulator (also https://);
                                       ?prefix=app- sets the SQS queue-name prefix (default tasq-)`

// ErrUnknownScheme is returned when the backend cannot be told from the
// database URL: its scheme is none of those DriverForURL knows. Pass
// --driver (or set TASQ_DRIVER) to name the backend, or fix the URL.
var ErrUnknownScheme = errors.New("cannot tell the backend from the database URL")

// DriverForURL returns the name of the driver (as registered with
// queue.RegisterDriver) that serves url, from its scheme:
//
//   - postgres:// and postgresql://, and key=value DSNs ("host=... dbname=..."): "postgres"
//   - mysql://, and bare go-sql-driver DSNs such as root@tcp(127.0.0.1:3306)/app: "mysql"
//   - redis:// and rediss://: "redis"
//   - sqs:// (a region of Amazon SQS), and http:// and https:// (an SQS endpoint or emulator): "sqs"
//
// Any other URL gives an error wrapping ErrUnknownScheme that lists the
// accepted forms. The URL itself is not checked further: the adapter does
// that when it opens.
func DriverForURL(url string) (string, error) {
	s := strings.TrimSpace(url)
	scheme, _, hasScheme := strings.Cut(s, "://")
	if hasScheme && !strings.ContainsAny(scheme, ":=@/( ") {
		switch strings.ToLower(scheme) {
		case "postgres", "postgresql":
			return driverPostgres, nil
		case "mysql":
			return driverMySQL, nil
		case "redis", "rediss":
			return driverRedis, nil
		case "sqs", "http", "https":
			return driverSQS, nil
		}
		return "", fmt.Errorf("%w: unknown scheme %q; use one of these forms:\n%s\nor pass --driver (or set %s) to name the backend",
			ErrUnknownScheme, scheme+"://", urlForms, EnvDriver)
	}
	switch {
	case isMySQLDSN(s):
		return driverMySQL, nil
	case strings.Contains(s, "="):
		return driverPostgres, nil // libpq's key=value form
	}
	return "", fmt.Errorf("%w: it has no scheme (such as postgres://); use one of these forms:\n%s\nor pass --driver (or set %s) to name the backend",
		ErrUnknownScheme, urlForms, EnvDriver)
}

// isMySQLDSN reports whether s looks like a go-sql-driver/mysql DSN without
// the mysql:// prefix: [user[:pass]@]tcp(host:port)/db or unix(/path)/db.
func isMySQLDSN(s string) bool {
	for _, proto := range []string{"tcp(", "tcp6(", "unix("} {
		if strings.HasPrefix(s, proto) || strings.Contains(s, "@"+proto) {
			return true
		}
	}
	return false
}

// backend is a resolved database URL and the driver that serves it.
type backend struct {
	driver string
	url    string
}

// backend returns the database URL and its driver: --driver, else
// TASQ_DRIVER, else what DriverForURL infers from the URL.
func (a *app) backend() (backend, error) {
	url, err := a.databaseURL()
	if err != nil {
		return backend{}, err
	}
	name, source := strings.TrimSpace(a.driver), "--driver"
	if name == "" {
		name, source = strings.TrimSpace(os.Getenv(EnvDriver)), EnvDriver
	}
	if name == "" {
		d, err := DriverForURL(url)
		if err != nil {
			return backend{}, err
		}
		return backend{driver: d, url: url}, nil
	}
	name = strings.ToLower(name)
	if known := queue.Drivers(); !slices.Contains(known, name) {
		return backend{}, fmt.Errorf("%s %q: %w; this binary has the drivers %s. Leave %s unset to choose the driver from the URL's scheme "+
			"(an application's own binary gets a driver by importing its adapter package, e.g. _ \"github.com/tasqhq/tasq/adapters/redis\")",
			source, name, queue.ErrUnknownDriver, strings.Join(known, ", "), source)
	}
	return backend{driver: name, url: url}, nil
}

// openAdapter opens the backend named by the database URL (and --driver)
// with queue.OpenAdapter. SQL backends are checked to be migrated.
func (a *app) openAdapter(ctx context.Context) (queue.Adapter, error) {
	b, err := a.backend()
	if err != nil {
		return nil, err
	}
	return b.open(ctx)
}

// open opens the backend with queue.OpenAdapter, bounded by openTimeout.
func (b backend) open(ctx context.Context) (queue.Adapter, error) {
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	ad, err := queue.OpenAdapter(octx, b.driver, b.url)
	if err != nil {
		return nil, fmt.Errorf("open the %s backend: %w", b.driver, err)
	}
	return ad, nil
}
