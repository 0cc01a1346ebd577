package main

import (
	"encoding/json"
	"fmt"

	"github.com/idemhq/idem"
	"github.com/spf13/cobra"
)

// diffCmd compares two live tables: the same table in two databases (prod
// against a rerun in staging), or two tables in one.
func diffCmd(e *env) *cobra.Command {
	var to, with, table, withTable, partition string
	var key, exclude []string
	var asJSON bool
	c := &cobra.Command{
		Use:   "diff --to URL --table NAME [--with URL] [--with-table NAME] [--key COLS]",
		Short: "Show the rows added, removed and changed between two tables",
		Long: `diff compares a table (or partition) with another, in the same target or in
another one (--with), by content: both sides are read once, at the same
time, into per-segment fingerprints and a local spool, and only segments
whose fingerprints differ are compared row by row. With --key, rows are
matched by key and changed columns are named. Exit 0 when identical, 3 when
not.`,
		Example: `  idem diff --to postgres://prod/db --with postgres://staging/db --table orders --key order_id
  idem diff --table orders --with-table orders_rerun --key order_id --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			part, err := parseOptionalPartition(partition)
			if err != nil {
				return err
			}
			if withTable == "" {
				withTable = table
			}
			if with == "" {
				with = to
			}
			if with == to && withTable == table {
				return idem.BadInput("nothing to compare: give --with URL or --with-table NAME")
			}
			a, err := openExisting(cmd.Context(), to)
			if err != nil {
				return err
			}
			defer a.Close()
			b := a
			if with != to {
				if b, err = openExisting(cmd.Context(), with); err != nil {
					return err
				}
				defer b.Close()
			}
			sa, sb, err := idem.TakeSnapshots(cmd.Context(), a, b, table, withTable, part, idem.SnapshotOptions{Key: key, Exclude: exclude})
			if err != nil {
				return err
			}
			defer sa.Close()
			defer sb.Close()
			d, err := idem.Compare(sa, sb)
			if err != nil {
				return err
			}
			if asJSON {
				err = json.NewEncoder(e.stdout).Encode(d)
			} else {
				_, err = fmt.Fprintln(e.stdout, d.Text())
			}
			if err != nil {
				return err
			}
			if !d.Identical {
				return &differs{what: fmt.Sprintf("%q and %q differ", table, withTable)}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&to, "to", "sqlite:idem.db", "target URL of the first table")
	f.StringVar(&with, "with", "", "target URL of the second table (default: --to)")
	f.StringVar(&table, "table", "", "first table")
	f.StringVar(&withTable, "with-table", "", "second table (default: --table)")
	f.StringVar(&partition, "partition", "", "only this partition (COL=VALUE) of both")
	f.StringSliceVar(&key, "key", nil, "key columns: match rows and name changed columns")
	f.StringSliceVar(&exclude, "exclude", nil, "columns left out of the comparison")
	f.BoolVar(&asJSON, "json", false, "print the diff as JSON")
	return c
}
