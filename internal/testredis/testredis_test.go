package testredis_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/internal/testredis"
)

func TestMain(m *testing.M) { os.Exit(testredis.Main(m)) }

func TestPrefixesAreUniqueAndCleanedUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := testredis.NewClient(t)
	var prefixes []string
	t.Run("writer", func(t *testing.T) {
		a, b := testredis.NewPrefix(t), testredis.NewPrefix(t)
		if a == b || !strings.HasPrefix(a, testredis.PrefixRoot) {
			t.Fatalf("prefixes %q and %q", a, b)
		}
		prefixes = []string{a, b}
		for i := range 2500 { // more than one SCAN/UNLINK batch
			if err := c.Set(ctx, a+"k"+string(rune('a'+i%26))+strings.Repeat("x", i/26), "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		if err := c.Set(ctx, b+"k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	})
	for _, p := range prefixes {
		if ks, err := c.Keys(ctx, p+"*").Result(); err != nil || len(ks) != 0 {
			t.Errorf("after the test, %d keys under %q are left (%v)", len(ks), p, err)
		}
	}
	if !strings.Contains(testredis.URL(), "://") {
		t.Errorf("URL() = %q", testredis.URL())
	}
}
