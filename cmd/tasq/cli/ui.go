package cli

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/ui"
)

// The environment variables that turn on the ui command's HTTP basic
// authentication.
const (
	EnvUIUser     = "TASQ_UI_USER"
	EnvUIPassword = "TASQ_UI_PASSWORD"
)

// ErrUIUnprotected is returned by `tasq ui` when asked to serve actions on
// an address beyond loopback without authentication.
var ErrUIUnprotected = errors.New("refusing to serve the dashboard's actions beyond loopback without authentication")

func (a *app) uiCommand() *cobra.Command {
	var (
		addr     string
		readOnly bool
	)
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the web dashboard: queues, jobs, actions and schedules",
		Long: `ui serves TasQ's web dashboard (package github.com/tasqhq/tasq/ui): queues
with their job counts by state, pauses and limits, and throughput over the
last hour; jobs filtered by state, queue, kind and tag, with their payloads,
results and errors; retry, cancel and delete a job, pause and resume a
queue, pause, resume and run a schedule.

It listens on 127.0.0.1:8080 by default, where only this machine can reach
it. On any other address it serves actions only behind HTTP basic
authentication, with the user and password in ` + EnvUIUser + ` and
` + EnvUIPassword + ` (put it behind TLS too), or with --read-only, which
offers no action at all. An application that mounts the dashboard in its
own server uses ui.New behind its own authentication instead.`,
		Example: `  tasq ui
  tasq ui --addr 127.0.0.1:9000 --read-only
  TASQ_UI_USER=ops TASQ_UI_PASSWORD=... tasq ui --addr :8080`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			user, pass := os.Getenv(EnvUIUser), os.Getenv(EnvUIPassword)
			if (user == "") != (pass == "") {
				return fmt.Errorf("set both %s and %s for basic authentication, or neither", EnvUIUser, EnvUIPassword)
			}
			auth := pass != ""
			loopback, err := isLoopbackAddr(addr)
			if err != nil {
				return err
			}
			if !loopback && !auth && !readOnly {
				return fmt.Errorf("%w: %s can be reached from other machines. Set %s and %s (basic authentication; use TLS in front), "+
					"pass --read-only, or listen on 127.0.0.1", ErrUIUnprotected, addr, EnvUIUser, EnvUIPassword)
			}
			ctx, stop := withSignals(cmd.Context(), nil)
			defer stop()
			ad, err := a.openAdapter(ctx)
			if err != nil {
				return err
			}
			defer ad.Close()
			h, err := ui.New(ad, ui.Options{ReadOnly: readOnly, Logger: a.logger(cmd)})
			if err != nil {
				return err
			}
			var handler http.Handler = h
			if auth {
				handler = basicAuth(handler, user, pass)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
			mode := ""
			if readOnly {
				mode = " (read-only)"
			}
			if !loopback && !auth {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: anyone who can reach %s can read every job's payload and errors\n", ln.Addr())
			}
			fmt.Fprintf(cmd.OutOrStdout(), "tasq ui%s on http://%s/ (Ctrl-C stops it)\n", mode, ln.Addr())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return fmt.Errorf("serve: %w", err)
			case <-ctx.Done():
			}
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			return srv.Shutdown(sctx)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on (host:port)")
	cmd.Flags().BoolVar(&readOnly, "read-only", false, "offer no actions: only look")
	return cmd
}

// isLoopbackAddr reports whether addr (host:port) listens on loopback only.
// An empty host, or 0.0.0.0 or ::, listens on every interface.
func isLoopbackAddr(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("--addr %q: %w; use host:port, e.g. 127.0.0.1:8080", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return true, nil
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback(), nil
}

// basicAuth lets requests through only with HTTP basic authentication as
// user and pass.
func basicAuth(next http.Handler, user, pass string) http.Handler {
	wantU, wantP := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(pass))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotU, gotP := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		if !ok || subtle.ConstantTimeCompare(gotU[:], wantU[:])&subtle.ConstantTimeCompare(gotP[:], wantP[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="tasq", charset="UTF-8"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
