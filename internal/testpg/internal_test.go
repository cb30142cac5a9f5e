package testpg

import (
	"strings"
	"testing"
)

func TestDSNFor(t *testing.T) {
	for _, tc := range []struct{ dsn, db, want string }{
		{"postgres://u:p@h:5432/postgres?sslmode=disable", "tasq_x", "postgres://u:p@h:5432/tasq_x?sslmode=disable"},
		{"postgres://u@h/", "a b", "postgres://u@h/a%20b"},
		{"host=h user=u dbname=postgres", "it's", `host=h user=u dbname=postgres dbname='it\'s'`},
	} {
		if got := dsnFor(tc.dsn, tc.db); got != tc.want {
			t.Errorf("dsnFor(%q, %q) = %q, want %q", tc.dsn, tc.db, got, tc.want)
		}
	}
}

func TestDatabaseName(t *testing.T) {
	h := &harness{}
	a := h.databaseName("TestFoo/sub-test #1")
	b := h.databaseName("TestFoo/sub-test #1")
	if a == b {
		t.Errorf("two names are equal: %s", a)
	}
	if !strings.HasPrefix(a, "tasq_test_") || strings.ContainsAny(a, "/ -#") || strings.ToLower(a) != a {
		t.Errorf("name %q is not a plain lower-case identifier", a)
	}
	long := h.databaseName(strings.Repeat("TestVeryLongName", 10))
	if len(long) > 63 {
		t.Errorf("name %q is %d bytes, over PostgreSQL's 63", long, len(long))
	}
}

func TestRedact(t *testing.T) {
	if got := redact("postgres://u:secret@h/db"); strings.Contains(got, "secret") {
		t.Errorf("redact kept the password: %s", got)
	}
	if got := redact("host=h password=secret"); strings.Contains(got, "secret") {
		t.Errorf("redact kept the password: %s", got)
	}
}
