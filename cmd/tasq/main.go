// Command tasq is TasQ's command line: migrate, worker, jobs, stats, demo
// and bench.
//
// It links all four adapters (postgres, mysql, redis, sqs); the database
// URL's scheme, or --driver, picks one. This stock binary knows only the
// demo's task types (package cmd/tasq/demo), so `tasq worker` runs the jobs
// `tasq demo` dispatches and nothing else. An application builds its own
// binary that registers its task types and mounts the commands of package
// cmd/tasq/cli.
package main

import (
	"fmt"
	"os"

	_ "github.com/tasqhq/tasq/adapters/mysql"    // the "mysql" driver
	_ "github.com/tasqhq/tasq/adapters/postgres" // the "postgres" driver
	_ "github.com/tasqhq/tasq/adapters/redis"    // the "redis" driver
	_ "github.com/tasqhq/tasq/adapters/sqs"      // the "sqs" driver
	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/queue"
)

func main() {
	reg := queue.NewRegistry()
	if err := demo.Register(reg); err != nil {
		fmt.Fprintf(os.Stderr, "tasq: register the demo tasks: %v\n", err)
		os.Exit(2)
	}
	if err := cli.NewRoot(cli.Options{Registry: reg}).Execute(); err != nil {
		os.Exit(1) // cobra has printed the error
	}
}
