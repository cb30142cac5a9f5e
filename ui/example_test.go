package ui_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"github.com/tasqhq/tasq/adapters/postgres"
	"github.com/tasqhq/tasq/ui"
)

// requireAdmin stands for the application's own authentication: the
// dashboard has none of its own.
func requireAdmin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pass, ok := r.BasicAuth(); !ok || pass != os.Getenv("ADMIN_PASSWORD") {
			w.Header().Set("WWW-Authenticate", `Basic realm="admin"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Mount the dashboard under /admin/tasq/ of an application's server, behind
// the application's authentication.
func Example() {
	ctx := context.Background()
	ad, err := postgres.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer ad.Close()

	dash, err := ui.New(ad, ui.Options{Prefix: "/admin/tasq"})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/admin/tasq/", requireAdmin(http.StripPrefix("/admin/tasq", dash)))
	log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
}
