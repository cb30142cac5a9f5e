package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/tasqhq/tasq/migrations"
)

func (a *app) migrateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply, roll back or show the TasQ database schema",
		Long: `migrate manages the tasq_jobs table and its types and indexes. The applied
version is recorded in the ` + migrations.MigrationsTable + ` table, apart from the
application's own migrations.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(a.migrateUpCommand(), a.migrateDownCommand(), a.migrateVersionCommand())
	return cmd
}

func (a *app) migrateUpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "up",
		Short: "Apply every pending migration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			url, err := a.databaseURL()
			if err != nil {
				return err
			}
			if err := migrations.Up(cmd.Context(), url); err != nil {
				return err
			}
			v, dirty, err := migrations.Version(cmd.Context(), url)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "schema is at version %d (dirty=%t)\n", v, dirty)
			return nil
		},
	}
}

func (a *app) migrateDownCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Roll back every migration, dropping tasq_jobs and all its jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return errors.New("migrate down drops the tasq_jobs table and every job in it; pass --yes to confirm")
			}
			silenceUsage(cmd)
			url, err := a.databaseURL()
			if err != nil {
				return err
			}
			if err := migrations.Down(cmd.Context(), url); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "rolled back every migration: tasq_jobs is gone")
			return nil
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm that the jobs may be dropped")
	return cmd
}

func (a *app) migrateVersionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the applied schema version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			silenceUsage(cmd)
			url, err := a.databaseURL()
			if err != nil {
				return err
			}
			v, dirty, err := migrations.Version(cmd.Context(), url)
			if errors.Is(err, migrations.ErrNoVersion) {
				fmt.Fprintf(cmd.OutOrStdout(), "no migration applied yet (this build ships version %d); run `tasq migrate up`\n", migrations.Latest)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "version %d (dirty=%t)\n", v, dirty)
			if dirty {
				return fmt.Errorf("the schema is dirty: a migration to version %d failed halfway; fix the database by hand, then record the version in %s", v, migrations.MigrationsTable)
			}
			if v < migrations.Latest {
				fmt.Fprintf(cmd.OutOrStdout(), "this build ships version %d; run `tasq migrate up`\n", migrations.Latest)
			}
			return nil
		},
	}
}
