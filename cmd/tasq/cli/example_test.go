package cli_test

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/cmd/tasq/cli"
	"github.com/tasqhq/tasq/cmd/tasq/demo"
	"github.com/tasqhq/tasq/queue"
)

// An application's own binary registers its task types and mounts the
// worker command in its cobra root: `myapp worker --queues emails`.
func ExampleNewWorkerCommand() {
	reg := queue.NewRegistry()
	queue.MustRegister(reg, &demo.SendEmail{}) // the application's task types
	root := &cobra.Command{Use: "myapp"}
	root.AddCommand(cli.NewWorkerCommand(cli.Options{Registry: reg}))
	if err := root.Execute(); err != nil {
		os.Exit(1)
	}
}

// The stock tasq binary is NewRoot with the demo's task types registered.
func ExampleNewRoot() {
	reg := queue.NewRegistry()
	if err := demo.Register(reg); err != nil {
		panic(err)
	}
	if err := cli.NewRoot(cli.Options{Registry: reg}).Execute(); err != nil {
		os.Exit(1)
	}
}
