package cli_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
)

// serveUI runs `tasq ui` with args until the test ends and returns the
// address it printed.
func serveUI(t *testing.T, ctx context.Context, dsn string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(ctx)
	root := cli.NewRoot(cli.Options{Logger: quietLogger()})
	var out, errOut syncBuffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append([]string{"ui", "--database-url", dsn}, args...))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("tasq ui returned %v after its context ended", err)
		}
	})
	addrRE := regexp.MustCompile(`on (http://\S+/)`)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if m := addrRE.FindStringSubmatch(out.String()); m != nil {
			return m[1]
		}
		select {
		case err := <-done:
			t.Fatalf("tasq ui ended before serving: %v\n%s", err, errOut.String())
		case <-ctx.Done():
			t.Fatalf("tasq ui did not start: %v", ctx.Err())
		case <-tick.C:
		}
	}
}

func httpGet(t *testing.T, url, user, pass string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestUICommand(t *testing.T) {
	t.Parallel()
	ctx := testContext(t)
	e := newEnv(t, ctx)
	url := serveUI(t, ctx, e.dsn, "--addr", "127.0.0.1:0")
	if status, body := httpGet(t, url, "", ""); status != 200 || !strings.Contains(body, `id="pause-`) && !strings.Contains(body, "No jobs yet") {
		t.Errorf("GET %s: %d\n%s", url, status, body)
	}
	if status, body := httpGet(t, url+"jobs", "", ""); status != 200 || !strings.Contains(body, `id="filter"`) {
		t.Errorf("GET jobs: %d", status)
	}

	ro := serveUI(t, ctx, e.dsn, "--addr", "127.0.0.1:0", "--read-only")
	if status, body := httpGet(t, ro, "", ""); status != 200 || !strings.Contains(body, `id="read-only"`) {
		t.Errorf("read-only GET: %d", status)
	}
}

// TestUICommandRefusesUnprotected: beyond loopback, actions need
// authentication; --read-only or TASQ_UI_USER/TASQ_UI_PASSWORD lift the refusal.
func TestUICommandRefusesUnprotected(t *testing.T) {
	ctx := testContext(t)
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0"} {
		r := run(ctx, cli.Options{}, "ui", "--addr", addr, "--database-url", "postgres://127.0.0.1:1/none")
		if !errors.Is(r.err, cli.ErrUIUnprotected) {
			t.Errorf("tasq ui --addr %s: %v, want ErrUIUnprotected", addr, r.err)
		}
	}
	if r := run(ctx, cli.Options{}, "ui", "--addr", "nonsense", "--database-url", "postgres://127.0.0.1:1/none"); r.err == nil {
		t.Error("tasq ui --addr nonsense: no error")
	}

	e := newEnv(t, ctx)
	t.Setenv(cli.EnvUIUser, "ops")
	t.Setenv(cli.EnvUIPassword, "s3cret")
	url := serveUI(t, ctx, e.dsn, "--addr", ":0")
	url = strings.Replace(url, "[::]", "127.0.0.1", 1)
	if status, _ := httpGet(t, url, "", ""); status != http.StatusUnauthorized {
		t.Errorf("no credentials: %d, want 401", status)
	}
	if status, _ := httpGet(t, url, "ops", "wrong"); status != http.StatusUnauthorized {
		t.Errorf("wrong password: %d, want 401", status)
	}
	if status, _ := httpGet(t, url, "ops", "s3cret"); status != http.StatusOK {
		t.Errorf("right password: %d, want 200", status)
	}
}
