package testmysql

import (
	"strings"
	"testing"
)

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
	if long := h.databaseName(strings.Repeat("TestVeryLongName", 10)); len(long) > 64 {
		t.Errorf("name %q is %d characters, over MySQL's 64", long, len(long))
	}
}

func TestQuoteIdent(t *testing.T) {
	if got := quoteIdent("a`b"); got != "`a``b`" {
		t.Errorf("quoteIdent = %s", got)
	}
}
